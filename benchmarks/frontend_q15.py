"""Does the q15 front end pay? The bundle's log-mel front end in float32 and in q15 (CMSIS-DSP through
pip ``cmsisdsp``, the same C code as ``frontend.c``) against the training features, on real recordings,
and the int8 model's accuracy when fed each.

Takes a finished log-mel run (e.g. ``python -m tfasc.train recipes/fsdd_log_mel.yaml``): its recipe,
normalization and int8 model. For every evaluation clip (int16 PCM, as the device reads it): the
training log-mel (``tfasc.data.features``), ``features_cmsisdsp(q15=False)`` and ``(q15=True)``; the
largest and median error in dB on bins above the clip's max - 80 dB; then each set of features through
the run's normalization, int8 quantization and the TFLite Micro interpreter: accuracy and agreement
with the training features' labels. Also the front end's flash and RAM bytes for both paths.

    python benchmarks/frontend_q15.py RUN_DIR [--clips N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import tfasc  # noqa: F401  (selects tf_keras before TensorFlow is imported)
from tfasc.cli import quiet_tensorflow


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished log-mel run directory")
    parser.add_argument("--clips", type=int, default=None, help="evaluation clips (default: all)")
    args = parser.parse_args(argv)
    quiet_tensorflow()
    from tfasc.config.load import load_recipe
    from tfasc.data.audio import load_audio
    from tfasc.data.features import LogMelParams, log_mel_spectrogram
    from tfasc.data.normalization import Normalization
    from tfasc.data import datasets
    from tfasc.data.prepare import ensure_dataset
    from tfasc.deploy import convert, tflm
    from tfasc.device.frontend import features_cmsisdsp, frontend_costs

    recipe = load_recipe(args.run / "recipe.yaml")
    if recipe.features.kind != "log_mel" or recipe.features.segment_frames:
        print(f"{args.run}: a log-mel run on whole clips is needed", file=sys.stderr)
        return 2
    index = datasets.load(recipe.data.dataset, ensure_dataset(recipe), **recipe.data.options)
    examples = index.split(recipe.data.eval_split)[: args.clips]
    rate, channels = recipe.data.sample_rate, recipe.data.channels
    samples = round(rate * recipe.data.duration_s)
    params = LogMelParams.of(recipe.features)
    normalization = Normalization.from_json(json.loads((args.run / "normalization.json").read_text()))
    int8 = (args.run / "deploy" / "model_int8.tflite").read_bytes()
    input_q, _ = convert.io_quantization(int8)
    classes = {name: i for i, name in enumerate(index.classes)}
    targets = np.array([classes[example.label] for example in examples])

    paths = {"training": [], "cmsis_f32": [], "cmsis_q15": []}
    errors = {"cmsis_f32": [], "cmsis_q15": []}
    for example in examples:
        clip = load_audio(example.path, sample_rate=rate, channels=channels, num_samples=samples)
        pcm = np.clip(np.round(clip * 32768), -32768, 32767).astype(np.int16)
        reference = log_mel_spectrogram(pcm.astype(np.float32) / 32768, sample_rate=rate, params=params).numpy()
        paths["training"].append(reference)
        loud = reference > reference.max() - 80
        for name, q15 in (("cmsis_f32", False), ("cmsis_q15", True)):
            features = features_cmsisdsp(pcm, params, rate, q15=q15)
            paths[name].append(features)
            errors[name].append(float(np.abs(features - reference)[loud].max()))

    labels = {}
    for name, features in paths.items():
        inputs = input_q.quantize(normalization(np.stack(features)))
        labels[name] = tflm.run_tflm(int8, inputs).argmax(axis=1)
    costs = frontend_costs(params, rate, samples, channels)
    print(f"{len(examples)} evaluation clips of {args.run}")
    print("| front end | max error (dB) | median of per-clip max (dB) | int8 accuracy | agreement with training features |")
    print("|---|---|---|---|---|")
    for name in paths:
        error = errors.get(name)
        error_text = ("0 (reference)", "0") if error is None else (f"{max(error):.4f}", f"{np.median(error):.4f}")
        print(f"| {name} | {error_text[0]} | {error_text[1]} | {np.mean(labels[name] == targets):.1%} | "
              f"{np.mean(labels[name] == labels['training']):.1%} |")
    print(f"flash: tables {costs['table_bytes']['total']:,} B (+ q15 window {costs['table_bytes_q15_extra']['window_q15']:,} B); "
          f"CMSIS FFT tables f32 {costs['cmsis_fft_table_bytes']['total']:,} B, q15 {costs['cmsis_fft_table_bytes_q15']['total']:,} B")
    print(f"RAM: scratch f32 {costs['scratch_bytes']['total']:,} B, q15 {costs['scratch_bytes_q15']['total']:,} B; "
          f"features {costs['output_bytes']:,} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())

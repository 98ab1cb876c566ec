"""The raw-PCM int8 path of a waveform model normalized per clip (AclNet, Huang & Leanos Sec. 3.2): the
device reads int16 PCM, computes the per-clip normalization in C (the bundle's ``input_path.h``, as
``model_config.h`` documents) and runs the int8 model in TFLite Micro; checked against tfasc's float
pipeline (decode, normalize, quantize) and its float models."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from support import c_input_path
from support.recipes import write_tiny_recipe

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to compile the bundle's C input path")

# 20 epochs of 3 steps and BatchNorm momentum 0.9 (0.99 would leave the moving statistics half at their
# initial values after 60 steps, and the int8 model outputs the same logits for every clip).
OVERRIDES = ["stages=[train, qat, export]", "features.kind=waveform", "features.normalization=per_clip",
             "model={name: aclnet, sample_rate: 8000, c1: 4, width_multiplier: 0.125, llf_filters: 16, "
             "bn_momentum: 0.9}", "training.epochs=20", "compress.qat.epochs=2"]


def constant(header: str, name: str) -> float:
    """The value of ``constexpr <type> name = value;`` in ``header``."""
    return float(re.search(rf"constexpr \w+ {name} = ([-0-9.e+]+)f?;", header).group(1))


def device_pcm(paths, *, clip_samples: int, sample_rate: int, channels: int) -> np.ndarray:
    """int16 ``[clips, clip_samples, channels]`` as a device records them: each file's samples cropped to
    its first ``clip_samples`` frames or zero-padded at the end (``tfasc.data.audio.fit_length``)."""
    import soundfile

    clips = []
    for path in paths:
        pcm, rate = soundfile.read(path, dtype="int16", always_2d=True)
        assert (rate, pcm.shape[1]) == (sample_rate, channels)  # no resampling or channel mixing to mirror
        pcm = pcm[:clip_samples]
        clips.append(np.pad(pcm, [(0, clip_samples - len(pcm)), (0, 0)]))
    return np.stack(clips)


@pytest.mark.slow  # ~80-100 s on two cores: training, QAT and the export
@needs_gcc
def test_int16_pcm_through_the_bundle_gives_the_int8_pipeline_and_the_float_labels(tmp_path):
    from tfasc.config import load_recipe
    from tfasc.data.prepare import prepare_data
    from tfasc.deploy import convert, tflm
    from tfasc.train import main
    from tfasc.training.context import QAT_MODEL, StageContext

    recipe_file, run_dir = write_tiny_recipe(tmp_path), tmp_path / "run"
    assert main([str(recipe_file), "--out", str(run_dir), *sum((["--set", o] for o in OVERRIDES), [])]) == 0
    report = json.loads((run_dir / "report.json").read_text())["deploy"]
    assert report["tflm"]["bit_exact"]
    bundle = run_dir / "deploy"
    config, readme = (bundle / "model_config.h").read_text(), (bundle / "README.md").read_text()
    int8 = (bundle / "model_int8.tflite").read_bytes()
    input_q, _ = convert.io_quantization(int8)
    assert constant(config, "kInputScale") == pytest.approx(input_q.scale, rel=1e-7)
    assert constant(config, "kInputZeroPoint") == input_q.zero_point
    assert 'kFeatureNormalization = "per_clip"' in config and "kPcmToInput" not in config + readme
    assert "x[i] = pcm[i] / 32768.0f;" in readme and "tfasc_features_to_input(x, inputs);" in readme

    # The device: every clip of the run (6 evaluation, 18 training) as int16 PCM, x = pcm / 32768.0f
    # (exact in float32: a power of two), then input_path.h.
    recipe = load_recipe(recipe_file, OVERRIDES)
    data = prepare_data(recipe)
    examples = data.eval.examples + data.train.examples
    features = np.concatenate([data.eval.features, data.train.features]).astype(np.float32)
    pcm = device_pcm([e.path for e in examples], clip_samples=int(constant(config, "kFeatureClipSamples")),
                     sample_rate=int(constant(config, "kFeatureSampleRate")),
                     channels=int(constant(config, "kFeatureAudioChannels")))
    x = pcm.astype(np.float32) / np.float32(32768)
    np.testing.assert_array_equal(x, features)  # what decoding the WAV gave training and the export
    binary = c_input_path.build(bundle, tmp_path)
    q = c_input_path.run(binary, x)

    # (a) Exactly the int8 inputs of tfasc's pipeline (float normalization, then the input quantization),
    # those the export verified and evaluated: measured 0 of 96,000 values differ.
    normalized = data.normalization(features)
    np.testing.assert_array_equal(q, input_q.quantize(normalized))
    # As model_config.h says, the / 32768 cancels (every clip here is far above the variance floor).
    np.testing.assert_array_equal(c_input_path.run(binary, pcm.astype(np.float32)), q)
    # A wrong zero point (0 instead of kInputZeroPoint) would change 99.9 % of the values.
    wrong_zero = convert.TensorQuantization(shape=input_q.shape, dtype="int8", scale=input_q.scale, zero_point=0)
    assert np.mean(wrong_zero.quantize(normalized) != q) > 0.9

    # (b) TFLite Micro against TFLite's reference kernels, bit for bit, on all 24 clips.
    exact = tflm.verify_bit_exact(int8, q)
    assert exact.bit_exact, exact.to_dict()
    device = exact.tflm_outputs.argmax(axis=1)

    # (c) The int8 labels of tfasc's own pipeline (its float inputs through the int8 model, reference kernels).
    # Not compared with report.json's int8 metrics: the export scores with TFLite's optimized (XNNPack)
    # kernels, which differ from the reference ones by up to ~30 output LSBs on this model.
    np.testing.assert_array_equal(device, convert.run_tflite(int8, normalized).argmax(axis=1))

    # The float pipeline: the int8 model's float source (the QAT Keras model) on the float-normalized clips.
    # Measured: 23 of 24 labels agree (the one apart has a float top-2 margin of one output LSB); the trained
    # float model before QAT, whose weights QAT fine-tuned, agrees on 19. A device that skipped the
    # normalization (as if it were inside the graph) agrees on 10; labels hardly see a wrong zero point
    # (22), which (a) catches.
    qat_model = StageContext(recipe=recipe, run_dir=run_dir, data=data).load(QAT_MODEL, by="test")
    float_labels = qat_model.predict(normalized, verbose=0).argmax(axis=1)
    agree = lambda labels: int(np.sum(labels == float_labels))
    unnormalized = tflm.run_tflm(int8, input_q.quantize(x)).argmax(axis=1)
    assert agree(device) >= 20, (device, float_labels)
    assert agree(unnormalized) <= 18 and agree(unnormalized) < agree(device), (unnormalized, float_labels)


@needs_gcc
def test_the_pcm_scale_cancels_above_the_variance_floor(tmp_path):
    """model_config.h: ``x = (float)pcm`` gives the same int8 inputs as ``x = pcm / 32768`` for every clip
    with ``var(pcm) >= 1e-10 * 32768^2`` (0.107); a near-silent clip below it differs."""
    from tfasc.data.normalization import Normalization, c_header
    from tfasc.deploy import bundle

    samples, scale, zero_point = 4000, 0.045, -2
    (tmp_path / "input_path.h").write_text(c_header(Normalization("per_clip"), (samples, 1), scale, zero_point))
    rng = np.random.default_rng(0)
    dither = rng.choice([-1, 0, 1], size=samples, p=[0.1, 0.8, 0.1])  # var 0.2
    near_silent = np.zeros(samples)
    near_silent[7] = 1  # var 1 / 4000 < 0.107
    pcm = np.stack([rng.normal(0, 8000, samples), rng.normal(300, 3, samples), dither, np.full(samples, 5),
                    near_silent]).clip(-32768, 32767).round().astype(np.int16)[..., np.newaxis]
    binary = c_input_path.build(tmp_path, tmp_path)
    scaled = c_input_path.run(binary, pcm.astype(np.float32) / np.float32(32768))
    raw = c_input_path.run(binary, pcm.astype(np.float32))
    assert [np.array_equal(a, b) for a, b in zip(scaled, raw)] == [True, True, True, True, False]

    config = bundle.model_config_header(
        arena_bytes=16, input_details={"shape": [1, samples, 1], "quantization": (scale, zero_point)},
        output_details={"shape": [1, 3], "quantization": (0.1, 0)}, class_names=["a", "b", "c"],
        frontend={"kind": "waveform", "sample_rate": 8000, "clip_seconds": 0.5, "audio_channels": 1,
                  "normalization": "per_clip"})
    assert "var(pcm) >= 1e-10 * 32768^2 = 0.107 (PCM std >= 0.33 LSB)" in config
    assert "q[i] = clamp(round_half_away(y[i] / kInputScale) + kInputZeroPoint, -128, 127)" in config


def test_a_per_clip_waveform_bundle_needs_its_input_path(tmp_path):
    from tfasc.deploy import bundle

    frontend = {"kind": "waveform", "sample_rate": 8000, "clip_seconds": 0.1, "audio_channels": 1,
                "normalization": "per_clip"}
    with pytest.raises(ValueError, match="input_path.h"):
        bundle.write_bundle(tmp_path / "deploy", b"", arena_bytes=16, input_details={"shape": [1, 800, 1]},
                            frontend=frontend, ops=[], class_names=["a"])
    with pytest.raises(ValueError, match="frequency axis"):
        bundle.model_config_header(arena_bytes=16, input_details={"shape": [1, 800, 1], "quantization": (0.1, 0)},
                                   output_details={"shape": [1, 1], "quantization": (0.1, 0)}, class_names=["a"],
                                   frontend={**frontend, "normalization": "per_clip_frequency"})
    assert not (tmp_path / "deploy").exists()

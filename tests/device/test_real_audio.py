"""Real recordings from int16 PCM to a label on the emulated cores: the FSDD log-mel recipe, trained for a
moment on spoken digits, exported; the export runs held-out clips through the bundle's frontend.c
(CMSIS-DSP) and int8 model on Cortex-M4 and Cortex-M55 (Helium) and must give the Python pipeline's
label and int8 scores (training front end on the same PCM, normalization, the Python TFLite Micro
interpreter). The references are recomputed here from the bundle's own files and the recordings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tfasc.data.audio import load_audio
from tfasc.data.features import LogMelParams, log_mel_spectrogram
from tfasc.data.normalization import Normalization
from tfasc.deploy import convert, tflm
from tfasc.train import main

REPOSITORY = Path(__file__).resolve().parents[2]
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
CLIPS = 4


def subset(fsdd_root: Path, folder: Path, indices: range) -> Path:
    """A dataset folder of links to some of the real recordings (never copies of them)."""
    recordings = folder / "recordings"
    recordings.mkdir(parents=True)
    for speaker in SPEAKERS:
        for digit in range(10):
            for index in indices:
                name = f"{digit}_{speaker}_{index}.wav"
                (recordings / name).symlink_to(fsdd_root / "recordings" / name)
    return folder


@pytest.mark.slow
def test_fsdd_clips_from_pcm_on_emulated_m4_and_m55_give_the_python_pipelines_labels(tmp_path, fsdd_root,
                                                                                      device_sources, device_toolchain):
    root = subset(fsdd_root, tmp_path / "fsdd", range(4))
    out = tmp_path / "run"
    overrides = {
        "stages": "[train, export]", "data.root": str(root), "data.eval_speaker": "theo", "data.cache_dir": str(tmp_path / "cache"),
        "model.width": "4", "training.epochs": "4", "export.representative_examples": "40", "export.verify_examples": "8",
        "export.smallest_arena": "false", "export.device.sources": str(device_sources), "export.device.examples": "4",
        "export.device.clips": str(CLIPS), "output.tensorboard": "false", "output.plots": "false",
    }
    arguments = [str(REPOSITORY / "recipes" / "fsdd_log_mel.yaml"), "--out", str(out)]
    for key, value in overrides.items():
        arguments += ["--set", f"{key}={value}"]
    assert main(arguments) == 0

    report = json.loads((out / "report.json").read_text())
    device = report["deploy"]["device"]
    assert set(device["targets"]) == {"cortex-m4", "cortex-m55"}

    # The Python pipeline, recomputed from the bundle's files: the held-out clips (theo, sorted like the
    # loader sorts them) as int16 PCM, training's log-mel, the normalization, the int8 model.
    bundle = out / "deploy"
    int8 = (bundle / "model_int8.tflite").read_bytes()
    input_q, output_q = convert.io_quantization(int8)
    normalization = Normalization.from_json(json.loads((out / "normalization.json").read_text()))
    held_out = sorted((root / "recordings").glob("*_theo_*.wav"))[:CLIPS]
    pcm = np.stack([np.round(load_audio(path, sample_rate=8000, channels=1, num_samples=8000) * 32768)
                    for path in held_out]).astype(np.int16)
    params = LogMelParams(n_fft=256, hop_length=80, n_mels=40, fmax=4000)
    features = log_mel_spectrogram(pcm.astype(np.float32) / 32768, sample_rate=8000, params=params).numpy()
    outputs = tflm.run_tflm(int8, input_q.quantize(normalization(features)))
    logits = output_q.dequantize(outputs)
    expected_labels = logits.argmax(axis=1)

    for name, figures in device["targets"].items():
        check = figures["pcm"]
        assert figures["bit_exact"] and figures["examples"] == 4, name
        assert check["clips"] == CLIPS and check["python_labels"] == expected_labels.tolist(), name
        assert check["device_labels"] == expected_labels.tolist(), name
        assert check["output_max_abs_diff_vs_python_pipeline"] == 0 and check["input_max_abs_diff"] <= 1, name
        assert figures["arena_bytes_used"] > 0 and figures["instructions_per_inference"] > 0
        assert check["frontend_instructions_per_clip"] > 0
    # Helium does the model's int8 arithmetic in fewer instructions than the M4's DSP extension.
    assert (device["targets"]["cortex-m55"]["instructions_per_inference"]
            < device["targets"]["cortex-m4"]["instructions_per_inference"])

    # The bundle's arena is the largest measured on the cores, and the README states the figures.
    config = (bundle / "model_config.h").read_text()
    arena = int(re.search(r"kTensorArenaSize = (\d+);", config).group(1))
    assert arena == -(-max(f["arena_bytes_used"] for f in device["targets"].values()) // 16) * 16
    readme = (bundle / "README.md").read_text()
    assert "| cortex-m4 |" in readme and "| cortex-m55 |" in readme
    assert (bundle / "tfasc_model.cc").read_text().strip() in readme  # the code shown is the code that ran
    assert "On emulated Cortex-M cores" in (out / "report.md").read_text()

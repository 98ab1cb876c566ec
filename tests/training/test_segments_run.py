"""A tiny run with Wu & Lee's recipe options end to end (train + export, then predict):
``features.segment_frames`` (a clip is the mean of its segments' probabilities) and
``training.loss.name: binary_crossentropy`` (sigmoid outputs on single-label data), with
``per_clip`` normalization so that every segment is normalized on its own. References are
computed here: segments cut by slicing, sigmoid and means in numpy, the int8 model in
``tf.lite.Interpreter``'s reference kernels, the C input path compiled with gcc."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from support import c_input_path
from support.recipes import write_tiny_recipe
from support.tflite_reference import tflite_logits

OVERRIDES = ["features.segment_frames=10", "training.loss.name=binary_crossentropy",
             "features.normalization=per_clip", "training.epochs=2"]
SEGMENTS = 3  # 32 frames per clip, 2 dropped


def numpy_segments(clips: np.ndarray, n: int) -> np.ndarray:
    clips = np.asarray(clips)
    k = clips.shape[2] // n
    return np.stack([clips[c, :, s * n:(s + 1) * n, :] for c in range(len(clips)) for s in range(k)])


def np_sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))


def clip_means(per_segment: np.ndarray) -> np.ndarray:
    return per_segment.reshape(-1, SEGMENTS, per_segment.shape[-1]).mean(axis=1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from tfasc.config import load_recipe
    from tfasc.data.prepare import prepare_data
    from tfasc.train import main

    base = tmp_path_factory.mktemp("segments_run")
    recipe_file = write_tiny_recipe(base)  # stages: [train, export]
    run_dir = base / "run"
    assert main([str(recipe_file), "--out", str(run_dir), *sum((["--set", o] for o in OVERRIDES), [])]) == 0
    data = prepare_data(load_recipe(run_dir / "recipe.yaml"))
    clips = np.asarray(data.eval.features, np.float32)
    segments = numpy_segments(clips, 10)
    return {
        "dir": run_dir,
        "report": json.loads((run_dir / "report.json").read_text()),
        "data": data,
        "paths": [e.path for e in data.eval.examples],
        "segments": segments,
        # Each segment normalized on its own (per_clip acts per segment), float64 numpy.
        "inputs": ((segments - segments.mean(axis=(1, 2, 3), keepdims=True))
                   / segments.std(axis=(1, 2, 3), keepdims=True)).astype(np.float32),
        "truth": data.eval_targets.argmax(axis=1),
    }


@pytest.mark.slow
def test_the_report_scores_clips_and_the_int8_export_is_bit_exact_on_segments(run):
    report, data = run["report"], run["data"]
    clips = len(data.eval.examples)
    assert report["stages"] == ["train", "export"]
    assert report["model"]["input_shape"] == [16, 10, 1]
    assert report["data"]["segment_frames"] == 10 and report["data"]["segments_per_clip"] == SEGMENTS
    assert report["data"]["outputs"] == "sigmoid"
    assert report["metrics"]["examples"] == report["data"]["eval_examples"] == clips  # clips, not segments
    deploy = report["deploy"]
    assert set(deploy["metrics"]) >= {"accuracy", "macro_accuracy", "log_loss", "confusion_matrix"}
    assert deploy["metrics"]["examples"] == clips and deploy["float_metrics"]["examples"] == clips
    assert deploy["tflm"]["bit_exact"] is True and deploy["tflm"]["examples"] == 2  # model inputs: segments
    assert deploy["profile"]["clip_seconds"] == pytest.approx(0.5 / SEGMENTS)

    # The int8 metrics: each clip the mean of its segments' sigmoids, the segments normalized by the
    # run's normalization (per segment) and run through the kernels the export chose: the optimized
    # ones where they equal the reference kernels (TFLite Micro's) on the verified inputs, else those.
    inputs = data.normalization(run["segments"])
    np.testing.assert_allclose(inputs, run["inputs"], atol=1e-4)  # per_clip acts on each segment
    reference = deploy["int8_evaluation_kernels"].startswith("reference")
    logits = tflite_logits(run["dir"] / "deploy" / "model_int8.tflite", inputs, reference=reference)
    probabilities = clip_means(np_sigmoid(logits))
    truth = run["truth"]
    confusion = np.zeros((3, 3), int)
    np.add.at(confusion, (truth, probabilities.argmax(axis=1)), 1)
    assert deploy["metrics"]["confusion_matrix"] == confusion.tolist()
    chosen = probabilities[np.arange(clips), truth] / probabilities.sum(axis=1)
    assert deploy["metrics"]["log_loss"] == pytest.approx(-np.mean(np.log(chosen)), rel=1e-6)


@pytest.mark.slow
def test_predict_scores_a_file_by_the_mean_of_its_segments_sigmoids(run):
    import tf_keras as keras

    from tfasc import predict as P

    model = keras.models.load_model(run["dir"] / "model.keras", compile=False)
    expected = clip_means(np_sigmoid(model.predict(run["inputs"], verbose=0)))
    classifier, predictions, failures = P.predict(run["dir"], run["paths"], use_float=True)
    assert not failures and classifier.sigmoid and classifier.segments_per_window == SEGMENTS
    np.testing.assert_allclose(np.stack([p.scores for p in predictions]), expected, rtol=0, atol=1e-4)

    inputs = run["data"].normalization(run["segments"])
    expected = clip_means(np_sigmoid(tflite_logits(run["dir"] / "deploy" / "model_int8.tflite", inputs, reference=True)))
    _, predictions, failures = P.predict(run["dir"], run["paths"])
    assert not failures and [p.windows for p in predictions] == [1] * len(run["paths"])
    np.testing.assert_allclose(np.stack([p.scores for p in predictions]), expected, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_the_bundle_documents_the_segments_and_normalizes_each_one(run, tmp_path):
    from tfasc.deploy.convert import TensorQuantization

    bundle = run["dir"] / "deploy"
    config, readme = (bundle / "model_config.h").read_text(), (bundle / "README.md").read_text()
    for line in ["constexpr int kInputShape[kInputDims] = {1, 16, 10, 1};", "constexpr int kSegmentFrames = 10;",
                 "constexpr int kClipFrames = 32;", f"constexpr int kSegmentsPerClip = {SEGMENTS};",
                 "constexpr bool kSigmoidOutputs = true;"]:
        assert line in config, line
    assert "## Segments: a clip is the mean of its segments" in readme and "TfascClassifyOutputs" in readme
    assert "sigmoid" in readme and "binary cross-entropy" in readme

    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to compile the bundle's C input path")
    q = run["report"]["deploy"]["input_quantization"]
    quantization = TensorQuantization(shape=(1, 16, 10, 1), dtype="int8", scale=q["scale"], zero_point=q["zero_point"])
    got = c_input_path.run(c_input_path.build(bundle, tmp_path), run["segments"])
    np.testing.assert_array_equal(got, quantization.quantize(run["data"].normalization(run["segments"])))
    assert np.mean(got != quantization.quantize(run["inputs"])) < 0.01  # numpy's per-segment statistics; ties may round apart
    compiler = shutil.which("g++")
    if compiler:  # model_config.h compiles and states the segments
        (tmp_path / "main.cc").write_text('#include <cstdio>\n#include "model_config.h"\nint main() { std::printf('
                                          '"%d %d %d %d %d", kSegmentFrames, kClipFrames, kSegmentsPerClip, '
                                          'kSegmentValues, kSigmoidOutputs ? 1 : 0); return 0; }\n')
        subprocess.run([compiler, "-std=c++17", "-Wall", "-Werror", "-I", str(bundle), str(tmp_path / "main.cc"),
                        "-o", str(tmp_path / "main")], check=True)
        printed = subprocess.run([str(tmp_path / "main")], check=True, capture_output=True, text=True).stdout
        assert printed.split() == ["10", "32", str(SEGMENTS), "160", "1"]

"""The bundle on emulated Cortex-M cores (tfasc.device.emulate, tfasc.device.check).

References are independent of the code under test: the Python TFLite Micro interpreter
(``tfasc.deploy.tflm.run_tflm``) for every int8 output, and numpy + tfasc's training normalization
for the PCM path's int8 inputs; the device's numbers are read back with ``run_firmware`` and compared
here, not only through ``check_bundle``'s own counts.

Objects are cached in :func:`tfasc.device.emulate.default_cache_dir` (``$TFASC_DEVICE_CACHE``), the
cache the export's device check uses: a cold build of TFLite Micro + the kernels costs about
150 CPU-seconds per target, and with the shared cache the export tests and later runs of this
file reuse those objects. Objects are keyed by flags, source path and content and written
atomically, so sharing the folder between concurrent sessions is safe. The bundles are written
beside them, under ``test-bundles/<model>-<sha256 of the flatbuffer>``, a path stable across runs:
in a new temporary folder every run the bundle's own objects (the path is part of their key) would
be recompiled, about 7 s per bundle and target. The firmware is built once per module
(module-scoped fixtures) and every test reuses it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from tfasc.device import check, emulate, targets as target_table, toolchain

TARGETS = ("cortex-m4", "cortex-m55", "cortex-m55-dsp")
CLASSES = ["dog", "rain", "siren", "speech"]
FEATURE_SHAPE = (16, 20, 1)  # [mels, frames, channels]
# No clip_seconds: no C front end (frontend.c) in the bundle, so the firmware is TFLite Micro + the model.
LOG_MEL = {"kind": "log_mel", "sample_rate": 16000, "n_mels": 16, "hop_seconds": 0.032, "window": "hann", "log": True}
CONV_OPS = ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "MEAN"]
EXAMPLES = 8

SAMPLE_RATE, SAMPLES = 8000, 800
WAVEFORM = {"kind": "waveform", "sample_rate": SAMPLE_RATE, "clip_seconds": SAMPLES / SAMPLE_RATE,
            "audio_channels": 1, "normalization": "per_clip"}
STRIDE = 4  # with one input channel, stride * channels % 4 == 0 sends the conv to arm_convolve_1_x_n_s8
GOOD_KERNEL, BAD_KERNEL = 8, 9  # (800 - 8) % 4 == 0; (800 - 9) % 4 == 3
CLIPS = 6

REPORT_KEYS = {"targets", "arena_bytes", "sources"}
TARGET_KEYS = {"target", "board", "description", "fits_board", "examples", "mismatched_examples", "max_abs_diff", "bit_exact",
               "arena_bytes_used", "text_bytes", "data_bytes", "bss_bytes", "instructions_per_inference",
               "instructions_per_inference_max", "build_seconds", "emulation_seconds"}
PCM_KEYS = {"clips", "labels_equal", "device_labels", "python_labels", "model_bit_exact_on_device_inputs",
            "input_values_differing", "input_values", "input_max_abs_diff", "output_max_abs_diff_vs_python_pipeline",
            "frontend_instructions_per_clip", "model_instructions_per_clip", "emulation_seconds"}


@dataclasses.dataclass(frozen=True)
class Bundled:
    """An int8 model, its bundle and the Python interpreter's outputs on its int8 inputs."""

    int8: bytes
    ops: list[str]
    input_q: object
    output_q: object
    bundle_dir: Path
    inputs: np.ndarray
    expected: np.ndarray
    host_arena: int


def _bundle(root: Path, name: str, int8: bytes, inputs_float: np.ndarray, *, frontend, normalization=None) -> Bundled:
    """The bundle in ``root/<name>-<sha256(int8)[:12]>`` (written atomically: concurrent runs write the same bytes)."""
    from tfasc.deploy import bundle, convert, flatbuffer, tflm

    input_q, output_q = convert.io_quantization(int8)
    ops = flatbuffer.ops_used(int8)
    host_arena = tflm.arena_bytes_used(int8)
    bundle_dir = bundle.write_bundle(
        Path(root) / f"{name}-{hashlib.sha256(int8).hexdigest()[:12]}", int8, arena_bytes=host_arena,
        input_details={"shape": input_q.shape, "quantization": (input_q.scale, input_q.zero_point)},
        frontend=frontend, ops=ops, class_names=CLASSES[:output_q.shape[-1]], normalization=normalization)
    inputs = input_q.quantize(inputs_float)
    return Bundled(int8=int8, ops=ops, input_q=input_q, output_q=output_q, bundle_dir=bundle_dir, inputs=inputs,
                   expected=tflm.run_tflm(int8, inputs), host_arena=host_arena)


def centre_logits(model, data: np.ndarray) -> None:
    """Shift the last Dense layer's bias so each class's mean logit on ``data`` is zero: an untrained
    model then picks different classes for different inputs instead of one class for all, so that
    comparing labels means something."""
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel, bias - model.predict(data, verbose=0).mean(axis=0)])


def log_mel_like(rng: np.random.Generator, n: int) -> np.ndarray:
    """Standardized log-mel-like features ``[n, 16, 20, 1]``: a per-clip spectral envelope plus noise that is
    correlated across neighbouring bins and frames; about zero mean and unit variance, like the
    normalized features a model sees (uniform int8 inputs would saturate its outputs)."""
    mels, frames, _ = FEATURE_SHAPE
    envelope = np.cumsum(rng.normal(0, 0.3, (n, mels, 1)), axis=1)
    noise = rng.normal(size=(n, mels + 1, frames + 1))
    smooth = (noise[:, 1:, 1:] + noise[:, :-1, 1:] + noise[:, 1:, :-1]) / np.sqrt(3)
    x = envelope - envelope.mean(axis=1, keepdims=True) + 0.8 * smooth
    return ((x - x.mean()) / x.std())[..., np.newaxis].astype(np.float32)


def pcm_clips(rng: np.random.Generator, n: int) -> np.ndarray:
    """int16 ``[n, 800, 1]``: a few tones and noise at levels from -46 dBFS to near full scale."""
    t = np.arange(SAMPLES) / SAMPLE_RATE
    clips = []
    for i in range(n):
        level = 10 ** (rng.uniform(-46, -3) / 20) * 32767
        tones = sum(rng.uniform(0.2, 1) * np.sin(2 * np.pi * rng.uniform(100, 3500) * t + rng.uniform(0, 6.3))
                    for _ in range(1 + i % 3))
        signal = tones + rng.uniform(0.05, 1.0) * rng.normal(size=SAMPLES)
        clips.append(np.round(signal / np.abs(signal).max() * level + rng.uniform(-200, 200)))
    return np.clip(clips, -32768, 32767).astype(np.int16)[..., np.newaxis]


@pytest.fixture(scope="module")
def cache_dir() -> Path:
    return emulate.default_cache_dir()


@pytest.fixture(scope="module")
def bundle_root(cache_dir) -> Path:
    return cache_dir / "test-bundles"


@pytest.fixture(scope="module")
def conv_net(bundle_root) -> Bundled:
    """Conv2D + MaxPool + DepthwiseConv2D + mean + Dense on [16, 20, 1], int8, bundled with its logits."""
    import tfasc  # noqa: F401
    import tf_keras as keras
    from tfasc.deploy import convert

    keras.utils.set_random_seed(0)
    inputs = keras.Input(FEATURE_SHAPE)
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(len(CLASSES))(x))
    rng = np.random.default_rng(0)
    representative = log_mel_like(rng, 32)
    centre_logits(model, representative)
    int8 = convert.to_tflite(model, kind="int8", representative_data=list(representative[:, np.newaxis]))
    return _bundle(bundle_root, "conv", int8, log_mel_like(rng, EXAMPLES), frontend=LOG_MEL)


@pytest.fixture(scope="module")
def conv_check(conv_net, device_toolchain, device_sources, tmp_path_factory):
    """``check_bundle`` on the three cores, as the export calls it (the default object cache)."""
    work_dir = tmp_path_factory.mktemp("conv-device")
    report = check.check_bundle(conv_net.bundle_dir, conv_net.ops, inputs=conv_net.inputs, expected=conv_net.expected,
                                target_names=TARGETS, sources=str(device_sources), host_arena=conv_net.host_arena,
                                work_dir=work_dir)
    return report, work_dir


def test_the_conv_net_inputs_are_realistic(conv_net):
    """The check compares something: inputs spread over the int8 range without saturating, and the
    logits differ between inputs and classes (uniform int8 inputs would pin them at -128 / 127)."""
    assert conv_net.ops == CONV_OPS
    assert np.mean(np.isin(conv_net.inputs, (-128, 127))) < 0.01
    assert len(np.unique(conv_net.inputs)) > 100
    # -128 / 127 are the ends of the calibrated output range: a few are expected, not most
    assert np.mean(np.isin(conv_net.expected, (-128, 127))) < 0.1
    assert all(len(np.unique(column)) > EXAMPLES // 2 for column in conv_net.expected.T), conv_net.expected
    assert len(np.unique(conv_net.expected.argmax(axis=1))) > 1, conv_net.expected


def test_check_bundle_on_three_cores_is_bit_exact_and_measures_each(conv_net, conv_check, device_sources):
    report, _ = conv_check
    assert set(report) == REPORT_KEYS
    assert list(report["targets"]) == list(TARGETS)
    measuring = emulate.measuring_arena(conv_net.host_arena)
    for name, figures in report["targets"].items():
        assert set(figures) == TARGET_KEYS, name
        assert figures["target"] == name and figures["board"] == target_table.target(name).board
        assert figures["examples"] == EXAMPLES
        assert figures["bit_exact"] and figures["mismatched_examples"] == 0 and figures["max_abs_diff"] == 0, figures
        assert 0 < figures["arena_bytes_used"] <= measuring, figures
        assert min(figures["text_bytes"], figures["data_bytes"], figures["bss_bytes"]) > 0, figures
        # bss_bytes is the measuring firmware's bss with the model's arena in place of the measuring one
        assert figures["bss_bytes"] >= figures["arena_bytes_used"]
        assert figures["text_bytes"] > len(conv_net.int8)
        # a data-independent conv net: every inference takes the same instructions (mean == max)
        assert figures["instructions_per_inference"] == figures["instructions_per_inference_max"] > 0
    assert report["arena_bytes"] == max(f["arena_bytes_used"] for f in report["targets"].values())
    # Helium's arena (its kernels' scratch buffers) is measured on its own, not assumed to be the M4's
    helium, dsp = report["targets"]["cortex-m55"], report["targets"]["cortex-m55-dsp"]
    assert 0 < helium["arena_bytes_used"] <= measuring and 0 < dsp["arena_bytes_used"] <= measuring
    assert helium["instructions_per_inference"] < report["targets"]["cortex-m4"]["instructions_per_inference"]
    assert helium["instructions_per_inference"] < dsp["instructions_per_inference"]
    assert Path(report["sources"]) == Path(device_sources).resolve()


def test_run_firmware_outputs_and_instruction_counts(conv_net, conv_check, device_toolchain, cache_dir):
    """The firmware check_bundle built, run directly: outputs equal ``run_tflm``'s, and the same instructions
    for every input, the realistic ones, all zeros and the int8 extremes alike."""
    from tfasc.deploy import tflm

    report, work_dir = conv_check
    output_bytes = conv_net.expected.shape[-1]
    extremes = np.stack([np.zeros(FEATURE_SHAPE), np.full(FEATURE_SHAPE, -128), np.full(FEATURE_SHAPE, 127),
                         np.random.default_rng(3).integers(-128, 128, FEATURE_SHAPE)]).astype(np.int8)
    records = np.concatenate([conv_net.inputs, extremes])
    expected = np.concatenate([conv_net.expected, tflm.run_tflm(conv_net.int8, extremes)])
    for name in TARGETS:
        target = target_table.target(name)
        elf = work_dir / name / "firmware.elf"
        run = emulate.run_firmware(device_toolchain, target, elf, records, mode=0, cache_dir=cache_dir,
                                   layout=emulate.int8_layout(output_bytes))
        np.testing.assert_array_equal(run.outputs["outputs"], expected, err_msg=name)
        assert run.phases.shape == (len(records), 1)
        assert len(set(run.phases[:, 0].tolist())) == 1, (name, run.phases[:, 0])
        assert run.phases[0, 0] == report["targets"][name]["instructions_per_inference"]
        assert run.arena_bytes == report["targets"][name]["arena_bytes_used"]


def test_a_run_over_no_records_leaves_no_marks(conv_net, conv_check, device_toolchain, cache_dir):
    """The baseline of a per-inference count (``../shared/notes/cortex-m-emulation.md``: N records minus 0):
    the firmware sets up the interpreter, runs nothing, and the plugin logs no mark."""
    report, work_dir = conv_check
    output_bytes = conv_net.expected.shape[-1]
    for name in TARGETS:
        empty = emulate.run_firmware(device_toolchain, target_table.target(name), work_dir / name / "firmware.elf",
                                     conv_net.inputs[:0], mode=0, cache_dir=cache_dir,
                                     layout=emulate.int8_layout(output_bytes))
        assert empty.phases.shape == (0, 1) and empty.outputs["outputs"].shape == (0, output_bytes)
        # the arena is allocated by AllocateTensors, before any inference
        assert empty.arena_bytes == report["targets"][name]["arena_bytes_used"]


def test_check_bundle_without_a_source_tree_is_skipped_with_the_reason(tmp_path):
    not_a_tree = tmp_path / "not-a-tree"
    (not_a_tree / "tflite-micro").mkdir(parents=True)
    report = check.check_bundle(tmp_path, CONV_OPS, inputs=np.zeros((0, 4), np.int8), expected=np.zeros((0, 4), np.int8),
                                target_names=TARGETS, sources=str(not_a_tree), host_arena=1024, work_dir=tmp_path / "w")
    assert report["targets"] == {} and set(report) == {"skipped", "targets"}
    missing_tools = toolchain.missing_tools()
    if missing_tools:  # CI without the Debian packages: the reason names the tools and the packages
        assert all(tool in report["skipped"] for tool in missing_tools) and "apt-get install" in report["skipped"]
    else:
        assert str(not_a_tree.resolve()) in report["skipped"]
        for folder in toolchain.SOURCE_FOLDERS:
            assert folder in report["skipped"], folder
    assert not (tmp_path / "w").exists()


def test_one_changed_expected_value_is_a_mismatch_naming_the_target(conv_net, conv_check, device_sources, tmp_path):
    expected = conv_net.expected.copy()
    expected[3, 1] = expected[3, 1] + 1 if expected[3, 1] < 127 else expected[3, 1] - 1
    message = (f"cortex-m4: 1 of {EXAMPLES} int8 inputs gave outputs differing from the Python TFLite Micro "
               "interpreter (up to 1 LSB)")
    with pytest.raises(check.DeviceMismatchError, match=re.escape(message)):
        check.check_bundle(conv_net.bundle_dir, conv_net.ops, inputs=conv_net.inputs, expected=expected,
                           target_names=["cortex-m4"], sources=str(device_sources), host_arena=conv_net.host_arena,
                           work_dir=tmp_path)


# -- a waveform model from int16 PCM ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Waveform:
    model: Bundled
    clips: np.ndarray
    pcm: check.PcmCheck
    probabilities: np.ndarray


def waveform_model(bundle_root: Path, kernel: int) -> Waveform:
    """Conv1D (stride 4, VALID) + Conv1D + mean + Dense on ``[800, 1]`` normalized per clip, bundled, and
    the Python pipeline on int16 clips: x = pcm / 32768, per-clip normalization, input quantization,
    ``run_tflm``, the clip's label."""
    import tfasc  # noqa: F401
    import tf_keras as keras
    from tfasc.data.normalization import Normalization
    from tfasc.deploy import convert, tflm
    from tfasc.deploy.export import python_pcm_labels
    from tfasc import metrics

    keras.utils.set_random_seed(1)
    inputs = keras.Input((SAMPLES, 1))
    x = keras.layers.Conv1D(4, kernel, strides=STRIDE, activation="relu")(inputs)
    x = keras.layers.Conv1D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    normalization = Normalization("per_clip")
    rng = np.random.default_rng(kernel)
    to_model = lambda pcm: normalization(pcm.astype(np.float32) / np.float32(32768))
    representative = to_model(pcm_clips(rng, 24))
    centre_logits(model, representative)
    int8 = convert.to_tflite(model, kind="int8", representative_data=list(representative[:, np.newaxis]))
    clips = pcm_clips(rng, CLIPS)
    bundled = _bundle(bundle_root, f"waveform-k{kernel}", int8, to_model(clips), frontend=WAVEFORM,
                      normalization=normalization)
    inputs = bundled.inputs[:, np.newaxis]  # one model input per clip
    outputs = bundled.expected[:, np.newaxis]
    labels = python_pcm_labels(outputs, bundled.output_q, sigmoid=False)
    probabilities = metrics.probabilities_from_logits(bundled.output_q.dequantize(bundled.expected), sigmoid=False)
    pcm = check.PcmCheck(clips=clips, inputs=inputs, labels=labels, outputs=outputs,
                         run_model=lambda values: tflm.run_tflm(int8, values))
    return Waveform(model=bundled, clips=clips, pcm=pcm, probabilities=probabilities)


@pytest.fixture(scope="module")
def waveform(bundle_root) -> Waveform:
    return waveform_model(bundle_root, GOOD_KERNEL)


def test_int16_pcm_through_the_bundle_gives_the_python_pipelines_inputs_and_labels(
        waveform, device_toolchain, device_sources, cache_dir, tmp_path):
    model, pcm = waveform.model, waveform.pcm
    assert (SAMPLES - GOOD_KERNEL) % STRIDE == 0
    assert model.ops == ["CONV_2D", "FULLY_CONNECTED", "MEAN", "RESHAPE"]
    assert np.mean(np.isin(model.inputs, (-128, 127))) < 0.01
    assert len(set(pcm.labels.tolist())) > 1, pcm.labels  # the labels compared are not all one class
    report = check.check_bundle(model.bundle_dir, model.ops, inputs=model.inputs, expected=model.expected,
                                target_names=TARGETS, sources=str(device_sources), host_arena=model.host_arena,
                                work_dir=tmp_path, pcm=pcm)
    for name, figures in report["targets"].items():
        assert figures["bit_exact"], figures
        assert set(figures["pcm"]) == PCM_KEYS
        on_pcm = figures["pcm"]
        assert on_pcm["clips"] == on_pcm["labels_equal"] == CLIPS, on_pcm
        assert on_pcm["device_labels"] == on_pcm["python_labels"] == pcm.labels.tolist()
        assert on_pcm["model_bit_exact_on_device_inputs"], on_pcm
        assert on_pcm["input_values"] == CLIPS * SAMPLES and on_pcm["input_values_differing"] == 0, on_pcm
        assert on_pcm["input_max_abs_diff"] == on_pcm["output_max_abs_diff_vs_python_pipeline"] == 0, on_pcm
        assert on_pcm["frontend_instructions_per_clip"] > 0 and on_pcm["model_instructions_per_clip"] > 0

        # the same firmware read back directly: every array against the Python pipeline
        run = emulate.run_firmware(
            device_toolchain, target_table.target(name), tmp_path / name / "firmware.elf", waveform.clips, mode=1,
            cache_dir=cache_dir, layout=emulate.pcm_layout(1, SAMPLES, 3, 3))
        np.testing.assert_array_equal(run.outputs["inputs"], pcm.inputs.reshape(CLIPS, 1, SAMPLES), err_msg=name)
        np.testing.assert_array_equal(run.outputs["outputs"], pcm.outputs, err_msg=name)
        np.testing.assert_array_equal(run.outputs["label"], pcm.labels, err_msg=name)
        np.testing.assert_allclose(run.outputs["probabilities"], waveform.probabilities, rtol=1e-5, atol=1e-6)
        assert run.phases.shape == (CLIPS, 2)
    helium, m4 = report["targets"]["cortex-m55"], report["targets"]["cortex-m4"]
    assert helium["instructions_per_inference"] < m4["instructions_per_inference"]


def test_helium_1_x_n_conv_rejects_a_valid_conv1d_whose_stride_does_not_divide_its_span(
        bundle_root, tmp_path_factory, device_toolchain, device_sources):
    """A CMSIS-NN bug, documented: on Cortex-M55 with Helium, ``arm_convolve_1_x_n_s8`` (chosen for a 1-row
    conv with stride * input channels % 4 == 0) computes the total padding of a VALID conv as
    ``(output - 1) * stride + kernel - input``, which is negative when ``(input - kernel) % stride != 0``,
    and returns ``ARM_CMSIS_NN_FAILURE``; TFLite Micro's ``TFLITE_DCHECK_EQ`` on that status calls
    ``abort()``, which the firmware's startup code reports (status 4, "a TFLite Micro kernel check
    failed") instead of newlib's silent exit. The DSP
    kernels (Cortex-M4) run the same model bit-exactly. (Read in the sources, not measured: built with
    ``NDEBUG`` the check compiles out and the conv's output is silently left unwritten.) Measured with
    input 800, kernel 9, stride 4; kernel 8 runs bit-exactly on Helium (the test above). When CMSIS-NN
    is updated and fixes this, this test fails: update it."""
    assert (SAMPLES - BAD_KERNEL) % STRIDE != 0
    bad = waveform_model(bundle_root, BAD_KERNEL)
    model = bad.model
    arguments = dict(inputs=model.inputs, expected=model.expected, sources=str(device_sources),
                     host_arena=model.host_arena, work_dir=tmp_path_factory.mktemp("waveform-bad-device"), pcm=bad.pcm)
    fine = check.check_bundle(model.bundle_dir, model.ops, target_names=["cortex-m4"], **arguments)
    assert fine["targets"]["cortex-m4"]["bit_exact"]
    assert fine["targets"]["cortex-m4"]["pcm"]["labels_equal"] == CLIPS
    with pytest.raises(RuntimeError) as failed:
        check.check_bundle(model.bundle_dir, model.ops, target_names=["cortex-m55"], **arguments)
    assert not isinstance(failed.value, check.DeviceMismatchError)
    assert re.match(r"cortex-m55: the firmware failed on mps3-an547 with status 4 \(abort\(\)", str(failed.value)), failed.value


def test_a_model_too_big_for_the_board_is_reported_not_run(conv_net, device_sources, tmp_path):
    """A model whose arena leaves no room on a board (here: a host arena claimed larger than the board's
    4 MB of RAM) is reported per target as not fitting, with the numbers, and does not fail the check."""
    claimed = 8 << 20
    report = check.check_bundle(conv_net.bundle_dir, conv_net.ops, inputs=conv_net.inputs, expected=conv_net.expected,
                                target_names=["cortex-m4"], sources=str(device_sources), host_arena=claimed,
                                work_dir=tmp_path)
    figures = report["targets"]["cortex-m4"]
    assert figures["fits_board"] is False and report["arena_bytes"] is None
    assert f"{claimed:,}-byte tensor arena" in figures["note"] and "4 MB of RAM of mps2-an386" in figures["note"]

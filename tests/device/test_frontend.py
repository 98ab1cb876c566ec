"""The CMSIS-DSP log-mel front end (tfasc.device.frontend, tfasc/device/c/frontend.c).

References are independent of the code under test: the training features
(``tfasc.data.features.log_mel_spectrogram``) on real FSDD recordings and on a synthesized stereo
clip; the host build of ``frontend.c`` against the Python twin (pip ``cmsisdsp``); CMSIS-DSP's own
tables in the pinned sources. Criterion for the float path: at most 0.1 dB from the training
features on every bin above the clip's maximum − 80 dB (the ``top_db`` range the model sees).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tfasc.data import features as training
from tfasc.data.features import LogMelParams
from tfasc.device import frontend

TOLERANCE_DB = 0.1
COMPARED_RANGE_DB = 80.0
# q15 (arm_rfft_q15) bounds, picked from measurement with about 1.6-2x margin. On these 10 FSDD
# clips the largest error over the 80 dB range measured 18.6 dB (the quietest bins: the q15 FFT's
# noise floor, ~50 dB under a frame's peak), 0.73 dB above clip max - 30 dB, 0.14 dB above max - 20
# dB; on the synthesized stereo clip 15.3 dB and 0.12 dB (30 dB range). (60 other FSDD clips, one
# per speaker and digit: 18.3 dB, 0.48 dB, 0.24 dB.)
Q15_BOUND_DB = 30.0
Q15_LOUD_RANGE_DB = 30.0
Q15_LOUD_BOUND_DB = 1.5

FSDD = dict(sample_rate=8000, samples=8000, params=LogMelParams(n_fft=256, hop_length=80, n_mels=40, fmax=4000))
QUICKSTART = dict(sample_rate=16000, samples=32000, params=LogMelParams(n_fft=512, hop_length=256, n_mels=64, fmax=8000))
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")

# The CMSIS-DSP sources frontend.c calls (float and q15), relative to cmsis_dsp/Source.
CMSIS_SOURCES = [
    "TransformFunctions/arm_rfft_fast_f32.c", "TransformFunctions/arm_rfft_fast_init_f32.c",
    "TransformFunctions/arm_cfft_f32.c", "TransformFunctions/arm_cfft_init_f32.c",
    "TransformFunctions/arm_cfft_radix8_f32.c", "TransformFunctions/arm_bitreversal2.c",
    "TransformFunctions/arm_rfft_q15.c", "TransformFunctions/arm_rfft_init_q15.c",
    "TransformFunctions/arm_cfft_q15.c", "TransformFunctions/arm_cfft_init_q15.c",
    "TransformFunctions/arm_cfft_radix4_q15.c",
    "BasicMathFunctions/arm_mult_f32.c", "BasicMathFunctions/arm_mult_q15.c", "BasicMathFunctions/arm_shift_q15.c",
    "BasicMathFunctions/arm_dot_prod_f32.c", "BasicMathFunctions/arm_scale_f32.c",
    "ComplexMathFunctions/arm_cmplx_mag_squared_f32.c", "ComplexMathFunctions/arm_cmplx_mag_f32.c",
    "FastMathFunctions/arm_vlog_f32.c", "StatisticsFunctions/arm_max_f32.c",
    "SupportFunctions/arm_q15_to_float.c",
    "CommonTables/arm_common_tables.c", "CommonTables/arm_const_structs.c",
]
# Host builds (x86-64 gcc). __GNUC_PYTHON__ is how pip cmsisdsp builds CMSIS-DSP off-target (no
# CMSIS Core intrinsics: the generic C paths). Two flavours of the CMSIS-DSP objects:
# - "wheel": the flags of the pip cmsisdsp wheel's libCMSISDSP.a (PythonWrapper/build_linux/create.sh:
#   -Ofast -ffast-math, LOOPUNROLL; same Debian gcc 12.2): the host build must then equal the twin
#   bit for bit, which proves frontend.c makes the twin's calls on the twin's data.
# - "device": the flags the Cortex-M build uses (-O2, LOOPUNROLL, no fast-math): fast-math's
#   vectorised libmvec logf and re-associated sums move results by float32 round-off only: measured
#   at most 1.1e-4 dB (FSDD, float), 1.5e-5 dB (FSDD, q15) and 2.4e-4 dB (stereo clip), on its
#   quietest bins.
CMSIS_FLAGS = {
    "wheel": ["-std=c11", "-Ofast", "-ffast-math", "-DNDEBUG", "-fPIC"],
    "device": ["-std=c99", "-O2", "-ffp-contract=off"],
}
COMMON_FLAGS = ["-D__GNUC_PYTHON__", "-DARM_MATH_LOOPUNROLL", "-ffunction-sections", "-fdata-sections"]
# frontend.c itself: plain -O2 in both flavours (its own arithmetic is mirrored by numpy exactly).
FRONTEND_FLAGS = ["-std=c99", "-O2", "-ffp-contract=off", *COMMON_FLAGS]
DEVICE_FLAVOUR_TOLERANCE_DB = 1e-3
WARNINGS = ["-Wall", "-Wextra", "-Werror", "-Wdouble-promotion"]

RUNNER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "frontend.h"
static int16_t pcm[kFrontendClipSamples * kFrontendAudioChannels];
static float features[kFrontendFeatureValues];
/* runner IN OUT float|q15: IN holds whole clips back to back; OUT gets their features. */
int main(int argc, char** argv) {
  if (argc != 4) return 2;
  FILE* in = fopen(argv[1], "rb");
  FILE* out = fopen(argv[2], "wb");
  if (!in || !out) return 3;
  if (tfasc_frontend_log_mel(NULL, features) != kFrontendErrorNullPointer) return 4;
  while (fread(pcm, sizeof(int16_t), sizeof(pcm) / sizeof(int16_t), in) == sizeof(pcm) / sizeof(int16_t)) {
#if defined(TFASC_FRONTEND_Q15)
    int rc = argv[3][0] == 'q' ? tfasc_frontend_log_mel_q15(pcm, features) : tfasc_frontend_log_mel(pcm, features);
#else
    int rc = tfasc_frontend_log_mel(pcm, features);
#endif
    if (rc != kFrontendOk) return 10 - rc;
    if (fwrite(features, sizeof(float), kFrontendFeatureValues, out) != (size_t)kFrontendFeatureValues) return 5;
  }
  fclose(in);
  return fclose(out) == 0 ? 0 : 6;
}
"""


# ----------------------------------------------------------------------------------------------
# Audio


def _fit(pcm: np.ndarray, samples: int) -> np.ndarray:
    """Crop to the first ``samples`` or zero-pad at the end, as training (tfasc.data.audio.fit_length)."""
    out = np.zeros((samples, pcm.shape[1]), np.int16)
    out[: min(samples, len(pcm))] = pcm[:samples]
    return out


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2 and w.getframerate() == 8000
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, w.getnchannels())


@pytest.fixture(scope="module")
def fsdd_clips(fsdd_root) -> list[np.ndarray]:
    """10 recordings, every speaker and digit, as 1.0 s int16 ``[8000, 1]`` clips."""
    names = [f"{i % 10}_{SPEAKERS[i % len(SPEAKERS)]}_{(7 * i) % 50}.wav" for i in range(10)]
    paths = [fsdd_root / "recordings" / name for name in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        pytest.skip(f"FSDD recordings missing: {missing}")
    return [_fit(_read_wav(p), FSDD["samples"]) for p in paths]


def _stereo_clip() -> np.ndarray:
    """2 s of 16 kHz stereo int16: a chirp with a 60 dB quieter stretch and noise (left), tones
    (right), and 0.1 s of digital silence in both."""
    sr, seconds = QUICKSTART["sample_rate"], 2.0
    rng = np.random.default_rng(0)
    t = np.arange(int(sr * seconds)) / sr
    chirp = np.sin(2 * np.pi * (100 * t + (6000 - 100) / (2 * seconds) * t**2))
    left = 0.5 * chirp * np.where((t > 0.8) & (t < 1.1), 1e-3, 1.0) + 0.01 * rng.standard_normal(t.size)
    right = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t) * (t > 1.0)
             + 0.003 * rng.standard_normal(t.size))
    clip = np.stack([left, right], axis=1)
    clip[(t > 1.5) & (t < 1.6)] = 0.0
    return np.clip(np.round(clip * 32768), -32768, 32767).astype(np.int16)


def _training_features(pcm: np.ndarray, params: LogMelParams, sample_rate: float) -> np.ndarray:
    return training.log_mel_spectrogram(pcm.astype(np.float32) / 32768.0, sample_rate=sample_rate,
                                        params=params).numpy()


def _error_db(ours: np.ndarray, reference: np.ndarray, range_db: float = COMPARED_RANGE_DB) -> float:
    """Largest |difference| over the bins of ``reference`` above its maximum − ``range_db``."""
    assert ours.shape == reference.shape
    compared = reference > reference.max() - range_db + 1e-3
    return float(np.abs(ours - reference)[compared].max())


# ----------------------------------------------------------------------------------------------
# The Python twin against the training features


def test_twin_matches_training_features_on_fsdd(fsdd_clips):
    params, sr = FSDD["params"], FSDD["sample_rate"]
    errors, errors_q15, loud_q15 = [], [], []
    for clip in fsdd_clips:
        reference = _training_features(clip, params, sr)
        errors.append(_error_db(frontend.features_cmsisdsp(clip, params, sr), reference))
        q15 = frontend.features_cmsisdsp(clip, params, sr, q15=True)
        errors_q15.append(_error_db(q15, reference))
        loud_q15.append(_error_db(q15, reference, Q15_LOUD_RANGE_DB))
    print(f"FSDD float max error {max(errors):.4f} dB; q15 {max(errors_q15):.2f} dB "
          f"(above max-{Q15_LOUD_RANGE_DB:g} dB: {max(loud_q15):.3f} dB)")
    assert max(errors) <= TOLERANCE_DB, errors
    assert max(errors_q15) <= Q15_BOUND_DB, errors_q15
    assert max(loud_q15) <= Q15_LOUD_BOUND_DB, loud_q15


@pytest.mark.parametrize("channel_mode", ["keep", "mono", "mid_side"])
def test_twin_matches_training_features_on_stereo(channel_mode):
    params = LogMelParams(**{**QUICKSTART["params"].as_kwargs(), "channel_mode": channel_mode})
    sr, clip = QUICKSTART["sample_rate"], _stereo_clip()
    reference = _training_features(clip, params, sr)
    assert reference.shape[2] == (1 if channel_mode == "mono" else 2)
    assert _error_db(frontend.features_cmsisdsp(clip, params, sr), reference) <= TOLERANCE_DB
    q15 = frontend.features_cmsisdsp(clip, params, sr, q15=True)
    assert _error_db(q15, reference) <= Q15_BOUND_DB
    assert _error_db(q15, reference, Q15_LOUD_RANGE_DB) <= Q15_LOUD_BOUND_DB


VARIANT = LogMelParams(n_fft=256, win_length=200, hop_length=100, window="hamming", center=False,
                       n_mels=32, fmin=50.0, fmax=3800.0, power=1.0, top_db=None)


def test_twin_matches_training_features_other_parameters(fsdd_clips):
    """Hamming window shorter than n_fft, no centring, magnitude (power 1), no top_db clamp."""
    for clip in fsdd_clips[:3]:
        reference = _training_features(clip, VARIANT, FSDD["sample_rate"])
        assert _error_db(frontend.features_cmsisdsp(clip, VARIANT, FSDD["sample_rate"]), reference) <= TOLERANCE_DB


def test_sparse_tables_are_the_training_bank_and_window():
    params, sr = QUICKSTART["params"], QUICKSTART["sample_rate"]
    plan = frontend.plan(params, sample_rate=sr, clip_samples=QUICKSTART["samples"], audio_channels=2)
    dense = np.zeros((params.n_fft // 2 + 1, params.n_mels), np.float32)
    for m, (first, count, offset) in enumerate(zip(plan.band_first, plan.band_count, plan.band_offset)):
        dense[first : first + count, m] = plan.weights[offset : offset + count]
    reference = training.mel_filterbank(sample_rate=sr, n_fft=params.n_fft, n_mels=params.n_mels, fmax=params.fmax)
    np.testing.assert_array_equal(dense, reference.astype(np.float32))
    n = np.arange(params.n_fft)
    np.testing.assert_allclose(plan.window, 0.5 - 0.5 * np.cos(2 * np.pi * n / params.n_fft), atol=1e-7)
    costs = frontend.frontend_costs(params, sr, QUICKSTART["samples"], 2)
    nonzero = int(np.count_nonzero(reference))
    assert costs["table_bytes"]["mel_weights"] >= 4 * nonzero  # a run may hold interior zeros
    assert costs["table_bytes"]["total"] == 4 * params.n_fft + costs["table_bytes"]["mel_weights"] + 3 * 2 * params.n_mels
    assert costs["scratch_bytes"]["total"] == 2 * 4 * params.n_fft
    assert costs["feature_shape"] == (64, 126, 2) and costs["output_bytes"] == 64 * 126 * 2 * 4


def test_helium_vlog_polynomial_is_accurate(device_sources):
    """arm_vlog_f32 on Helium is CMSIS-DSP's polynomial (arm_vec_math.h vlogq_f32); emulated in
    float32 with its pinned coefficients it stays far inside the 0.1 dB budget."""
    tables = (device_sources / "cmsis_dsp/Source/CommonTables/arm_common_tables.c").read_text(errors="replace")
    body = re.search(r"__logf_lut_f32\[8\][^{]*\{([^}]*)\}", tables).group(1)
    p = np.array([float(v) for v in re.findall(r"[-+]?\d+\.\d+", body)], np.float32)
    assert p.size == 8
    x = (np.float32(10.0) ** np.linspace(-12, 6, 200001)).astype(np.float32)
    exponent = (x.view(np.int32) >> 23) - 127
    r = (x.view(np.int32) - (exponent << 23)).view(np.float32).astype(np.float64)
    f = lambda v: np.asarray(v, np.float32).astype(np.float64)  # noqa: E731  float32 rounding
    xx = f(r * r)
    a, b = f(p[0] + r * p[4]), f(p[2] + r * p[6])
    c, d = f(p[1] + r * p[5]), f(p[3] + r * p[7])
    a, c, xx = f(a + b * xx), f(c + d * xx), f(xx * xx)
    log = f(f(a + c * xx) + exponent * np.float32(0.693147180))
    error_db = np.abs(log - np.log(x.astype(np.float64))) * 10 / np.log(10)
    assert error_db.max() < 1e-3


@pytest.mark.parametrize("change, name", [
    (dict(n_fft=200), "n_fft"),
    (dict(n_fft=8192, hop_length=512), "n_fft"),
    (dict(pad_mode="reflect"), "pad_mode"),
    (dict(power=1.5), "power"),
    (dict(window="blackman"), "window"),
    (dict(hop_length=0), "hop_length"),
    (dict(fmax=5000.0), "fmax"),
    (dict(win_length=300), "win_length"),
])
def test_bad_parameters_name_the_parameter(change, name):
    params = LogMelParams(**{**FSDD["params"].as_kwargs(), **change})
    with pytest.raises(ValueError, match=name):
        frontend.frontend_files(params, sample_rate=8000, clip_samples=8000, audio_channels=1)


@pytest.mark.parametrize("params, kwargs, name", [
    (FSDD["params"], dict(sample_rate=-1.0, clip_samples=8000, audio_channels=1), "sample_rate"),
    (FSDD["params"], dict(sample_rate=8000, clip_samples=0, audio_channels=1), "clip_samples"),
    (VARIANT, dict(sample_rate=8000, clip_samples=100, audio_channels=1), "clip_samples"),  # < n_fft, no centring
    (FSDD["params"], dict(sample_rate=8000, clip_samples=8000, audio_channels=0), "audio_channels"),
])
def test_bad_clip_arguments_name_the_argument(params, kwargs, name):
    with pytest.raises(ValueError, match=name):
        frontend.frontend_costs(params, **kwargs)


def test_mid_side_needs_two_channels_and_pcm_must_be_int16():
    params = LogMelParams(**{**QUICKSTART["params"].as_kwargs(), "channel_mode": "mid_side"})
    with pytest.raises(ValueError, match="channel_mode"):
        frontend.frontend_files(params, sample_rate=16000, clip_samples=32000, audio_channels=3)
    with pytest.raises(ValueError, match="pcm"):
        frontend.features_cmsisdsp(np.zeros((8000, 1), np.float32), FSDD["params"], 8000)


# ----------------------------------------------------------------------------------------------
# frontend.c compiled


def _run(command: list, cwd: Path | None = None) -> None:
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout}\n{result.stderr}"


def _includes(sources: Path) -> list[str]:
    return [f"-I{sources / 'cmsis_dsp/Include'}", f"-I{sources / 'cmsis_dsp/PrivateInclude'}",
            f"-I{sources / 'cmsis/CMSIS/Core/Include'}"]


def _write_frontend(folder: Path, params: LogMelParams, sample_rate: float, samples: int, channels: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    files = frontend.frontend_files(params, sample_rate=sample_rate, clip_samples=samples, audio_channels=channels)
    assert set(files) == {"frontend.h", "frontend_tables.h", "frontend.c"}
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def host_cmsis_objects(device_sources, tmp_path_factory) -> dict[str, list[Path]]:
    if shutil.which("gcc") is None:
        pytest.skip("no host gcc")
    jobs, objects = [], {}
    for flavour, flags in CMSIS_FLAGS.items():
        out = tmp_path_factory.mktemp(f"cmsis_{flavour}")
        objects[flavour] = [out / (Path(source).stem + ".o") for source in CMSIS_SOURCES]
        jobs += [["gcc", *flags, *COMMON_FLAGS, *_includes(device_sources), "-c",
                  device_sources / "cmsis_dsp/Source" / source, "-o", obj]
                 for source, obj in zip(CMSIS_SOURCES, objects[flavour])]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(_run, jobs))
    return objects


CASES = {
    "fsdd": (FSDD["params"], FSDD["sample_rate"], FSDD["samples"], 1),
    "quickstart_keep": (QUICKSTART["params"], QUICKSTART["sample_rate"], QUICKSTART["samples"], 2),
    "quickstart_mono": (LogMelParams(**{**QUICKSTART["params"].as_kwargs(), "channel_mode": "mono"}),
                        QUICKSTART["sample_rate"], QUICKSTART["samples"], 2),
    "quickstart_mid_side": (LogMelParams(**{**QUICKSTART["params"].as_kwargs(), "channel_mode": "mid_side"}),
                            QUICKSTART["sample_rate"], QUICKSTART["samples"], 2),
    "variant": (VARIANT, FSDD["sample_rate"], FSDD["samples"], 1),
}


@pytest.fixture(scope="module")
def host_runners(host_cmsis_objects, device_sources, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """``{(case, flavour): runner}``: frontend.c (float and q15) linked with --gc-sections."""
    root = tmp_path_factory.mktemp("frontend_host")
    builds = [(case, "wheel") for case in CASES] + [("fsdd", "device"), ("quickstart_keep", "device")]

    def build(key: tuple[str, str]) -> Path:
        case, flavour = key
        params, sr, samples, channels = CASES[case]
        folder = _write_frontend(root / f"{case}_{flavour}", params, sr, samples, channels)
        (folder / "runner.c").write_text(RUNNER)
        flags = [*FRONTEND_FLAGS, *WARNINGS, "-DTFASC_FRONTEND_Q15", f"-I{folder}", *_includes(device_sources)]
        _run(["gcc", *flags, "-c", folder / "frontend.c", "-o", folder / "frontend.o"])
        _run(["gcc", *flags, "-c", folder / "runner.c", "-o", folder / "runner.o"])
        _run(["gcc", "-Wl,--gc-sections", folder / "runner.o", folder / "frontend.o",
              *host_cmsis_objects[flavour], "-lm", "-o", folder / "runner"])
        return folder / "runner"

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(builds, pool.map(build, builds)))


@pytest.fixture(scope="module")
def assert_matches_twin():
    """Bit-exact when the host gcc is the one that built the pip wheel (its DWARF producer string);
    another compiler may vectorise fast-math sums differently, so then within the device tolerance."""
    import cmsisdsp

    wheel = next(Path(cmsisdsp.__file__).parent.parent.glob("cmsisdsp_basic*.so"), None)
    producer = re.search(rb"GNU C\d* (\d+\.\d+\.\d+)", wheel.read_bytes()) if wheel else None
    host = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    exact = producer is not None and producer.group(1).decode() == host

    def check(c_features: np.ndarray, twin: np.ndarray) -> None:
        if exact:
            np.testing.assert_array_equal(c_features, twin)
        else:
            np.testing.assert_allclose(c_features, twin, rtol=0, atol=DEVICE_FLAVOUR_TOLERANCE_DB)

    return check


def _run_c(runner: Path, clips: list[np.ndarray], shape: tuple[int, ...], variant: str) -> np.ndarray:
    source, target = runner.parent / f"in_{variant}.raw", runner.parent / f"out_{variant}.raw"
    np.concatenate([np.ascontiguousarray(c, np.int16).ravel() for c in clips]).tofile(source)
    _run([runner, source, target, variant])
    return np.fromfile(target, np.float32).reshape(len(clips), *shape)


@pytest.mark.parametrize("q15", [False, True], ids=["float", "q15"])
def test_host_build_equals_twin_on_fsdd(host_runners, fsdd_clips, assert_matches_twin, q15):
    params, sr = FSDD["params"], FSDD["sample_rate"]
    shape = params.output_shape(FSDD["samples"], 1)
    variant = "q15" if q15 else "float"
    wheel = _run_c(host_runners["fsdd", "wheel"], fsdd_clips, shape, variant)
    device = _run_c(host_runners["fsdd", "device"], fsdd_clips, shape, variant)
    deviation = 0.0
    for clip, c_wheel, c_device in zip(fsdd_clips, wheel, device):
        twin = frontend.features_cmsisdsp(clip, params, sr, q15=q15)
        assert_matches_twin(c_wheel, twin)
        deviation = max(deviation, float(np.abs(c_device - twin).max()))
        if not q15:
            assert _error_db(c_device, _training_features(clip, params, sr)) <= TOLERANCE_DB
    print(f"FSDD {variant}: host build bit-exact with the twin (wheel flags); device flags differ by "
          f"at most {deviation:.2e} dB")
    assert deviation <= DEVICE_FLAVOUR_TOLERANCE_DB


@pytest.mark.parametrize("case", ["quickstart_keep", "quickstart_mono", "quickstart_mid_side", "variant"])
def test_host_build_equals_twin(host_runners, fsdd_clips, assert_matches_twin, case):
    params, sr, samples, channels = CASES[case]
    clip = _stereo_clip() if channels == 2 else fsdd_clips[3]
    shape = params.output_shape(samples, channels)
    reference = _training_features(clip, params, sr)
    for q15, bound in ((False, TOLERANCE_DB), (True, Q15_BOUND_DB)):
        variant = "q15" if q15 else "float"
        c_features = _run_c(host_runners[case, "wheel"], [clip], shape, variant)[0]
        twin = frontend.features_cmsisdsp(clip, params, sr, q15=q15)
        assert_matches_twin(c_features, twin)
        assert _error_db(c_features, reference) <= bound
        if (case, "device") in host_runners:
            device = _run_c(host_runners[case, "device"], [clip], shape, variant)[0]
            assert np.abs(device - twin).max() <= DEVICE_FLAVOUR_TOLERANCE_DB


def test_host_build_links_only_this_fft_length(host_runners):
    """The size-specific CMSIS-DSP init functions let --gc-sections keep one FFT length's tables,
    of the sizes frontend_costs reports (read off the linked binary)."""
    if shutil.which("nm") is None:
        pytest.skip("no host nm (binutils)")
    for case, n_fft in (("fsdd", 256), ("quickstart_keep", 512)):
        listing = subprocess.run(["nm", "-S", "--defined-only", host_runners[case, "device"]], capture_output=True,
                                 text=True, check=True).stdout
        sizes = {parts[3]: int(parts[1], 16) for parts in map(str.split, listing.splitlines()) if len(parts) == 4}
        params, sr, samples, channels = CASES[case]
        costs = frontend.frontend_costs(params, sr, samples, channels)
        for table in ("cmsis_fft_table_bytes", "cmsis_fft_table_bytes_q15"):
            for symbol, size in costs[table].items():
                if symbol != "total" and not symbol.startswith("arm_cfft_sR_"):  # structs: 64-bit host
                    assert sizes.get(symbol) == size, (symbol, sizes.get(symbol), size)
        other = {256: 512, 512: 256}[n_fft]
        assert f"twiddleCoef_rfft_{other}" not in sizes and "twiddleCoef_rfft_4096" not in sizes


def test_compiles_for_cortex_m_and_as_cplusplus(device_toolchain, tmp_path):
    """-Wall -Wextra -Werror for Cortex-M4 (soft float) and Cortex-M55 (softfp: Helium), float and
    q15; and as C++ (host g++), where frontend.h's extern "C" guard matters."""
    sources = device_toolchain.sources
    jobs = []
    for case in ("fsdd", "quickstart_mid_side"):
        folder = _write_frontend(tmp_path / case, *CASES[case])
        common = ["-O2", "-DARM_MATH_LOOPUNROLL", "-DTFASC_FRONTEND_Q15", *WARNINGS, f"-I{folder}", *_includes(sources)]
        for cpu in (["-mcpu=cortex-m4", "-mfloat-abi=soft"], ["-mcpu=cortex-m55", "-mfloat-abi=softfp"]):
            jobs.append([device_toolchain.gcc, "-std=c99", "-mthumb", *cpu, *common, "-c", folder / "frontend.c",
                         "-o", folder / f"frontend_{cpu[0][6:]}.o"])
        if shutil.which("g++"):
            jobs.append(["g++", "-x", "c++", "-std=c++17", "-D__GNUC_PYTHON__", *common, "-c", folder / "frontend.c",
                         "-o", folder / "frontend_cxx.o"])
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(_run, jobs))
    listing = subprocess.run([device_toolchain.nm, tmp_path / "fsdd" / "frontend_cortex-m4.o"],
                             capture_output=True, text=True, check=True).stdout
    assert " T tfasc_frontend_log_mel\n" in listing and " T tfasc_frontend_log_mel_q15\n" in listing
    assert " U arm_rfft_fast_init_256_f32\n" in listing and " U arm_rfft_fast_init_f32\n" not in listing

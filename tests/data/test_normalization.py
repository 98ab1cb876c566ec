"""Input normalization modes against scipy / numpy, and the bundle's C input path against tfasc's
own int8 input (gcc-compiled ``input_path.h`` must give the same bytes)."""

import shutil

import numpy as np
import pytest
from scipy import stats

from tfasc.data.normalization import (
    MODES, Normalization, NormalizationError, c_header, fit_normalization,
)
from tfasc.deploy.convert import TensorQuantization

from support import c_input_path


def log_mel_like(n=6, bins=5, frames=7, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    # Bins with their own level and spread, clips with their own gain, like real log-mel features.
    bin_level = rng.normal(-4, 2, (1, bins, 1, 1))
    clip_gain = rng.normal(0, 3, (n, 1, 1, 1))
    return (bin_level + clip_gain + rng.normal(0, 1.5, (n, bins, frames, channels))).astype(np.float32)


def test_fitted_statistics_match_numpy_over_chunks():
    x = log_mel_like(n=23)
    glob = fit_normalization("global", x, chunk=4)
    assert glob.mean[0] == pytest.approx(x.astype(np.float64).mean(), rel=1e-12)
    assert glob.std[0] == pytest.approx(x.astype(np.float64).std(), rel=1e-12)
    freq = fit_normalization("per_frequency", x, chunk=5)
    np.testing.assert_allclose(freq.mean, x.astype(np.float64).mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(freq.std, x.astype(np.float64).std(axis=(0, 2, 3)), rtol=1e-12)
    for mode in ("none", "per_clip", "per_clip_frequency"):
        assert fit_normalization(mode, x) == Normalization(mode)


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_against_scipy_zscore(mode):
    x = log_mel_like(seed=1)
    train = log_mel_like(n=30, seed=2)
    wide = x.astype(np.float64)
    expected = {
        "none": wide,
        "global": (wide - train.astype(np.float64).mean()) / train.astype(np.float64).std(),
        "per_frequency": (wide - train.astype(np.float64).mean(axis=(0, 2, 3))[:, None, None])
        / train.astype(np.float64).std(axis=(0, 2, 3))[:, None, None],
        # z-score of each clip over all its values, and of each clip's bins over frames and channels
        "per_clip": np.stack([stats.zscore(clip, axis=None) for clip in wide]),
        "per_clip_frequency": np.stack([[stats.zscore(row, axis=None) for row in clip] for clip in wide]),
    }[mode]
    got = fit_normalization(mode, train)(x)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_silent_clip_stays_finite_and_json_round_trips():
    silent = np.zeros((2, 4, 3, 1), np.float32)
    for mode in ("per_clip", "per_clip_frequency"):
        assert np.array_equal(Normalization(mode)(silent), silent)
    freq = fit_normalization("per_frequency", log_mel_like())
    assert Normalization.from_json(freq.to_json()) == freq and freq.matches(Normalization.from_json(freq.to_json()))
    assert not freq.matches(fit_normalization("per_frequency", log_mel_like(seed=5)))
    with pytest.raises(NormalizationError, match="per_frequency.*one per frequency bin"):
        Normalization("per_frequency", (1.0,), ())
    with pytest.raises(NormalizationError, match="positive standard"):
        Normalization("global", (0.0,), (0.0,))
    with pytest.raises(NormalizationError, match="expected one of"):
        Normalization("per_speaker")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to compile the bundle's C input path")
@pytest.mark.parametrize("mode", MODES)
def test_c_input_path_gives_the_int8_input_tfasc_feeds(tmp_path, mode):
    train = log_mel_like(n=40, seed=3)
    clips = log_mel_like(n=25, seed=4)
    clips[3] = 0.0  # a silent clip: the variance floor
    clips[4, 2] = -7.5  # a constant bin
    normalization = fit_normalization(mode, train)
    inputs = normalization(clips)
    # An input quantization like the converter's (range of the representative inputs).
    low, high = float(min(inputs.min(), 0)), float(max(inputs.max(), 0))
    scale = (high - low) / 255.0
    quantization = TensorQuantization(shape=(1, *clips.shape[1:]), dtype="int8", scale=scale,
                                      zero_point=int(round(-128 - low / scale)))
    expected = quantization.quantize(inputs)

    (tmp_path / "input_path.h").write_text(
        c_header(normalization, clips.shape[1:], quantization.scale, quantization.zero_point))
    got = c_input_path.run(c_input_path.build(tmp_path, tmp_path), clips)
    assert len(np.unique(expected)) > 20  # the check covers a real spread of codes
    np.testing.assert_array_equal(got, expected)


def test_a_run_reads_its_recorded_normalization_or_names_the_damaged_file(tmp_path):
    from tfasc.training.rundir import RunDirError, read_normalization

    path = tmp_path / "normalization.json"
    path.write_text('{"mean": 1.5, "std": 2.0}')  # written before normalization modes
    assert read_normalization(path) == Normalization("global", (1.5,), (2.0,))
    for text, reason in (('{"mode": "global", "mean": [0.0], "std": [0.0]}', "positive standard"),
                         ("[1, 2]", "not a mapping"), ("{", "damaged")):
        path.write_text(text)
        with pytest.raises(RunDirError, match=f"normalization.json: damaged.*{reason}|normalization.json: {reason}"):
            read_normalization(path)
    path.unlink()
    with pytest.raises(RunDirError, match="normalization.json: missing"):
        read_normalization(path)

"""The scalogram front-end (``features.kind: scalogram``, Wu & Lee Sec. 4.2) against independent references.

The filter bank: each filter's peak and half-maximum width measured from the matrix on a fine grid
against the closed-form Kymatio centre ``xi_k`` and Gaussian FWHM ``2 sqrt(2 ln 2) sigma_k``, and,
where Kymatio is installed, against Kymatio's own filter factory. The front-end: against numpy
(hand-framed windows, ``np.fft.rfft``) times the matrix.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal

import tfasc  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

from tfasc.data import frontends
from tfasc.data.features import num_frames
from tfasc.data.frontends.scalogram import (
    ScalogramFrontEnd,
    ScalogramParams,
    scalogram,
    wavelet_filter_bank,
)

PAPER = ScalogramParams(n_fft=2048, win_length=1200, hop_length=480)  # 25 ms / 10 ms at 48 kHz

# ----------------------------------------------------------------------------------------------
# Closed forms (Kymatio's first-order bank), written out here rather than taken from the module


def closed_form(q: int, max_scale: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(xi, sigma, constant-Q count)`` in cycles/sample, Kymatio's order (highest first), the
    low-pass last: xi_k = xi_max 2^(-k/Q) while sigma_k > 0.1 / max_scale, then Q-1 filters evenly
    spaced below the last one, then 0."""
    xi_max = max(1 / (1 + 2 ** (3 / q)), 0.35)
    sigma_min = 0.1 / max_scale
    ratio = (1 - 2 ** (-1 / q)) / (1 + 2 ** (-1 / q)) / math.sqrt(math.log(2))  # r = sqrt(1/2)
    k = np.arange(2000)
    xi = xi_max * 2.0 ** (-k / q)
    geometric = int(np.sum(xi * ratio > sigma_min * (1 + 1e-9)))
    elbow = xi[geometric - 1]
    linear = elbow * (1 - np.arange(1, q) / q)
    xis = np.concatenate([xi[:geometric], linear, [0.0]])
    sigmas = np.concatenate([xi[:geometric] * ratio, np.full(q, sigma_min)])
    return xis, sigmas, geometric


def test_paper_bank_is_kymatio_127_wavelets_and_low_pass_from_11_hz_to_22_khz():
    xi, sigma, geometric = closed_form(16, 1024)
    assert (geometric, len(xi)) == (112, 128)
    centres_hz = np.sort(xi) * 48000
    assert centres_hz[0] == 0 and centres_hz[1] == pytest.approx(11.44, abs=0.01)
    assert centres_hz[16] == pytest.approx(183.10, abs=0.01) and centres_hz[-1] == pytest.approx(22442.6, abs=0.1)
    assert wavelet_filter_bank(48000, PAPER).shape == (1025, 128)


def _peak_and_fwhm(column: np.ndarray, n: int) -> tuple[float, float, float]:
    """Peak position and value (log-parabola through the 3 top samples: exact for a Gaussian) and
    half-maximum width (linear interpolation of the crossings), in cycles per sample."""
    top = int(np.argmax(column))
    if top == 0:  # the low-pass: symmetric around 0
        position, peak = 0.0, column[0]
    else:
        a, b, c = np.log(column[top - 1 : top + 2])
        position = (top + 0.5 * (a - c) / (a - 2 * b + c)) / n
        peak = np.exp(b - (a - c) ** 2 / (8 * (a - 2 * b + c)))
    half = peak / 2
    above = np.flatnonzero(column >= half)
    lo, hi = above[0], above[-1]
    right = hi + (column[hi] - half) / (column[hi] - column[hi + 1])
    left = 0.0 if lo == 0 else lo - (column[lo] - half) / (column[lo] - column[lo - 1])
    width = (right - left) if lo > 0 else 2 * right  # the low-pass: mirror its half at 0
    return position, float(peak), width / n


def test_filters_peak_at_the_kymatio_centres_with_gaussian_half_maximum_widths():
    """On a fine grid (n_fft 32768: the narrowest filter spans 3 bins at half maximum) every filter
    far enough from 0 for the zero-mean correction to vanish (xi >= 4 sigma: all but the lowest
    wavelet) peaks at xi_k with a FWHM of 2 sqrt(2 ln 2) sigma_k, and with unit l1 norm in time
    its peak is 1."""
    n = 32768
    params = ScalogramParams(n_fft=n, scalogram_bins=128)
    bank = wavelet_filter_bank(48000, params)[:, ::-1]  # back to Kymatio's order: highest first
    xi, sigma, _ = closed_form(16, 1024)
    checked = 0
    for k in range(128):
        position, peak, fwhm = _peak_and_fwhm(bank[:, k], n)
        if xi[k] == 0 or xi[k] >= 4 * sigma[k]:
            assert position == pytest.approx(xi[k], abs=1e-3 / n), k
            assert fwhm == pytest.approx(2 * math.sqrt(2 * math.log(2)) * sigma[k], rel=5e-3), k
            assert peak == pytest.approx(1.0, abs=1e-3), k
            checked += 1
    assert checked == 127


def test_adjacent_wavelets_cross_at_half_power_and_q_of_them_span_an_octave():
    n = 32768
    bank = wavelet_filter_bank(48000, ScalogramParams(n_fft=n))[:, ::-1]
    grid = np.arange(n // 2 + 1) / n
    xi, _, geometric = closed_form(16, 1024)
    peaks = np.array([_peak_and_fwhm(bank[:, k], n)[0] for k in range(geometric)])
    np.testing.assert_allclose(peaks[:-16] / peaks[16:], 2.0, rtol=2e-3)  # 16 per octave
    for k in range(0, geometric - 1, 7):
        between = (grid < peaks[k]) & (grid > peaks[k + 1])
        upper, lower = bank[between, k], bank[between, k + 1]
        difference = upper - lower
        i = np.flatnonzero(np.diff(np.sign(difference)))[0]
        t = difference[i] / (difference[i] - difference[i + 1])  # linear interpolation of the crossing
        level = (upper[i] + t * (upper[i + 1] - upper[i])) / _peak_and_fwhm(bank[:, k], n)[1]
        # r = sqrt(1/2): the crossing is at 1/sqrt(2) of the peak (half power)
        assert level == pytest.approx(math.sqrt(0.5), abs=0.02), k


def test_the_stft_grid_samples_the_same_filters_at_f_over_n_fft():
    """The n_fft grid's bin f is f / n_fft cycles per sample: the 2048-point bank is the 32768-point
    bank every 16th bin, up to each filter's l1 normalisation constant."""
    coarse = wavelet_filter_bank(48000, ScalogramParams(n_fft=2048))
    fine = wavelet_filter_bank(48000, ScalogramParams(n_fft=32768))[::16]
    for k in range(128):
        keep = np.abs(fine[:, k]) > 1e-6 * np.abs(fine[:, k]).max()
        ratio = coarse[keep, k] / fine[keep, k]
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-6, err_msg=f"filter {k}")
    assert np.all(coarse[0, 1:] == pytest.approx(0.0, abs=1e-12))  # wavelets have zero mean


def test_matches_kymatio_filter_factory():
    filter_bank = pytest.importorskip("kymatio.scattering1d.filter_bank")
    phi, psi1, _ = filter_bank.scattering_filter_factory(2048, 10, (16, 1), 1024)
    kymatio = np.stack([f["levels"][0][:1025] for f in psi1] + [phi["levels"][0][:1025]], axis=1)
    np.testing.assert_allclose(wavelet_filter_bank(48000, PAPER), kymatio[:, ::-1], atol=1e-12)


# ----------------------------------------------------------------------------------------------
# The front-end against numpy

RATE = 16000
SMALL = ScalogramParams(n_fft=512, win_length=400, hop_length=160, wavelets_per_octave=8,
                        wavelet_max_scale=256, scalogram_bins=40, amin=1e-5)


def stereo_noise(seconds: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(3)
    clip = rng.standard_normal((int(RATE * seconds), 2)) * np.array([0.1, 0.3])
    return clip.astype(np.float32)


def numpy_scalogram(clip: np.ndarray, params: ScalogramParams) -> np.ndarray:
    """``[samples, channels]`` -> ``[bins, frames, channels]``: zero-padded by n_fft // 2, periodic
    window centred in n_fft, rfft, ln(max(|X|, amin)) times the bank, in float64."""
    n_fft, hop, win = params.n_fft, params.hop_length, params.win_length
    window = np.zeros(n_fft)
    start = (n_fft - win) // 2
    window[start : start + win] = scipy.signal.get_window(params.window, win, fftbins=True)
    padded = np.pad(clip.astype(np.float64), [(n_fft // 2, n_fft // 2), (0, 0)])
    count = 1 + (len(padded) - n_fft) // hop
    frames = np.stack([padded[t * hop : t * hop + n_fft] for t in range(count)])  # [t, n_fft, c]
    spectrum = np.fft.rfft(frames * window[None, :, None], axis=1)  # [t, bins, c]
    log_magnitude = np.log(np.maximum(np.abs(spectrum), params.amin))
    return np.einsum("tfc,fk->ktc", log_magnitude, wavelet_filter_bank(RATE, params))


@pytest.mark.parametrize("channel_mode", ["keep", "mono", "mid_side"])
def test_front_end_matches_numpy(channel_mode):
    clip = stereo_noise()
    params = ScalogramParams(**{**SMALL.as_kwargs(), "channel_mode": channel_mode})
    got = ScalogramFrontEnd(params)(clip[None], sample_rate=RATE).numpy()[0]
    per_channel = numpy_scalogram(clip, SMALL)
    if channel_mode == "keep":
        expected = per_channel
    elif channel_mode == "mono":  # the waveforms averaged first
        expected = numpy_scalogram(clip.mean(axis=1, keepdims=True), SMALL)
    else:  # the paper: average and difference of the two channels' scalograms
        left, right = per_channel[..., 0], per_channel[..., 1]
        expected = np.stack([(left + right) / 2, (left - right) / 2], axis=-1)
    assert got.shape == expected.shape == params.output_shape(len(clip), 2)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3 * np.abs(expected).max())


def test_runs_in_tf_data_and_mid_side_is_not_the_mid_side_of_waveforms():
    import tensorflow as tf

    clip = stereo_noise()
    params = ScalogramParams(**{**SMALL.as_kwargs(), "channel_mode": "mid_side"})
    dataset = tf.data.Dataset.from_tensor_slices(clip[None]).batch(1).map(
        lambda x: scalogram(x, sample_rate=RATE, params=params))
    got = next(iter(dataset)).numpy()[0]
    np.testing.assert_allclose(got, ScalogramFrontEnd(params)(clip[None], sample_rate=RATE).numpy()[0], atol=1e-4)
    mixed = np.stack([clip.mean(axis=1), (clip[:, 0] - clip[:, 1]) / 2], axis=-1)
    assert np.abs(got - numpy_scalogram(mixed, SMALL)).max() > 1.0  # the log makes them differ


def test_a_1_khz_tone_peaks_at_the_bin_centred_nearest_1_khz():
    t = np.arange(int(0.2 * 48000)) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None, :, None]
    got = ScalogramFrontEnd(PAPER)(tone, sample_rate=48000).numpy()[0, :, 5:-5, 0].mean(axis=1)
    centres_hz = np.sort(closed_form(16, 1024)[0]) * 48000  # low -> high, like the rows
    assert int(np.argmax(got)) == int(np.argmin(np.abs(centres_hz - 1000)))


def test_ten_seconds_of_48_khz_stereo_gives_the_paper_shape():
    params = ScalogramParams(**{**PAPER.as_kwargs(), "channel_mode": "mid_side"})
    frontend = ScalogramFrontEnd(params)
    frames = 1 + (480000 + 2 * 1024 - 2048) // 480  # center=True pads n_fft // 2 on both sides
    assert frames == num_frames(480000, n_fft=2048, hop_length=480, center=True) == 1001
    assert frontend.output_shape(480000, 2) == (128, frames, 2)
    clip = np.random.default_rng(0).uniform(-1, 1, (1, 480000, 2)).astype(np.float32)
    out = frontend(clip, sample_rate=48000)
    assert out.shape == (1, 128, frames, 2)
    assert frontend.cache_dtype == np.float16 and np.isfinite(out.numpy().astype(np.float16)).all()


def test_registered_and_configured_from_the_features_section():
    from tfasc.config.schema import FeaturesConfig

    config = FeaturesConfig(kind="scalogram", n_fft=2048, win_length=1200, hop_length=480,
                            channel_mode="mid_side")
    frontend = frontends.make("scalogram", config)
    assert "scalogram" in frontends.available()
    assert frontend.params == ScalogramParams(n_fft=2048, win_length=1200, hop_length=480, channel_mode="mid_side")
    parameters = frontend.parameters()
    assert parameters["kind"] == "scalogram" and parameters["scalogram_bins"] == 128
    assert {"wavelets_per_octave": 16, "wavelet_max_scale": 1024, "amin": 1e-10}.items() <= parameters.items()
    assert "n_mels" not in parameters and "top_db" not in parameters  # log-mel-only fields
    # float16 holds |S| <= 62 * |ln amin| for amin=1e-10, not for a vanishing amin
    tiny_floor = ScalogramFrontEnd(ScalogramParams(**{**frontend.params.as_kwargs(), "amin": 1e-300}))
    assert tiny_floor.cache_dtype == np.float32


@pytest.mark.parametrize("change, name", [
    ({"win_length": 4096}, "win_length"),
    ({"scalogram_bins": 129}, "scalogram_bins"),  # 127 wavelets and the low-pass
    ({"scalogram_bins": 0}, "scalogram_bins"),
    ({"wavelets_per_octave": 0}, "wavelets_per_octave"),
    ({"wavelet_max_scale": 1000}, "wavelet_max_scale"),  # not 2**J
    ({"wavelet_max_scale": 4096}, "wavelet_max_scale"),  # beyond the n_fft support
    ({"amin": 0.0}, "amin"),
    ({"channel_mode": "left"}, "channel_mode"),
    ({"window": "kaiser"}, "window"),
])
def test_bad_parameters_raise_naming_them(change, name):
    params = ScalogramParams(**{**PAPER.as_kwargs(), **change})
    with pytest.raises(ValueError, match=name):
        wavelet_filter_bank(48000, params)
    with pytest.raises(ValueError, match=name):
        ScalogramFrontEnd(params)(np.zeros((1, 4800, 1), np.float32), sample_rate=48000)


def test_mid_side_needs_two_channels():
    params = ScalogramParams(**{**SMALL.as_kwargs(), "channel_mode": "mid_side"})
    with pytest.raises(ValueError, match="channel_mode"):
        ScalogramFrontEnd(params)(np.zeros((1, 8000, 1), np.float32), sample_rate=RATE)
    with pytest.raises(ValueError, match="channel_mode"):
        ScalogramFrontEnd(params).output_shape(8000, 1)


def test_prepare_data_caches_scalogram_features(tmp_path):
    from support.recipes import write_tiny_recipe

    from tfasc.config import load_recipe
    from tfasc.data.prepare import prepare_data

    overrides = ["features.kind=scalogram", "features.wavelet_max_scale=128", "features.scalogram_bins=64"]
    recipe = load_recipe(write_tiny_recipe(tmp_path), overrides)
    data = prepare_data(recipe)
    frames = 1 + 4000 // 128  # 0.5 s at 8 kHz, n_fft 256, hop 128, center=True
    assert data.train.features.shape[1:] == (64, frames, 1) == data.input_shape
    assert data.train.cache_entry is not None and np.isfinite(data.train.features).all()
    again = prepare_data(recipe)  # from the cache
    np.testing.assert_array_equal(again.train.features, data.train.features)

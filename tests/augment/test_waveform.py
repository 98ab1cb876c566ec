"""Per-example waveform augmentations [samples, channels] against scipy / librosa / numpy references."""

from __future__ import annotations

import dataclasses

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile

import tfasc  # noqa: F401

import tensorflow as tf

from tfasc.augment.waveform import (
    AugmentBankError,
    ImpulseResponseBank,
    NoiseBank,
    WaveformAugmentPolicy,
    add_noise,
    augment_batch,
    convolve_ir,
    gain,
    make_waveform_augmenter,
    pitch_shift,
    resample,
    resample_sizes,
    random_crop,
    random_gain,
    random_noise,
    random_speed_perturb,
    random_time_shift,
    speed_perturb,
    standardize,
    time_shift,
    time_stretch,
)

SR = 16000
N = 16000  # 1 s


def tone(freq=440.0, n=N, amplitude=0.5):
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(n) / SR)).astype(np.float32)


def white(n=N, seed=0, channels=None):
    shape = (n,) if channels is None else (n, channels)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def rel_rms(a, b):
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - b) ** 2) / np.mean(np.square(b, dtype=np.float64))))


def fit(y, n=N):
    return np.pad(y, (0, max(0, n - len(y))))[:n]


def snr_db(signal, noise):
    return 10 * np.log10(np.mean(np.square(signal, dtype=np.float64)) / np.mean(np.square(noise, dtype=np.float64)))


def seed(a, b=0):
    return tf.constant([a, b], tf.int64)


# --------------------------------------------------------------------------------------------
# Speed perturbation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [16000, 16001, 999])
def test_resample_matches_scipy_resample(n):
    # The same algorithm (rfft, truncate or zero-pad, Nyquist bin split/joined, irfft, rescale):
    # measured <= 2e-6 absolute on unit-variance noise (float32 FFTs), odd and even lengths.
    x = white(n, channels=2)
    for m in (n, n - 1, n + 1, int(n * 0.8), int(n * 1.25) + 1, 2, 1):
        out = resample(x, m).numpy()
        assert out.shape == (m, 2)
        reference = scipy.signal.resample(x.astype(np.float64), m, axis=0)
        np.testing.assert_allclose(out, reference, atol=2e-5)


@pytest.mark.parametrize("factor", [1.25, 0.8, 1.1])
def test_speed_perturb_matches_scipy_resample(factor):
    for signal in (tone(), white()):
        out = speed_perturb(signal[:, None], factor, fast_sizes=False).numpy()
        assert out.shape == (N, 1)
        m = int(round(N / factor))
        reference = fit(scipy.signal.resample(signal.astype(np.float64), m))
        np.testing.assert_allclose(out[:, 0], reference, atol=2e-5)  # measured <= 1.2e-6
        if factor > 1:
            assert np.all(out[m:] == 0.0)  # played faster: silence at the end


@pytest.mark.parametrize("factor,up,down", [(1.25, 4, 5), (0.8, 5, 4)])
def test_speed_perturb_agrees_with_resample_poly_on_a_tone(factor, up, down):
    # An independent resampler (polyphase FIR, Kaiser window): away from the clip's ends (where
    # scipy.signal.resample treats the clip as periodic and resample_poly pads zeros) they agree
    # to the FIR's passband ripple, measured 1.1e-3 relative RMS. (On white noise they differ by
    # ~13 % near the Nyquist frequency, where the FIR's transition band lies.)
    out = speed_perturb(tone()[:, None], factor, fast_sizes=False).numpy()[:, 0]
    reference = fit(scipy.signal.resample_poly(tone().astype(np.float64), up, down))
    inner = slice(500, min(N, int(N / factor)) - 500)
    assert rel_rms(out[inner], reference[inner]) < 3e-3


@pytest.mark.parametrize("n", [16000, 999, 44100])
def test_fast_sizes_resample_a_padded_clip_by_nearly_the_factor(n):
    # FFT-friendly sizes (no prime factor above 13): the clip zero-padded to L, resampled to M, with
    # L / M within 0.15 % of the factor (measured <= 1.5e-3 over lengths 100-50000).
    x = white(n, seed=2)
    for factor in np.exp(np.random.default_rng(n).uniform(np.log(0.7), np.log(1.4), 6)):
        big, small = (int(v) for v in resample_sizes(n, np.float32(factor)))
        assert n <= big <= 1.07 * n
        assert abs(big / small / np.float32(factor) - 1.0) < 1.5e-3
        for size in (big, small):
            rest = size
            for p in (2, 3, 5, 7, 11, 13):
                while rest % p == 0:
                    rest //= p
            assert rest == 1
        out = speed_perturb(x[:, None], factor).numpy()[:, 0]
        reference = fit(scipy.signal.resample(np.pad(x, (0, big - n)).astype(np.float64), small), n)
        np.testing.assert_allclose(out, reference, atol=2e-5)


def test_speed_perturb_multichannel_and_identity():
    x = white(4000, channels=2)
    np.testing.assert_allclose(speed_perturb(x, 1.0).numpy(), x, atol=1e-5)
    out = speed_perturb(x, 1.2).numpy()
    for c in range(2):
        np.testing.assert_allclose(out[:, c], speed_perturb(x[:, c : c + 1], 1.2).numpy()[:, 0], atol=1e-6)


def test_random_speed_perturb_is_seeded():
    x = tone()[:, None]
    a = random_speed_perturb(x, (0.8, 1.25), seed(1)).numpy()
    b = random_speed_perturb(x, (0.8, 1.25), seed(1)).numpy()
    c = random_speed_perturb(x, (0.8, 1.25), seed(2)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    traced = tf.function(lambda f: speed_perturb(x, f)).get_concrete_function(tf.TensorSpec([], tf.float32))
    assert traced.output_shapes == tf.TensorShape(x.shape)
    with pytest.raises(ValueError, match="> 0"):
        random_speed_perturb(x, (0.0, 1.2), seed(1))


# --------------------------------------------------------------------------------------------
# Pitch shift
# --------------------------------------------------------------------------------------------


def dominant_frequency(y):
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return np.argmax(spectrum) * SR / len(y)


@pytest.mark.parametrize("semitones", [3.0, -4.0])
def test_pitch_shift_moves_a_tone_and_matches_librosa(semitones):
    x = tone(440.0)
    out = pitch_shift(x[:, None], semitones, SR, n_fft=1024).numpy()[:, 0]  # fast sizes
    assert out.shape == (N,)
    # 1 Hz bins: within two of 440 * 2 ** (s / 12) (measured 0.25 Hz off: the bin grid).
    assert abs(dominant_frequency(out) - 440.0 * 2 ** (semitones / 12)) <= 2.0
    # Fast sizes: the stretched clip zero-padded to L and resampled to M (resample_sizes); the pitch
    # is off by <= 0.15 %, so samples drift by up to ~1 ms against the exact version by the end.
    stretched = time_stretch(x[:, None], 2 ** (-semitones / 12), n_fft=1024).numpy()[:, 0]
    big, small = (int(v) for v in resample_sizes(len(stretched), 2 ** (semitones / 12)))
    padded = np.pad(stretched, (0, big - len(stretched))).astype(np.float64)
    np.testing.assert_allclose(out, fit(scipy.signal.resample(padded, small)), atol=2e-5)
    # The same algorithm as librosa with its FFT resampler: measured 2-5e-4 relative RMS.
    out = pitch_shift(x[:, None], semitones, SR, n_fft=1024, fast_sizes=False).numpy()[:, 0]
    assert abs(dominant_frequency(out) - 440.0 * 2 ** (semitones / 12)) <= 2.0
    reference = librosa.effects.pitch_shift(x, sr=SR, n_steps=semitones, n_fft=1024, res_type="fft")
    assert rel_rms(out, reference) < 2e-3
    # librosa's default resampler (soxr_hq) differs near the ends and in its filter: measured
    # correlation 0.9995-0.9998, relative RMS 2-3 %.
    default = librosa.effects.pitch_shift(x, sr=SR, n_steps=semitones, n_fft=1024)
    assert np.corrcoef(out, default)[0, 1] > 0.999


def test_pitch_shift_matches_librosa_on_noise():
    # Measured 1-2e-3 relative RMS (white noise), mostly librosa's float32 phase accumulator.
    x = white()
    out = pitch_shift(x[:, None], 3.0, SR, n_fft=1024, fast_sizes=False).numpy()[:, 0]
    reference = librosa.effects.pitch_shift(x, sr=SR, n_steps=3.0, n_fft=1024, res_type="fft")
    assert rel_rms(out, reference) < 1e-2


def test_time_stretch_matches_librosa():
    # The phase vocoder step for step; measured relative RMS 4e-4 (tone) and 2.5e-3 (noise), growing
    # toward the end where librosa's float32 phase accumulator (unwrapped) loses precision.
    for x, tolerance in ((tone(), 2e-3), (white(), 1e-2)):
        for rate in (2 ** (-3 / 12), 2 ** (4 / 12)):
            out = time_stretch(x[:, None], rate, n_fft=1024).numpy()[:, 0]
            reference = librosa.effects.time_stretch(x, rate=rate, n_fft=1024)
            assert out.shape == reference.shape
            assert rel_rms(out, reference) < tolerance


def test_pitch_shift_with_a_drawn_tensor_keeps_static_shape_in_graph():
    @tf.function
    def shifted(x, s):
        return pitch_shift(x, s, SR)

    out = shifted(tf.constant(white(8000, channels=2)), tf.constant(-1.5))
    assert out.shape == (8000, 2) and np.all(np.isfinite(out.numpy()))
    concrete = shifted.get_concrete_function(tf.TensorSpec([8000, 2], tf.float32), tf.TensorSpec([], tf.float32))
    assert concrete.output_shapes == tf.TensorShape([8000, 2])


# --------------------------------------------------------------------------------------------
# Gain and time shift
# --------------------------------------------------------------------------------------------


def test_gain_is_a_db_scale():
    x = white(1000, channels=2)
    np.testing.assert_allclose(gain(x, 6.0).numpy(), x * 10 ** (6 / 20), rtol=1e-6)
    np.testing.assert_allclose(gain(x, -20.0).numpy(), x * 0.1, rtol=1e-6)
    out = random_gain(x, (-3.0, 3.0), seed(4)).numpy()
    ratio = out / x
    assert np.allclose(ratio, ratio[0, 0], rtol=1e-5) and -3.0 <= 20 * np.log10(ratio[0, 0]) < 3.0


@pytest.mark.parametrize("shift", [0, 37, -250, 1000, -1000, 5000])
def test_time_shift_zero_fill_and_roll(shift):
    x = white(1000, channels=2)
    expected = np.zeros_like(x)
    if shift >= 0:
        expected[shift:] = x[: max(1000 - shift, 0)]
    else:
        expected[: 1000 + shift] = x[-shift:]
    np.testing.assert_array_equal(time_shift(x, shift).numpy(), expected)
    np.testing.assert_array_equal(time_shift(x, shift, mode="roll").numpy(), np.roll(x, shift, axis=0))


def test_random_time_shift_covers_its_inclusive_range():
    x = np.arange(1, 101, dtype=np.float32)[:, None]
    shifts = set()
    for i in range(200):
        out = random_time_shift(x, (-3, 3), seed(i)).numpy()[:, 0]
        first = out[out != 0][0]
        shifts.add(int(np.argmax(out == first) - (first - 1)))
    assert shifts == set(range(-3, 4))


# --------------------------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------------------------


def write(folder, name, audio, sample_rate=SR):
    folder.mkdir(parents=True, exist_ok=True)
    soundfile.write(folder / name, audio, sample_rate, subtype="PCM_16")


@pytest.fixture
def noise_dir(tmp_path):
    folder = tmp_path / "noise"
    write(folder, "long.wav", 0.3 * white(2 * N, seed=5))
    write(folder / "sub", "short.wav", 0.1 * white(300, seed=6))  # shorter than a clip: tiled
    return folder


def test_add_noise_hits_the_snr_exactly():
    x = white(N, seed=1, channels=2) * 0.2
    noise = white(N, seed=2, channels=2)
    for target in (-5.0, 0.0, 12.3, 40.0):
        out = add_noise(x, noise, target).numpy()
        assert abs(snr_db(x, out - x) - target) < 0.01
    mono = add_noise(x, noise[:, :1], 3.0).numpy()  # the same noise on both channels
    np.testing.assert_allclose(mono[:, 0] - x[:, 0], mono[:, 1] - x[:, 1], atol=1e-6)
    assert abs(snr_db(x, mono - x) - 3.0) < 0.01


def test_silent_signal_or_noise_gives_no_nan():
    silent = np.zeros((N, 1), np.float32)
    out = add_noise(silent, white(channels=1), 10.0).numpy()
    np.testing.assert_array_equal(out, silent)
    x = white(channels=1)
    np.testing.assert_array_equal(add_noise(x, silent, 10.0).numpy(), x)


def test_noise_bank_from_folder_tiles_short_clips(noise_dir):
    bank = NoiseBank.from_folder(noise_dir, SR, channels=1)
    assert bank.samples.shape == (2 * N + 300, 1) and list(bank.lengths) == [2 * N, 300]
    assert bank.names[1].endswith("short.wav")
    clips = [bank.samples[s : s + n] for s, n in zip(bank.starts, bank.lengths)]
    seen = set()
    for i in range(40):
        segment = bank.segment(N, seed(i)).numpy()
        assert segment.shape == (N, 1)
        matched = False
        for k, clip in enumerate(clips):
            tiled = np.concatenate([clip] * (N // len(clip) + 2))
            offsets = np.flatnonzero(tiled[: len(clip), 0] == segment[0, 0])
            if any(np.array_equal(tiled[o : o + N], segment) for o in offsets):
                matched = True
                seen.add(k)
        assert matched
    assert seen == {0, 1}


def test_random_noise_snr_in_range_and_exact(noise_dir):
    bank = NoiseBank.from_folder(noise_dir, SR, channels=2)  # mono files repeated to stereo
    assert bank.channels == 2
    x = tone()[:, None] * np.ones((1, 2), np.float32)
    measured = [snr_db(x, random_noise(x, bank, (5.0, 20.0), seed(i)).numpy() - x) for i in range(20)]
    assert all(5.0 - 0.01 <= m <= 20.0 + 0.01 for m in measured) and np.std(measured) > 1.0
    out = random_noise(x, bank, (7.5, 7.5), seed(3)).numpy()
    assert abs(snr_db(x, out - x) - 7.5) < 0.01


def test_bank_errors(tmp_path):
    with pytest.raises(AugmentBankError, match="does not exist"):
        NoiseBank.from_folder(tmp_path / "missing", SR, 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AugmentBankError, match="no audio files"):
        ImpulseResponseBank.from_folder(tmp_path / "empty", SR, 1)
    with pytest.raises(AugmentBankError, match="all zeros"):
        ImpulseResponseBank.from_clips([np.zeros((10, 1))], SR)


# --------------------------------------------------------------------------------------------
# Impulse responses
# --------------------------------------------------------------------------------------------


def room_ir(length=4000, delay=120, seed_=7):
    rng = np.random.default_rng(seed_)
    ir = np.zeros(length, np.float32)
    tail = np.arange(length - delay - 1)
    ir[delay] = 1.0
    ir[delay + 1 :] = 0.3 * rng.standard_normal(len(tail)) * np.exp(-tail / 600.0)
    return ir


@pytest.mark.parametrize("align", ["peak", "start"])
def test_convolve_ir_matches_fftconvolve(align):
    x = white(N, seed=3, channels=2)
    ir = room_ir()
    out = convolve_ir(x, ir[:, None], align=align, normalize=False).numpy()
    start = 120 if align == "peak" else 0
    for c in range(2):
        full = scipy.signal.fftconvolve(x[:, c].astype(np.float64), ir.astype(np.float64))
        reference = full[start : start + N]
        # Measured 2e-7 relative RMS (float32 FFTs).
        assert rel_rms(out[:, c], reference) < 1e-5


def test_convolve_ir_normalizes_to_the_input_rms():
    x = tone()[:, None]
    out = convolve_ir(x, room_ir()[:, None]).numpy()
    assert abs(np.sqrt(np.mean(out**2)) / np.sqrt(np.mean(x**2)) - 1.0) < 1e-4
    silent = np.zeros((N, 1), np.float32)
    assert np.array_equal(convolve_ir(silent, room_ir()[:, None]).numpy(), silent)


def test_ir_bank_from_folder_and_random_pick(tmp_path):
    folder = tmp_path / "irs"
    irs = [room_ir(4000, 120, 1), room_ir(1500, 10, 2), room_ir(800, 0, 3)]
    for i, ir in enumerate(irs):
        write(folder, f"ir{i}.wav", ir / np.abs(ir).max() * 0.9)
    bank = ImpulseResponseBank.from_folder(folder, SR, channels=1)
    assert bank.irs.shape == (3, 4000, 1) and list(bank.peaks) == [120, 10, 0]
    x = white(N, seed=4, channels=1)
    outputs = []
    for i in range(12):
        picked, peak = bank.pick(seed(i))
        picked = picked.numpy()
        out = convolve_ir(x, picked, align="peak", normalize=False).numpy()[:, 0]
        reference = scipy.signal.fftconvolve(x[:, 0].astype(np.float64), picked[:, 0].astype(np.float64))
        assert rel_rms(out, reference[int(peak) : int(peak) + N]) < 1e-5
        outputs.append(int(peak))
    assert set(outputs) == {0, 10, 120}


# --------------------------------------------------------------------------------------------
# Policy and augmenter
# --------------------------------------------------------------------------------------------


def test_policy_defaults_disable_and_validation():
    policy = WaveformAugmentPolicy()
    assert not policy.enabled
    x = white(100, channels=1)
    assert make_waveform_augmenter(policy, 0, SR)(x, 3) is not None
    np.testing.assert_array_equal(make_waveform_augmenter(policy, 0, SR)(x, 3).numpy(), x)
    assert WaveformAugmentPolicy(gain_prob=0.5, gain_db=[-1, 2]).gain_db == (-1.0, 2.0)
    for bad, match in (
        (dict(gain_prob=1.5), "probability"),
        (dict(speed_range=(1.2, 0.8)), "low <= high"),
        (dict(speed_range=(0.0, 1.2)), "> 0"),
        (dict(noise_prob=0.5), "noise_dir"),
        (dict(ir_prob=0.5), "ir_dir"),
        (dict(shift_mode="wrap"), "shift_mode"),
        (dict(ir_align="middle"), "ir_align"),
    ):
        with pytest.raises(ValueError, match=match):
            WaveformAugmentPolicy(**bad)


@pytest.fixture
def full_policy(noise_dir, tmp_path):
    folder = tmp_path / "irs"
    write(folder, "room.wav", room_ir() * 0.9)
    return WaveformAugmentPolicy(
        speed_prob=1.0, pitch_prob=1.0, shift_prob=1.0, ir_prob=1.0, noise_prob=1.0, gain_prob=1.0,
        noise_dir=str(noise_dir), ir_dir=str(folder), shift_s=(-0.05, 0.05),
    )


def test_augmenter_is_a_function_of_base_seed_and_index(full_policy):
    augment = make_waveform_augmenter(full_policy, base_seed=11, sample_rate=SR)
    x = tone()[:, None]
    a = augment(x, 5).numpy()
    np.testing.assert_array_equal(a, augment(x, tf.constant(5, tf.int64)).numpy())
    np.testing.assert_array_equal(a, make_waveform_augmenter(full_policy, 11, SR)(x, 5).numpy())
    assert not np.allclose(a, augment(x, 6).numpy())
    assert not np.allclose(a, make_waveform_augmenter(full_policy, 12, SR)(x, 5).numpy())
    assert a.shape == x.shape and np.all(np.isfinite(a))


def test_augmenter_in_tf_data_map_matches_eager_and_has_no_nan(full_policy):
    augment = make_waveform_augmenter(full_policy, base_seed=3, sample_rate=SR, channels=2)
    waves = np.stack([white(N, seed=i, channels=2) * 0.1 for i in range(6)])
    waves[2] = 0.0  # a silent clip
    dataset = tf.data.Dataset.from_tensor_slices(waves).enumerate()
    dataset = dataset.map(lambda i, x: augment(x, i), num_parallel_calls=2, deterministic=True).batch(3)
    out = np.concatenate([batch.numpy() for batch in dataset])
    assert out.shape == waves.shape and np.all(np.isfinite(out))
    np.testing.assert_allclose(out[1], augment(waves[1], 1).numpy(), atol=1e-6)
    np.testing.assert_array_equal(out[2], 0.0)  # silence stays silence (noise scaled to its power)


def test_augment_batch_gives_the_per_example_results(noise_dir):
    policy = WaveformAugmentPolicy(shift_prob=0.5, noise_prob=0.5, gain_prob=0.5, noise_dir=str(noise_dir))
    augment = make_waveform_augmenter(policy, base_seed=3, sample_rate=SR)
    waves = np.stack([white(4000, seed=i, channels=1) for i in range(5)])
    batched = tf.function(lambda x: augment_batch(augment, x, 10))(tf.constant(waves)).numpy()
    for j in range(5):
        np.testing.assert_allclose(batched[j], augment(waves[j], 10 + j).numpy(), atol=1e-6)


def test_augmenter_applies_each_transform_with_its_probability():
    policy = WaveformAugmentPolicy(gain_prob=0.3, gain_db=(6.0, 6.0))
    augment = make_waveform_augmenter(policy, base_seed=0, sample_rate=SR)
    x = np.ones((16, 1), np.float32)
    dataset = tf.data.Dataset.range(1000).map(lambda i: augment(tf.constant(x), i))
    changed = np.array([not np.allclose(v, 1.0) for v in dataset.as_numpy_iterator()])
    assert 0.25 < changed.mean() < 0.35
    assert dataclasses.replace(policy, gain_prob=0.0).enabled is False


# --------------------------------------------------------------------------------------------
# AclNet's steps (Huang & Leanos 2018, Sec. 3.2): window, standardize, resample, crop, gain
# --------------------------------------------------------------------------------------------

ACL_RATE = 8000  # 2 s window = 16000 samples, 1.5 s crop = 12000
ACLNET = dict(window_s=2.0, standardize=True, speed_prob=1.0, speed_distribution="uniform", crop_s=1.5,
              gain_prob=1.0, gain_db=(-6.0, 6.0))


def slice_start(whole, part):
    """Where ``part`` (distinct float values) starts in ``whole``; asserts it is that contiguous slice."""
    (start,) = np.flatnonzero(whole[:, 0] == part[0, 0])
    np.testing.assert_array_equal(part, whole[start : start + len(part)])
    return start


def numpy_standardize(x):
    wide = x.astype(np.float64)
    return ((wide - wide.mean()) / wide.std()).astype(np.float32)


def test_random_crop_is_a_uniformly_placed_slice_and_pads_short_clips():
    x = white(1000, channels=2)
    starts = {slice_start(x, random_crop(x, 990, seed(i)).numpy()) for i in range(60)}
    assert starts <= set(range(11)) and len(starts) >= 8  # 11 possible starts, all whole samples
    short = random_crop(x[:300], 400, seed(1)).numpy()
    np.testing.assert_array_equal(short, np.pad(x[:300], ((0, 100), (0, 0))))
    traced = tf.function(lambda v: random_crop(v, 64, seed(0))).get_concrete_function(tf.TensorSpec([None, 2]))
    assert traced.output_shapes == tf.TensorShape([64, 2])


def test_standardize_gives_zero_mean_unit_variance_over_all_channels():
    x = white(3000, channels=2) * np.float32([0.1, 3.0]) + np.float32([2.0, -1.0])
    out = standardize(x).numpy()
    np.testing.assert_allclose(out, numpy_standardize(x), atol=1e-5)
    assert abs(out.mean()) < 1e-6 and abs(out.std() - 1.0) < 1e-5
    np.testing.assert_array_equal(standardize(np.zeros((50, 1), np.float32)).numpy(), 0.0)  # floored, no NaN


def test_aclnet_window_and_standardize_are_a_slice_of_the_clip_standardized():
    x = white(3 * ACL_RATE, seed=4, channels=1)
    window = make_waveform_augmenter(WaveformAugmentPolicy(window_s=2.0), 9, ACL_RATE)
    both = make_waveform_augmenter(WaveformAugmentPolicy(window_s=2.0, standardize=True), 9, ACL_RATE)
    for i in (0, 1):
        start = slice_start(x, window(x, i).numpy())
        assert window(x, i).shape == (16000, 1)
        expected = numpy_standardize(x[start : start + 16000])
        np.testing.assert_allclose(both(x, i).numpy(), expected, atol=1e-5)  # the same window draw


def best_gain_and_offset(out, reference):
    """The offset ``c`` and gain ``g`` minimizing ``|out - g reference[c : c + len(out)]|``, and the residual."""
    windows = np.lib.stride_tricks.sliding_window_view(reference.astype(np.float64), len(out))
    gains = windows @ out / np.einsum("ij,ij->i", windows, windows)
    errors = np.sum(out.astype(np.float64) ** 2) - gains * (windows @ out)
    c = int(np.argmin(errors))
    return c, gains[c], float(np.sqrt(max(errors[c], 0.0) / np.sum(out.astype(np.float64) ** 2)))


def test_aclnet_chain_crops_the_resampled_window_and_applies_a_gain():
    """Speed 1.25 (the fastest): the 2 s window resamples to 1.6 s, so the 1.5 s crop never reaches
    padding; the crop is a slice of scipy's resampling of the standardized window, times the gain."""
    x = white(3 * ACL_RATE, seed=5, channels=1)
    policy = WaveformAugmentPolicy(**{**ACLNET, "speed_range": (1.25, 1.25)})
    augment = make_waveform_augmenter(policy, 2, ACL_RATE)
    window = make_waveform_augmenter(WaveformAugmentPolicy(window_s=2.0), 2, ACL_RATE)
    big, small = (int(v) for v in resample_sizes(16000, 1.25))
    gains = []
    for i in range(4):
        out = augment(x, i).numpy()
        assert out.shape == (12000, 1) and policy.output_samples(len(x), ACL_RATE) == 12000
        standardized = numpy_standardize(x[slice_start(x, window(x, i).numpy()):][:16000])[:, 0]
        resampled = scipy.signal.resample(np.pad(standardized, (0, big - 16000)).astype(np.float64), small)
        resampled = resampled[: round(16000 * small / big)]  # the samples that come from the window
        c, g, residual = best_gain_and_offset(out[:, 0], resampled)
        assert residual < 1e-4
        gains.append(20 * np.log10(g))
        assert np.all(out[-20:] != 0.0)  # no zero padding at the end (fitting to 2 s would put some)
    assert all(-6.0 <= db <= 6.0 for db in gains) and np.ptp(gains) > 0.5
    np.testing.assert_array_equal(augment(x, 3).numpy(), make_waveform_augmenter(policy, 2, ACL_RATE)(x, 3).numpy())
    assert not np.allclose(augment(x, 3).numpy(), augment(x, 4).numpy())


def test_aclnet_speed_factors_are_uniform_and_the_batch_is_cropped():
    policy = WaveformAugmentPolicy(**{**ACLNET, "speed_range": (0.8, 1.25)})
    augment = make_waveform_augmenter(policy, 0, ACL_RATE)
    clips = np.stack([white(3 * ACL_RATE, seed=i, channels=1) for i in range(3)])
    batched = tf.function(lambda v: augment_batch(augment, v, 7))(tf.constant(clips))
    assert batched.shape == (3, 12000, 1)
    for j in range(3):
        np.testing.assert_allclose(batched[j].numpy(), augment(clips[j], 7 + j).numpy(), atol=1e-6)
    # The drawn factors, from the resampled lengths (a crop longer than them: no fitting back,
    # zero padding after). Uniform on [0.5, 2]: mean 1.25, a third below 1 (log-uniform: 1.08, a half).
    x = tf.constant(white(1000, channels=1))
    speed = make_waveform_augmenter(WaveformAugmentPolicy(speed_prob=1.0, speed_range=(0.5, 2.0),
                                                          speed_distribution="uniform", crop_s=1.0), 0, ACL_RATE)
    lengths = tf.data.Dataset.range(400).map(lambda i: tf.math.count_nonzero(speed(x, i)))
    factors = 1000 / np.fromiter(lengths.as_numpy_iterator(), float)
    assert factors.min() > 0.49 and factors.max() < 2.01
    assert abs(factors.mean() - 1.25) < 0.06 and abs(np.mean(factors < 1.0) - 1 / 3) < 0.07


def test_aclnet_policy_fields_validate_and_enable():
    assert WaveformAugmentPolicy(crop_s=1.5).enabled and WaveformAugmentPolicy(window_s=2.0).enabled
    assert WaveformAugmentPolicy(standardize=True).enabled
    assert WaveformAugmentPolicy(window_s=2.0).output_samples(44100, 16000) == 32000
    assert WaveformAugmentPolicy().output_samples(44100, 16000) == 44100
    assert WaveformAugmentPolicy(window_s=1.0, crop_s=2.0).output_samples(5, 100) == 200
    for bad, match in (
        (dict(crop_s=0.0), "augment.waveform.crop_s: expected seconds > 0"),
        (dict(window_s=-1.0), "augment.waveform.window_s: expected seconds > 0"),
        (dict(speed_distribution="normal"), "augment.waveform.speed_distribution: expected one of"),
        (dict(standardize=1), "augment.waveform.standardize: expected true or false"),
    ):
        with pytest.raises(ValueError, match=match):
            WaveformAugmentPolicy(**bad)

"""tfasc.data.features against librosa 0.11 (the reference the tfasc features promise to match).

The rule: within 0.1 dB of ``librosa.power_to_db(librosa.feature.melspectrogram(...))`` on every
bin above ``max - 80 dB`` of the clip. Clips are at most 1 s so that each case takes milliseconds.
"""

from __future__ import annotations

import librosa
import numpy as np
import pytest

import tfasc  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf

from tfasc.data import features

TOLERANCE_DB = 0.1
COMPARED_RANGE_DB = 80.0


# ----------------------------------------------------------------------------------------------
# Test signals: [samples, channels] float32, different content per channel


def _time(sample_rate: int, seconds: float) -> np.ndarray:
    return np.arange(int(sample_rate * seconds)) / sample_rate


def white_noise(sample_rate: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(1)
    return 0.1 * rng.standard_normal((int(sample_rate * seconds), 2))


def sum_of_sines(sample_rate: int, seconds: float) -> np.ndarray:
    t = _time(sample_rate, seconds)
    left = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3100 * t + 1.0)
    right = 0.5 * np.sin(2 * np.pi * 1234 * t) + 0.05 * np.sin(2 * np.pi * 150 * t)
    return np.stack([left, right], axis=-1)


def chirp(sample_rate: int, seconds: float) -> np.ndarray:
    t = _time(sample_rate, seconds)
    top = 0.45 * sample_rate  # sweep up to 90 % of Nyquist
    left = 0.5 * np.sin(2 * np.pi * (50 * t + (top - 50) / (2 * seconds) * t**2))
    right = 0.2 * np.sin(2 * np.pi * (top * t - (top - 50) / (2 * seconds) * t**2))
    return np.stack([left, right], axis=-1)


def low_level(sample_rate: int, seconds: float) -> np.ndarray:
    """-60 dBFS peak: a sine plus a little noise, so float32 rounding matters more."""
    t = _time(sample_rate, seconds)
    rng = np.random.default_rng(2)
    left = 0.8e-3 * np.sin(2 * np.pi * 300 * t) + 0.2e-3 * rng.uniform(-1, 1, t.size)
    right = 0.8e-3 * np.sin(2 * np.pi * 2500 * t) + 0.2e-3 * rng.uniform(-1, 1, t.size)
    return np.stack([left, right], axis=-1)


def silence_padded(sample_rate: int, seconds: float) -> np.ndarray:
    """Sines with digital silence at both ends: floors at ``amin`` and the ``top_db`` clamp."""
    signal = sum_of_sines(sample_rate, seconds)
    quarter = signal.shape[0] // 4
    signal[:quarter] = 0.0
    signal[-quarter:] = 0.0
    signal[:, 1] *= 1e-2  # the right channel 40 dB quieter: the clamp is shared by both channels
    return signal


SIGNALS = {
    "white_noise": white_noise,
    "sum_of_sines": sum_of_sines,
    "chirp": chirp,
    "low_level": low_level,
    "silence_padded": silence_padded,
}

# name -> (clip seconds, log_mel_spectrogram keyword arguments)
CONFIGS = {
    "48k_256mel": (1.0, dict(sample_rate=48000, n_fft=2048, hop_length=512, n_mels=256)),
    "48k_64mel_reflect": (
        1.0,
        dict(sample_rate=48000, n_fft=2048, hop_length=512, n_mels=64, pad_mode="reflect"),
    ),
    "16k_64mel": (1.0, dict(sample_rate=16000, n_fft=512, hop_length=160, n_mels=64)),
    "16k_reflect_win400_hamming": (
        1.0,
        dict(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=40,
             window="hamming", pad_mode="reflect"),
    ),
    "48k_win1200_band": (
        0.5,
        dict(sample_rate=48000, n_fft=2048, win_length=1200, hop_length=480, n_mels=128,
             fmin=50.0, fmax=14000.0),
    ),
    "16k_magnitude": (
        1.0, dict(sample_rate=16000, n_fft=512, hop_length=160, n_mels=64, power=1.0)
    ),
    # ERANN Sec. 3.1: 44.1 kHz, Hann 1380 (a non-power-of-two FFT), hop 345, 128 mels, 50-14,000 Hz.
    "44k1_erann": (
        1.0,
        dict(sample_rate=44100, n_fft=1380, hop_length=345, n_mels=128, fmin=50.0, fmax=14000.0, top_db=None),
    ),
    "16k_no_center_no_clamp": (
        1.0,
        dict(sample_rate=16000, n_fft=512, hop_length=256, n_mels=64, center=False, top_db=None),
    ),
}


def librosa_log_mel(channels_first: np.ndarray, **kwargs) -> np.ndarray:
    """The reference: librosa on a ``[channels, samples]`` (or ``[samples]``) float32 array."""
    kwargs = dict(kwargs)
    sample_rate = kwargs.pop("sample_rate")
    amin = kwargs.pop("amin", 1e-10)
    top_db = kwargs.pop("top_db", 80.0)
    kwargs.setdefault("pad_mode", "constant")
    mel = librosa.feature.melspectrogram(
        y=channels_first.astype(np.float32), sr=sample_rate, htk=False, norm="slaney", **kwargs
    )
    return librosa.power_to_db(mel, ref=1.0, amin=amin, top_db=top_db)


def max_deviation_db(ours: np.ndarray, reference: np.ndarray) -> float:
    """Largest |ours - reference| over bins where the reference is above its max - 80 dB."""
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    compared = reference > reference.max() - COMPARED_RANGE_DB
    assert compared.mean() > 0.05, "too few bins above the range to make the comparison mean much"
    return float(np.abs(ours - reference)[compared].max())


def channels_first(features_mtc: np.ndarray) -> np.ndarray:
    """``[n_mels, frames, channels]`` -> librosa's ``[channels, n_mels, frames]``."""
    return np.transpose(features_mtc, (2, 0, 1))


# ----------------------------------------------------------------------------------------------
# Mel filter bank and frame count


@pytest.mark.parametrize(
    "sample_rate, n_fft, n_mels, fmin, fmax",
    [
        (48000, 2048, 256, 0.0, None),
        (48000, 2048, 64, 0.0, None),
        (16000, 512, 64, 0.0, None),
        (44100, 1380, 128, 50.0, 14000.0),
        (22050, 1024, 40, 300.0, 8000.0),
    ],
)
def test_mel_filterbank_matches_librosa_slaney(sample_rate, n_fft, n_mels, fmin, fmax):
    ours = features.mel_filterbank(
        sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax
    )
    reference = librosa.filters.mel(
        sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False, norm="slaney"
    )
    assert ours.shape == (n_fft // 2 + 1, n_mels)
    np.testing.assert_allclose(ours.T, reference, rtol=1e-5, atol=1e-7 * reference.max())


def test_mel_filterbank_warns_of_empty_bands_as_librosa():
    with pytest.warns(UserWarning, match="empty"):
        features.mel_filterbank(sample_rate=16000, n_fft=256, n_mels=128)
    with pytest.warns(UserWarning, match="[Ee]mpty filters"):
        librosa.filters.mel(sr=16000, n_fft=256, n_mels=128)


@pytest.mark.filterwarnings("ignore:n_fft=.* is too large")  # librosa, on clips below n_fft
@pytest.mark.parametrize("num_samples", [1, 511, 512, 513, 16000, 48000, 48001])
@pytest.mark.parametrize("n_fft, hop_length", [(512, 160), (2048, 512), (400, 400), (511, 100)])
@pytest.mark.parametrize("center", [True, False])
def test_num_frames_matches_librosa_stft(num_samples, n_fft, hop_length, center):
    if not center and num_samples < n_fft:
        with pytest.raises(ValueError, match="too few"):
            features.num_frames(num_samples, n_fft=n_fft, hop_length=hop_length, center=center)
        return
    stft = librosa.stft(
        np.zeros(num_samples, np.float32), n_fft=n_fft, hop_length=hop_length, center=center
    )
    assert (
        features.num_frames(num_samples, n_fft=n_fft, hop_length=hop_length, center=center)
        == stft.shape[-1]
    )


@pytest.mark.parametrize("seconds", [1, 2, 3, 4, 5, 8, 10])
def test_erann_frame_count_is_128_per_second_up_to_5_s(seconds):
    # ERANN Sec. 3.1: "integer t <= 5 yields T_s = 128 t"; longer clips are one frame short and
    # the model pads them (tfasc.layers.erann.TimePadding). Eq. 1 prints ceil(sr t / H) + 1, which
    # would give 129 frames for t = 1; librosa's (and the paper's stated) count is floor + 1.
    ours = features.num_frames(44100 * seconds, n_fft=1380, hop_length=345, center=True)
    assert ours == librosa.stft(np.zeros(44100 * seconds, np.float32), n_fft=1380, hop_length=345).shape[1]
    assert (ours == 128 * seconds) == (seconds <= 5)


# ----------------------------------------------------------------------------------------------
# Parity with librosa


@pytest.mark.parametrize("signal_name", sorted(SIGNALS))
@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_stereo_log_mel_within_0p1_db_of_librosa(signal_name, config_name):
    seconds, kwargs = CONFIGS[config_name]
    waveform = SIGNALS[signal_name](kwargs["sample_rate"], seconds).astype(np.float32)

    ours = features.log_mel_spectrogram(waveform, **kwargs).numpy()  # [n_mels, frames, 2]
    reference = librosa_log_mel(waveform.T, **kwargs)  # [2, n_mels, frames]

    assert max_deviation_db(channels_first(ours), reference) < TOLERANCE_DB


@pytest.mark.parametrize("signal_name", ["chirp", "low_level", "silence_padded"])
@pytest.mark.parametrize("config_name", ["48k_256mel", "16k_64mel"])
def test_mono_log_mel_within_0p1_db_of_librosa(signal_name, config_name):
    seconds, kwargs = CONFIGS[config_name]
    mono = SIGNALS[signal_name](kwargs["sample_rate"], seconds)[:, 0].astype(np.float32)

    ours = features.log_mel_spectrogram(mono, **kwargs).numpy()  # [samples] in
    reference = librosa_log_mel(mono, **kwargs)  # [n_mels, frames]

    assert ours.shape == reference.shape + (1,)
    assert max_deviation_db(ours[..., 0], reference) < TOLERANCE_DB


def test_top_db_clamp_shared_by_channels_as_librosa():
    seconds, kwargs = CONFIGS["48k_256mel"]
    waveform = silence_padded(48000, seconds).astype(np.float32)
    ours = features.log_mel_spectrogram(waveform, **kwargs).numpy()
    # The floor is max - 80 dB over both channels, in every bin (silence included).
    assert ours.min() == pytest.approx(ours.max() - 80.0, abs=1e-3)
    np.testing.assert_allclose(
        channels_first(ours), librosa_log_mel(waveform.T, **kwargs), atol=TOLERANCE_DB
    )


@pytest.mark.parametrize("sample_rate, n_fft, hop_length", [(48000, 2048, 512), (16000, 512, 160)])
def test_channel_mode_mono_is_librosa_on_the_channel_mean(sample_rate, n_fft, hop_length):
    stereo = sum_of_sines(sample_rate, 0.5).astype(np.float32)
    kwargs = dict(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=64)

    ours = features.log_mel_spectrogram(stereo, channel_mode="mono", **kwargs).numpy()
    reference = librosa_log_mel(stereo.mean(axis=1), **kwargs)

    assert ours.shape == reference.shape + (1,)
    assert max_deviation_db(ours[..., 0], reference) < TOLERANCE_DB


@pytest.mark.parametrize("signal_name", ["white_noise", "sum_of_sines", "chirp"])
def test_channel_mode_mid_side_is_librosa_on_average_and_difference(signal_name):
    kwargs = dict(sample_rate=48000, n_fft=2048, hop_length=512, n_mels=128)
    stereo = SIGNALS[signal_name](48000, 0.5).astype(np.float32)
    left, right = stereo[:, 0], stereo[:, 1]
    mid_side = np.stack([(left + right) / 2, (left - right) / 2])  # [2, samples]

    ours = features.log_mel_spectrogram(stereo, channel_mode="mid_side", **kwargs).numpy()
    reference = librosa_log_mel(mid_side, **kwargs)

    assert max_deviation_db(channels_first(ours), reference) < TOLERANCE_DB


# ----------------------------------------------------------------------------------------------
# Layouts, batching, graph mode


def _three_examples(sample_rate: int = 16000) -> np.ndarray:
    """``[3, samples, 2]``, loudness 40 dB apart so that a batch-wide clamp would show."""
    return np.stack(
        [
            silence_padded(sample_rate, 0.5),
            0.01 * chirp(sample_rate, 0.5),
            white_noise(sample_rate, 0.5),
        ]
    ).astype(np.float32)


KWARGS_16K = dict(sample_rate=16000, n_fft=512, hop_length=160, n_mels=64)


def test_batched_equals_each_example_and_librosa_per_example():
    batch = _three_examples()
    ours = features.log_mel_spectrogram(batch, **KWARGS_16K).numpy()
    assert ours.shape == (3, 64, features.num_frames(8000, n_fft=512, hop_length=160), 2)
    for index, example in enumerate(batch):
        np.testing.assert_allclose(
            ours[index], features.log_mel_spectrogram(example, **KWARGS_16K).numpy(), atol=1e-4
        )
        reference = librosa_log_mel(example.T, **KWARGS_16K)
        assert max_deviation_db(channels_first(ours[index]), reference) < TOLERANCE_DB


def test_batch_of_mono_clips_needs_batched_true():
    batch = _three_examples()[:, :, 0]  # [batch, samples]
    ours = features.log_mel_spectrogram(batch, batched=True, **KWARGS_16K).numpy()
    assert ours.shape[0] == 3 and ours.shape[-1] == 1
    for index, clip in enumerate(batch):
        reference = librosa_log_mel(clip, **KWARGS_16K)
        assert max_deviation_db(ours[index, ..., 0], reference) < TOLERANCE_DB
    # Unflagged, rank 2 means [samples, channels]: a short wide array is refused, not misread.
    with pytest.raises(ValueError, match="batched=True"):
        features.log_mel_spectrogram(batch, **KWARGS_16K)


def test_graph_mode_and_dataset_map_give_static_shapes_and_eager_values():
    batch = _three_examples()
    expected = features.log_mel_spectrogram(batch, **KWARGS_16K).numpy()
    frames = features.num_frames(batch.shape[1], n_fft=512, hop_length=160)

    graph_fn = tf.function(lambda x: features.log_mel_spectrogram(x, **KWARGS_16K))
    np.testing.assert_allclose(graph_fn(tf.constant(batch)).numpy(), expected, atol=1e-4)

    dataset = tf.data.Dataset.from_tensor_slices(batch).map(
        lambda example: features.log_mel_spectrogram(example, **KWARGS_16K)
    )
    assert dataset.element_spec.shape == (64, frames, 2)
    per_example = np.stack([x.numpy() for x in dataset])
    np.testing.assert_allclose(per_example, expected, atol=1e-4)

    batched_dataset = tf.data.Dataset.from_tensor_slices(batch).batch(3, drop_remainder=True).map(
        lambda examples: features.log_mel_spectrogram(examples, **KWARGS_16K)
    )
    assert batched_dataset.element_spec.shape == (3, 64, frames, 2)


def test_unknown_sample_count_in_graph_mode():
    graph_fn = tf.function(
        lambda x: features.log_mel_spectrogram(x, **KWARGS_16K),
        input_signature=[tf.TensorSpec([None, 2], tf.float32)],
    )
    example = white_noise(16000, 0.3).astype(np.float32)
    np.testing.assert_allclose(
        graph_fn(example).numpy(),
        features.log_mel_spectrogram(example, **KWARGS_16K).numpy(),
        atol=1e-4,
    )


# ----------------------------------------------------------------------------------------------
# Parameter and input errors


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(n_fft=0), "n_fft"),
        (dict(hop_length=-1), "hop_length"),
        (dict(win_length=1024), "win_length"),
        (dict(fmax=9000.0), "fmax"),
        (dict(fmin=-1.0), "fmin"),
        (dict(fmin=5000.0, fmax=4000.0), "fmin"),
        (dict(n_mels=0), "n_mels"),
        (dict(window="kaiser"), "window"),
        (dict(pad_mode="wrap"), "pad_mode"),
        (dict(channel_mode="left"), "channel_mode"),
        (dict(power=0.0), "power"),
        (dict(amin=0.0), "amin"),
        (dict(top_db=-10.0), "top_db"),
        (dict(sample_rate=0), "sample_rate"),
    ],
)
def test_bad_parameters_raise_value_error_naming_them(bad, message):
    kwargs = dict(KWARGS_16K, **bad)
    with pytest.raises(ValueError, match=message):
        features.log_mel_spectrogram(np.zeros((4000, 2), np.float32), **kwargs)


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="mid_side"):
        features.log_mel_spectrogram(np.zeros((4000, 3), np.float32), channel_mode="mid_side",
                                     **KWARGS_16K)
    with pytest.raises(ValueError, match="dtype"):
        features.log_mel_spectrogram(np.zeros((4000, 2), np.int16), **KWARGS_16K)
    with pytest.raises(ValueError, match="too few"):
        features.log_mel_spectrogram(np.zeros((300, 2), np.float32), center=False, **KWARGS_16K)
    with pytest.raises(ValueError, match="shape"):
        features.log_mel_spectrogram(np.zeros((1, 2, 4000, 2), np.float32), **KWARGS_16K)
    with pytest.raises(ValueError, match="fmax"):
        features.mel_filterbank(sample_rate=16000, n_fft=512, n_mels=64, fmax=8001.0)

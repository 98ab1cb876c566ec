"""tfasc.layers.frontend.LogMelSpectrogram: same numbers as the feature function and librosa,
shapes, config and ``.keras`` round trips."""

from __future__ import annotations


import librosa
import numpy as np
import pytest

import tfasc  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras

from tfasc.data import features
from tfasc.layers.frontend import LogMelSpectrogram
from support.layer_test import run_layer_test

SAMPLE_RATE = 16000
SAMPLES = 8000
ARGUMENTS = dict(sample_rate=SAMPLE_RATE, n_fft=512, hop_length=160, n_mels=48, fmin=20.0)
FRAMES = 1 + SAMPLES // 160  # librosa, center=True: 1 + (samples + 2 * 256 - 512) // hop


def _stereo_batch(batch: int = 2) -> np.ndarray:
    """``[batch, samples, 2]``: a tone per channel plus noise, each example at its own level."""
    t = np.arange(SAMPLES) / SAMPLE_RATE
    rng = np.random.default_rng(0)
    examples = []
    for index in range(batch):
        gain = 10.0 ** (-2 * index)
        left = np.sin(2 * np.pi * (300 + 200 * index) * t)
        right = 0.5 * np.sin(2 * np.pi * 2500 * t) + 0.1 * rng.standard_normal(SAMPLES)
        examples.append(gain * np.stack([left, right], axis=-1))
    return np.stack(examples).astype(np.float32)


def test_layer_output_is_the_feature_function_and_matches_librosa():
    batch = _stereo_batch()
    layer = LogMelSpectrogram(**ARGUMENTS)
    ours = layer(batch).numpy()
    np.testing.assert_allclose(
        ours, features.log_mel_spectrogram(batch, **ARGUMENTS).numpy(), atol=1e-5
    )
    for index, example in enumerate(batch):
        reference = librosa.power_to_db(
            librosa.feature.melspectrogram(
                y=example.T, sr=SAMPLE_RATE, n_fft=512, hop_length=160, n_mels=48, fmin=20.0
            ),
            ref=1.0, amin=1e-10, top_db=80.0,
        )
        compared = reference > reference.max() - 80.0
        deviation = np.abs(np.transpose(ours[index], (2, 0, 1)) - reference)[compared]
        assert deviation.max() < 0.1


@pytest.mark.parametrize(
    "input_shape, channel_mode, channels",
    [
        ((SAMPLES,), "keep", 1),  # [batch, samples]: mono
        ((SAMPLES, 1), "keep", 1),
        ((SAMPLES, 2), "keep", 2),
        ((SAMPLES, 2), "mono", 1),
        ((SAMPLES, 2), "mid_side", 2),
    ],
)
def test_output_shape_and_compute_output_shape(input_shape, channel_mode, channels):
    layer = LogMelSpectrogram(channel_mode=channel_mode, **ARGUMENTS)
    waveform = np.random.default_rng(1).uniform(-0.5, 0.5, (3,) + input_shape).astype(np.float32)
    output = layer(waveform)
    assert output.shape == (3, 48, FRAMES, channels)
    assert layer.compute_output_shape((3,) + input_shape) == (3, 48, FRAMES, channels)
    unknown_samples = layer.compute_output_shape((None, None, 2)).as_list()
    assert unknown_samples == [None, 48, None, 1 if channel_mode == "mono" else 2]


def test_mono_batch_matches_librosa_on_each_clip():
    clips = _stereo_batch()[:, :, 1]  # [batch, samples]
    ours = LogMelSpectrogram(**ARGUMENTS)(clips).numpy()
    for index, clip in enumerate(clips):
        reference = librosa.power_to_db(
            librosa.feature.melspectrogram(
                y=clip, sr=SAMPLE_RATE, n_fft=512, hop_length=160, n_mels=48, fmin=20.0
            ),
            ref=1.0, top_db=80.0,
        )
        compared = reference > reference.max() - 80.0
        assert np.abs(ours[index, ..., 0] - reference)[compared].max() < 0.1


def test_layer_is_fixed():
    layer = LogMelSpectrogram(**ARGUMENTS)
    layer(_stereo_batch())
    assert not layer.trainable
    assert layer.weights == []
    assert not LogMelSpectrogram.from_config(dict(layer.get_config(), trainable=True)).trainable


def test_get_config_returns_every_argument_and_round_trips():
    arguments = dict(
        sample_rate=48000, n_fft=1024, win_length=960, hop_length=480, window="hamming",
        center=False, pad_mode="reflect", n_mels=96, fmin=30.0, fmax=20000.0, power=1.0,
        amin=1e-8, top_db=None, channel_mode="mid_side",
    )
    layer = LogMelSpectrogram(name="frontend", **arguments)
    config = layer.get_config()
    # Every log-mel parameter (features.LogMelParams, the one place of their defaults) is an argument.
    assert {"sample_rate", *features.LogMelParams.names()} == set(arguments)
    assert {key: config[key] for key in arguments} == arguments

    clone = LogMelSpectrogram.from_config(config)
    assert clone.get_config() == config
    waveform = np.random.default_rng(2).uniform(-1, 1, (1, 4800, 2)).astype(np.float32)
    np.testing.assert_array_equal(layer(waveform).numpy(), clone(waveform).numpy())


def test_bad_arguments_fail_at_construction():
    with pytest.raises(ValueError, match="win_length"):
        LogMelSpectrogram(sample_rate=16000, n_fft=256, win_length=400)
    with pytest.raises(ValueError, match="channel_mode"):
        LogMelSpectrogram(sample_rate=16000, channel_mode="surround")
    with pytest.raises(ValueError, match="fmax"):
        LogMelSpectrogram(sample_rate=16000, fmax=12000.0)


def test_keras_save_and_load_round_trip(tmp_path):
    inputs = keras.Input((SAMPLES, 2), name="waveform")  # [batch, samples, channels]
    x = LogMelSpectrogram(channel_mode="mid_side", name="log_mel", **ARGUMENTS)(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(3, name="logits")(x)
    model = keras.Model(inputs, outputs)
    batch = _stereo_batch()
    expected = model(batch).numpy()

    path = tmp_path / "frontend.keras"
    model.save(path)
    restored = keras.models.load_model(path)

    assert isinstance(restored.get_layer("log_mel"), LogMelSpectrogram)
    assert restored.get_layer("log_mel").get_config() == model.get_layer("log_mel").get_config()
    np.testing.assert_array_equal(restored(batch).numpy(), expected)
    assert restored.get_layer("log_mel").compute_output_shape((None, SAMPLES, 2)) == (
        None, 48, FRAMES, 2
    )
    tf.debugging.assert_equal(
        restored.get_layer("log_mel")(batch), model.get_layer("log_mel")(batch)
    )


def test_layer_contract_end_to_end():
    # The float front-end: float checks, QAT refuses it by name, float TFLite matches (see the helper).
    def librosa_reference(waveforms, layer):
        spectra = [
            librosa.power_to_db(
                librosa.feature.melspectrogram(y=clip[:, 0], sr=SAMPLE_RATE, n_fft=512, hop_length=160, n_mels=48, fmin=20.0),
                ref=1.0, amin=1e-10, top_db=80.0,
            )
            for clip in waveforms
        ]
        return np.stack(spectra)[..., np.newaxis]  # [batch, n_mels, frames, 1]

    run_layer_test(
        cls=LogMelSpectrogram,
        init_kwargs=dict(name="log_mel", **ARGUMENTS),
        input_data=_stereo_batch()[:, :, :1],  # [batch, samples, 1]
        expected_output_shape=(2, 48, FRAMES, 1),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        reference=librosa_reference,
        reference_atol=0.1,  # dB; float32 STFT vs librosa's float64 (see the librosa test above)
        reference_rtol=0.0,
    )

"""Audio decoding against soundfile (libsndfile) as the independent reader."""

import numpy as np
import pytest
import soundfile as sf

from tfasc.data.audio import AudioDecodeError, convert_channels, decode_audio, fit_length, load_audio


def tone(rate=16000, seconds=0.25, channels=2):
    t = np.arange(int(rate * seconds)) / rate
    columns = [0.5 * np.sin(2 * np.pi * (440 + 110 * c) * t) for c in range(channels)]
    return np.stack(columns, axis=1).astype(np.float32)


@pytest.mark.parametrize("subtype, fmt, ext", [("PCM_16", "WAV", "wav"), ("PCM_24", "WAV", "wav"), ("FLOAT", "WAV", "wav"), ("PCM_16", "FLAC", "flac")])
def test_decode_matches_libsndfile(tmp_path, subtype, fmt, ext):
    path = tmp_path / f"x.{ext}"
    sf.write(path, tone(), 16000, subtype=subtype, format=fmt)
    reference, rate = sf.read(path, dtype="float32", always_2d=True)
    audio, got_rate = decode_audio(path)
    assert got_rate == rate == 16000
    np.testing.assert_allclose(audio.numpy(), reference, atol=1e-6)


def test_resample_channels_and_length(tmp_path):
    path = tmp_path / "mono.wav"
    sf.write(path, tone(rate=22050, seconds=0.5, channels=1), 22050, subtype="PCM_16")
    out = load_audio(path, sample_rate=16000, channels=2, num_samples=12000)
    assert out.shape == (12000, 2)
    np.testing.assert_array_equal(out[:, 0], out[:, 1])
    assert np.all(out[8000 + 50 :] == 0)  # 0.5 s at 16 kHz = 8000 samples, then zero padding
    # 440 Hz survives resampling: the spectral peak of the resampled signal sits at 440 Hz.
    spectrum = np.abs(np.fft.rfft(out[:8000, 0]))
    assert abs(np.argmax(spectrum) * 16000 / 8000 - 440) <= 2


def test_convert_channels_and_fit_length():
    stereo = np.array([[1.0, 3.0], [2.0, 4.0]], np.float32)
    np.testing.assert_allclose(convert_channels(stereo, 1).numpy(), [[2.0], [3.0]])
    np.testing.assert_allclose(fit_length(stereo, 1).numpy(), [[1.0, 3.0]])
    np.testing.assert_allclose(fit_length(stereo, 3).numpy(), [[1.0, 3.0], [2.0, 4.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="cannot convert 3-channel audio to 2 channels"):
        convert_channels(np.zeros((2, 3), np.float32), 2)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "file is empty"),
        (b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk", "not decodable audio"),
        (b"this is a text file, not audio at all" * 10, "not decodable audio"),
    ],
)
def test_bad_files_name_path_and_reason(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioDecodeError) as error:
        decode_audio(path)
    assert str(path) in str(error.value) and reason in str(error.value)


def test_truncated_wav(tmp_path):
    path = tmp_path / "cut.wav"
    sf.write(path, tone(), 16000, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(AudioDecodeError, match="cut.wav"):
        decode_audio(path)


def test_missing_file(tmp_path):
    with pytest.raises(AudioDecodeError, match="cannot read file"):
        decode_audio(tmp_path / "absent.wav")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_name_the_file(tmp_path, bad):
    audio = tone()
    audio[[3, 50, 51], [0, 1, 1]] = bad
    path = tmp_path / "float.wav"
    sf.write(path, audio, 16000, subtype="FLOAT")  # float WAV: decoded by tensorflow-io
    count = int((~np.isfinite(sf.read(path, dtype="float32")[0])).sum())
    assert count == 3
    with pytest.raises(AudioDecodeError) as error:
        load_audio(path, sample_rate=16000, channels=2, num_samples=4000)
    assert error.value.path == str(path)
    assert error.value.reason == f"contains non-finite samples ({count} NaN/inf values)"

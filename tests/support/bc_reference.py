"""Between-class mixing (Tokozume, Ushiku & Harada 2018, Sec. 3.3.2) written out in numpy after
the authors' ``utils.compute_gain`` / ``utils.mix`` (``mil-tokyo/bc_learning_sound``), with
``librosa.A_weighting``: the independent reference of ``tfasc.augment.between_class``."""

from __future__ import annotations

import librosa
import numpy as np


def numpy_gain_db(sound: np.ndarray, sample_rate: int, n_fft: int, min_db: float = -80.0) -> float:
    """Max over frames (``n_fft``, hop ``n_fft // 2``) of the A-weighted frame power, in dB.

    ``sound``: ``[samples]`` or ``[samples, channels]`` (the channels' mean); shorter than one
    frame: zero-padded to one."""
    sound = np.asarray(sound, np.float64)
    if sound.ndim == 2:
        sound = sound.mean(axis=1)
    sound = np.pad(sound, (0, max(n_fft - len(sound), 0)))
    with np.errstate(divide="ignore"):
        weight_db = librosa.A_weighting(np.fft.rfftfreq(n_fft, 1.0 / sample_rate), min_db=min_db)
    weight = np.power(10.0, weight_db / 10.0)
    window = np.hanning(n_fft + 1)[:-1]
    gains = [np.sum(np.abs(np.fft.rfft(window * sound[i: i + n_fft])) ** 2 * weight)
             for i in range(0, len(sound) - n_fft + 1, n_fft // 2)]
    return float(10.0 * np.log10(max(max(gains), 10.0 ** (min_db / 10.0))))


def numpy_bc_mix(sound1, sound2, r: float, sample_rate: int, n_fft: int) -> np.ndarray:
    """``(p x1 + (1 - p) x2) / sqrt(p^2 + (1 - p)^2)``, ``p = 1 / (1 + 10^((G1 - G2) / 20) (1 - r) / r)``."""
    g1, g2 = numpy_gain_db(sound1, sample_rate, n_fft), numpy_gain_db(sound2, sample_rate, n_fft)
    p = 1.0 / (1.0 + 10.0 ** ((g1 - g2) / 20.0) * (1.0 - r) / r)
    return (p * np.asarray(sound1, np.float64) + (1.0 - p) * np.asarray(sound2, np.float64)) / np.sqrt(p ** 2 + (1 - p) ** 2)

"""Log-mel speed: tfasc (tf.signal, graph mode) against librosa on one 10 s stereo 48 kHz clip.

Run: ``python benchmarks/bench_features.py [--repeats-tfasc 20] [--repeats-librosa 5]``.
Settings are those of the DCASE stereo systems (DCASE 2020 1B report, entry Chang_QTI_task1b, Sec. 6.1): n_fft 2048,
hop 512, 256 Slaney mel bands, power 2, dB with top_db 80. Both sides compute the same numbers;
the script checks that too (largest deviation in dB above max - 80 dB). Prints the median wall time
of each, the speed ratio and the real-time factor (seconds of audio per second of compute).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable

import numpy as np

# Runnable from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tfasc  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import librosa  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfasc.data import features  # noqa: E402

SAMPLE_RATE = 48000
SECONDS = 10.0
SETTINGS = dict(n_fft=2048, hop_length=512, n_mels=256)


def synthetic_scene(seconds: float, sample_rate: int) -> np.ndarray:
    """``[samples, 2]`` float32: noise plus tones and a chirp, different per channel."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    left = 0.05 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * 440 * t)
    right = 0.05 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * (100 * t + 500 * t**2))
    return np.stack([left, right], axis=-1).astype(np.float32)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats-tfasc", type=int, default=20)
    parser.add_argument("--repeats-librosa", type=int, default=5)
    args = parser.parse_args()

    clip = synthetic_scene(SECONDS, SAMPLE_RATE)  # [samples, channels]
    clip_tensor = tf.constant(clip)
    log_mel_graph = tf.function(
        lambda waveform: features.log_mel_spectrogram(waveform, sample_rate=SAMPLE_RATE, **SETTINGS)
    )

    def run_librosa() -> np.ndarray:
        mel = librosa.feature.melspectrogram(y=clip.T, sr=SAMPLE_RATE, **SETTINGS)
        return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0)

    # Warm up both (tracing, FFT plans, caches) and check they agree.
    ours = np.transpose(log_mel_graph(clip_tensor).numpy(), (2, 0, 1))
    reference = run_librosa()
    compared = reference > reference.max() - 80.0
    deviation_db = float(np.abs(ours - reference)[compared].max())

    tfasc_ms = median_ms(lambda: log_mel_graph(clip_tensor).numpy(), args.repeats_tfasc)
    librosa_ms = median_ms(run_librosa, args.repeats_librosa)

    print(
        f"log-mel of a {SECONDS:g} s stereo {SAMPLE_RATE // 1000} kHz clip, n_fft "
        f"{SETTINGS['n_fft']}, hop {SETTINGS['hop_length']}, {SETTINGS['n_mels']} mels "
        f"-> {ours.shape[1]} x {ours.shape[2]} x {ours.shape[0]}; "
        f"TensorFlow {tf.__version__}, librosa {librosa.__version__}, {os.cpu_count()} CPUs"
    )
    print(f"  largest deviation from librosa (bins above max - 80 dB): {deviation_db:.4f} dB")
    for name, ms in (("tfasc (tf.function)", tfasc_ms), ("librosa", librosa_ms)):
        print(f"  {name:<20} {ms:8.1f} ms   {1000.0 * SECONDS / ms:7.1f}x real time")
    print(f"  tfasc is {librosa_ms / tfasc_ms:.1f}x faster than librosa")


if __name__ == "__main__":
    main()

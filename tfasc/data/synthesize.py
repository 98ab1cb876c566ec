"""Synthetic acoustic scenes written in a real dataset layout, for quickstarts and tests.

:func:`synthesize_dcase2020_1b` writes a small dataset exactly as the DCASE 2020 Task 1B development
set is laid out (``meta.csv``, ``audio/*.wav``, ``evaluation_setup/fold1_*.csv``), so every
downstream stage runs unchanged on it and on the real data. The three classes differ the way the
real ones do, in spectral envelope *and* temporal structure, while shared background noise, random
SNR, random gain, location- and city-specific colouring and cross-class distractors keep them from
being separable by level or a single band:

- indoor (airport, shopping_mall, metro_station): reverberant babble (band-limited noise with
  syllable-rate envelopes, convolved with an exponential-decay room response) plus mains hum;
- outdoor (street_pedestrian, public_square, street_traffic, park): broadband noise plus bird-like
  frequency-modulated chirps;
- transportation (bus, tram, metro): low-frequency rumble and engine harmonics with a slow periodic
  modulation.

As in the official setup, every clip from Milan is kept out of ``fold1_train.csv`` (an unseen city
in ``fold1_evaluate.csv``) and every recording location lies in one split only.
"""

from __future__ import annotations

import argparse
import math
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tfasc.files import atomic_path

SCENES_3CLASS: dict[str, tuple[str, ...]] = {
    "indoor": ("airport", "shopping_mall", "metro_station"),
    "outdoor": ("street_pedestrian", "public_square", "street_traffic", "park"),
    "transportation": ("bus", "tram", "metro"),
}
CITIES = (
    "barcelona", "helsinki", "lisbon", "london", "lyon", "milan", "paris", "prague", "stockholm", "vienna",
)
UNSEEN_CITY = "milan"
SEGMENTS_PER_LOCATION = 2
#: Of the locations of each class outside the unseen city, every EVAL_EVERY-th goes to evaluate.
EVAL_EVERY = 4
DATASETS = ("dcase2020_1b",)
MIN_DURATION_S = 0.2


@dataclass(frozen=True)
class ClipPlan:
    """Where one synthetic clip goes and what it is.

    Attributes:
        filename: path relative to the dataset root, ``audio/{scene}-{city}-{location}-{segment}-a.wav``.
        label: 3-class scene label (indoor, outdoor, transportation).
        scene: original 10-scene name.
        city: recording city.
        location: location number, unique over the dataset.
        segment: segment number within the location.
        split: ``"train"`` or ``"evaluate"`` (all segments of a location share it).
    """

    filename: str
    label: str
    scene: str
    city: str
    location: int
    segment: int
    split: str

    @property
    def identifier(self) -> str:
        """DCASE ``identifier`` column: ``{city}-{location}``."""
        return f"{self.city}-{self.location}"


def plan_clips(clips: int, cities: Sequence[str], rng: np.random.Generator) -> list[ClipPlan]:
    """Assign ``clips`` clips to locations, cities, scenes and splits.

    Locations come in rounds of one per class; round ``m`` is recorded in ``cities[m % len]`` with
    the unseen city first, so even a tiny dataset has unseen-city clips of every class. Unseen-city
    locations are all ``"evaluate"``; of the others, every :data:`EVAL_EVERY`-th location of a class
    is ``"evaluate"`` and the rest ``"train"``.
    """
    order = [UNSEEN_CITY] + [c for c in cities if c != UNSEEN_CITY]
    labels = tuple(SCENES_3CLASS)
    seen_locations_per_class = dict.fromkeys(labels, 0)
    plans: list[ClipPlan] = []
    location = 0
    while len(plans) < clips:
        label = labels[location % len(labels)]
        city = order[(location // len(labels)) % len(order)]
        scene = str(rng.choice(SCENES_3CLASS[label]))
        if city == UNSEEN_CITY:
            split = "evaluate"
        else:
            j = seen_locations_per_class[label]
            seen_locations_per_class[label] += 1
            split = "evaluate" if j % EVAL_EVERY == EVAL_EVERY - 1 else "train"
        for segment in range(min(SEGMENTS_PER_LOCATION, clips - len(plans))):
            filename = f"audio/{scene}-{city}-{location}-{segment}-a.wav"
            plans.append(ClipPlan(filename, label, scene, city, location, segment, split))
        location += 1
    return plans


# --- signal generation: every function returns float64 arrays laid out [samples] -----------------


def _noise_spectrum(rng: np.random.Generator, n: int, sample_rate: int, magnitude) -> np.ndarray:
    """``rfft`` of white noise filtered by ``magnitude(freqs_hz)``, scaled to unit RMS in time.

    Drawn directly as complex Gaussian bins (what the ``rfft`` of white noise is), which saves a
    forward FFT per noise signal.
    """
    bins = n // 2 + 1
    spectrum = rng.standard_normal(bins) + 1j * rng.standard_normal(bins)
    spectrum *= magnitude(np.fft.rfftfreq(n, 1.0 / sample_rate))
    spectrum[0] = spectrum[0].real  # a real signal has a real DC bin
    power = 2.0 * np.sum(np.abs(spectrum) ** 2) - np.abs(spectrum[0]) ** 2  # Parseval, up to the Nyquist bin
    return spectrum * (n / np.sqrt(power + 1e-24))


def _shape_noise(rng: np.random.Generator, n: int, sample_rate: int, magnitude) -> np.ndarray:
    """White noise filtered by ``magnitude(freqs_hz)``, unit RMS."""
    return np.fft.irfft(_noise_spectrum(rng, n, sample_rate, magnitude), n)


def _rms_normalize(x: np.ndarray) -> np.ndarray:
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _tilt(db_per_octave: float):
    """Magnitude response with a ``db_per_octave`` slope, 0 dB at 1 kHz (flat below 20 Hz)."""
    exponent = db_per_octave / (20 * math.log10(2))
    return lambda f: (np.maximum(f, 20.0) / 1000.0) ** exponent


def _tilted_noise(rng: np.random.Generator, n: int, sample_rate: int, db_per_octave: float) -> np.ndarray:
    """Coloured noise with a ``db_per_octave`` spectral slope, unit RMS."""
    return _shape_noise(rng, n, sample_rate, _tilt(db_per_octave))


def _band(low: float, high: float, order: float = 4.0):
    """Smooth band-pass magnitude response (Butterworth-like skirts)."""
    def magnitude(f):
        return 1.0 / np.sqrt((1 + (low / np.maximum(f, 1.0)) ** (2 * order)) * (1 + (f / high) ** (2 * order)))

    return magnitude


def _reverberate(rng: np.random.Generator, x: np.ndarray, sample_rate: int, rt60_s: float) -> np.ndarray:
    """Convolve with a noise impulse response decaying 60 dB in ``rt60_s`` (a diffuse room)."""
    length = max(1, min(int(rt60_s * sample_rate), len(x)))
    t = np.arange(length) / sample_rate
    response = rng.standard_normal(length) * np.exp(-6.91 * t / rt60_s)
    response[0] += 4.0  # direct sound
    size = 1 << (len(x) + length - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(response, size), size)[: len(x)]
    return _rms_normalize(wet)


def _indoor(rng: np.random.Generator, n: int, sr: int, place: dict) -> np.ndarray:
    """Reverberant babble plus mains hum."""
    t = np.arange(n) / sr
    babble = np.zeros(n)
    for _ in range(int(rng.integers(3, 7))):
        voice = _shape_noise(rng, n, sr, _band(rng.uniform(200, 500), min(rng.uniform(2500, 4000), 0.45 * sr)))
        rate = rng.uniform(2.5, 6.0)  # syllables per second
        envelope = np.maximum(0.0, np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))) ** 2
        envelope *= np.maximum(0.0, np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t + rng.uniform(0, 2 * np.pi)))
        babble += rng.uniform(0.5, 1.0) * voice * envelope
    babble = _reverberate(rng, _rms_normalize(babble), sr, place["rt60_s"])
    hum = sum(
        np.sin(2 * np.pi * place["mains_hz"] * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 6)
    )
    return babble + 10 ** (place["hum_db"] / 20) * _rms_normalize(hum)


def _outdoor(rng: np.random.Generator, n: int, sr: int, place: dict) -> np.ndarray:
    """Broadband noise plus bird-like frequency-modulated chirps."""
    out = 0.5 * _tilted_noise(rng, n, sr, rng.uniform(-4.0, -1.0))
    top = 0.45 * sr
    chirps = np.zeros(n)
    for _ in range(rng.poisson(place["chirps_per_s"] * n / sr) + 1):
        length = int(rng.uniform(0.04, 0.15) * sr)
        start = int(rng.integers(0, max(1, n - length)))
        tc = np.arange(length) / sr
        f0 = min(rng.uniform(2000, 5000), 0.8 * top)
        sweep = rng.uniform(-1500, 1500)
        trill = rng.uniform(0, 400) * np.sin(2 * np.pi * rng.uniform(20, 60) * tc)
        freq = np.clip(f0 + sweep * tc / tc[-1] + trill, 200.0, top)
        phase = 2 * np.pi * np.cumsum(freq) / sr
        chirps[start : start + length] += rng.uniform(0.3, 1.0) * np.sin(phase) * np.hanning(length)
    return out + 10 ** (place["chirp_db"] / 20) * _rms_normalize(chirps)


def _transportation(rng: np.random.Generator, n: int, sr: int, place: dict) -> np.ndarray:
    """Low-frequency rumble and engine harmonics with slow periodic modulation."""
    t = np.arange(n) / sr
    rumble = _shape_noise(rng, n, sr, lambda f: 1.0 / np.sqrt(1 + (f / place["rumble_hz"]) ** 8))
    drift = 1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(place["engine_hz"] * drift) / sr
    engine = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 9))
    phase0 = rng.uniform(0, 2 * np.pi)
    modulation = 1 + place["modulation_depth"] * np.sin(2 * np.pi * place["modulation_hz"] * t + phase0)
    return (rumble + 0.7 * _rms_normalize(engine)) * modulation


GENERATORS = {"indoor": _indoor, "outdoor": _outdoor, "transportation": _transportation}


def _place_parameters(rng: np.random.Generator) -> dict:
    """Acoustic traits fixed per recording location (shared by its segments, as in real recordings)."""
    return {
        "rt60_s": rng.uniform(0.4, 1.2),
        "mains_hz": float(rng.choice([50.0, 60.0])),
        "hum_db": rng.uniform(-24, -12),
        "chirps_per_s": rng.uniform(1.0, 5.0),
        "chirp_db": rng.uniform(-8, 0),
        "rumble_hz": rng.uniform(80, 200),
        "engine_hz": rng.uniform(25, 70),
        "modulation_hz": rng.uniform(0.3, 2.0),
        "modulation_depth": rng.uniform(0.2, 0.6),
        "background_tilt": rng.uniform(-5.0, -1.5),
    }


def _city_equalizer(rng: np.random.Generator):
    """A smooth random EQ curve (a few dB) standing in for a city's typical acoustics and microphones."""
    gains_db = rng.uniform(-4, 4, size=6)
    anchors = np.log2([62.5, 250, 1000, 4000, 8000, 24000])
    return lambda f: 10 ** (np.interp(np.log2(np.maximum(f, 20.0)), anchors, gains_db) / 20)


def render_clip(
    rng: np.random.Generator,
    label: str,
    place: dict,
    equalizer,
    *,
    sample_rate: int,
    samples: int,
    channels: int,
) -> np.ndarray:
    """One clip of class ``label``, float in [-1, 1], laid out ``[samples, channels]``."""
    foreground = GENERATORS[label](rng, samples, sample_rate, place)
    # A quieter element of another class, as in a bus with passengers talking or a station with birds.
    if rng.random() < 0.4:
        other = str(rng.choice([c for c in GENERATORS if c != label]))
        distractor = GENERATORS[other](rng, samples, sample_rate, place)
        foreground = foreground + 10 ** (rng.uniform(-18, -8) / 20) * distractor
    snr_db = rng.uniform(0.0, 12.0)
    foreground = 10 ** (snr_db / 20) * _rms_normalize(foreground)
    # Mixed in the frequency domain: background bins, foreground bins delayed by a phase ramp, city EQ.
    freqs = np.fft.rfftfreq(samples, 1.0 / sample_rate)
    tilt = _tilt(place["background_tilt"])
    common = _noise_spectrum(rng, samples, sample_rate, tilt)
    foreground_bins = np.fft.rfft(foreground)
    coherence = rng.uniform(0.6, 0.95)
    max_delay_s = 0.0007  # about the spacing of a binaural pair
    spectrum_gain = equalizer(freqs)
    target_rms = 10 ** (rng.uniform(-34, -20) / 20)
    out = np.empty((samples, channels))
    for channel in range(channels):
        own = _noise_spectrum(rng, samples, sample_rate, tilt)
        background = coherence * common + math.sqrt(1 - coherence**2) * own
        delay_s = rng.uniform(0, max_delay_s) if channel else 0.0
        level = 10 ** (rng.uniform(-3, 3) / 20) if channel else 1.0
        mix = level * foreground_bins * np.exp(-2j * np.pi * freqs * delay_s) + background
        out[:, channel] = np.fft.irfft(mix * spectrum_gain, samples)
    out *= target_rms / (np.sqrt(np.mean(out**2)) + 1e-12)
    peak = np.max(np.abs(out))
    return out * (0.99 / peak) if peak > 0.99 else out


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write float audio laid out ``[samples, channels]`` as 16-bit PCM WAV (stdlib ``wave``)."""
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(audio.shape[1])
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(pcm.tobytes())


def _write_table(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    lines = ["\t".join(header)] + ["\t".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _check_arguments(
    clips: int, seed: int, sample_rate: int, duration_s: float, channels: int, cities: Sequence[str], fold: int
) -> None:
    minimum = 2 * SEGMENTS_PER_LOCATION * len(SCENES_3CLASS)
    if clips < minimum:
        raise ValueError(
            f"clips={clips} is too few: at least {minimum} give every class a train and an evaluate location"
        )
    if sample_rate < 8000:
        raise ValueError(f"sample_rate={sample_rate} Hz, expected at least 8000")
    if not duration_s >= MIN_DURATION_S:
        raise ValueError(f"duration_s={duration_s}, expected at least {MIN_DURATION_S} s (room for a bird chirp)")
    if channels not in (1, 2):
        raise ValueError(f"channels={channels}, expected 1 or 2")
    if UNSEEN_CITY not in cities or len(set(cities)) < 2:
        raise ValueError(f"cities={list(cities)} must include {UNSEEN_CITY!r} and at least one other city")
    if any("-" in city or not city for city in cities):
        raise ValueError(f"cities={list(cities)}: names must be non-empty and contain no '-'")
    if seed < 0:
        raise ValueError(f"seed={seed}, expected a non-negative integer")
    if fold < 1:
        raise ValueError(f"fold={fold}, expected a positive integer")


def _prepare_destination(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise FileExistsError(
            f"{out_dir} exists and is not empty; refusing to overwrite it (remove it or pick another path)"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)


def synthesize_dcase2020_1b(
    out_dir: str | Path,
    *,
    clips: int,
    seed: int,
    sample_rate: int = 48000,
    duration_s: float = 10.0,
    channels: int = 2,
    cities: Sequence[str] = CITIES,
    fold: int = 1,
) -> Path:
    """Write a synthetic dataset in the DCASE 2020 Task 1B development layout.

    Writes ``meta.csv`` (``filename scene_label identifier``), ``audio/*.wav`` (16-bit PCM),
    ``evaluation_setup/fold{fold}_train.csv``, ``fold{fold}_evaluate.csv`` (``filename scene_label``)
    and ``fold{fold}_test.csv`` (``filename``, the evaluate files, as in the real set). The dataset
    is built in a temporary directory beside ``out_dir`` and renamed into place, so a crash never
    leaves a half-written dataset; an existing non-empty ``out_dir`` is a ``FileExistsError``.
    The output depends only on the arguments (``seed`` fixes every random draw).

    Returns:
        ``out_dir`` as an absolute path.
    """
    out_dir = Path(out_dir).expanduser().resolve()
    _check_arguments(clips, seed, sample_rate, duration_s, channels, cities, fold)
    _prepare_destination(out_dir)
    samples = int(round(duration_s * sample_rate))
    # Separate streams per purpose and per item: a clip's audio does not change with the clip count.
    plans = plan_clips(clips, cities, np.random.default_rng([seed, 0]))
    places = {loc: _place_parameters(np.random.default_rng([seed, 1, loc])) for loc in {p.location for p in plans}}
    equalizers = {
        city: _city_equalizer(np.random.default_rng([seed, 2, i])) for i, city in enumerate(sorted(set(cities)))
    }

    # Renamed into place only when complete (an empty out_dir is replaced).
    with atomic_path(out_dir, directory=True) as temporary:
        (temporary / "audio").mkdir()
        (temporary / "evaluation_setup").mkdir()
        for index, plan in enumerate(plans):
            rng = np.random.default_rng([seed, 3, index])
            audio = render_clip(
                rng, plan.label, places[plan.location], equalizers[plan.city],
                sample_rate=sample_rate, samples=samples, channels=channels,
            )
            write_wav(temporary / plan.filename, audio, sample_rate)
        ordered = sorted(plans, key=lambda p: p.filename)
        _write_table(temporary / "meta.csv", ("filename", "scene_label", "identifier"),
                     [(p.filename, p.label, p.identifier) for p in ordered])
        setup = temporary / "evaluation_setup"
        for split in ("train", "evaluate"):
            _write_table(setup / f"fold{fold}_{split}.csv", ("filename", "scene_label"),
                         [(p.filename, p.label) for p in ordered if p.split == split])
        _write_table(setup / f"fold{fold}_test.csv", ("filename",),
                     [(p.filename,) for p in ordered if p.split == "evaluate"])
    return out_dir


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tfasc.data.synthesize OUT --clips N --seed S [...]``: write a synthetic dataset."""
    parser = argparse.ArgumentParser(
        prog="python -m tfasc.data.synthesize", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("out", type=Path, help="output directory (must not exist or be empty)")
    parser.add_argument("--dataset", choices=DATASETS, default="dcase2020_1b", help="layout to write")
    parser.add_argument("--clips", type=int, required=True, help="number of clips")
    parser.add_argument("--seed", type=int, required=True, help="random seed (same seed, same files)")
    parser.add_argument("--sample-rate", type=int, default=48000, help="Hz (default 48000)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per clip (default 10)")
    parser.add_argument("--channels", type=int, default=2, help="1 or 2 (default 2)")
    args = parser.parse_args(argv)
    try:
        out = synthesize_dcase2020_1b(
            args.out, clips=args.clips, seed=args.seed, sample_rate=args.sample_rate,
            duration_s=args.duration, channels=args.channels,
        )
    except (FileExistsError, ValueError) as error:
        parser.error(str(error))  # exits with status 2 and the usage line, no traceback
    setup = out / "evaluation_setup"
    counts = {
        split: len((setup / f"fold1_{split}.csv").read_text().splitlines()) - 1 for split in ("train", "evaluate")
    }
    print(
        f"wrote {args.dataset} layout to {out}: {args.clips} clips of {args.duration:g} s, "
        f"{args.sample_rate} Hz, {args.channels} channel(s); fold1 train {counts['train']}, "
        f"evaluate {counts['evaluate']} (city {UNSEEN_CITY!r} only in evaluate)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The log-mel front end of a bundle in C with CMSIS-DSP, its generated tables, and its Python twin.

The device computes the **training features**: :func:`tfasc.data.features.log_mel_spectrogram` of
the int16 PCM / 32768 the data pipeline reads (:mod:`tfasc.data.audio`), i.e. librosa framing
(``center`` pads ``n_fft // 2`` zeros on both sides), the periodic Hann/Hamming window of
``win_length`` centred in ``n_fft``, ``|X|**power`` (power 2 or 1), the Slaney mel bank of
:func:`tfasc.data.features.mel_filterbank` (the training bank itself, not a re-derivation),
``10·log10(max(mel, amin))`` and the clamp from below at the clip's maximum (over all channels)
minus ``top_db``. Output layout ``[n_mels][frames][channels_out]`` row-major float32: what
``tfasc_features_to_input`` (``input_path.h``, :func:`tfasc.data.normalization.c_header`) takes.

Pieces:

- :func:`frontend_files`: ``frontend.h`` (API, constants), ``frontend_tables.h`` (window, sparse mel
  bank, the size-specific CMSIS-DSP FFT init functions) generated from the recipe's
  :class:`~tfasc.data.features.LogMelParams`, and the fixed ``frontend.c`` (``tfasc/device/c``).
- :func:`features_cmsisdsp`: the same arithmetic through pip ``cmsisdsp`` (the Python binding of the
  same CMSIS-DSP C code), call for call as ``frontend.c`` makes them: the twin that proves parity.
- :func:`frontend_costs`: table, scratch and CMSIS-DSP FFT-table bytes, frames, work per clip.

Numerical choices (details in ``frontend.c``):

- ``arm_rfft_fast_f32``; its output is packed (``out[0]`` = DC real, ``out[1]`` = Nyquist real),
  so those two bins are squared apart and ``arm_cmplx_mag_squared_f32`` (power 2) or
  ``arm_cmplx_mag_f32`` (power 1) does bins ``1 .. n_fft/2 - 1``.
- Sparse mel bank: per band its first bin, count and offset into one packed float32 weight array;
  one ``arm_dot_prod_f32`` per band and frame (about 2 weights per FFT bin instead of ``n_mels``).
- ``arm_vlog_f32`` for the log: a loop over ``logf`` on cores without Helium; CMSIS-DSP's vector
  polynomial with Helium, at most 2.3e-5 dB off (emulated in float32, checked by the tests).
- Float path: measured at most 0.0005 dB from the training features on 10 real FSDD clips and
  0.0008 dB on a synthesized stereo clip (bins above clip max − 80 dB). A host (x86-64) build of
  ``frontend.c`` equals this twin bit for bit when CMSIS-DSP is compiled with the pip wheel's flags
  (``-Ofast -ffast-math``), and stays within 2.4e-4 dB of it with ``-O2``. Cortex-M builds differ
  by float round-off only (fused multiply-adds on FPU cores, Helium's vector order).
- q15 variant (``-DTFASC_FRONTEND_Q15`` → ``tfasc_frontend_log_mel_q15``; ``q15=True`` here):
  block-floating-point frames, ``arm_mult_q15`` window, ``arm_rfft_q15`` (output = DFT / n_fft),
  then the spectrum in float. Its error is the q15 FFT's noise floor (≈ 50 dB under a frame's
  peak). Measured against the training features on 10 real FSDD clips (n_fft 256): at most
  0.14 dB on bins within 20 dB of the clip maximum, 0.73 dB within 30 dB, 3.4 dB within 50 dB and
  18.6 dB over the whole compared 80 dB (median per clip 4.6 dB); on a synthesized stereo clip
  (n_fft 512) 15.3 dB over 80 dB. With ``arm_cmplx_mag_squared_q15`` (3.13 output, 17 more bits
  dropped) instead of the float spectrum it measured 58–72 dB; without the block shift 25–33 dB.
  It does not meet the 0.1 dB float budget: use it only where a model tolerates that, and note
  that ``arm_rfft_q15`` pulls in CMSIS-DSP's 32 KiB ``realCoefA/BQ15`` tables.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from tfasc.data import features as training_features
from tfasc.data.features import LogMelParams

#: Lengths ``arm_rfft_fast_f32`` supports in CMSIS-DSP 1.17 (``arm_rfft_fast_init_f32``).
RFFT_F32_LENGTHS = (32, 64, 128, 256, 512, 1024, 2048, 4096)
SUPPORTED_POWERS = (1.0, 2.0)
SUPPORTED_PAD_MODES = ("constant",)
SUPPORTED_CHANNEL_MODES = ("keep", "mono", "mid_side")
#: At most this many input channels: a mono mix of them stays an exact integer in float32.
MAX_AUDIO_CHANNELS = 256

C_SOURCE = Path(__file__).resolve().parent / "c" / "frontend.c"

_CHANNEL_MODE_CODES = {"keep": 0, "mono": 1, "mid_side": 2}
_FLOAT_BYTES = 4
_Q15_BYTES = 2
#: 10 / ln(10) in float32, as the training graph multiplies ``tf.math.log`` by it.
_DB_PER_NEPER = np.float32(10.0 / math.log(10.0))

# CMSIS-DSP 1.17.1 FFT tables (Include/arm_common_tables.h, Source/CommonTables/arm_const_structs.c),
# non-Helium builds. Bit-reversal table lengths (uint16 entries) per complex FFT length.
_BITREV_F32 = {16: 20, 32: 48, 64: 56, 128: 208, 256: 440, 512: 448, 1024: 1800, 2048: 3808, 4096: 4032}
_BITREV_Q15 = {16: 12, 32: 24, 64: 56, 128: 112, 256: 240, 512: 480, 1024: 992, 2048: 1984, 4096: 4032}
_CFFT_INSTANCE_BYTES = 16  # arm_cfft_instance_{f32,q15} const struct on a 32-bit core
_REAL_COEF_Q15_ENTRIES = 8192  # realCoefAQ15 / realCoefBQ15: one table for every q15 RFFT length


@dataclasses.dataclass(frozen=True)
class FrontendPlan:
    """Everything the C front end and its twin are generated from (checked parameters)."""

    params: LogMelParams
    sample_rate: float
    clip_samples: int
    audio_channels: int
    channels_out: int
    n_fft: int
    win_length: int
    fmax: float
    frames: int
    window: np.ndarray  # float32 [n_fft]
    window_q15: np.ndarray  # int16 [n_fft]
    band_first: np.ndarray  # [n_mels]
    band_count: np.ndarray  # [n_mels]
    band_offset: np.ndarray  # [n_mels]
    weights: np.ndarray  # float32 [sum(band_count)]
    index_ctype: str  # uint16_t or uint32_t

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def mix_divisor(self) -> int:
        return {"mono": self.audio_channels, "mid_side": 2}.get(self.params.channel_mode, 1)

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        return self.params.n_mels, self.frames, self.channels_out


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def sparse_mel_bank(filterbank: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(first, count, offset, weights)`` of a dense ``[bins, n_mels]`` bank: per band the run of
    bins from its first to its last non-zero weight, packed one band after the other (float32)."""
    bank = np.asarray(filterbank, np.float32)
    firsts, counts, offsets, packed = [], [], [], []
    offset = 0
    for m in range(bank.shape[1]):
        nonzero = np.flatnonzero(bank[:, m])
        if nonzero.size == 0:
            first, count = 0, 0
        else:
            first, count = int(nonzero[0]), int(nonzero[-1] - nonzero[0] + 1)
        firsts.append(first)
        counts.append(count)
        offsets.append(offset)
        packed.append(bank[first : first + count, m])
        offset += count
    weights = np.concatenate(packed) if packed else np.zeros(0, np.float32)
    return (np.array(firsts, np.int64), np.array(counts, np.int64), np.array(offsets, np.int64),
            weights.astype(np.float32))


def plan(params: LogMelParams, *, sample_rate: float, clip_samples: int, audio_channels: int) -> FrontendPlan:
    """Check the parameters against what the C front end supports; ``ValueError`` names the first
    bad one. Returns the generated tables and sizes."""
    if not isinstance(params, LogMelParams):
        raise ValueError(f"params must be a LogMelParams, got {type(params).__name__}")
    win_length, fmax = params.check(sample_rate)
    clip_samples = _positive_int("clip_samples", clip_samples)
    audio_channels = _positive_int("audio_channels", audio_channels)
    if audio_channels > MAX_AUDIO_CHANNELS:
        raise ValueError(f"audio_channels must be at most {MAX_AUDIO_CHANNELS}, got {audio_channels}")
    if clip_samples * audio_channels >= 2**31:
        raise ValueError(f"clip_samples x audio_channels must be below 2**31 (int32 indices), got "
                         f"clip_samples={clip_samples}, audio_channels={audio_channels}")
    n_fft = int(params.n_fft)
    if n_fft not in RFFT_F32_LENGTHS:
        raise ValueError(f"n_fft must be a power of two in [32, 4096] (the lengths CMSIS-DSP's "
                         f"arm_rfft_fast_f32 supports), got n_fft={n_fft}")
    if params.center and params.pad_mode not in SUPPORTED_PAD_MODES:
        raise ValueError(f"pad_mode must be 'constant' for the device front end (zero padding), got "
                         f"pad_mode={params.pad_mode!r}")
    if float(params.power) not in SUPPORTED_POWERS:
        raise ValueError(f"power must be 1 or 2 for the device front end, got power={params.power!r}")
    if params.channel_mode not in SUPPORTED_CHANNEL_MODES:
        raise ValueError(f"channel_mode must be one of {SUPPORTED_CHANNEL_MODES}, got {params.channel_mode!r}")
    if params.channel_mode == "mid_side" and audio_channels != 2:
        raise ValueError(f"channel_mode='mid_side' needs audio_channels=2, got audio_channels={audio_channels}")
    try:
        frames = training_features.num_frames(clip_samples, n_fft=n_fft, hop_length=params.hop_length,
                                              center=params.center)
    except ValueError as error:
        raise ValueError(f"clip_samples={clip_samples}: {error}") from None
    if params.n_mels * frames * audio_channels >= 2**31:
        raise ValueError(f"n_mels x frames x channels must be below 2**31, got n_mels={params.n_mels}, "
                         f"frames={frames}")
    channels_out = params.output_shape(clip_samples, audio_channels)[2]

    window = np.asarray(training_features._cached_window(params.window, win_length, n_fft), np.float32)
    # q15: round to nearest; the window's peak 1.0 saturates to 32767 / 32768.
    window_q15 = np.clip(np.round(window.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    bank = training_features.mel_filterbank(sample_rate=sample_rate, n_fft=n_fft, n_mels=params.n_mels,
                                            fmin=params.fmin, fmax=params.fmax)
    first, count, offset, weights = sparse_mel_bank(bank)
    if weights.size == 0:
        raise ValueError(f"n_mels={params.n_mels} bands over fmin={params.fmin:g}..fmax={fmax:g} Hz catch no "
                         f"FFT bin of n_fft={n_fft}: raise n_fft or widen the band")
    index_ctype = "uint16_t" if max(weights.size, n_fft) < 2**16 else "uint32_t"
    return FrontendPlan(params=params, sample_rate=float(sample_rate), clip_samples=clip_samples,
                        audio_channels=audio_channels, channels_out=int(channels_out), n_fft=n_fft,
                        win_length=win_length, fmax=fmax, frames=int(frames), window=window,
                        window_q15=window_q15, band_first=first, band_count=count, band_offset=offset,
                        weights=weights, index_ctype=index_ctype)


# ----------------------------------------------------------------------------------------------
# Sizes


def _cmsis_fft_tables(n_fft: int) -> dict[str, int]:
    """Flash bytes of the CMSIS-DSP tables the size-specific FFT init functions reference."""
    half = n_fft // 2
    f32 = {
        f"twiddleCoef_{half}": 2 * half * _FLOAT_BYTES,
        f"armBitRevIndexTable{half}": _BITREV_F32[half] * 2,
        f"twiddleCoef_rfft_{n_fft}": n_fft * _FLOAT_BYTES,
        f"arm_cfft_sR_f32_len{half}": _CFFT_INSTANCE_BYTES,
    }
    q15 = {
        f"twiddleCoef_{half}_q15": 3 * half // 2 * _Q15_BYTES,
        f"armBitRevIndexTable_fixed_{half}": _BITREV_Q15[half] * 2,
        "realCoefAQ15": _REAL_COEF_Q15_ENTRIES * _Q15_BYTES,
        "realCoefBQ15": _REAL_COEF_Q15_ENTRIES * _Q15_BYTES,
        f"arm_cfft_sR_q15_len{half}": _CFFT_INSTANCE_BYTES,
    }
    return {"f32": f32, "q15": q15}


def _sizes(p: FrontendPlan) -> dict[str, int]:
    index_bytes = 2 if p.index_ctype == "uint16_t" else 4
    n = p.n_fft
    return {
        "window": n * _FLOAT_BYTES,
        "mel_weights": int(p.weights.size) * _FLOAT_BYTES,
        "band_index": 3 * p.params.n_mels * index_bytes,
        "window_q15": n * _Q15_BYTES,
        "scratch_frame": n * _FLOAT_BYTES,
        "scratch_fft": n * _FLOAT_BYTES,
        "scratch_q15_frame": n * _Q15_BYTES,
        "scratch_q15_fft": 2 * n * _Q15_BYTES,
        "scratch_q15_bins": (n + 2) * _FLOAT_BYTES,
        "scratch_q15_spectrum": (n // 2 + 1) * _FLOAT_BYTES,
    }


def frontend_costs(params: LogMelParams, sample_rate: float, clip_samples: int, audio_channels: int) -> dict:
    """What the device front end costs for these parameters (bytes on a 32-bit core).

    - ``table_bytes``: the generated tables in flash (window, packed mel weights, band index arrays;
      ``kFrontendTableBytes``); ``dense_mel_bytes`` is what a dense bank would take instead.
    - ``cmsis_fft_table_bytes``: CMSIS-DSP's own FFT twiddle / bit-reversal tables for this n_fft,
      also in flash, from its const structs (the size-specific init functions let ``--gc-sections``
      drop every other length; ``arm_rfft_fast_init_f32`` would keep them all). Helium (MVE) builds
      add rearranged twiddles from ``arm_mve_tables.c``, not counted here. The q15 RFFT references
      ``realCoefAQ15``/``realCoefBQ15``, 32 KiB for any length.
    - ``scratch_bytes``: static RAM of ``frontend.c`` (frame and packed FFT output;
      ``kFrontendScratchBytes``); ``output_bytes``: the caller's feature buffer, also used in place
      for the log; ``input_bytes``: the int16 clip. Stack: a CMSIS FFT instance and a few scalars.
    - work per clip: ``ffts`` (one real FFT of n_fft per frame and output channel), ``mel_macs``.
    """
    p = plan(params, sample_rate=sample_rate, clip_samples=clip_samples, audio_channels=audio_channels)
    s = _sizes(p)
    fft = _cmsis_fft_tables(p.n_fft)
    tables = {"window": s["window"], "mel_weights": s["mel_weights"], "band_index": s["band_index"]}
    tables["total"] = sum(tables.values())
    scratch = {"frame_and_spectrum": s["scratch_frame"], "fft_output": s["scratch_fft"]}
    scratch["total"] = sum(scratch.values())
    scratch_q15 = {"frame_q15": s["scratch_q15_frame"], "fft_q15": s["scratch_q15_fft"],
                   "bins_f32": s["scratch_q15_bins"], "spectrum_f32": s["scratch_q15_spectrum"]}
    scratch_q15["total"] = sum(scratch_q15.values())
    feature_values = int(np.prod(p.feature_shape))
    return {
        "sample_rate": p.sample_rate,
        "clip_samples": p.clip_samples,
        "audio_channels": p.audio_channels,
        "channels_out": p.channels_out,
        "n_fft": p.n_fft,
        "hop_length": int(p.params.hop_length),
        "win_length": p.win_length,
        "bins": p.bins,
        "n_mels": int(p.params.n_mels),
        "frames": p.frames,
        "feature_shape": p.feature_shape,
        "feature_values": feature_values,
        "mel_weights_packed": int(p.weights.size),  # floats in the packed runs
        "empty_mel_bands": int(np.sum(p.band_count == 0)),
        "table_bytes": tables,
        "table_bytes_q15_extra": {"window_q15": s["window_q15"]},
        "dense_mel_bytes": p.bins * int(p.params.n_mels) * _FLOAT_BYTES,
        "cmsis_fft_table_bytes": {**fft["f32"], "total": sum(fft["f32"].values())},
        "cmsis_fft_table_bytes_q15": {**fft["q15"], "total": sum(fft["q15"].values())},
        "scratch_bytes": scratch,
        "scratch_bytes_q15": scratch_q15,
        "output_bytes": feature_values * _FLOAT_BYTES,
        "input_bytes": p.clip_samples * p.audio_channels * 2,
        "ffts": p.frames * p.channels_out,
        "mel_macs": int(p.weights.size) * p.frames * p.channels_out,
    }


# ----------------------------------------------------------------------------------------------
# C files


def _c_float(value: float) -> str:
    return f"{float(np.float32(value))!r}f"


def _c_array(ctype: str, name: str, values, formatter, per_line: int = 8) -> list[str]:
    items = [formatter(v) for v in values]
    lines = [f"static const {ctype} {name}[{len(items)}] = {{"]
    for i in range(0, len(items), per_line):
        lines.append("    " + ", ".join(items[i : i + per_line]) + ",")
    lines.append("};")
    return lines


def _describe(p: FrontendPlan) -> str:
    fields = ", ".join(f"{name}={getattr(p.params, name)!r}" for name in LogMelParams.names())
    return (f"sample_rate={p.sample_rate:g}, clip_samples={p.clip_samples}, "
            f"audio_channels={p.audio_channels}; {fields}")


def _header(p: FrontendPlan) -> str:
    s = _sizes(p)
    table_bytes = s["window"] + s["mel_weights"] + s["band_index"]
    scratch = s["scratch_frame"] + s["scratch_fft"]
    scratch_q15 = s["scratch_q15_frame"] + s["scratch_q15_fft"] + s["scratch_q15_bins"] + s["scratch_q15_spectrum"]
    prm = p.params
    top_db = prm.top_db
    fft = _cmsis_fft_tables(p.n_fft)
    return "\n".join([
        "// Generated by tfasc.device.frontend: the log-mel front end of this bundle (frontend.c).",
        f"// Features of tfasc.data.features.log_mel_spectrogram with {_describe(p)}.",
        "#ifndef TFASC_FRONTEND_H_",
        "#define TFASC_FRONTEND_H_",
        "",
        "#include <stdint.h>",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        "enum {",
        f"  kFrontendClipSamples = {p.clip_samples},      // samples per channel the front end reads",
        f"  kFrontendAudioChannels = {p.audio_channels},   // interleaved int16 channels of the input",
        f"  kFrontendChannelsOut = {p.channels_out},     // feature channels (channel_mode {prm.channel_mode})",
        f"  kFrontendNFft = {p.n_fft},",
        f"  kFrontendHopLength = {prm.hop_length},",
        f"  kFrontendWinLength = {p.win_length},",
        f"  kFrontendBins = {p.bins},",
        f"  kFrontendMels = {prm.n_mels},",
        f"  kFrontendFrames = {p.frames},",
        f"  kFrontendFeatureValues = {int(np.prod(p.feature_shape))},  // n_mels * frames * channels_out floats",
        f"  kFrontendTableBytes = {table_bytes},   // generated tables (window, mel weights, band index)",
        f"  kFrontendTableBytesQ15 = {s['window_q15']},  // + the q15 window, -DTFASC_FRONTEND_Q15 only",
        f"  kFrontendScratchBytes = {scratch},  // static RAM of tfasc_frontend_log_mel",
        f"  kFrontendScratchBytesQ15 = {scratch_q15},  // static RAM of tfasc_frontend_log_mel_q15",
        "  // CMSIS-DSP's own FFT tables for this n_fft, also in flash (non-Helium builds):",
        f"  kFrontendCmsisFftTableBytes = {sum(fft['f32'].values())},",
        f"  kFrontendCmsisFftTableBytesQ15 = {sum(fft['q15'].values())},  // incl. realCoefA/BQ15 (32 KiB, any n_fft)",
        "};",
        "",
        "enum { kFrontendOk = 0, kFrontendErrorNullPointer = -1, kFrontendErrorFftInit = -2 };",
        "",
        "#define TFASC_FRONTEND_CHANNEL_MODE_KEEP 0",
        "#define TFASC_FRONTEND_CHANNEL_MODE_MONO 1",
        "#define TFASC_FRONTEND_CHANNEL_MODE_MID_SIDE 2",
        f"#define TFASC_FRONTEND_CHANNEL_MODE {_CHANNEL_MODE_CODES[prm.channel_mode]}",
        f"#define TFASC_FRONTEND_CENTER {int(bool(prm.center))}",
        f"#define TFASC_FRONTEND_POWER {int(prm.power)}",
        f"#define TFASC_FRONTEND_SAMPLE_RATE_HZ {p.sample_rate!r}",
        f"#define TFASC_FRONTEND_AMIN {_c_float(prm.amin)}",
        f"#define TFASC_FRONTEND_DB_PER_NEPER {_c_float(_DB_PER_NEPER)}  // 10 / ln(10)",
        f"#define TFASC_FRONTEND_HAS_TOP_DB {int(top_db is not None)}",
        f"#define TFASC_FRONTEND_TOP_DB {_c_float(top_db if top_db is not None else 0.0)}",
        "",
        "// Log-mel features of one clip, as the model was trained on.",
        "//   pcm: kFrontendClipSamples frames of kFrontendAudioChannels interleaved int16 samples",
        "//        (value / 32768 is the waveform). Exactly that many are read: cropping a longer clip",
        "//        (training keeps its first samples) or zero-padding a shorter one at the end is the",
        "//        caller's.",
        "//   features: kFrontendFeatureValues floats, [kFrontendMels][kFrontendFrames][kFrontendChannelsOut]",
        "//        row-major, in dB: the input of tfasc_features_to_input (input_path.h). Also the",
        "//        working buffer of the log / top_db pass.",
        "// Returns kFrontendOk, or a negative kFrontendError*. Not reentrant (static scratch).",
        "int tfasc_frontend_log_mel(const int16_t* pcm, float* features);",
        "",
        "#if defined(TFASC_FRONTEND_Q15)",
        "// The same with a q15 FFT (arm_rfft_q15): several dB off on quiet bins (see frontend.c).",
        "int tfasc_frontend_log_mel_q15(const int16_t* pcm, float* features);",
        "#endif",
        "",
        "#ifdef __cplusplus",
        "}  // extern \"C\"",
        "#endif",
        "",
        "#endif  // TFASC_FRONTEND_H_",
        "",
    ])


def _tables(p: FrontendPlan) -> str:
    ints = lambda v: str(int(v))  # noqa: E731
    return "\n".join([
        "// Generated by tfasc.device.frontend: tables of frontend.c (include it there only).",
        f"// {_describe(p)}.",
        "// Window: tfasc.data.features' periodic window of win_length centred in n_fft (float32).",
        "// Mel bank: tfasc.data.features.mel_filterbank (float32), per band only its non-zero run of",
        "// bins: kFrontendMelWeights[kFrontendBandOffset[m] + i] weighs bin kFrontendBandFirst[m] + i.",
        "#ifndef TFASC_FRONTEND_TABLES_H_",
        "#define TFASC_FRONTEND_TABLES_H_",
        "",
        "#include <stdint.h>",
        "",
        '#include "arm_math.h"',
        "",
        "// Size-specific CMSIS-DSP init functions: the linker keeps only this length's FFT tables.",
        f"#define TFASC_FRONTEND_RFFT_F32_INIT arm_rfft_fast_init_{p.n_fft}_f32",
        f"#define TFASC_FRONTEND_RFFT_Q15_INIT arm_rfft_init_{p.n_fft}_q15",
        "",
        *_c_array("float32_t", "kFrontendWindow", p.window, _c_float, 6),
        "",
        "#if defined(TFASC_FRONTEND_Q15)",
        *_c_array("q15_t", "kFrontendWindowQ15", p.window_q15, ints, 12),
        "#endif",
        "",
        *_c_array(p.index_ctype, "kFrontendBandFirst", p.band_first, ints, 16),
        *_c_array(p.index_ctype, "kFrontendBandCount", p.band_count, ints, 16),
        *_c_array(p.index_ctype, "kFrontendBandOffset", p.band_offset, ints, 16),
        "",
        *_c_array("float32_t", "kFrontendMelWeights", p.weights, _c_float, 6),
        "",
        "#endif  // TFASC_FRONTEND_TABLES_H_",
        "",
    ])


def frontend_files(params: LogMelParams, *, sample_rate: float, clip_samples: int,
                   audio_channels: int) -> dict[str, str]:
    """The C files of the bundle's front end: ``{file name: text}``.

    ``frontend.h`` (API: ``int tfasc_frontend_log_mel(const int16_t* pcm, float* features)``, and
    with ``-DTFASC_FRONTEND_Q15`` ``tfasc_frontend_log_mel_q15``; the ``kFrontend*`` constants),
    ``frontend_tables.h`` (the generated tables, included by ``frontend.c`` only) and ``frontend.c``
    (fixed source). Compile ``frontend.c`` with CMSIS-DSP's include paths (``Include``,
    ``PrivateInclude``, CMSIS Core ``Include``) and link the CMSIS-DSP sources it calls:
    ``arm_rfft_fast_{f32,init_f32}``, ``arm_cfft_{f32,init_f32,radix8_f32}``, ``arm_bitreversal2``,
    ``arm_mult_f32``, ``arm_cmplx_mag{_squared,}_f32``, ``arm_dot_prod_f32``, ``arm_vlog_f32``,
    ``arm_scale_f32``, ``arm_max_f32``, ``arm_common_tables``, ``arm_const_structs`` (+ for q15:
    ``arm_mult_q15``, ``arm_rfft_{q15,init_q15}``, ``arm_cfft_{q15,init_q15,radix4_q15}``,
    ``arm_q15_to_float``, ``arm_shift_q15``; Helium builds also ``arm_mve_tables``). ``ValueError``
    names a parameter the device front end does not support.
    """
    p = plan(params, sample_rate=sample_rate, clip_samples=clip_samples, audio_channels=audio_channels)
    if not C_SOURCE.is_file():
        raise FileNotFoundError(f"{C_SOURCE} is missing: the tfasc installation lacks its C sources")
    return {"frontend.h": _header(p), "frontend_tables.h": _tables(p), "frontend.c": C_SOURCE.read_text()}


# ----------------------------------------------------------------------------------------------
# The Python twin


def _as_pcm(pcm: np.ndarray) -> np.ndarray:
    pcm = np.asarray(pcm)
    if pcm.dtype != np.int16:
        raise ValueError(f"pcm must be int16 samples, got dtype {pcm.dtype}")
    if pcm.ndim == 1:
        pcm = pcm[:, None]
    if pcm.ndim != 2:
        raise ValueError(f"pcm must be [samples, channels], got shape {pcm.shape}")
    return pcm


def _mixed(pcm: np.ndarray, channel_mode: str) -> np.ndarray:
    """Integer ``[samples, channels_out]`` as frontend.c's ``tfasc_mixed_sample``."""
    wide = pcm.astype(np.int32)
    if channel_mode == "mono":
        return wide.sum(axis=1, keepdims=True, dtype=np.int32)
    if channel_mode == "mid_side":
        return np.stack([wide[:, 0] + wide[:, 1], wide[:, 0] - wide[:, 1]], axis=1)
    return wide


def _block_shift(peak: int) -> int:
    """frontend.c's ``tfasc_block_shift``."""
    shift = 0
    if peak == 0:
        return 0
    if peak <= 32767:
        while shift < 15 and (peak << (shift + 1)) <= 32767:
            shift += 1
    else:
        while (peak >> -shift) > 32767:
            shift -= 1
    return shift


def features_cmsisdsp(pcm: np.ndarray, params: LogMelParams, sample_rate: float, *,
                      q15: bool = False) -> np.ndarray:
    """``frontend.c`` step for step through pip ``cmsisdsp``: ``[n_mels, frames, channels_out]`` float32.

    ``pcm`` is int16 ``[samples, channels]`` (or ``[samples]``): the whole clip is used, as
    ``kFrontendClipSamples = samples``. ``q15=True`` follows ``tfasc_frontend_log_mel_q15``.
    """
    import cmsisdsp as dsp  # the Python binding of the same CMSIS-DSP C code

    pcm = _as_pcm(pcm)
    p = plan(params, sample_rate=sample_rate, clip_samples=pcm.shape[0], audio_channels=pcm.shape[1])
    n, hop, half = p.n_fft, int(p.params.hop_length), p.n_fft // 2
    pad = half if p.params.center else 0
    mixed = _mixed(pcm, p.params.channel_mode)
    mixed = np.pad(mixed, [(pad, n), (0, 0)])  # zeros before (centre padding) and after the clip
    divisor = np.float32(p.mix_divisor)
    weights = p.weights
    bands = [(int(f), int(c), int(o)) for f, c, o in zip(p.band_first, p.band_count, p.band_offset)]
    mel = np.zeros(p.feature_shape, np.float32)

    if not q15:
        rfft = dsp.arm_rfft_fast_instance_f32()
        if dsp.arm_rfft_fast_init_f32(rfft, n) != 0:
            raise RuntimeError(f"arm_rfft_fast_init_f32 failed for n_fft={n}")
        signal = (mixed.astype(np.float32) * np.float32(1.0 / 32768.0)) / divisor
    else:
        rfft = dsp.arm_rfft_instance_q15()
        if dsp.arm_rfft_init_q15(rfft, n, 0, 1) != 0:
            raise RuntimeError(f"arm_rfft_init_q15 failed for n_fft={n}")

    for c in range(p.channels_out):
        for t in range(p.frames):
            if not q15:
                frame = dsp.arm_mult_f32(signal[t * hop : t * hop + n, c], p.window)
                packed = dsp.arm_rfft_fast_f32(rfft, frame, 0)
                spectrum = np.empty(half + 1, np.float32)
                if p.params.power == 2:
                    spectrum[0] = packed[0] * packed[0]
                    spectrum[half] = packed[1] * packed[1]
                    spectrum[1:half] = dsp.arm_cmplx_mag_squared_f32(packed[2:])
                else:
                    spectrum[0] = abs(packed[0])
                    spectrum[half] = abs(packed[1])
                    spectrum[1:half] = dsp.arm_cmplx_mag_f32(packed[2:])
                gain = np.float32(1.0)
            else:
                values = mixed[t * hop : t * hop + n, c]
                shift = _block_shift(int(np.abs(values).max()))
                scaled = values * (1 << shift) if shift >= 0 else values >> -shift
                frame = dsp.arm_mult_q15(scaled.astype(np.int16), p.window_q15)
                bins = dsp.arm_q15_to_float(dsp.arm_rfft_q15(rfft, frame)[: n + 2])
                amplitude_gain = np.float32(np.ldexp(np.float32(n) / divisor, -shift))
                if p.params.power == 2:
                    spectrum = dsp.arm_cmplx_mag_squared_f32(bins)
                    gain = np.float32(amplitude_gain * amplitude_gain)
                else:
                    spectrum = dsp.arm_cmplx_mag_f32(bins)
                    gain = amplitude_gain
            spectrum = np.asarray(spectrum, np.float32)
            for m, (first, count, offset) in enumerate(bands):
                value = np.float32(0.0)
                if count:
                    value = np.float32(dsp.arm_dot_prod_f32(spectrum[first : first + count],
                                                            weights[offset : offset + count]))
                mel[m, t, c] = value * gain

    flat = np.maximum(mel.ravel(), np.float32(p.params.amin))
    flat = np.asarray(dsp.arm_vlog_f32(flat), np.float32)
    flat = np.asarray(dsp.arm_scale_f32(flat, _DB_PER_NEPER), np.float32)
    if p.params.top_db is not None:
        loudest = np.float32(dsp.arm_max_f32(flat)[0])
        flat = np.maximum(flat, loudest - np.float32(p.params.top_db))
    return flat.reshape(p.feature_shape)

/* The log-mel front end of a tfasc bundle on Cortex-M, with CMSIS-DSP.
 *
 * Computes the training features of tfasc.data.features.log_mel_spectrogram (librosa-equal framing,
 * periodic window centred in n_fft, |X|^power, Slaney mel bank, 10*log10(max(mel, amin)), clamp at
 * the clip's maximum minus top_db over all channels) from int16 PCM, laid out
 * [n_mels][frames][channels_out] row-major: the input of tfasc_features_to_input (input_path.h).
 *
 * This file is fixed; everything that depends on the recipe comes from two generated headers
 * (tfasc.device.frontend.frontend_files): frontend.h (API and constants) and frontend_tables.h
 * (window, sparse mel bank, the size-specific CMSIS-DSP FFT init functions). Its Python twin,
 * tfasc.device.frontend.features_cmsisdsp, makes the same CMSIS-DSP calls in the same order through
 * pip cmsisdsp (the same C code); tests/device/test_frontend.py checks both against the training
 * features and against each other.
 *
 * Numerical choices:
 * - Channel mixing is done on the integer samples and scaled once, so that the float frame equals
 *   the training waveform bit for bit (int16 / 32768; mono = mean, mid_side = (L +- R) / 2).
 * - arm_rfft_fast_f32 returns a packed spectrum: out[0] = Re X[0] (DC), out[1] = Re X[n/2]
 *   (Nyquist), then Re/Im pairs of bins 1 .. n/2-1. DC and Nyquist are squared (or fabsf'd) here;
 *   arm_cmplx_mag_squared_f32 / arm_cmplx_mag_f32 does bins 1 .. n/2-1.
 * - The mel bank is sparse: per band its first bin, bin count and offset into one packed weight
 *   array; one arm_dot_prod_f32 per band and frame (bands with no bin give 0, hence amin).
 * - Log: arm_vlog_f32. On cores without Helium it is a loop over libm logf (identical to logf);
 *   with Helium (MVE-F) it is CMSIS-DSP's vectorised degree-7 polynomial, whose error, emulated
 *   in float32 over 1e-12 .. 1e6, is at most 2.3e-5 dB (logf: 4.7e-6 dB), far inside the 0.1 dB
 *   budget. So arm_vlog_f32 costs no accuracy and vectorises where the core can.
 * - 10 / ln 10 is applied with arm_scale_f32, then the clamp at (max over the clip) - top_db, in
 *   float32 exactly as the training graph does.
 *
 * The q15 variant (tfasc_frontend_log_mel_q15, compiled with -DTFASC_FRONTEND_Q15) frames in
 * block floating point (each frame shifted to use the full q15 range, the shift undone in float),
 * windows with arm_mult_q15 and transforms with arm_rfft_q15, whose output is the DFT scaled by
 * 1 / n_fft (log2(n_fft) bits of down-scaling inside the FFT); the spectrum is then taken in float
 * (arm_q15_to_float + arm_cmplx_mag_squared_f32), because arm_cmplx_mag_squared_q15 drops another
 * 17 bits (3.13 output) and measured tens of dB worse. Its error is the q15 FFT's noise floor,
 * roughly 50 dB below a frame's peak: see the measured figures in tfasc.device.frontend.
 *
 * Not reentrant: the scratch buffers are static (kFrontendScratchBytes, kFrontendScratchBytesQ15).
 */
#include "frontend.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "arm_math.h"
#include "frontend_tables.h"

#define TFASC_HALF_FFT (kFrontendNFft / 2)
#if TFASC_FRONTEND_CENTER
#define TFASC_PAD_LEFT (kFrontendNFft / 2)
#else
#define TFASC_PAD_LEFT 0
#endif

/* The windowed frame; after the FFT (which uses it as scratch) it holds the spectrum. */
static float32_t s_frame[kFrontendNFft];
/* The packed real-FFT output. */
static float32_t s_fft[kFrontendNFft];

/* The bytes the header promises. */
typedef char tfasc_frontend_scratch_check[
    (sizeof(s_frame) + sizeof(s_fft) == (size_t)kFrontendScratchBytes) ? 1 : -1];

/* Integer sample of output channel c at time index i (inside the clip), and its divisor: the
 * float sample is value / (32768 * divisor), as the training waveform. */
static inline int32_t tfasc_mixed_sample(const int16_t* pcm, int32_t i, int c) {
  const int16_t* s = pcm + (ptrdiff_t)i * kFrontendAudioChannels;
#if TFASC_FRONTEND_CHANNEL_MODE == TFASC_FRONTEND_CHANNEL_MODE_KEEP
  return (int32_t)s[c];
#elif TFASC_FRONTEND_CHANNEL_MODE == TFASC_FRONTEND_CHANNEL_MODE_MONO
  int32_t sum = 0;
  (void)c;
  for (int k = 0; k < kFrontendAudioChannels; ++k) sum += s[k];
  return sum;
#else /* mid_side */
  return c == 0 ? (int32_t)s[0] + (int32_t)s[1] : (int32_t)s[0] - (int32_t)s[1];
#endif
}

#if TFASC_FRONTEND_CHANNEL_MODE == TFASC_FRONTEND_CHANNEL_MODE_MONO
#define TFASC_MIX_DIVISOR kFrontendAudioChannels
#elif TFASC_FRONTEND_CHANNEL_MODE == TFASC_FRONTEND_CHANNEL_MODE_MID_SIDE
#define TFASC_MIX_DIVISOR 2
#else
#define TFASC_MIX_DIVISOR 1
#endif

/* First sample index of frame t (may be negative: the centre padding is zeros). */
static inline int32_t tfasc_frame_start(int t) {
  return (int32_t)t * kFrontendHopLength - TFASC_PAD_LEFT;
}

static void tfasc_fill_frame(const int16_t* pcm, int t, int c, float32_t* frame) {
  const int32_t start = tfasc_frame_start(t);
  for (int j = 0; j < kFrontendNFft; ++j) {
    const int32_t i = start + j;
    float32_t value = 0.0f;
    if (i >= 0 && i < kFrontendClipSamples) {
      /* An integer sum of int16 is exact in float32; one rounding at most, as the training mean. */
      value = ((float32_t)tfasc_mixed_sample(pcm, i, c) * (1.0f / 32768.0f)) / (float32_t)TFASC_MIX_DIVISOR;
    }
    frame[j] = value;
  }
}

/* Mel band energies of one spectrum into features[m][t][c]. */
static void tfasc_mel_bands(const float32_t* spectrum, float32_t gain, int t, int c, float* features) {
  for (int m = 0; m < kFrontendMels; ++m) {
    float32_t value = 0.0f;
    if (kFrontendBandCount[m] > 0) {
      arm_dot_prod_f32(spectrum + kFrontendBandFirst[m], kFrontendMelWeights + kFrontendBandOffset[m],
                       (uint32_t)kFrontendBandCount[m], &value);
    }
    features[((ptrdiff_t)m * kFrontendFrames + t) * kFrontendChannelsOut + c] = value * gain;
  }
}

/* max(x, amin) -> 10 log10 -> clamp from below at max - top_db, over the whole clip. */
static void tfasc_log_tail(float* features) {
  const uint32_t n = (uint32_t)kFrontendFeatureValues;
  for (uint32_t i = 0; i < n; ++i) {
    if (features[i] < TFASC_FRONTEND_AMIN) features[i] = TFASC_FRONTEND_AMIN;
  }
  arm_vlog_f32(features, features, n);
  arm_scale_f32(features, TFASC_FRONTEND_DB_PER_NEPER, features, n);
#if TFASC_FRONTEND_HAS_TOP_DB
  float32_t loudest;
  uint32_t where;
  arm_max_f32(features, n, &loudest, &where);
  const float32_t floor_db = loudest - TFASC_FRONTEND_TOP_DB;
  for (uint32_t i = 0; i < n; ++i) {
    if (features[i] < floor_db) features[i] = floor_db;
  }
#endif
}

int tfasc_frontend_log_mel(const int16_t* pcm, float* features) {
  if (pcm == NULL || features == NULL) return kFrontendErrorNullPointer;
  arm_rfft_fast_instance_f32 rfft;
  if (TFASC_FRONTEND_RFFT_F32_INIT(&rfft) != ARM_MATH_SUCCESS) return kFrontendErrorFftInit;

  for (int c = 0; c < kFrontendChannelsOut; ++c) {
    for (int t = 0; t < kFrontendFrames; ++t) {
      tfasc_fill_frame(pcm, t, c, s_frame);
      arm_mult_f32(s_frame, kFrontendWindow, s_frame, (uint32_t)kFrontendNFft);
      arm_rfft_fast_f32(&rfft, s_frame, s_fft, 0);
      float32_t* spectrum = s_frame; /* free again: n/2 + 1 <= n values */
#if TFASC_FRONTEND_POWER == 2
      spectrum[0] = s_fft[0] * s_fft[0];
      spectrum[TFASC_HALF_FFT] = s_fft[1] * s_fft[1];
      arm_cmplx_mag_squared_f32(s_fft + 2, spectrum + 1, (uint32_t)(TFASC_HALF_FFT - 1));
#else
      spectrum[0] = fabsf(s_fft[0]);
      spectrum[TFASC_HALF_FFT] = fabsf(s_fft[1]);
      arm_cmplx_mag_f32(s_fft + 2, spectrum + 1, (uint32_t)(TFASC_HALF_FFT - 1));
#endif
      tfasc_mel_bands(spectrum, 1.0f, t, c, features);
    }
  }
  tfasc_log_tail(features);
  return kFrontendOk;
}

#if defined(TFASC_FRONTEND_Q15)

static q15_t s_frame_q15[kFrontendNFft];            /* block-floating-point frame, FFT input */
static q15_t s_fft_q15[2 * kFrontendNFft];          /* arm_rfft_q15 writes 2 * n_fft values */
static float32_t s_bins_f32[kFrontendNFft + 2];     /* bins 0 .. n/2 as (re, im) pairs */
static float32_t s_spectrum_f32[TFASC_HALF_FFT + 1];

typedef char tfasc_frontend_scratch_q15_check[
    (sizeof(s_frame_q15) + sizeof(s_fft_q15) + sizeof(s_bins_f32) + sizeof(s_spectrum_f32) ==
     (size_t)kFrontendScratchBytesQ15) ? 1 : -1];

/* The shift that brings a frame's peak |value| to the top of q15 (negative: right shifts). */
static int tfasc_block_shift(int32_t peak) {
  int shift = 0;
  if (peak == 0) return 0;
  if (peak <= 32767) {
    while (shift < 15 && (peak << (shift + 1)) <= 32767) ++shift;
  } else {
    while ((peak >> -shift) > 32767) --shift;
  }
  return shift;
}

int tfasc_frontend_log_mel_q15(const int16_t* pcm, float* features) {
  if (pcm == NULL || features == NULL) return kFrontendErrorNullPointer;
  arm_rfft_instance_q15 rfft;
  if (TFASC_FRONTEND_RFFT_Q15_INIT(&rfft, 0, 1) != ARM_MATH_SUCCESS) return kFrontendErrorFftInit;

  for (int c = 0; c < kFrontendChannelsOut; ++c) {
    for (int t = 0; t < kFrontendFrames; ++t) {
      const int32_t start = tfasc_frame_start(t);
      int32_t peak = 0;
      for (int j = 0; j < kFrontendNFft; ++j) {
        const int32_t i = start + j;
        if (i >= 0 && i < kFrontendClipSamples) {
          const int32_t v = tfasc_mixed_sample(pcm, i, c);
          const int32_t magnitude = v < 0 ? -v : v;
          if (magnitude > peak) peak = magnitude;
        }
      }
      const int shift = tfasc_block_shift(peak);
      for (int j = 0; j < kFrontendNFft; ++j) {
        const int32_t i = start + j;
        int32_t v = 0;
        if (i >= 0 && i < kFrontendClipSamples) {
          v = tfasc_mixed_sample(pcm, i, c);
          /* multiply, not <<, for negative values; >> is arithmetic (floor) with GCC and Clang */
          v = shift >= 0 ? v * ((int32_t)1 << shift) : v >> -shift;
        }
        s_frame_q15[j] = (q15_t)v;
      }
      arm_mult_q15(s_frame_q15, kFrontendWindowQ15, s_frame_q15, (uint32_t)kFrontendNFft);
      arm_rfft_q15(&rfft, s_frame_q15, s_fft_q15);
      arm_q15_to_float(s_fft_q15, s_bins_f32, (uint32_t)(kFrontendNFft + 2));
      /* |X| = |bins| * n_fft / (2^shift * divisor): the FFT scaled by 1/n_fft, the frame by 2^shift. */
      const float32_t amplitude_gain =
          ldexpf((float32_t)kFrontendNFft / (float32_t)TFASC_MIX_DIVISOR, -shift);
#if TFASC_FRONTEND_POWER == 2
      arm_cmplx_mag_squared_f32(s_bins_f32, s_spectrum_f32, (uint32_t)(TFASC_HALF_FFT + 1));
      tfasc_mel_bands(s_spectrum_f32, amplitude_gain * amplitude_gain, t, c, features);
#else
      arm_cmplx_mag_f32(s_bins_f32, s_spectrum_f32, (uint32_t)(TFASC_HALF_FFT + 1));
      tfasc_mel_bands(s_spectrum_f32, amplitude_gain, t, c, features);
#endif
    }
  }
  tfasc_log_tail(features);
  return kFrontendOk;
}

#endif /* TFASC_FRONTEND_Q15 */

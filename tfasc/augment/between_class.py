"""Mixing two training clips on the waveform, before the front-end: between-class (BC) mixing and
standard mixup, with the targets mixed by the same ratio.

* Between-class mixing: Tokozume, Ushiku & Harada (2018), "Learning from Between-class Examples for
  Deep Sound Recognition", ICLR, Sec. 3.3.2 ("the mixing method that accounts for sound
  pressure"), as in the authors' code (``mil-tokyo/bc_learning_sound``, ``utils.mix``). ERANNs
  (Verbitskiy et al. 2022) Sec. 4.2.1, Table 3, call it "modified mixup on the waveform" (type 3)
  and compare it with standard mixup on the waveform (type 2) and with no mixing (type 1).
* Standard mixup: Zhang et al. (2018), "mixup: Beyond empirical risk minimization", ICLR, on
  the raw samples: ``r * x1 + (1 - r) * x2``.

Layout: waveforms ``[batch, samples, channels]`` float32, targets ``[batch, classes]`` (one-hot,
multi-hot or soft). Every function works on a whole batch in graph mode (``tf.data`` map, no
Python loop over examples); the random draws (:func:`draw_mix`) are stateless and a pure
function of their seed, and :func:`make_waveform_mixer` seeds batch ``i`` from
``(base_seed, i)`` only, so a resumed run replays the same mixes.

Cost (:func:`make_waveform_mixer` in a ``tf.function``, batches of 32 on a 2-core CPU shared with
other jobs, so +-30 %): 1 s at 16 kHz: mixup ~6800 clips/s, between-class ~3100 (the gains' STFT);
8 s at 44.1 kHz: ~490 and ~100.

Convention: example ``x1`` (the batch row) keeps weight ``r`` of the label, its partner ``x2``
weight ``1 - r``: ``y = r * y1 + (1 - r) * y2`` for both kinds (multi-hot targets too).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

import tfasc  # noqa: F401  (selects tf_keras before TensorFlow is imported)

import tensorflow as tf

from tfasc.augment.masking import as_seed, split_seed
from tfasc.augment.mixing import partner_indices, sample_beta

#: ``augment.waveform.mix`` choices: no mixing, standard mixup, between-class mixing.
MIX_KINDS = ("none", "mixup", "between_class")
#: ``augment.waveform.mix_partners`` choices (see :func:`draw_mix`).
MIX_PARTNERS = ("auto", "any", "different_targets")
#: The floor of the A-weighting and of each frame's gain, in dB (the authors' ``min_db``).
MIN_DB = -80.0
# Second word of the mixer's root seed: keeps its stream apart from the per-example waveform
# augmenter's ([base_seed, "WAVE"]) and the batch augmenter's ([base_seed, batch_index]).
_MIX_STREAM = 0x4D495857  # "MIXW"


# --------------------------------------------------------------------------------------------
# A-weighted gain of a sound
# --------------------------------------------------------------------------------------------


def gain_n_fft(sample_rate: int) -> int:
    """Frame length of :func:`sound_gain_db`: the power of two nearest 128 ms (log scale).

    The authors' code fixes 2048 samples at 16 kHz and 4096 at 44.1 kHz; this rule gives both
    (and 1024 at 8 kHz, 2048 at 22.05 kHz). The next power of two above 128 ms would give 8192
    at 44.1 kHz instead.
    """
    return 1 << max(int(round(math.log2(0.128 * float(sample_rate)))), 4)


def a_weighting_db(sample_rate: int, n_fft: int, min_db: float = MIN_DB) -> np.ndarray:
    """A-weighting in dB (IEC 61672-1) at the ``n_fft // 2 + 1`` rfft bin frequencies, floored at ``min_db``.

    ``A(f) = 2.0 + 20 log10(f4^2 f^4 / ((f^2 + f1^2) sqrt((f^2 + f2^2)(f^2 + f3^2)) (f^2 + f4^2)))``
    with ``f1..f4 = 20.599, 107.653, 737.862, 12194.217`` Hz (the constants of
    ``librosa.A_weighting``; the authors round them to 20.6, 107.7, 737.9, 12194). ``A(0)`` is
    ``-inf``, hence ``min_db``.
    """
    freq_sq = np.square(np.fft.rfftfreq(int(n_fft), 1.0 / float(sample_rate)))
    f1, f2, f3, f4 = (c * c for c in (20.598997, 107.65265, 737.86223, 12194.217))
    with np.errstate(divide="ignore"):
        weight = 2.0 + 20.0 * (np.log10(f4) + 2.0 * np.log10(freq_sq) - np.log10(freq_sq + f1)
                               - np.log10(freq_sq + f4) - 0.5 * np.log10(freq_sq + f2) - 0.5 * np.log10(freq_sq + f3))
    return np.maximum(weight, float(min_db))


def sound_gain_db(x, sample_rate: int, *, n_fft: int | None = None, min_db: float = MIN_DB) -> tf.Tensor:
    """The gain ``G`` in dB of each sound of ``x [batch, samples, channels]``: ``[batch]`` float32.

    Tokozume et al. (2018) Sec. 3.3.2, as ``utils.compute_gain`` of the authors' code: frames of
    ``n_fft`` samples (:func:`gain_n_fft`; 2048 at 16 kHz, 4096 at 44.1 kHz) every ``n_fft // 2``,
    periodic Hann window (``np.hanning(n_fft + 1)[:-1]``), frame gain
    ``g = sum_f |rfft|^2 * 10^(A(f) / 10)`` (:func:`a_weighting_db`), floored at
    ``10^(min_db / 10)``; ``G = 10 log10(max over frames g)``. A sound shorter than one frame is
    zero-padded to one (the authors' code has no frame then); a multi-channel sound's gain is that
    of its mean over channels.
    """
    x = tf.convert_to_tensor(x, tf.float32)
    if x.shape.rank != 3:
        raise ValueError(f"x must be waveforms [batch, samples, channels], got shape {x.shape}")
    n_fft = int(n_fft or gain_n_fft(sample_rate))
    mono = tf.reduce_mean(x, axis=2)
    mono = tf.pad(mono, tf.stack([[0, 0], [0, tf.maximum(n_fft - tf.shape(mono)[1], 0)]]))
    frames = tf.signal.frame(mono, n_fft, n_fft // 2)  # [batch, frames, n_fft]; no partial last frame
    window = tf.signal.hann_window(n_fft, periodic=True)
    power = tf.square(tf.abs(tf.signal.rfft(frames * window)))  # [batch, frames, n_fft // 2 + 1]
    weight = tf.constant(10.0 ** (a_weighting_db(sample_rate, n_fft, min_db) / 10.0), tf.float32)
    frame_gain = tf.reduce_sum(power * weight, axis=2)
    loudest = tf.maximum(tf.reduce_max(frame_gain, axis=1), 10.0 ** (float(min_db) / 10.0))
    return 10.0 * tf.math.log(loudest) / math.log(10.0)


# --------------------------------------------------------------------------------------------
# Mixing two sounds given the ratio
# --------------------------------------------------------------------------------------------


def between_class_weight(gain_db, partner_gain_db, ratio) -> tf.Tensor:
    """The amplitude weight ``p`` of the first sound (Tokozume et al. 2018, Sec. 3.3.2, Eq. 2).

    ``p = 1 / (1 + 10^((G1 - G2) / 20) * (1 - r) / r)``, written as
    ``r / (r + 10^((G1 - G2) / 20) (1 - r))`` so that ``r = 0`` gives 0 and ``r = 1`` gives 1
    exactly. It makes the two sounds' A-weighted gains in the mix differ by ``20 log10(r / (1 - r))``
    dB: equal at ``r = 0.5`` however loud each sound was.
    """
    ratio = tf.cast(ratio, tf.float32)
    level = tf.pow(10.0, (tf.cast(gain_db, tf.float32) - tf.cast(partner_gain_db, tf.float32)) / 20.0)
    return ratio / (ratio + level * (1.0 - ratio))


def between_class_mix(x, x_partner, ratio, gain_db, partner_gain_db) -> tf.Tensor:
    """BC mixing of ``x`` and ``x_partner`` ``[batch, samples, channels]`` by ``ratio [batch]``.

    ``mixed = (p x1 + (1 - p) x2) / sqrt(p^2 + (1 - p)^2)`` with ``p`` from
    :func:`between_class_weight` and the sounds' gains (:func:`sound_gain_db`); the division keeps
    the power of two uncorrelated unit-power sounds (Tokozume et al. 2018, Sec. 3.3.2). ``r = 1``:
    ``x`` exactly.
    """
    p = between_class_weight(gain_db, partner_gain_db, ratio)
    p = p[:, tf.newaxis, tf.newaxis]
    return (p * x + (1.0 - p) * x_partner) / tf.sqrt(tf.square(p) + tf.square(1.0 - p))


def mixup_mix(x, x_partner, ratio) -> tf.Tensor:
    """Standard mixup on the waveform: ``r x1 + (1 - r) x2`` per example (Zhang et al. 2018)."""
    r = tf.cast(ratio, tf.float32)[:, tf.newaxis, tf.newaxis]
    return r * x + (1.0 - r) * x_partner


def mix_targets(y, y_partner, ratio) -> tf.Tensor:
    """``r y1 + (1 - r) y2`` per example: one-hot, multi-hot and soft targets alike."""
    r = tf.cast(ratio, y.dtype)[:, tf.newaxis]
    return r * y + (1.0 - r) * y_partner


# --------------------------------------------------------------------------------------------
# Drawing partners and ratios
# --------------------------------------------------------------------------------------------


def partners_with_different_targets(targets, permutation) -> tf.Tensor:
    """``[batch]`` partners: for row ``i``, the first of ``permutation[i], permutation[i + 1], ...``
    (cyclically) whose target vector differs from row ``i``'s; ``permutation[i]`` when none does.

    BC learning mixes "two sounds belonging to different classes" (Tokozume et al. 2018,
    Sec. 3.3.1; the authors' code redraws until the labels differ); in graph mode the redraw is
    this scan along the batch's random permutation, ``O(batch^2)``. For one-hot targets it picks a
    different class; for multi-hot targets a different label set. A batch of one class keeps the
    permutation (mixing two examples of the same class, whose mixed target is theirs).
    """
    targets = tf.convert_to_tensor(targets)
    permutation = tf.cast(permutation, tf.int32)
    batch = tf.shape(permutation)[0]
    steps = tf.range(batch)
    candidates = tf.gather(permutation, (steps[:, tf.newaxis] + steps[tf.newaxis, :]) % batch)  # [i, k]
    differs = tf.reduce_any(tf.gather(targets, candidates) != targets[:, tf.newaxis, :], axis=2)
    first = tf.argmax(tf.cast(differs, tf.int32), axis=1, output_type=tf.int32)  # first True (0 if none)
    chosen = tf.gather(candidates, first, axis=1, batch_dims=1)
    return tf.where(tf.reduce_any(differs, axis=1), chosen, permutation)


def draw_mix(targets, seed, *, prob: float, alpha: float, different_targets: bool) -> tuple[tf.Tensor, tf.Tensor]:
    """``(partner [batch] int32, ratio [batch] float32)`` for a batch of ``targets [batch, classes]``.

    Partners: a random permutation of the batch (:func:`tfasc.augment.mixing.partner_indices`),
    moved on to the next example with other targets when ``different_targets``
    (:func:`partners_with_different_targets`). Ratio ``r ~ Beta(alpha, alpha)`` per example
    (``alpha = 1``: ``U(0, 1)``, BC learning's ratio, Sec. 3.3.1); an example drawn unmixed
    (probability ``1 - prob``) gets ``r = 1``: itself and its own target, exactly.
    """
    targets = tf.convert_to_tensor(targets)
    permutation_seed, ratio_seed, choice_seed = tf.unstack(split_seed(as_seed(seed), 3))
    batch = tf.shape(targets)[0]
    partner = partner_indices(batch, permutation_seed)
    if different_targets:
        partner = partners_with_different_targets(targets, partner)
    ratio = sample_beta([batch], alpha, ratio_seed)
    if prob < 1.0:
        mixed = tf.random.stateless_uniform([batch], choice_seed) < prob
        ratio = tf.where(mixed, ratio, 1.0)
    return tf.cast(partner, tf.int32), ratio


def mix_batch(clips, targets, partner, ratio, *, kind: str, sample_rate: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Mix each row of ``clips [batch, samples, channels]`` with row ``partner[i]`` by ``ratio[i]``.

    ``kind``: "between_class" (:func:`between_class_mix`, the gains of the batch computed once) or
    "mixup" (:func:`mixup_mix`); targets ``r y + (1 - r) y[partner]`` either way.
    """
    if kind not in MIX_KINDS[1:]:
        raise ValueError(f"mix kind: expected one of {MIX_KINDS[1:]}, got {kind!r}")
    clips = tf.convert_to_tensor(clips, tf.float32)
    targets = tf.convert_to_tensor(targets)
    targets = targets if targets.dtype.is_floating else tf.cast(targets, tf.float32)
    partner_clips, partner_targets = tf.gather(clips, partner), tf.gather(targets, partner)
    if kind == "between_class":
        gains = sound_gain_db(clips, sample_rate)
        mixed = between_class_mix(clips, partner_clips, ratio, gains, tf.gather(gains, partner))
    else:
        mixed = mixup_mix(clips, partner_clips, ratio)
    return mixed, mix_targets(targets, partner_targets, ratio)


def mix_seed(base_seed: int, batch_index) -> tf.Tensor:
    """The shape-``[2]`` seed of batch ``batch_index``'s mix: ``fold_in([base_seed, "MIXW"], batch_index)``."""
    root = tf.constant([int(base_seed), _MIX_STREAM], tf.int64)
    return tf.random.experimental.stateless_fold_in(root, tf.cast(batch_index, tf.int64))


def make_waveform_mixer(policy, base_seed: int, sample_rate: int) -> Callable:
    """``fn(clips [batch, samples, channels], targets [batch, classes], batch_index) -> (clips, targets)``
    applying ``policy.mix`` (a :class:`tfasc.augment.waveform.WaveformAugmentPolicy`; "none":
    the inputs unchanged) with the draws of :func:`draw_mix` seeded by :func:`mix_seed`.

    ``batch_index`` must be the run's global batch index, so resumed runs replay the same mixes.
    ``mix_partners: auto`` means "different_targets" for between-class mixing (BC learning) and
    "any" for mixup (Zhang et al. pair any two examples).
    """
    kind = policy.mix
    partners = policy.mix_partners
    if partners == "auto":
        partners = "different_targets" if kind == "between_class" else "any"

    def mix(clips, targets, batch_index):
        if kind == "none":
            return clips, targets
        partner, ratio = draw_mix(targets, mix_seed(base_seed, batch_index), prob=float(policy.mix_prob),
                                  alpha=float(policy.mix_alpha), different_targets=partners == "different_targets")
        return mix_batch(clips, targets, partner, ratio, kind=kind, sample_rate=int(sample_rate))

    return mix

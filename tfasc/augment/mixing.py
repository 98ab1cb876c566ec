"""Batch mixing augmentations: mixup, FreqMix, CutMix, and the policy that combines them.

FreqMix is Sec. 3.1 of 'QTI Submission to DCASE 2020: Model Efficient Acoustic Scene Classification' (DCASE 2020 Task 1B technical report, entry Chang_QTI_task1b); mixup is Zhang et al. (2018); CutMix is
Yun et al. (2019).

Layout: ``x`` is ``[batch, freq, time, channels]``, ``y`` one-hot or soft ``[batch, classes]``.
Every function works on a whole batch inside ``tf.data.Dataset.map`` (graph mode, no Python loop over
examples), pairs each example with a partner from a random permutation of the same batch, draws
its own mixing ratio per example, and is reproducible from an explicit ``seed``: a shape-``[2]``
integer tensor consumed by stateless random ops (same seed, same result).

Labels are always weighted by the exact fraction of feature cells taken from each source, counted
after the band or box was clipped to the spectrogram, so the label mass matches what the network sees.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import tfasc  # noqa: F401  (selects tf_keras before TensorFlow is imported)

import tensorflow as tf

from tfasc.augment.masking import MASK_FILLS, as_seed, outer, over_channels, specaugment, split_seed


# --------------------------------------------------------------------------------------------
# Random building blocks
# --------------------------------------------------------------------------------------------


def sample_beta(shape, alpha: float, seed) -> tf.Tensor:
    """Beta(alpha, alpha) samples as ``G1 / (G1 + G2)`` of two stateless Gamma(alpha, 1) draws."""
    if not float(alpha) > 0.0:
        raise ValueError(f"Beta concentration alpha must be > 0, got {alpha!r}")
    seed_1, seed_2 = tf.unstack(split_seed(seed, 2))
    g1 = tf.random.stateless_gamma(shape, seed_1, alpha=float(alpha), dtype=tf.float32)
    g2 = tf.random.stateless_gamma(shape, seed_2, alpha=float(alpha), dtype=tf.float32)
    total = g1 + g2
    # Both gammas underflow to 0 only for tiny alpha; the limit there is a fair coin, use 0.5.
    return tf.where(total > 0.0, g1 / tf.where(total > 0.0, total, 1.0), 0.5)


def partner_indices(batch: tf.Tensor, seed) -> tf.Tensor:
    """A random permutation of ``range(batch)``: example ``i`` is mixed with example ``perm[i]``."""
    return tf.argsort(tf.random.stateless_uniform([batch], as_seed(seed)))


def _prepare(x, y) -> tuple[tf.Tensor, tf.Tensor]:
    x = tf.convert_to_tensor(x)
    y = tf.convert_to_tensor(y)
    if x.shape.rank != 4:
        raise ValueError(f"x must be [batch, freq, time, channels], got shape {x.shape}")
    if y.shape.rank != 2:
        raise ValueError(f"y must be one-hot or soft labels [batch, classes], got shape {y.shape}")
    if not y.dtype.is_floating:
        y = tf.cast(y, tf.float32)
    return x, y


def _partners(x, y, partner, seed):
    if partner is None:
        partner = partner_indices(tf.shape(x)[0], seed)
    return tf.gather(x, partner), tf.gather(y, partner)


def _mix_labels(y, y_partner, partner_fraction) -> tf.Tensor:
    """``(1 - f) * y + f * y_partner`` with ``f`` ``[batch]`` the partner's share of the cells."""
    f = tf.cast(partner_fraction, y.dtype)[:, tf.newaxis]
    return (1.0 - f) * y + f * y_partner


def blend_rank_one(x, y, x_partner, y_partner, rows, cols) -> tuple[tf.Tensor, tf.Tensor]:
    """Mix with the partner by the weight map ``w[b, f, t] = rows[b, f] * cols[b, t]`` (all channels).

    ``x_out = x * (1 - w) + x_partner * w`` (exact copies where ``w`` is 0 or 1) and labels weighted by
    the partner's share ``mean(w) = sum(rows) * sum(cols) / (F * T)``. Every method here is such a map:
    FreqMix a band of rows, CutMix a box (rows x columns), mixup a constant.
    """
    shape = tf.shape(x)
    weight = outer(rows, cols)
    weight = over_channels(weight, tf.ones(tf.stack([shape[0], shape[3]]), weight.dtype))
    weight = tf.cast(weight, x.dtype)
    x_mixed = x * (1.0 - weight) + x_partner * weight
    cells = tf.cast(shape[1] * shape[2], tf.float32)
    partner_fraction = tf.reduce_sum(tf.cast(rows, tf.float32), axis=1) * tf.reduce_sum(tf.cast(cols, tf.float32), axis=1) / cells
    return x_mixed, _mix_labels(y, y_partner, partner_fraction)


def _indicator(low, high, size) -> tf.Tensor:
    """``[batch, size]`` float32: 1 on ``[low, high)`` of every example, else 0."""
    position = tf.range(size)[tf.newaxis, :]
    inside = (position >= low[:, tf.newaxis]) & (position < high[:, tf.newaxis])
    return tf.cast(inside, tf.float32)


# --------------------------------------------------------------------------------------------
# The three mixing methods, each as a rank-one weight map (rows, cols)
# --------------------------------------------------------------------------------------------


def mixup_map(batch, freq, time, alpha: float, seed) -> tuple[tf.Tensor, tf.Tensor]:
    """mixup's partner weight ``1 - lam`` everywhere, ``lam ~ Beta(alpha, alpha)`` per example."""
    lam = sample_beta([batch], alpha, seed)
    rows = tf.ones(tf.stack([batch, freq]), tf.float32) * (1.0 - lam)[:, tf.newaxis]
    return rows, tf.ones(tf.stack([batch, time]), tf.float32)


def _mix_by_map(x, y, alpha: float, seed, partner, partner_map) -> tuple[tf.Tensor, tf.Tensor]:
    """Blend every example with its partner by the rank-one weight map ``partner_map`` draws.

    ``partner_map(batch, freq, time, alpha, seed) -> (rows [batch, freq], cols [batch, time])``
    gives the partner's share of each cell as ``rows ⊗ cols``; labels follow the mean share.
    """
    x, y = _prepare(x, y)
    map_seed, perm_seed = tf.unstack(split_seed(seed, 2))
    x_partner, y_partner = _partners(x, y, partner, perm_seed)
    shape = tf.shape(x)
    rows, cols = partner_map(shape[0], shape[1], shape[2], alpha, map_seed)
    return blend_rank_one(x, y, x_partner, y_partner, rows, cols)


def mixup(x, y, alpha: float, seed, *, partner=None) -> tuple[tf.Tensor, tf.Tensor]:
    """mixup: ``x = lam * x + (1 - lam) * x[perm]``, same for ``y``; ``lam ~ Beta(alpha, alpha)`` per example.

    ``partner`` (optional ``[batch]`` int indices) overrides the random permutation.
    """
    return _mix_by_map(x, y, alpha, seed, partner, mixup_map)


def freqmix_band(batch, freq, alpha: float, seed) -> tuple[tf.Tensor, tf.Tensor]:
    """FreqMix bands, Eq. (1): ``(start, end)`` int32 ``[batch]`` each, band = bins ``[start, end)``.

    ``lam ~ Beta(alpha, alpha)``, width ``r_f = round(F * lam)`` bins, start ``r_y`` uniform over the
    integer bins ``{0, ..., F - 1}``, and the band is clipped at ``F``: ``end = min(r_y + r_f, F)``.
    """
    lam_seed, start_seed = tf.unstack(split_seed(seed, 2))
    freq_f = tf.cast(freq, tf.float32)
    lam = sample_beta([batch], alpha, lam_seed)
    width = tf.round(lam * freq_f)
    start = tf.minimum(tf.floor(tf.random.stateless_uniform([batch], start_seed) * freq_f), freq_f - 1.0)
    end = tf.minimum(start + width, freq_f)
    return tf.cast(start, tf.int32), tf.cast(end, tf.int32)


def freqmix_map(batch, freq, time, alpha: float, seed) -> tuple[tf.Tensor, tf.Tensor]:
    """FreqMix's partner weight: 1 on the band of :func:`freqmix_band` over all frames."""
    start, end = freqmix_band(batch, freq, alpha, seed)
    return _indicator(start, end, freq), tf.ones(tf.stack([batch, time]), tf.float32)


def freqmix(x, y, alpha: float, seed, *, partner=None) -> tuple[tf.Tensor, tf.Tensor]:
    """FreqMix (paper Sec. 3.1): the partner's frequency band replaces the example's band.

    The band (all time frames, all channels) is drawn by :func:`freqmix_band`. Eq. (1) writes
    ``x = M * x_A + (1 - M) * x_B`` with the band of width ``F * lam``; here the band comes from the
    partner (``x_B``, as the text says, "replaces a frequency band of an input spectrogram with that of
    other sample's"), and the labels are ``y = (1 - f) * y_A + f * y_B`` with ``f = (end - start) / F``
    the exact fraction of bins taken from the partner after clipping at the top edge, so a band
    that hits the edge gives the partner less weight than ``lam``. With the paper's ``alpha = 1``
    (``lam`` uniform) this matches Eq. (1) up to that clipping.
    """
    return _mix_by_map(x, y, alpha, seed, partner, freqmix_map)


def cutmix_box(batch, freq, time, alpha: float, seed) -> tuple[tf.Tensor, ...]:
    """CutMix boxes: ``(f0, f1, t0, t1)`` int32 ``[batch]`` each, box = ``[f0, f1) x [t0, t1)``.

    As in the CutMix reference: ``lam ~ Beta(alpha, alpha)``, cut ratio ``sqrt(1 - lam)``, box size
    ``round(F * ratio) x round(T * ratio)`` around a centre uniform over the integer cells, clipped to
    the spectrogram (``f0 = max(cf - h // 2, 0)``, ``f1 = min(cf + h // 2, F)``, same for time).
    """
    lam_seed, freq_seed, time_seed = tf.unstack(split_seed(seed, 3))
    lam = sample_beta([batch], alpha, lam_seed)
    ratio = tf.sqrt(1.0 - lam)

    def span(size, span_seed):
        size_f = tf.cast(size, tf.float32)
        half = tf.floor(tf.round(size_f * ratio) / 2.0)
        centre = tf.minimum(tf.floor(tf.random.stateless_uniform([batch], span_seed) * size_f), size_f - 1.0)
        low = tf.clip_by_value(centre - half, 0.0, size_f)
        high = tf.clip_by_value(centre + half, 0.0, size_f)
        return tf.cast(low, tf.int32), tf.cast(high, tf.int32)

    f0, f1 = span(freq, freq_seed)
    t0, t1 = span(time, time_seed)
    return f0, f1, t0, t1


def cutmix_map(batch, freq, time, alpha: float, seed) -> tuple[tf.Tensor, tf.Tensor]:
    """CutMix's partner weight: 1 inside the box of :func:`cutmix_box`."""
    f0, f1, t0, t1 = cutmix_box(batch, freq, time, alpha, seed)
    return _indicator(f0, f1, freq), _indicator(t0, t1, time)


def cutmix(x, y, alpha: float, seed, *, partner=None) -> tuple[tf.Tensor, tf.Tensor]:
    """CutMix on the time-frequency plane: the partner's box (all channels) replaces the example's.

    Box from :func:`cutmix_box`; labels ``(1 - f) * y + f * y_partner`` with ``f`` the box area after
    clipping divided by ``F * T``.
    """
    return _mix_by_map(x, y, alpha, seed, partner, cutmix_map)


# --------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class AugmentPolicy:
    """Batch augmentation settings; the recipe's ``augment:`` section maps onto it field by field.

    The defaults augment nothing. The paper's DCASE 2020 Task 1B setting combines FreqMix and
    CutMix with ``alpha = 1``, e.g. ``freqmix_prob=0.5, cutmix_prob=0.5`` (the report gives no
    probabilities).

    Choice (see :func:`apply_policy`): each example (or the whole batch, ``per_example=False``)
    draws ``u ~ U[0, 1)`` and gets FreqMix if ``u < freqmix_prob``, else CutMix if
    ``u < freqmix_prob + cutmix_prob``, else mixup if ``u < freqmix_prob + cutmix_prob + mixup_prob``,
    else no mixing. So the three probabilities are absolute and must sum to at most 1. SpecAugment
    masking, when configured, is applied afterwards to every example.
    """

    freqmix_prob: float = 0.0
    """Probability that an example is FreqMix-ed."""
    freqmix_alpha: float = 1.0
    """Beta(alpha, alpha) of the FreqMix band width ratio (paper: 1, uniform)."""
    cutmix_prob: float = 0.0
    """Probability that an example is CutMix-ed."""
    cutmix_alpha: float = 1.0
    """Beta(alpha, alpha) of the CutMix area ratio."""
    mixup_prob: float = 0.0
    """Probability that an example is mixup-ed."""
    mixup_alpha: float = 0.2
    """Beta(alpha, alpha) of the mixup ratio."""
    mixup_warmup_epochs: int = 0
    """Mixup is off for the first this many epochs of a stage's training (the examples that draw it
    stay unmixed; the rest of the policy is unchanged). AclNet (Huang & Leanos 2018) Sec. 3.4: 100,
    "as a form of warm up to improve initial convergence"."""
    per_example: bool = True
    """Draw the method per example (True) or once per batch (False)."""
    freq_masks: int = 0
    """SpecAugment: number of frequency masks per example (0: none)."""
    freq_mask_width: int = 0
    """SpecAugment: largest frequency mask width in bins."""
    time_masks: int = 0
    """SpecAugment: number of time masks per example (0: none)."""
    time_mask_width: int = 0
    """SpecAugment: largest time mask width in frames."""
    mask_fill: str = "mean"
    """SpecAugment fill value: "mean" (example's per-channel mean) or "zero"."""

    def __post_init__(self) -> None:
        for key in ("freqmix_prob", "cutmix_prob", "mixup_prob"):
            value = getattr(self, key)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"augment.{key}: expected a probability in [0, 1], got {value!r}")
        total = self.freqmix_prob + self.cutmix_prob + self.mixup_prob
        if total > 1.0 + 1e-9:
            raise ValueError(
                "augment: freqmix_prob + cutmix_prob + mixup_prob must be <= 1 (they are absolute "
                f"probabilities of exclusive choices), got {total!r}"
            )
        for key in ("freqmix_alpha", "cutmix_alpha", "mixup_alpha"):
            value = getattr(self, key)
            if not float(value) > 0.0:
                raise ValueError(f"augment.{key}: expected a Beta concentration > 0, got {value!r}")
        for key in ("freq_masks", "freq_mask_width", "time_masks", "time_mask_width", "mixup_warmup_epochs"):
            value = getattr(self, key)
            if isinstance(value, bool) or int(value) != value or value < 0:
                raise ValueError(f"augment.{key}: expected an integer >= 0, got {value!r}")
        if self.mask_fill not in MASK_FILLS:
            raise ValueError(f"augment.mask_fill: expected one of {MASK_FILLS}, got {self.mask_fill!r}")

    @property
    def mixes(self) -> bool:
        return self.freqmix_prob + self.cutmix_prob + self.mixup_prob > 0.0

    @property
    def masks(self) -> bool:
        return (self.freq_masks > 0 and self.freq_mask_width > 0) or (
            self.time_masks > 0 and self.time_mask_width > 0
        )

    @property
    def enabled(self) -> bool:
        """Whether the policy changes anything at all."""
        return self.mixes or self.masks


def apply_policy(
    x, y, *, seed, policy: AugmentPolicy | None = None, **policy_fields
) -> tuple[tf.Tensor, tf.Tensor]:
    """Augment a batch ``x [batch, freq, time, channels]``, ``y [batch, classes]`` by ``policy``.

    Give either ``policy`` or its fields as keywords (``freqmix_prob=0.5, cutmix_prob=0.5, ...``).
    All methods share one partner permutation; each draws its own ratios. Method choice per example
    (or per batch) as documented on :class:`AugmentPolicy`, then SpecAugment masking of every example.
    Each method is a rank-one weight map (see :func:`blend_rank_one`), so the chosen maps are merged
    per example and the batch is blended once, whatever the number of methods.
    """
    if policy is None:
        policy = AugmentPolicy(**policy_fields)
    elif policy_fields:
        raise ValueError(f"apply_policy: give either policy or its fields, not both ({sorted(policy_fields)})")
    x, y = _prepare(x, y)
    (choice_seed, perm_seed, freqmix_seed, cutmix_seed, mixup_seed, mask_seed) = tf.unstack(split_seed(seed, 6))
    batch = tf.shape(x)[0]
    if policy.mixes:
        partner = partner_indices(batch, perm_seed)
        x_partner, y_partner = _partners(x, y, partner, None)
        draw_shape = [batch] if policy.per_example else [1]
        u = tf.broadcast_to(tf.random.stateless_uniform(draw_shape, choice_seed), [batch])
        shape = tf.shape(x)
        # No mixing: weight 0. Each method with a nonzero probability overwrites the weight map of
        # the examples that drew it; one blend follows.
        rows = tf.zeros(tf.stack([batch, shape[1]]), tf.float32)
        cols = tf.zeros(tf.stack([batch, shape[2]]), tf.float32)
        low = 0.0
        for prob, weight_map, alpha, method_seed in (
            (policy.freqmix_prob, freqmix_map, policy.freqmix_alpha, freqmix_seed),
            (policy.cutmix_prob, cutmix_map, policy.cutmix_alpha, cutmix_seed),
            (policy.mixup_prob, mixup_map, policy.mixup_alpha, mixup_seed),
        ):
            if prob > 0.0:
                chosen = ((u >= low) & (u < low + prob))[:, tf.newaxis]
                method_rows, method_cols = weight_map(batch, shape[1], shape[2], alpha, method_seed)
                rows = tf.where(chosen, method_rows, rows)
                cols = tf.where(chosen, method_cols, cols)
            low += prob
        x, y = blend_rank_one(x, y, x_partner, y_partner, rows, cols)
    if policy.masks:
        x = specaugment(
            x, policy.freq_masks, policy.freq_mask_width, policy.time_masks, policy.time_mask_width,
            mask_seed, fill=policy.mask_fill,
        )
    return x, y


def waveform_compatible(policy: AugmentPolicy) -> list[str]:
    """The settings of ``policy`` that need a frequency axis (empty when it suits waveforms)."""
    needs_frequency = {"freqmix_prob": policy.freqmix_prob, "cutmix_prob": policy.cutmix_prob,
                       "freq_masks": policy.freq_masks}
    return [key for key, value in needs_frequency.items() if value]


def make_batch_augmenter(
    policy: AugmentPolicy, base_seed: int, *, steps_per_epoch: int | None = None
) -> Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """``fn(x, y, batch_index) -> (x, y)`` applying ``policy`` with seed ``[base_seed, batch_index]``.

    ``batch_index`` must differ for every batch of the whole run (not restart each epoch) for
    fresh augmentations each epoch, e.g.::

        ds = ds.batch(32).repeat().enumerate()
        ds = ds.map(lambda i, xy: augment(xy[0], xy[1], i))

    or ``epoch * steps_per_epoch + step``. Same ``base_seed`` and index: the same batch out.
    ``part=(i, first_row)`` (one replica's slice ``i`` of the batch, ``make_dataset(part=...)``):
    slice ``i > 0`` draws from the seed folded with ``i``, so replicas do not repeat each other's draws.
    A policy that changes nothing returns the inputs untouched (no ops added). With
    ``policy.mixup_warmup_epochs`` (which needs ``steps_per_epoch``), batches with
    ``batch_index < mixup_warmup_epochs * steps_per_epoch`` get the policy without mixup, drawn
    from the same seed (so FreqMix, CutMix and masks are what they would be anyway).

    Waveform batches ``[batch, samples, channels]`` are augmented as features with one frequency
    bin ``[batch, 1, samples, channels]``: mixup and time masks (width in samples) mean what they
    say there; FreqMix, CutMix and frequency masks need a frequency axis (see
    :func:`waveform_compatible`).
    """
    base = int(base_seed)
    warmup = 0
    if policy.mixup_warmup_epochs > 0:
        if steps_per_epoch is None or int(steps_per_epoch) < 1:
            raise ValueError(f"augment.mixup_warmup_epochs: {policy.mixup_warmup_epochs} needs steps_per_epoch "
                             f"(a positive integer), got {steps_per_epoch!r}")
        if policy.mixup_prob > 0.0:
            warmup = policy.mixup_warmup_epochs * int(steps_per_epoch)
    # mixup is the last of the exclusive choices, so dropping it leaves the others' draws as they are.
    without_mixup = dataclasses.replace(policy, mixup_prob=0.0)

    def apply(x, y, seed, chosen):
        if x.shape.rank == 3:  # [batch, samples, channels]: one frequency bin
            x, y = apply_policy(x[:, tf.newaxis], y, seed=seed, policy=chosen)
            return x[:, 0], y
        return apply_policy(x, y, seed=seed, policy=chosen)

    @tf.autograph.experimental.do_not_convert  # static Python control flow only: tracing as is is faster
    def augment(x, y, batch_index, part=None):
        if not policy.enabled:
            return x, y
        x = tf.convert_to_tensor(x)
        seed = tf.stack([tf.constant(base, tf.int64), tf.cast(batch_index, tf.int64)])
        if part is not None and part[0]:  # one replica's slice of the batch (make_dataset's part): its own draws
            seed = tf.random.experimental.stateless_fold_in(seed, part[0])
        if not warmup:
            return apply(x, y, seed, policy)
        return tf.cond(tf.cast(batch_index, tf.int64) < warmup,
                       lambda: apply(x, y, seed, without_mixup), lambda: apply(x, y, seed, policy))

    return augment

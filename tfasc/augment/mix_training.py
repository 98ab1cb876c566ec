"""The mixing of the mix-training strategy: every training clip is the linear interpolation of two
clips of the batch, and its target the union of their labels.

Chen, Hao, Chen, Xie, Yang & Pu (2019), "An End-to-End Audio Classification System based on Raw
Waveforms and Mix-Training Strategy", Sec. 3.2 (Fig. 2): the network is first
trained on mixed data only, then fine-tuned on the raw data (that second step is the recipe's,
not this module's). For a pair ``(x_i, y_i)``, ``(x_j, y_j)`` of the batch and a ratio ``α``:

* Eq. 1: ``x̃ = α x_i + (1 − α) x_j``, on the raw waveform;
* Eq. 2: ``ỹ = sign(y_i + y_j)`` elementwise: the mix carries all the labels of both clips.

Why not mixup's ratio labels ``α y_i + (1 − α) y_j``: a multi-label clip is already a mixture of
events, so the share of each event in a mix of two multi-label clips is not ``α`` (Sec. 3.2,
"it's difficult to predict the mixing ratio"); the network is asked only which events are in the
mix, trained with sigmoid cross-entropy (Eq. 3). Table 2 (Sec. 4.3.1) finds these labels better
than mixup's on AudioSet.

Ratio: Fig. 2 draws ``α`` in (0, 1); Sec. 4.2 finds ``α ∈ (0.4, 0.6)`` better
(:data:`PAPER_RATIO_RANGE`). Here ``α ~ U(low, high)`` with ``ratio_range = (low, high)`` a recipe
value. Partners: a random permutation of the batch (the paper selects the pairs at random).

Layout: clips ``[batch, samples, channels]`` float32 (or any ``[batch, ...]``, e.g. features
``[batch, freq, time, channels]``: ``α`` broadcasts over the non-batch axes), targets
``[batch, classes]`` multi-hot or one-hot (one-hot pairs of two classes give two-hot targets),
their dtype kept. Everything works on a whole batch in graph mode (``tf.data`` map, no Python
loop over examples); the draws (:func:`draw_mix_pairs`) are stateless and a pure function of their
seed, and :func:`make_mix_training_mixer` seeds batch ``i`` from ``(base_seed, i)`` only
(:func:`mix_training_seed`, its own stream, apart from
:func:`tfasc.augment.between_class.mix_seed`'s), so a resumed run replays the same mixes.

Cost (:func:`make_mix_training_mixer`'s ``mix`` in a ``tf.function``, batches of 32 mono clips and
527-class targets, on a 2-core CPU shared with other jobs, so +-30 %): 1 s at 16 kHz ~25000
clips/s (22000-29000 over two runs); 10 s at 16 kHz (the paper's AudioSet clips) ~2200. It is a
memory-bound gather and two multiply-adds per sample.
"""

from __future__ import annotations

from typing import Callable

import tfasc  # noqa: F401  (selects tf_keras before TensorFlow is imported)

import tensorflow as tf

from tfasc.augment.masking import as_seed, split_seed
from tfasc.augment.mixing import partner_indices

#: Sec. 4.2's ratio range, "better" than Fig. 2's (0, 1).
PAPER_RATIO_RANGE = (0.4, 0.6)
# Second word of the mixer's root seed: keeps its stream apart from between-class mixing's
# ("MIXW"), the per-example waveform augmenter's ([base_seed, "WAVE"]) and the batch augmenter's
# ([base_seed, batch_index]).
_MIX_TRAINING_STREAM = 0x4D495854  # "MIXT"


def check_ratio_range(ratio_range) -> tuple[float, float]:
    """``ratio_range`` as ``(low, high)`` floats; ``ValueError`` unless ``0 <= low <= high <= 1``."""
    try:
        values = tuple(ratio_range)
        low, high = (float(value) for value in values)
        valid = not any(isinstance(value, bool) for value in values) and 0.0 <= low <= high <= 1.0
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"ratio_range: expected (low, high) with 0 <= low <= high <= 1, got {ratio_range!r}")
    return low, high


def draw_mix_pairs(batch, seed, ratio_range) -> tuple[tf.Tensor, tf.Tensor]:
    """``(partner [batch] int32, ratio [batch] float32)``: each example's partner and ``α``.

    ``partner``: a random permutation of ``range(batch)``
    (:func:`tfasc.augment.mixing.partner_indices`); it may have fixed points (example ``i``
    paired with itself, probability ``1 / batch`` each). ``ratio``: ``α = low + (high − low) u``
    with ``u ~ U[0, 1)``, so in ``[low, high]`` (``high`` itself only by float32 rounding) and
    exactly ``low`` when ``low == high``. Both stateless, from ``seed`` (shape ``[2]``) alone.
    """
    low, high = check_ratio_range(ratio_range)
    permutation_seed, ratio_seed = tf.unstack(split_seed(as_seed(seed), 2))
    batch = tf.cast(batch, tf.int32)
    partner = tf.cast(partner_indices(batch, permutation_seed), tf.int32)
    u = tf.random.stateless_uniform(tf.reshape(batch, [1]), ratio_seed)
    return partner, low + (high - low) * u


def mix_pairs(clips, targets, partner, ratio) -> tuple[tf.Tensor, tf.Tensor]:
    """Eq. 1 and Eq. 2 of Chen et al. (2019) for each row ``i`` and its partner ``j = partner[i]``.

    ``mixed_clips[i] = α_i clips[i] + (1 − α_i) clips[j]`` (``clips [batch, ...]`` of rank >= 2,
    float32 out; ``α = ratio [batch]`` broadcast over the other axes) and
    ``mixed_targets[i] = tf.sign(targets[i] + targets[j])`` (``targets [batch, ...]``, dtype kept).
    ``sign`` is exactly :func:`tf.sign`: multi-hot and one-hot targets give the union of the two
    label sets, and any positive soft weight becomes 1 (a negative sum would give -1; targets are
    meant to be >= 0). Boolean targets give ``targets[i] | targets[j]``.

    A row paired with itself (``j == i``) gets its own label set back, and its own clip up to the
    float32 rounding of ``α x + (1 − α) x`` (at most one ulp over 10^6 random samples and ratios;
    ~88 % of samples exact): it is, in effect, not mixed.
    """
    clips = tf.convert_to_tensor(clips, tf.float32)
    targets = tf.convert_to_tensor(targets)
    if clips.shape.rank is not None and clips.shape.rank < 2:
        raise ValueError(f"clips must be [batch, samples, channels] (or any [batch, ...] of rank >= 2), "
                         f"got shape {clips.shape}")
    partner = tf.convert_to_tensor(partner)
    alpha = tf.cast(ratio, tf.float32)
    if clips.shape.rank is not None:
        alpha = tf.reshape(alpha, [-1] + [1] * (clips.shape.rank - 1))
    else:
        alpha = tf.reshape(alpha, tf.concat([[-1], tf.ones([tf.rank(clips) - 1], tf.int32)], axis=0))
    mixed = alpha * clips + (1.0 - alpha) * tf.gather(clips, partner)
    partner_targets = tf.gather(targets, partner)
    if targets.dtype == tf.bool:
        return mixed, tf.logical_or(targets, partner_targets)
    return mixed, tf.sign(targets + partner_targets)


def mix_training_seed(base_seed: int, batch_index) -> tf.Tensor:
    """The shape-``[2]`` seed of batch ``batch_index``'s mix: ``fold_in([base_seed, "MIXT"], batch_index)``."""
    root = tf.constant([int(base_seed), _MIX_TRAINING_STREAM], tf.int64)
    return tf.random.experimental.stateless_fold_in(root, tf.cast(batch_index, tf.int64))


def make_mix_training_mixer(ratio_range, base_seed: int) -> Callable:
    """``fn(clips [batch, samples, channels], targets [batch, classes], batch_index) -> (clips, targets)``
    mixing every example of the batch (:func:`mix_pairs`) with the draws of :func:`draw_mix_pairs`
    seeded by :func:`mix_training_seed`.

    The contract of :func:`tfasc.augment.between_class.make_waveform_mixer`'s function: graph
    mode inside ``tf.data`` (``batch_index`` an int64 scalar tensor, or a Python int), and
    ``batch_index`` must be the run's global batch index, so a resumed run replays the same mixes.
    Every example is mixed: the first step of mix-training sees mixed data only. An example whose
    partner is itself (a fixed point of the permutation) comes back unmixed with its own labels.
    ``ratio_range`` is checked here (``ValueError`` naming it).
    """
    ratio_range = check_ratio_range(ratio_range)
    base_seed = int(base_seed)

    def mix(clips, targets, batch_index):
        clips = tf.convert_to_tensor(clips, tf.float32)
        partner, ratio = draw_mix_pairs(tf.shape(clips)[0], mix_training_seed(base_seed, batch_index), ratio_range)
        return mix_pairs(clips, targets, partner, ratio)

    return mix

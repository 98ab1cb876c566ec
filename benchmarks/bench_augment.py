"""Training-step time of a small shared_resnet with and without the batch augmentation policy.

Both pipelines run side by side in one process on the same model and the same in-memory features
``[batch, freq, time, channels]``; the augmented one applies FreqMix/CutMix (0.5/0.5) plus
SpecAugment masks in ``Dataset.map`` after ``batch``, as the training pipeline does. Prints the
seconds per step of each, their ratio, and the cost of the augmentation map alone (pipeline
iterated without training). About 30 s on 2 CPU cores.

    python benchmarks/bench_augment.py [--steps 20] [--channels 8] [--batch 32]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tfasc  # noqa: F401  (selects tf_keras before TensorFlow is imported)

import tensorflow as tf
import tf_keras as keras

import tfasc.models.shared_resnet  # noqa: F401  (registers "shared_resnet")
from tfasc.augment.mixing import AugmentPolicy, make_batch_augmenter
from tfasc.models import build

INPUT_SHAPE = (64, 100, 2)  # [freq, time, channels]
NUM_CLASSES = 3
POLICY = AugmentPolicy(
    freqmix_prob=0.5, cutmix_prob=0.5, freq_masks=2, freq_mask_width=8, time_masks=2, time_mask_width=10
)


def make_dataset(features: np.ndarray, labels: np.ndarray, batch: int, augment: bool) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((features, labels)).cache().repeat().batch(batch, drop_remainder=True)
    if augment:
        augmenter = make_batch_augmenter(POLICY, base_seed=0)
        ds = ds.enumerate().map(lambda i, xy: augmenter(xy[0], xy[1], i), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def seconds_per_step(model: keras.Model, ds: tf.data.Dataset, steps: int) -> float:
    start = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
    return (time.perf_counter() - start) / steps


def pipeline_seconds_per_batch(ds: tf.data.Dataset, batches: int) -> float:
    iterator = iter(ds)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return (time.perf_counter() - start) / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per pipeline and round")
    parser.add_argument("--channels", type=int, default=8, help="base width c of shared_resnet")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    count = args.batch * 8
    features = rng.normal(size=(count, *INPUT_SHAPE)).astype("float32")
    labels = np.eye(NUM_CLASSES, dtype="float32")[rng.integers(0, NUM_CLASSES, size=count)]
    plain = make_dataset(features, labels, args.batch, augment=False)
    augmented = make_dataset(features, labels, args.batch, augment=True)

    model = build("shared_resnet", INPUT_SHAPE, NUM_CLASSES, channels=args.channels)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    seconds_per_step(model, plain, 3)  # trace the train step once

    results = {"plain": [], "augmented": []}
    for _ in range(2):  # interleaved rounds; the minimum is the least disturbed by other load
        results["plain"].append(seconds_per_step(model, plain, args.steps))
        results["augmented"].append(seconds_per_step(model, augmented, args.steps))
    plain_step, augmented_step = min(results["plain"]), min(results["augmented"])
    plain_batch = pipeline_seconds_per_batch(plain, args.steps)
    augmented_batch = pipeline_seconds_per_batch(augmented, args.steps)

    print(f"shared_resnet c={args.channels}, batch {args.batch} of {INPUT_SHAPE}, {args.steps} steps x 2 rounds")
    print(f"policy: {POLICY}")
    print(f"{'':28s}{'plain':>12s}{'augmented':>12s}{'ratio':>8s}")
    print(f"{'train step (ms)':28s}{plain_step * 1e3:12.1f}{augmented_step * 1e3:12.1f}{augmented_step / plain_step:8.2f}")
    print(
        f"{'pipeline only, batch (ms)':28s}{plain_batch * 1e3:12.2f}{augmented_batch * 1e3:12.2f}"
        f"{augmented_batch / max(plain_batch, 1e-9):8.1f}"
    )


if __name__ == "__main__":
    main()

"""Tests for tfasc.compress.prune: TF-MOT magnitude pruning, global allocation, shared layers."""

import numpy as np
import pytest

import tfasc  # noqa: F401
import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot

from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from tfasc.compress import prune
from tfasc.compress.kernels import UndeclaredLayerError
from tfasc.layers.contract import LayerContract

from support.keras_models import INPUT_SHAPE, UndeclaredKernel, tiny_model


def shared_conv_model(repeats: int = 3) -> keras.Model:
    """One Conv2D object called `repeats` times (shared weights), each with its own BN."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    shared = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="shared")
    for i in range(repeats):
        y = shared(x)
        y = keras.layers.BatchNormalization(name=f"bn_{i}")(y)
        x = keras.layers.Add(name=f"add_{i}")([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def fit_steps(model: keras.Model, steps: int, learning_rate: float = 1e-3) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps * 4, *INPUT_SHAPE)).astype(np.float32)
    y = rng.integers(0, 3, size=steps * 4)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=prune.pruning_callbacks())


def kernel_sparsity(values: np.ndarray) -> float:
    return float(np.mean(values == 0))


def test_global_threshold_matches_hand_computation():
    magnitudes = np.array([0.1, -0.5, 0.2, 0.05, -0.3, 0.4])
    # Sorted |w|: 0.05 0.1 0.2 0.3 0.4 0.5; half of six weights -> the third smallest.
    assert prune.global_threshold(magnitudes, 0.5) == pytest.approx(0.2)
    assert prune.global_threshold(magnitudes, 0.0) < 0.05


def test_global_plan_allocates_by_magnitude_across_layers():
    model = tiny_model()
    conv = model.get_layer("conv")
    dense = model.get_layer("logits")
    # Conv weights tiny, dense weights large: a global threshold at 30% must take conv first.
    conv.kernel.assign(np.full(conv.kernel.shape, 1e-3, np.float32) * np.arange(1, 73).reshape(conv.kernel.shape))
    dense.kernel.assign(np.ones(dense.kernel.shape, np.float32))
    plan = prune.plan_pruning(model, target_sparsity=0.3, mode="global")
    targets = {t.layer: t for t in plan.layers}
    assert plan.mode == "global"
    assert set(targets) == {"conv", "dw", "logits"}
    # Hand count: conv 72, dw 9*8=72, dense 8*3=24 -> 168 weights, 30% = 50 zeros.
    assert [targets[n].params for n in ("conv", "dw", "logits")] == [72, 72, 24]
    assert targets["logits"].sparsity == 0.0
    zeros = sum(t.params * t.sparsity for t in plan.layers)
    assert zeros == pytest.approx(round(0.3 * 168), abs=0.5)

    per_layer = prune.plan_pruning(model, target_sparsity=0.3, mode="per_layer")
    assert per_layer.threshold is None
    assert all(t.sparsity == 0.3 for t in per_layer.layers)


def test_global_pruning_zeroes_the_globally_smallest_weights():
    model = tiny_model()
    original = {n: np.abs(model.get_layer(n).weights[0].numpy()) for n in ("conv", "dw", "logits")}
    pruned = prune.apply_pruning(model, target_sparsity=0.6, begin_step=0, end_step=2, frequency=1)
    fit_steps(pruned, steps=4, learning_rate=0.0)  # lr 0: weights only change by masking
    stripped = prune.strip_pruning(pruned)
    kept, removed = [], []
    for name, magnitude in original.items():
        now = stripped.get_layer(name).weights[0].numpy()
        kept.append(magnitude[now != 0])
        removed.append(magnitude[now == 0])
    kept, removed = np.concatenate(kept), np.concatenate(removed)
    assert removed.size / (removed.size + kept.size) == pytest.approx(0.6, abs=0.01)
    # The global property: every pruned weight is no larger than every kept one.
    assert removed.max() <= kept.min()


def test_per_layer_pruning_reaches_target_and_strip_keeps_zeros():
    pruned = prune.apply_pruning(
        tiny_model(), target_sparsity=0.5, begin_step=0, end_step=3, frequency=1, mode="per_layer"
    )
    wrapped = [l.name for l in pruned.layers if isinstance(l, pruning_wrapper.PruneLowMagnitude)]
    assert len(wrapped) == 3  # conv, depthwise, dense; BN/ReLU/pool stay unwrapped
    fit_steps(pruned, steps=5)
    stripped = prune.strip_pruning(pruned)
    assert not any(isinstance(l, pruning_wrapper.PruneLowMagnitude) for l in stripped.layers)
    for name in ("conv", "dw", "logits"):
        assert kernel_sparsity(stripped.get_layer(name).weights[0].numpy()) == pytest.approx(0.5, abs=0.03)
    report = prune.sparsity_report(stripped)
    assert report["total"]["params"] == 72 + 72 + 24
    assert report["total"]["zeros"] == sum(
        int(np.sum(stripped.get_layer(n).weights[0].numpy() == 0)) for n in ("conv", "dw", "logits")
    )


def test_shared_layer_has_one_mask_and_reaches_target():
    model = shared_conv_model(repeats=3)
    pruned = prune.apply_pruning(model, target_sparsity=0.5, begin_step=0, end_step=3, frequency=1, mode="per_layer")
    shared_wrappers = [l for l in pruned.layers if getattr(l, "layer", None) is not None and l.layer.name == "shared"]
    assert len(shared_wrappers) == 1
    assert len(shared_wrappers[0]._inbound_nodes) == 3
    fit_steps(pruned, steps=5)
    stripped = prune.strip_pruning(pruned)
    kernel = stripped.get_layer("shared").kernel.numpy()
    assert kernel_sparsity(kernel) == pytest.approx(0.5, abs=0.02)
    report = prune.sparsity_report(stripped)
    assert report["layers"]["shared"]["params"] == 3 * 3 * 8 * 8  # counted once, not 3 times


class _ScaledConv(LayerContract, keras.layers.Layer):
    """Custom layer owning a kernel, prunable through its contract."""

    kernel_attributes = ("kernel",)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(3, 3, int(input_shape[-1]), 4))

    def call(self, inputs):
        return tf.nn.conv2d(inputs, self.kernel, strides=1, padding="SAME")

    def count_macs(self, input_shape, output_shape):
        return int(np.prod(output_shape[1:])) * 3 * 3 * int(input_shape[-1])


class _Doubler(keras.layers.Layer):
    def call(self, inputs):
        return 2.0 * inputs


def test_custom_layers_prunable_unwrapped_or_rejected():
    inputs = keras.Input(INPUT_SHAPE)
    x = _ScaledConv(name="custom_conv")(inputs)
    x = _Doubler(name="doubler")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    pruned = prune.apply_pruning(model, target_sparsity=0.5, begin_step=0, end_step=2, frequency=1, mode="per_layer")
    assert isinstance(pruned.get_layer("prune_low_magnitude_custom_conv"), pruning_wrapper.PruneLowMagnitude)
    assert isinstance(pruned.get_layer("doubler"), _Doubler)
    fit_steps(pruned, steps=4)
    assert kernel_sparsity(pruned.get_layer("prune_low_magnitude_custom_conv").layer.kernel.numpy()) == pytest.approx(0.5, abs=0.03)

    opaque = keras.Model(inputs, UndeclaredKernel(name="opaque")(inputs))
    with pytest.raises(UndeclaredLayerError, match="opaque"):
        prune.apply_pruning(opaque, target_sparsity=0.5, begin_step=0, end_step=2, frequency=1)


def test_pruned_model_keras_round_trip(tmp_path):
    pruned = prune.apply_pruning(tiny_model(), target_sparsity=0.5, begin_step=0, end_step=2, frequency=1)
    fit_steps(pruned, steps=3)
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    with tfmot.sparsity.keras.prune_scope():
        loaded = keras.models.load_model(path)
    x = np.random.default_rng(3).normal(size=(2, *INPUT_SHAPE)).astype(np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), pruned(x).numpy(), rtol=1e-5, atol=1e-6)
    assert isinstance(loaded.get_layer("prune_low_magnitude_dw"), prune.PruneLowMagnitude)


def test_bad_arguments_raise():
    model = tiny_model()
    with pytest.raises(ValueError, match="target_sparsity"):
        prune.plan_pruning(model, target_sparsity=1.2)
    with pytest.raises(ValueError, match="mode"):
        prune.plan_pruning(model, target_sparsity=0.5, mode="layerwise")
    with pytest.raises(ValueError, match="end_step"):
        prune.apply_pruning(model, target_sparsity=0.5, begin_step=5, end_step=5, frequency=1)

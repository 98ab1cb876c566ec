"""Residual blocks of Table 1 / Fig. 1 (paper Sec. 2.1), layout [batch, freq, time, channels]."""

from __future__ import annotations

import numpy as np
import pytest

import tfasc  # noqa: F401

import tensorflow as tf
import tf_keras as keras

from tfasc.layers.residual import (
    ResidualBlock,
    SharedResidualBlock,
    residual_block,
    shared_convs,
    shared_residual_block,
)
from tfasc.layers.normalization import SubSpectralNormalization


def randomize(model_or_layer, seed=0):
    """Non-trivial weights everywhere (moving variances positive) so outputs depend on every weight."""
    rng = np.random.default_rng(seed)
    for w in model_or_layer.weights:
        if "variance" in w.name:
            w.assign(rng.uniform(0.5, 2.0, size=w.shape))
        else:
            w.assign(rng.normal(scale=0.5, size=w.shape))


def numpy_bn(x, bn):
    """Inference-mode BatchNormalization over the channel axis."""
    gamma, beta, mean, variance = (v.numpy().astype(np.float64) for v in (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance))
    return (x - mean) / np.sqrt(variance + bn.epsilon) * gamma + beta


def relu(x):
    return np.maximum(x, 0.0)


def conv1x1(x, kernel):
    return np.einsum("bftc,cd->bftd", x, kernel.numpy()[0, 0].astype(np.float64))


# ------------------------------------------------------------------------------------------ shared


@pytest.mark.parametrize("filters", [4, 16])
def test_shared_block_repeats_add_only_batch_norm_weights(filters):
    def weights_of(repeats):
        layer = SharedResidualBlock(repeats=repeats, filters=filters)
        layer.build((None, 6, 5, filters))
        return layer.count_params(), int(sum(np.prod(w.shape) for w in layer.trainable_weights))

    total_1, trainable_1 = weights_of(1)
    total_3, trainable_3 = weights_of(3)
    # Two 1x1 convs without bias, filters x filters each; two BNs of gamma, beta, mean, variance.
    assert total_1 == 2 * filters * filters + 2 * 4 * filters
    # Two more repeats = 2 repeats x 2 BNs x 4 x filters weights, 2 x 2 x 2 x filters trainable.
    assert total_3 - total_1 == 2 * 2 * 4 * filters
    assert trainable_3 - trainable_1 == 2 * 2 * 2 * filters


def numpy_shared_block(x, conv_a_kernel, conv_b_kernel, bns_a, bns_b):
    for bn_a, bn_b in zip(bns_a, bns_b):
        y = relu(numpy_bn(conv1x1(x, conv_a_kernel), bn_a))
        y = numpy_bn(conv1x1(y, conv_b_kernel), bn_b)
        x = relu(x + y)
    return x


def test_shared_block_layer_matches_numpy():
    x = np.random.default_rng(1).normal(size=(2, 6, 5, 4)).astype("float32")
    layer = SharedResidualBlock(repeats=3, filters=4)
    layer.build(x.shape)
    randomize(layer)
    expected = numpy_shared_block(x.astype(np.float64), layer.conv_a.kernel, layer.conv_b.kernel, layer.bns_a, layer.bns_b)
    np.testing.assert_allclose(layer(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_functional_shared_block_reuses_two_convs_and_matches_numpy():
    x = np.random.default_rng(2).normal(size=(2, 6, 5, 4)).astype("float32")
    inputs = keras.Input(shape=(6, 5, 4))
    conv_a, conv_b = shared_convs(4, 1, name="srb")
    model = keras.Model(inputs, shared_residual_block(inputs, conv_a, conv_b, 3, "srb"))
    randomize(model)

    conv_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    bn_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert [layer.name for layer in conv_layers] == ["srb_conv_a", "srb_conv_b"]
    assert len(conv_a.inbound_nodes) == 3  # the same object called by every repeat
    assert sorted(layer.name for layer in bn_layers) == sorted(
        [f"srb_bn_a_{i}" for i in range(3)] + [f"srb_bn_b_{i}" for i in range(3)]
    )

    bns_a = [model.get_layer(f"srb_bn_a_{i}") for i in range(3)]
    bns_b = [model.get_layer(f"srb_bn_b_{i}") for i in range(3)]
    expected = numpy_shared_block(x.astype(np.float64), conv_a.kernel, conv_b.kernel, bns_a, bns_b)
    np.testing.assert_allclose(model(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_shared_block_rejects_channel_change():
    with pytest.raises(ValueError, match="keeps the channel count"):
        SharedResidualBlock(repeats=2, filters=8).build((None, 6, 5, 4))
    conv_a, conv_b = shared_convs(8, 1, name="x")
    with pytest.raises(ValueError, match="keep the channel count"):
        shared_residual_block(keras.Input(shape=(6, 5, 4)), conv_a, conv_b, 2, "x")
    with pytest.raises(ValueError, match="repeats"):
        SharedResidualBlock(repeats=0, filters=8)


def test_shared_block_serialization_round_trip(run_layer_test):
    run_layer_test(lambda: SharedResidualBlock(repeats=2, filters=4, kernel_size=1, bn_momentum=0.9, name="srb"), (2, 6, 5, 4), (2, 6, 5, 4))


def test_shared_block_training_updates_each_repeats_own_statistics():
    x = np.random.default_rng(3).normal(size=(4, 6, 5, 4)).astype("float32")
    layer = SharedResidualBlock(repeats=2, filters=4, bn_momentum=0.5)
    layer(x, training=True)
    means = [bn.moving_mean.numpy() for bn in layer.bns_a + layer.bns_b]
    assert all(np.abs(m).max() > 0 for m in means)
    # Each BN saw a different tensor, so each learned different statistics (separate, not shared).
    assert not np.allclose(means[0], means[1]) and not np.allclose(means[2], means[3])


def test_shared_block_is_prunable_with_tfmot():
    import tensorflow_model_optimization as tfmot

    layer = SharedResidualBlock(repeats=3, filters=8, name="srb")
    inputs = keras.Input(shape=(6, 5, 8))
    model = keras.Model(inputs, layer(inputs))
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    wrapper = pruned.get_layer("prune_low_magnitude_srb")
    assert [w.name for w in wrapper.prunable_weights] == [layer.conv_a.kernel.name, layer.conv_b.kernel.name]
    pruned.compile(optimizer="sgd", loss="mse", run_eagerly=True)
    x = np.random.default_rng(4).normal(size=(4, 6, 5, 8)).astype("float32")
    pruned.fit(x, x, epochs=1, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    for kernel in (layer.conv_a.kernel, layer.conv_b.kernel):
        assert np.mean(kernel.numpy() == 0.0) == pytest.approx(0.5)


# ----------------------------------------------------------------------------------- residual block


def numpy_residual_block(x, conv1, bn1, conv2, norm2_fn, shortcut_conv=None, shortcut_bn=None):
    def conv(inp, layer):  # tf.nn.conv2d as the independent convolution primitive
        return tf.nn.conv2d(inp.astype(np.float32), layer.kernel, strides=1, padding="SAME").numpy().astype(np.float64)

    y = relu(numpy_bn(conv(x, conv1), bn1))
    y = norm2_fn(conv(y, conv2))
    shortcut = x if shortcut_conv is None else numpy_bn(conv(x, shortcut_conv), shortcut_bn)
    return relu(shortcut + y)


def numpy_ssn_inference(x, ssn):
    band = x.shape[1] // ssn.sub_bands
    mean, variance = ssn.moving_mean.numpy(), ssn.moving_variance.numpy()
    out = np.empty_like(x)
    for s in range(ssn.sub_bands):
        rows = slice(s * band, (s + 1) * band)
        out[:, rows] = (x[:, rows] - mean[s]) / np.sqrt(variance[s] + ssn.epsilon) * ssn.gamma.numpy() + ssn.beta.numpy()
    return out


@pytest.mark.parametrize("in_channels,filters,kernel_sizes", [(4, 4, (3, 1)), (4, 8, (1, 1)), (4, 4, (3, 3))])
def test_residual_block_layer_matches_reference(in_channels, filters, kernel_sizes):
    x = np.random.default_rng(5).normal(size=(2, 8, 6, in_channels)).astype("float32")
    layer = ResidualBlock(filters, kernel_sizes, normalization="ssn", sub_bands=2)
    layer.build(x.shape)
    randomize(layer)
    assert (layer.shortcut_conv is not None) == (in_channels != filters)
    expected = numpy_residual_block(
        x.astype(np.float64), layer.conv1, layer.bn1, layer.conv2,
        lambda y: numpy_ssn_inference(y, layer.norm2), layer.shortcut_conv, layer.shortcut_bn,
    )
    np.testing.assert_allclose(layer(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_functional_residual_block_matches_reference():
    x = np.random.default_rng(6).normal(size=(2, 8, 6, 4)).astype("float32")
    inputs = keras.Input(shape=(8, 6, 4))
    model = keras.Model(inputs, residual_block(inputs, filters=8, kernel_sizes=(3, 3), normalization="ssn", sub_bands=4, name="rb"))
    randomize(model)
    get = model.get_layer
    assert isinstance(get("rb_norm2"), SubSpectralNormalization) and get("rb_norm2").sub_bands == 4
    expected = numpy_residual_block(
        x.astype(np.float64), get("rb_conv1"), get("rb_bn1"), get("rb_conv2"),
        lambda y: numpy_ssn_inference(y, get("rb_norm2")), get("rb_shortcut_conv"), get("rb_shortcut_bn"),
    )
    np.testing.assert_allclose(model(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_residual_block_parameter_count_by_hand():
    # RB1 of Table 1 with c = 8: 3x3 conv, BN, 1x1 conv, SSN(S=2) (shared affine), identity shortcut.
    c = 8
    layer = ResidualBlock(c, (3, 1), normalization="ssn", sub_bands=2)
    layer.build((None, 8, 6, c))
    trainable = int(sum(np.prod(w.shape) for w in layer.trainable_weights))
    assert trainable == 9 * c * c + 2 * c + c * c + 2 * c
    # RB5-like: 1x1 c -> 2c, BN, 1x1, SSN, projection 1x1 conv + BN.
    layer = ResidualBlock(2 * c, (1, 1), normalization="bn")
    layer.build((None, 8, 6, c))
    trainable = int(sum(np.prod(w.shape) for w in layer.trainable_weights))
    assert trainable == c * 2 * c + 2 * 2 * c + 2 * c * 2 * c + 2 * 2 * c + c * 2 * c + 2 * 2 * c


def test_residual_block_prunable_weights_are_the_kernels():
    layer = ResidualBlock(8, (3, 3))
    layer.build((None, 8, 6, 4))
    assert [tuple(w.shape) for w in layer.get_prunable_weights()] == [(3, 3, 4, 8), (3, 3, 8, 8), (1, 1, 4, 8)]


def test_residual_block_serialization_round_trip(run_layer_test):
    run_layer_test(
        lambda: ResidualBlock(6, (3, 1), normalization="ssn", sub_bands=2, bn_momentum=0.9, name="rb"),
        (2, 8, 5, 4),
        (2, 8, 5, 6),
    )


def test_residual_block_bad_arguments():
    with pytest.raises(ValueError, match="normalization"):
        ResidualBlock(8, normalization="layer")
    with pytest.raises(ValueError, match="kernel_sizes"):
        ResidualBlock(8, kernel_sizes=(3,))
    with pytest.raises(ValueError, match="not divisible"):
        ResidualBlock(8, normalization="ssn", sub_bands=3).build((None, 8, 6, 4))

"""Residual blocks of Table 1 / Fig. 1 (DCASE 2020 1B report, Sec. 2.1), layout [batch, freq, time, channels]."""

from __future__ import annotations

import numpy as np
import pytest

import tfasc  # noqa: F401

import tensorflow as tf
import tf_keras as keras

from tfasc.layers.residual import residual_block, shared_convs, shared_residual_block
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


def shared_block_model(filters: int, repeats: int) -> keras.Model:
    inputs = keras.Input(shape=(6, 5, filters))
    conv_a, conv_b = shared_convs(filters, 1, name="srb")
    return keras.Model(inputs, shared_residual_block(inputs, conv_a, conv_b, repeats, "srb"))


@pytest.mark.parametrize("filters", [4, 16])
def test_shared_block_repeats_add_only_batch_norm_weights(filters):
    def weights_of(repeats):
        model = shared_block_model(filters, repeats)
        return model.count_params(), int(sum(np.prod(w.shape) for w in model.trainable_weights))

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


def test_shared_block_rejects_channel_change_and_no_repeats():
    conv_a, conv_b = shared_convs(8, 1, name="x")
    with pytest.raises(ValueError, match="keep the channel count"):
        shared_residual_block(keras.Input(shape=(6, 5, 4)), conv_a, conv_b, 2, "x")
    with pytest.raises(ValueError, match="repeats"):
        shared_residual_block(keras.Input(shape=(6, 5, 8)), conv_a, conv_b, 0, "x")


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


@pytest.mark.parametrize("in_channels,filters,kernel_sizes", [(4, 4, (3, 1)), (4, 8, (1, 1)), (4, 8, (3, 3))])
def test_functional_residual_block_matches_reference(in_channels, filters, kernel_sizes):
    x = np.random.default_rng(6).normal(size=(2, 8, 6, in_channels)).astype("float32")
    inputs = keras.Input(shape=(8, 6, in_channels))
    outputs = residual_block(inputs, filters=filters, kernel_sizes=kernel_sizes, normalization="ssn", sub_bands=4, name="rb")
    model = keras.Model(inputs, outputs)
    randomize(model)
    get = model.get_layer
    assert isinstance(get("rb_norm2"), SubSpectralNormalization) and get("rb_norm2").sub_bands == 4
    projection = in_channels != filters
    assert any(layer.name == "rb_shortcut_conv" for layer in model.layers) == projection
    expected = numpy_residual_block(
        x.astype(np.float64), get("rb_conv1"), get("rb_bn1"), get("rb_conv2"),
        lambda y: numpy_ssn_inference(y, get("rb_norm2")),
        get("rb_shortcut_conv") if projection else None, get("rb_shortcut_bn") if projection else None,
    )
    np.testing.assert_allclose(model(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-4)


def residual_block_trainable_weights(in_channels: int, **kwargs) -> int:
    inputs = keras.Input(shape=(8, 6, in_channels))
    model = keras.Model(inputs, residual_block(inputs, name="rb", **kwargs))
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_residual_block_parameter_count_by_hand():
    # RB1 of Table 1 with c = 8: 3x3 conv, BN, 1x1 conv, SSN(S=2) (shared affine), identity shortcut.
    c = 8
    assert residual_block_trainable_weights(c, filters=c, kernel_sizes=(3, 1), normalization="ssn", sub_bands=2) == (
        9 * c * c + 2 * c + c * c + 2 * c
    )
    # RB5-like: 1x1 c -> 2c, BN, 1x1, BN, projection 1x1 conv + BN.
    assert residual_block_trainable_weights(c, filters=2 * c, kernel_sizes=(1, 1), normalization="bn") == (
        c * 2 * c + 2 * 2 * c + 2 * c * 2 * c + 2 * 2 * c + c * 2 * c + 2 * 2 * c
    )


def test_residual_block_bad_arguments():
    inputs = keras.Input(shape=(8, 6, 4))
    with pytest.raises(ValueError, match="normalization"):
        residual_block(inputs, filters=8, normalization="layer", name="rb")
    with pytest.raises(ValueError, match="kernel_sizes"):
        residual_block(inputs, filters=8, kernel_sizes=(3,), name="rb")
    with pytest.raises(ValueError, match="not divisible"):
        residual_block(inputs, filters=8, normalization="ssn", sub_bands=3, name="rb")

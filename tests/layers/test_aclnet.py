"""AclNet's SC / DWSC blocks and learned front-end (Huang & Leanos 2018, Sec. 2.1-2.3, Table 1).

References are numpy: TensorFlow's "same" padding written out (``out = ceil(n / s)``, the padding
split with the odd sample after), correlations as sums over kernel offsets, BatchNorm's inference
affine by hand, max pooling by reshaping.
"""

from __future__ import annotations

import numpy as np
import pytest

import tfasc  # noqa: F401

from tfasc.compress.kernels import kernels_of, layer_macs
from tfasc.layers.aclnet import AclNetFrontEnd, ConvBlock, SeparableConvBlock, front_end_geometry
from support.layer_test import run_layer_test


def same_padding(n: int, k: int, s: int) -> tuple[int, tuple[int, int]]:
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return out, (total // 2, total - total // 2)


def windows(x, kh, kw, strides):
    """``(i, j, patch)`` per kernel offset: the input values each output position sees there."""
    (sh, sw), (_, height, width, _) = strides, x.shape
    oh, ph = same_padding(height, kh, sh)
    ow, pw = same_padding(width, kw, sw)
    padded = np.pad(x, ((0, 0), ph, pw, (0, 0)))
    for i in range(kh):
        for j in range(kw):
            yield i, j, padded[:, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw, :]


def conv(x, kernel, strides):
    """``x [B, H, W, C]``, ``kernel [kh, kw, C, O]``: TensorFlow's strided "same" Conv2D."""
    return sum(np.einsum("bhwc,co->bhwo", patch, kernel[i, j]) for i, j, patch in windows(x, *kernel.shape[:2], strides))


def depthwise(x, kernel, strides):
    return sum(patch * kernel[i, j, :, 0] for i, j, patch in windows(x, *kernel.shape[:2], strides))


def bn(x, layer):
    gamma, beta, mean, variance = (w.astype(np.float64) for w in layer.get_weights())
    return (x - mean) / np.sqrt(variance + layer.epsilon) * gamma + beta


def relu(x):
    return np.maximum(x, 0.0)


def numpy_block(x, block):
    x = np.asarray(x, np.float64)
    if isinstance(block, ConvBlock):
        return relu(bn(conv(x, block.conv.get_weights()[0], block.strides), block.bn))
    y = relu(bn(depthwise(x, block.depthwise.get_weights()[0], block.strides), block.depthwise_bn))
    return relu(bn(conv(y, block.pointwise.get_weights()[0], (1, 1)), block.pointwise_bn))


def numpy_front_end(x, layer):
    y = numpy_block(numpy_block(np.asarray(x, np.float64)[:, np.newaxis], layer.conv1), layer.conv2)
    pool = layer.geometry.pool
    frames = y.shape[2] // pool
    y = y[:, :, : frames * pool].reshape(y.shape[0], 1, frames, pool, y.shape[-1]).max(axis=3)
    return np.transpose(y, (0, 3, 2, 1))


@pytest.mark.parametrize("cls", [ConvBlock, SeparableConvBlock])
def test_blocks_match_numpy_and_deploy_bit_exact(cls):
    x = np.random.default_rng(0).normal(size=(3, 6, 10, 3)).astype(np.float32)
    model = run_layer_test(
        cls=cls,
        init_kwargs={"filters": 4, "kernel_size": (3, 3), "strides": (1, 2)},
        input_data=x,
        expected_output_shape=(3, 6, 5, 4),
        expected_num_trainable_weights=3 if cls is ConvBlock else 6,  # kernels + BN gamma / beta
        reference=lambda data, layer: numpy_block(data, layer),
    )
    layer = model.layers[-1]
    windows_in = 3 * 3 * 3
    expected = 6 * 5 * 4 * windows_in if cls is ConvBlock else 6 * 5 * 3 * (9 + 4)
    assert layer_macs(layer, (1, 6, 10, 3), (1, 6, 5, 4)) == expected
    assert sum(int(np.prod(k.shape)) for k in kernels_of(layer)) == (windows_in * 4 if cls is ConvBlock else 27 + 12)


@pytest.mark.parametrize("conv_type, c1", [("sc", 8), ("dwsc", 4)])
def test_front_end_matches_numpy_and_deploys_bit_exact(conv_type, c1):
    # 8 kHz: kernels 4 and 2, strides 1 and 2 (16 kHz values halved), pooling 40 -> 10 ms frames.
    x = np.random.default_rng(1).normal(size=(2, 800, 1)).astype(np.float32)
    init = {"sample_rate": 8000, "c1": c1, "s1": 2, "s2": 4, "conv_type": conv_type, "filters": 8}
    model = run_layer_test(
        cls=AclNetFrontEnd,
        init_kwargs=init,
        input_data=x,
        expected_output_shape=(2, 8, 10, 1),
        expected_num_trainable_weights=6 if conv_type == "sc" else 9,
        reference=lambda data, layer: numpy_front_end(data, layer),
    )
    layer = model.layers[-1]
    # MACs: Conv1 800 positions x c1 x 4 taps; Conv2 400 positions.
    conv2 = 400 * 8 * 2 * c1 if conv_type == "sc" else 400 * c1 * (2 + 8)
    assert layer_macs(layer, (1, 800, 1), (1, 8, 10, 1)) == 800 * c1 * 4 + conv2


def test_front_end_geometry_follows_table_1_and_scales_with_the_sample_rate():
    at_16k = front_end_geometry(16000, 2, 4)
    assert (at_16k.conv1_kernel, at_16k.conv2_kernel, at_16k.pool) == (9, 5, 160 // 8)
    assert at_16k.frames(20480) == 128  # Table 1: 1.28 s -> (64, 1, 128)
    at_44k = front_end_geometry(44100, 2, 4)
    assert (at_44k.conv1_kernel, at_44k.conv2_kernel, at_44k.conv1_stride, at_44k.conv2_stride) == (24, 13, 5, 11)
    assert abs(at_44k.hop / 44100 - 0.010) < 0.0005
    kept = front_end_geometry(44100, 2, 4, scale_strides=False)
    assert (kept.conv1_kernel, kept.conv1_stride, kept.conv2_stride, kept.pool) == (24, 2, 4, 55)  # 441 / 8
    at_8k = front_end_geometry(8000, 2, 2)
    assert (at_8k.conv1_kernel, at_8k.conv2_kernel, at_8k.hop) == (4, 2, 80)


def test_front_end_accepts_mono_without_a_channel_axis_and_rejects_bad_settings():
    x = np.random.default_rng(2).normal(size=(1, 1600)).astype(np.float32)
    layer = AclNetFrontEnd(16000, 4, 2, 4, "dwsc", 8)
    assert layer(x).shape == (1, 8, 10, 1)
    np.testing.assert_allclose(layer(x).numpy(), layer(x[..., np.newaxis]).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="conv_type"):
        AclNetFrontEnd(16000, conv_type="separable")
    with pytest.raises(ValueError, match="s1"):
        AclNetFrontEnd(16000, s1=0)

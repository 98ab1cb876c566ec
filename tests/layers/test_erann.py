"""ERANNs' Audio Residual Block (Sec. 3.2, Table 2, Eq. 5) and the time padding (Sec. 3.1).

The numpy reference is Table 2 written out as PyTorch would run it: explicit zero padding of
``P`` on both sides, then a valid strided correlation (TensorFlow's "same" padding is not used, so
an alignment mistake in the layer shows up), BatchNorm's inference affine by hand, Leaky ReLU 0.01.
"""

from __future__ import annotations

import numpy as np
import pytest

import tfasc  # noqa: F401

from tfasc.compress.kernels import layer_macs
from tfasc.layers.erann import AudioResidualBlock, TimePadding
from support.layer_test import run_layer_test

#: Eq. 5 written out: stride -> (K1, K2, P).
EQ5 = {1: (3, 3, 1), 2: (3, 3, 1), 4: (6, 5, 2)}


def correlate(x, kernel, strides, padding):
    """``x [B, H, W, C]``, ``kernel [kh, kw, C, O]``, symmetric zero ``padding (ph, pw)``, valid."""
    (kh, kw, _, _), (sh, sw), (ph, pw) = kernel.shape, strides, padding
    padded = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    oh = (padded.shape[1] - kh) // sh + 1
    ow = (padded.shape[2] - kw) // sw + 1
    out = np.zeros((x.shape[0], oh, ow, kernel.shape[-1]))
    for i in range(kh):
        for j in range(kw):
            patch = padded[:, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw, :]
            out += np.einsum("bhwc,co->bhwo", patch, kernel[i, j])
    return out


def bn(x, layer):
    gamma, beta, mean, variance = (w.astype(np.float64) for w in layer.get_weights())
    return (x - mean) / np.sqrt(variance + layer.epsilon) * gamma + beta


def leaky(x):
    return np.where(x > 0, x, 0.01 * x)


def numpy_arb(x, block):
    x = np.asarray(x, np.float64)
    (sx, sy) = block.strides
    (k2x, px), (k2y, py) = (EQ5[sx][1:], EQ5[sy][1:])
    h = leaky(bn(x, block.bn1)) if block.preactivation else x
    h = correlate(h, block.conv1.get_weights()[0], (sx, sy), (1, 1))
    h = correlate(leaky(bn(h, block.bn2)), block.conv2.get_weights()[0], (1, 1), (px, py))
    assert block.conv2.get_weights()[0].shape[:2] == (k2x, k2y)
    shortcut = correlate(x, block.shortcut.get_weights()[0], (sx, sy), (0, 0)) if block.projection else x
    return shortcut + h


@pytest.mark.parametrize(
    "strides, channels, filters, preactivation, kernels",
    [
        ((1, 1), 3, 3, True, 6),   # identity shortcut: conv1, conv2, 2 x (gamma, beta)
        ((2, 4), 3, 5, True, 7),   # Eq. 5's (6, 5, 2) in time, a 1x1 strided projection
        ((2, 2), 2, 4, True, 7),
        ((1, 1), 1, 4, False, 5),  # the network's first block: no BN1, a channel projection
    ],
)
def test_arb_matches_table_2_and_deploys_bit_exact(strides, channels, filters, preactivation, kernels):
    x = np.random.default_rng(1).normal(size=(2, 8, 16, channels)).astype(np.float32)
    expected = (2, 8 // strides[0], 16 // strides[1], filters)
    model = run_layer_test(
        cls=AudioResidualBlock,
        init_kwargs={"filters": filters, "strides": strides, "preactivation": preactivation},
        input_data=x,
        expected_output_shape=expected,
        expected_num_trainable_weights=kernels,
        reference=lambda data, layer: numpy_arb(data, layer),
        reference_atol=1e-4,
        # Two int8 LEAKY_RELUs and an ADD requantize what QAT's fake quantization rounds once.
        int8_max_steps=3.0,
    )
    block = model.layers[-1]
    k1 = (EQ5[strides[0]][0], EQ5[strides[1]][0])
    k2 = (EQ5[strides[0]][1], EQ5[strides[1]][1])
    assert block.conv1.kernel.shape == (*k1, channels, filters)
    positions = np.prod(expected[1:3])
    shortcut = positions * filters * channels if (channels != filters or strides != (1, 1)) else 0
    assert layer_macs(block, (1, *x.shape[1:]), (1, *expected[1:])) == (
        positions * filters * (np.prod(k1) * channels + np.prod(k2) * filters) + shortcut)


def test_arb_rejects_strides_outside_eq_5():
    with pytest.raises(ValueError, match="expected one of"):
        AudioResidualBlock(4, (2, 3))


def test_time_padding_pads_zeros_to_the_next_multiple_and_deploys_bit_exact():
    x = np.random.default_rng(2).normal(size=(2, 4, 13, 2)).astype(np.float32)
    expected = np.pad(x, ((0, 0), (0, 0), (0, 3), (0, 0)))  # 13 -> 16
    run_layer_test(
        cls=TimePadding,
        init_kwargs={"multiple": 8},
        input_data=x,
        expected_output_shape=(2, 4, 16, 2),
        expected_num_trainable_weights=0,
        reference=lambda data, layer: expected,
    )
    layer = TimePadding(8)
    assert layer(x[:, :, :8]).shape == (2, 4, 8, 2)  # already a multiple: unchanged

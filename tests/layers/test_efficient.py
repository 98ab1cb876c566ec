"""Swish, DSC and inverted-residual modules (Wu & Lee, Sec. 2, Eq. 1, Fig. 1), layout [batch, freq, time, channels].

References are numpy/scipy: ``scipy.signal.correlate2d`` for the depthwise windows (TF convolutions
are correlations with zero "same" padding), ``einsum`` for 1x1 convolutions, the BatchNorm inference
affine by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate2d

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.compress.export_form import to_export_form
from tfasc.compress.kernels import kernels_of, layer_macs
from tfasc.compress.prune import apply_pruning, pruning_callbacks, strip_pruning
from tfasc.layers.efficient import DepthwiseSeparableModule, InvertedResidualModule, Swish
from support.layer_test import run_layer_test


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def swish(x, beta=1.0):
    return x * sigmoid(beta * x)


def bn(x, layer):
    gamma, beta, mean, variance = (w.astype(np.float64) for w in layer.get_weights())
    return (x - mean) / np.sqrt(variance + layer.epsilon) * gamma + beta


def depthwise(x, kernel):
    """``x [B, F, T, C]``, ``kernel [k, k, C, 1]``: zero-padded "same" correlation per channel."""
    out = np.zeros_like(x)
    for b in range(x.shape[0]):
        for c in range(x.shape[-1]):
            out[b, :, :, c] = correlate2d(x[b, :, :, c], kernel[:, :, c, 0], mode="same", boundary="fill")
    return out


def pointwise(x, kernel):
    return np.einsum("bftc,cd->bftd", x, kernel[0, 0].astype(np.float64))


def numpy_dsc(x, module):
    y = bn(depthwise(x, module.depthwise.get_weights()[0].astype(np.float64)), module.depthwise_bn)
    y = swish(y, module.depthwise_swish.beta_value())
    return swish(bn(pointwise(y, module.pointwise.get_weights()[0]), module.pointwise_bn), module.pointwise_swish.beta_value())


def numpy_inverted_residual(x, module):
    y = swish(bn(pointwise(x, module.expand.get_weights()[0]), module.expand_bn), module.expand_swish.beta_value())
    y = bn(depthwise(y, module.depthwise.get_weights()[0].astype(np.float64)), module.depthwise_bn)
    y = swish(y, module.depthwise_swish.beta_value())
    y = bn(pointwise(y, module.project.get_weights()[0]), module.project_bn)
    return x + y if x.shape[-1] == module.filters else y


#: TF-MOT simulates Activation("swish") as float swish plus an output quantizer; TFLite computes an
#: int8 LOGISTIC (output step 1/256) and then an int8 MUL, rounding QAT does not model. The first
#: swish's rounding then passes through a convolution and a BatchNorm whose random positive weights
#: (the helper draws them from [0.5, 1.5]) add it up coherently: measured 3-5 output steps of 256 on
#: these inputs. 8 steps (3 % of the output range) still catches a wrong scale or a missing op.
SWISH_MODULE_STEPS = 8.0


def features(shape=(3, 8, 6, 4), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("beta,trainable_beta", [(1.0, False), (1.7, True)])
def test_swish_layer_contract(beta, trainable_beta):
    x = features()

    def reference(inputs, layer):
        return swish(inputs.astype(np.float64), layer.beta_value())

    run_layer_test(
        cls=Swish, init_kwargs={"beta": beta, "trainable_beta": trainable_beta}, input_data=x,
        expected_output_shape=x.shape, expected_num_trainable_weights=int(trainable_beta), reference=reference,
    )


@pytest.mark.parametrize("kernel_size,filters", [(5, 6)])
def test_depthwise_separable_module_contract(kernel_size, filters):
    x = features()
    run_layer_test(
        cls=DepthwiseSeparableModule, init_kwargs={"filters": filters, "kernel_size": kernel_size},
        input_data=x, expected_output_shape=(*x.shape[:-1], filters),
        # depthwise, pointwise kernels and two BNs' gamma/beta; two BNs' moving statistics
        expected_num_trainable_weights=6, expected_num_non_trainable_weights=4,
        reference=lambda inputs, layer: numpy_dsc(inputs.astype(np.float64), layer),
        reference_rtol=1e-4, reference_atol=1e-4, int8_max_steps=SWISH_MODULE_STEPS,
    )


# A residual module with learned Swish betas, and one that changes the channels (no shortcut).
@pytest.mark.parametrize("kernel_size,filters,trainable_beta", [(3, 4, True), (5, 6, False)])
def test_inverted_residual_module_contract(kernel_size, filters, trainable_beta):
    x = features()
    run_layer_test(
        cls=InvertedResidualModule,
        init_kwargs={"filters": filters, "kernel_size": kernel_size, "trainable_beta": trainable_beta},
        input_data=x, expected_output_shape=(*x.shape[:-1], filters),
        # three kernels, three BNs' gamma/beta, two Swish betas when trainable
        expected_num_trainable_weights=9 + 2 * trainable_beta, expected_num_non_trainable_weights=6,
        reference=lambda inputs, layer: numpy_inverted_residual(inputs.astype(np.float64), layer),
        reference_rtol=1e-4, reference_atol=1e-4, int8_max_steps=SWISH_MODULE_STEPS,
    )


def module_model(module, shape=(8, 6, 4)):
    inputs = keras.Input(shape=shape)
    return keras.Model(inputs, module(inputs))


def test_kernel_counts_and_macs_by_hand():
    dsc = DepthwiseSeparableModule(10, 5)
    module_model(dsc)
    assert [int(np.prod(k.shape)) for k in kernels_of(dsc)] == [5 * 5 * 4, 4 * 10]
    assert layer_macs(dsc, (1, 8, 6, 4), (1, 8, 6, 10)) == 8 * 6 * (25 * 4 + 4 * 10)
    ir = InvertedResidualModule(4, 3)
    module_model(ir)
    # expansion 3: 4 -> 12 -> 12 -> 4
    assert [int(np.prod(k.shape)) for k in kernels_of(ir)] == [4 * 12, 9 * 12, 12 * 4]
    assert layer_macs(ir, (1, 8, 6, 4), (1, 8, 6, 4)) == 8 * 6 * (4 * 12 + 9 * 12 + 12 * 4)


def test_identity_shortcut_only_when_shapes_match():
    x = features()
    for filters, residual in ((4, True), (6, False)):
        module = InvertedResidualModule(filters, 3)
        model = module_model(module)
        exported = to_export_form(model)
        adds = [layer for layer in exported.layers if isinstance(layer, keras.layers.Add)]
        assert bool(adds) == residual
        np.testing.assert_allclose(exported(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_pruning_reaches_module_kernels_and_export_form_keeps_zeros():
    model = keras.Sequential([keras.Input((8, 6, 4)), InvertedResidualModule(4, 3, name="ir"),
                              DepthwiseSeparableModule(8, 3, name="dsc")])
    pruned = apply_pruning(model, target_sparsity=0.5, mode="per_layer", begin_step=0, end_step=1, frequency=1)
    pruned.compile(optimizer="sgd", loss="mse")
    x = features((4, 8, 6, 4))
    pruned.fit(x, np.zeros((4, 8, 6, 8), np.float32), epochs=2, verbose=0, callbacks=pruning_callbacks())
    exported = to_export_form(strip_pruning(pruned))
    for layer in exported.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)) and layer.trainable:
            kernel = layer.get_weights()[0]
            assert abs((kernel == 0).mean() - 0.5) < 0.1, layer.name


def test_bad_arguments():
    with pytest.raises(ValueError, match="filters and kernel_size"):
        DepthwiseSeparableModule(0)
    with pytest.raises(ValueError, match="expansion"):
        InvertedResidualModule(4, expansion=0)
    with pytest.raises(ValueError, match=r"\[batch, freq, time, channels\]"):
        DepthwiseSeparableModule(4)(keras.Input((8, 4)))

"""tfasc.compress.kernels: one table of kernel-owning layers, read by pruning, MACs and QAT.

References, independent of the table: MACs written out by hand, the layers' own weight names,
TF-MOT's ``quantize_apply`` (which BatchNorms it folds), the zeros counted in the kernels, and the
TFLite interpreter / TFLite Micro for the int8 model. Layouts: ``[batch, samples, channels]``
waveforms into a Conv1D stem, ``[batch, freq, time, channels]`` after the reshape.
"""

from __future__ import annotations

import numpy as np
import pytest

import tfasc  # noqa: F401
import tf_keras as keras
import tensorflow_model_optimization as tfmot

from tfasc.compress import kernels, prune, qat
from tfasc.compress.export_form import to_export_form
from tfasc.deploy import convert, flatbuffer, profile, tflm
from support.keras_models import UndeclaredKernel

WAVE_SHAPE = (128, 1)  # [samples, channels]
MIXED_KERNELS = ("wave_conv", "sep", "up", "dw", "logits")


def mixed_model(seed: int = 0) -> keras.Model:
    """A Conv1D waveform stem (BN, ReLU, MaxPooling1D) reshaped to 2-D, then SeparableConv2D,
    Conv2DTranspose, DepthwiseConv2D and Dense."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    wave = keras.Input(WAVE_SHAPE, name="waveform")
    x = L.Conv1D(8, 9, strides=4, padding="same", use_bias=False, name="wave_conv")(wave)  # [32, 8]
    x = L.BatchNormalization(name="wave_bn")(x)
    x = L.ReLU(name="wave_relu")(x)
    x = L.MaxPooling1D(2, name="wave_pool")(x)  # [16, 8]
    x = L.Reshape((4, 4, 8), name="to_2d")(x)  # [freq 4, time 4, 8]
    x = L.ReLU(name="sep_relu")(L.SeparableConv2D(16, 3, padding="same", name="sep")(x))  # [4, 4, 16]
    x = L.ReLU(name="up_relu")(L.Conv2DTranspose(8, 2, strides=2, name="up")(x))  # [8, 8, 8]
    x = L.DepthwiseConv2D(3, name="dw")(x)  # valid: [6, 6, 8]
    x = L.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(wave, L.Dense(3, name="logits")(x), name="mixed")


def waveforms(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, size=(n, *WAVE_SHAPE)).astype(np.float32)


def fit(model: keras.Model, x: np.ndarray, *, learning_rate: float, callbacks=()) -> None:
    labels = np.random.default_rng(2).integers(0, 3, size=len(x))
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, labels, batch_size=4, epochs=1, verbose=0, callbacks=list(callbacks))


def kernel_arrays(model: keras.Model) -> dict[str, np.ndarray]:
    """Every kernel of the named layers, read from the layers' own weights (not the table)."""
    found = {}
    for name in MIXED_KERNELS:
        for weight in model.get_layer(name).weights:
            if "kernel" in weight.name:
                found[weight.name] = weight.numpy()
    return found


@pytest.fixture(scope="module")
def pruned():
    """(original kernels, pruned and stripped model): global magnitude pruning to 50 %."""
    model = mixed_model()
    original = kernel_arrays(model)
    wrapped = prune.apply_pruning(model, target_sparsity=0.5, begin_step=0, end_step=2, frequency=1)
    fit(wrapped, waveforms(16), learning_rate=0.0, callbacks=prune.pruning_callbacks())  # only masks change
    return original, prune.strip_pruning(wrapped)


def test_macs_by_hand():
    macs = profile.count_macs(mixed_model())
    expected = [
        ("wave_conv", 32 * 8 * 9 * 1),  # 32 output positions x 8 filters x 9-tap window of 1 channel
        ("sep", 4 * 4 * 8 * 3 * 3 + 4 * 4 * 8 * 16),  # depthwise 3x3 on 8 channels, then 1x1 8 -> 16
        ("up", 4 * 4 * 16 * 2 * 2 * 8),  # each of 4x4x16 inputs scatters into a 2x2x8 window
        ("dw", 6 * 6 * 8 * 3 * 3),
        ("logits", 8 * 3),
    ]
    assert list(macs.per_call) == expected
    assert macs.macs == 2304 + 3200 + 8192 + 2592 + 24


def test_every_kind_is_pruned_to_the_global_target(pruned):
    original, stripped = pruned
    now = kernel_arrays(stripped)
    assert sorted(now) == sorted(original)  # both kernels of the separable conv included
    assert len(now) == 6
    for name, kernel in now.items():
        assert 0 < np.mean(kernel == 0) < 1, name
    kept = np.concatenate([np.abs(original[n])[now[n] != 0] for n in now])
    removed = np.concatenate([np.abs(original[n])[now[n] == 0] for n in now])
    assert removed.size / (removed.size + kept.size) == pytest.approx(0.5, abs=0.01)
    assert removed.max() <= kept.min()  # one global magnitude threshold
    assert prune.sparsity_report(stripped)["total"]["params"] == sum(k.size for k in now.values())


def test_waveform_stem_runs_prune_qat_int8_and_tflm_bit_exact(pruned):
    _, stripped = pruned
    x = waveforms(16, seed=3)
    zeros = prune.sparsity_report(stripped)["total"]["zeros"]
    quantized = qat.quantize_model(to_export_form(stripped, trainable=True), preserve_sparsity=True)
    fit(quantized, x, learning_rate=0.05)
    # Every kernel kept its zeros, the split separable conv's two halves and the per-tensor Conv1D included.
    assert prune.sparsity_report(quantized)["total"]["zeros"] == zeros
    # TF-MOT alone leaves a kernel layer right before a ReLU (sep's pointwise half, up) unquantized.
    unquantized = [l.name for l in quantized.layers if hasattr(l, "_weight_vars") and kernels.kernels_of(l) and not l._weight_vars]
    assert unquantized == []
    assert "quant_wave_conv" in [layer.name for layer in quantized.layers]

    int8 = convert.to_tflite(quantized, kind="int8", representative_data=[e[np.newaxis] for e in x])
    ops = flatbuffer.check_builtin_only(int8)
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "MAX_POOL_2D"} <= set(ops), ops
    input_q, _ = convert.io_quantization(int8)
    result = tflm.verify_bit_exact(int8, input_q.quantize(x))
    assert result.bit_exact, result.to_dict()


def one_d_model() -> keras.Model:
    keras.utils.set_random_seed(4)
    inputs = keras.Input((32, 4))  # [samples, channels]
    x = keras.layers.DepthwiseConv1D(3, name="dw1d")(inputs)  # [30, 4]
    x = keras.layers.SeparableConv1D(6, 3, name="sep1d")(x)  # [28, 6]
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="logits")(x))


def test_one_d_depthwise_and_separable_prune_count_and_are_refused_by_qat():
    model = one_d_model()
    assert list(profile.count_macs(model).per_call) == [
        ("dw1d", 30 * 4 * 3), ("sep1d", 28 * 4 * 3 + 28 * 4 * 6), ("logits", 6 * 2)
    ]
    plan = prune.plan_pruning(model, target_sparsity=0.5, mode="per_layer")
    # Hand count: dw1d 3x4x1, sep1d 3x4x1 depthwise + 4x6 pointwise, dense 6x2.
    assert {t.layer: t.params for t in plan.layers} == {"dw1d": 12, "sep1d": 12 + 24, "logits": 12}
    with pytest.raises(qat.QuantizationCoverageError, match=r"dw1d .*DepthwiseConv1D.*sep1d .*SeparableConv1D"):
        qat.quantize_model(model, preserve_sparsity=False)


def build_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    """``layer`` called on a small input of the rank it expects."""
    shape = (6,) if isinstance(layer, keras.layers.Dense) else (
        (8, 3) if "1D" in type(layer).__name__ else (8, 8, 3)
    )
    layer(keras.Input(shape))
    return layer


STOCK_LAYERS = {
    "Conv1D": lambda: keras.layers.Conv1D(4, 3),
    "Conv2D": lambda: keras.layers.Conv2D(4, 3),
    "DepthwiseConv1D": lambda: keras.layers.DepthwiseConv1D(3),
    "DepthwiseConv2D": lambda: keras.layers.DepthwiseConv2D(3),
    "SeparableConv1D": lambda: keras.layers.SeparableConv1D(4, 3),
    "SeparableConv2D": lambda: keras.layers.SeparableConv2D(4, 3),
    "Conv2DTranspose": lambda: keras.layers.Conv2DTranspose(4, 3),
    "Dense": lambda: keras.layers.Dense(4),
    "BatchNormalization": lambda: keras.layers.BatchNormalization(),
}


def test_table_covers_the_listed_stock_layers():
    assert {t.__name__ for t in kernels.KERNEL_TABLE} == set(STOCK_LAYERS)


@pytest.mark.parametrize("name", sorted(STOCK_LAYERS))
def test_table_kernels_are_the_layers_kernel_weights(name):
    layer = build_layer(STOCK_LAYERS[name]())
    named_kernels = sorted(w.name for w in layer.weights if "kernel" in w.name)
    assert sorted(w.name for w in kernels.kernels_of(layer)) == named_kernels
    assert layer.weights  # BatchNormalization owns weights, none of them a kernel


@pytest.mark.parametrize("name", [n for n, s in sorted((t.__name__, s) for t, s in kernels.KERNEL_TABLE.items())
                                  if s.qat not in (kernels.QAT_NONE, kernels.QAT_BATCHNORM)])
def test_folding_column_is_what_tfmot_does(name):
    # TF-MOT quantize_apply of layer -> BatchNorm succeeds only when one of its patterns folds the BN
    # (an un-folded BatchNorm is "not supported"); tfasc's registry only adds Conv1D support.
    layer = STOCK_LAYERS[name]()
    inputs = keras.Input((6,) if name == "Dense" else ((8, 3) if "1D" in name else (8, 8, 3)))
    model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(layer(inputs)))
    annotated = tfmot.quantization.keras.quantize_annotate_model(model)
    try:
        with tfmot.quantization.keras.quantize_scope():
            tfmot.quantization.keras.quantize_apply(annotated, qat._Scheme(preserve_sparsity=False))
        folded = True
    except (RuntimeError, ValueError) as error:
        assert "bn" in str(error)
        folded = False
    assert kernels.folds_following_batchnorm(layer) == folded


def test_undeclared_kernel_layer_is_named_by_prune_profile_and_qat():
    inputs = keras.Input((5,))
    model = keras.Model(inputs, UndeclaredKernel(name="mystery")(keras.layers.Dense(4)(inputs)))
    match = r"mystery.*UndeclaredKernel"
    with pytest.raises(kernels.UndeclaredLayerError, match=match):
        prune.plan_pruning(model, target_sparsity=0.5)
    with pytest.raises(kernels.UndeclaredLayerError, match=match):
        profile.count_macs(model)
    with pytest.raises(qat.QuantizationCoverageError, match=match):
        qat.quantize_model(model, preserve_sparsity=False)


def test_weight_free_layers_need_no_declaration():
    for layer in (keras.layers.ReLU(), keras.layers.Add(), keras.layers.Reshape((4,)), keras.layers.Dropout(0.1)):
        assert kernels.kernel_spec(layer) is None and kernels.kernels_of(layer) == []

"""Tests for tfasc.compress.export_form: SSN and un-foldable BNs rebuilt as frozen 1x1 depthwise convs.

Model: a small Table 1 shared_resnet (DCASE 2020 1B report), ``[batch, freq, time, channels]``
features ``(32, 24, 2)``, c = 4, N = 2 repeats, 3 classes. References: the original Keras model's
inference outputs, TF-MOT's folding rule (``graph.batchnorm_is_folded_by_tfmot`` on the fresh result),
kernel counts by hand, and the flatbuffer parsed with TensorFlow's schema module.
"""

from __future__ import annotations

import numpy as np
import pytest

import tfasc  # noqa: F401
import tensorflow as tf
import tf_keras as keras
from tensorflow.lite.python import schema_py_generated as tflite_schema

from tfasc.compress import graph, prune, qat
from tfasc.compress.export_form import to_export_form
from tfasc.deploy import convert, flatbuffer, tflm
from tfasc.layers.normalization import SubSpectralNormalization
from tfasc.layers.residual import shared_convs, shared_residual_block
from tfasc.models.shared_resnet import build_shared_resnet
from support.keras_models import INPUT_SHAPE as TINY_INPUT_SHAPE, tiny_model

INPUT_SHAPE = (32, 24, 2)  # [freq, time, channels]
CLASSES = 3
CHANNELS = 4
REPEATS = 2
SRB_BLOCKS = ("srb1", "srb2")
INT8_BUILTINS = {"ADD", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "MEAN", "STRIDED_SLICE", "QUANTIZE"}


def small_shared_resnet(normalization: str = "ssn", shared: bool = True) -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_shared_resnet(
        INPUT_SHAPE, CLASSES, channels=CHANNELS, repeats=REPEATS, shared=shared,
        normalization=normalization,
    )


def tiny_shared_block_model(repeats: int = 3) -> keras.Model:
    """Stem conv + one shared residual block (N repeats, BN per repeat) + pooling: quick to convert."""
    keras.utils.set_random_seed(7)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    conv_a, conv_b = shared_convs(8, 1, name="srb")
    x = shared_residual_block(x, conv_a, conv_b, repeats, "srb")
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="pool")(x))


def normalization_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [l for l in model.layers if isinstance(l, (keras.layers.BatchNormalization, SubSpectralNormalization))]


def signed_gammas(shape, rng: np.random.Generator) -> np.ndarray:
    """|gamma| in [0.5, 1.5] with random signs, at least one negative (the case int8 de-duplication misses)."""
    signs = rng.choice([-1.0, 1.0], size=shape)
    signs.flat[rng.integers(signs.size)] = -1.0
    return (signs * rng.uniform(0.5, 1.5, size=shape)).astype("float32")


def randomize_normalizations(model: keras.Model, rng: np.random.Generator) -> None:
    """Random gammas (half negative), betas, moving means and variances in every BN / SSN."""
    for layer in normalization_layers(model):
        layer.gamma.assign(signed_gammas(layer.gamma.shape, rng))
        layer.beta.assign(rng.normal(0.0, 0.3, size=layer.beta.shape))
        layer.moving_mean.assign(rng.normal(0.0, 0.5, size=layer.moving_mean.shape))
        layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=layer.moving_variance.shape))


def calibrate_normalizations(model: keras.Model, x: np.ndarray, rng: np.random.Generator) -> None:
    """Signed random gammas, then moving statistics = the batch statistics of ``x`` (like a trained model).

    Activations then stay O(1), inside TF-MOT's initial [-6, 6] activation ranges.
    """
    layers = normalization_layers(model)
    for layer in layers:
        layer.gamma.assign(signed_gammas(layer.gamma.shape, rng))
        layer.beta.assign(rng.normal(0.0, 0.1, size=layer.beta.shape))
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0  # moving <- batch statistics in one training-mode call
    model(x, training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def unfoldable_batchnorms(model: keras.Model) -> list[str]:
    """Names of BNs TF-MOT would not fold (the rule of ``tfasc.compress.graph``)."""
    return [
        l.name for l in model.layers
        if isinstance(l, keras.layers.BatchNormalization) and not graph.batchnorm_is_folded_by_tfmot(l, model)
    ]


def srb_batchnorm_names() -> set[str]:
    return {f"{b}_bn_{ab}_{i}" for b in SRB_BLOCKS for ab in "ab" for i in range(REPEATS)}


def conv_kernels(model: keras.Model) -> dict[str, np.ndarray]:
    return {l.name: l.kernel.numpy() for l in model.layers if type(l) is keras.layers.Conv2D}


def prune_by_magnitude(model: keras.Model, sparsity: float) -> None:
    """Zero the smallest ``sparsity`` of every Conv2D kernel (numpy, per layer)."""
    for layer in model.layers:
        if type(layer) is keras.layers.Conv2D:
            kernel = layer.kernel.numpy()
            threshold = np.sort(np.abs(kernel).ravel())[int(sparsity * kernel.size) - 1]
            layer.kernel.assign(np.where(np.abs(kernel) <= threshold, 0.0, kernel))


def stripped_like_tfmot(model: keras.Model) -> keras.Model:
    """Wrap for pruning and strip again: layer objects then carry nodes of three models, as after real pruning."""
    wrapped = prune.apply_pruning(model, target_sparsity=0.5, begin_step=0, end_step=2, frequency=1, mode="per_layer")
    return prune.strip_pruning(wrapped)


def conv_filter_buffers(tflite_bytes: bytes) -> list[tuple[int, np.ndarray]]:
    """(buffer index, stored array) of the filter of every CONV_2D op, in op order (repeats included)."""
    model = tflite_schema.Model.GetRootAsModel(tflite_bytes, 0)
    subgraph = model.Subgraphs(0)
    found = []
    for o in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(o)
        code = model.OperatorCodes(op.OpcodeIndex())
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) != tflite_schema.BuiltinOperator.CONV_2D:
            continue
        tensor = subgraph.Tensors(op.Inputs(1))
        dtype = {tflite_schema.TensorType.INT8: np.int8, tflite_schema.TensorType.FLOAT32: np.float32}[tensor.Type()]
        data = model.Buffers(tensor.Buffer()).DataAsNumpy().tobytes()
        found.append((tensor.Buffer(), np.frombuffer(data, dtype).reshape(tensor.ShapeAsNumpy())))
    return found


def distinct_filters(tflite_bytes: bytes) -> dict[int, np.ndarray]:
    return dict(conv_filter_buffers(tflite_bytes))


def kernel_weights_counted_once(model: keras.Model) -> int:
    return sum(k.size for k in conv_kernels(model).values())


# ---------------------------------------------------------------------------------------------
# Float equivalence and structure
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalization,shared", [("ssn", True), ("ssn", False), ("bn", True), ("bn", False)])
def test_same_inference_outputs_and_only_foldable_normalizations_left(normalization, shared):
    model = small_shared_resnet(normalization, shared)
    rng = np.random.default_rng(1)
    randomize_normalizations(model, rng)
    x = rng.normal(size=(4, *INPUT_SHAPE)).astype("float32")
    exported = to_export_form(model)

    expected = model(x, training=False).numpy()
    # Activations grow to O(1e3) through the random statistics: float32 rounding, relative.
    np.testing.assert_allclose(exported(x, training=False).numpy(), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())

    assert not [l.name for l in exported.layers if isinstance(l, SubSpectralNormalization)]
    assert unfoldable_batchnorms(exported) == []
    replaced = {l.name[: -len("_affine")] for l in exported.layers if l.name.endswith("_affine") and "_band" not in l.name}
    # Hand count: only the per-repeat BNs behind shared convs are un-foldable (stem, RB and head BNs fold).
    assert replaced == (srb_batchnorm_names() if shared else set())
    assert set(unfoldable_batchnorms(model)) == (srb_batchnorm_names() if shared else set())
    for layer in exported.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            assert not layer.trainable and layer.kernel_size == (1, 1) and layer.use_bias
            kernel_sign = np.sign(layer.depthwise_kernel.numpy())
            assert (kernel_sign < 0).any()  # the negative gammas survived the folding
    if shared:
        for block in SRB_BLOCKS:
            for conv in ("conv_a", "conv_b"):
                assert len(exported.get_layer(f"{block}_{conv}")._inbound_nodes) == REPEATS
    # Fresh layer objects, weights copied exactly.
    originals = {id(l) for l in model.layers}
    assert not any(id(l) in originals for l in exported.layers)
    kernels = conv_kernels(model)
    assert conv_kernels(exported).keys() == kernels.keys()
    for name, kernel in conv_kernels(exported).items():
        np.testing.assert_array_equal(kernel, kernels[name])


def test_depthwise_weights_are_the_folded_batchnorm():
    model = small_shared_resnet("bn", shared=True)
    rng = np.random.default_rng(2)
    randomize_normalizations(model, rng)
    exported = to_export_form(model)
    bn = model.get_layer("srb2_bn_b_1")
    gamma, beta, mean, variance = (w.numpy().astype(np.float64) for w in (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance))
    scale = gamma / np.sqrt(variance + bn.epsilon)
    kernel, bias = exported.get_layer("srb2_bn_b_1_affine").get_weights()
    np.testing.assert_allclose(kernel.reshape(-1), scale, rtol=1e-6)
    np.testing.assert_allclose(bias, beta - mean * scale, rtol=1e-5, atol=1e-6)


def test_model_without_normalizations_to_rewrite_is_an_equivalent_clone():
    model = tiny_model(seed=3, name="baseline")
    randomize_normalizations(model, np.random.default_rng(3))
    exported = to_export_form(model)
    assert exported.name == "baseline"
    assert [(type(l), l.name) for l in exported.layers] == [(type(l), l.name) for l in model.layers]
    for original, copy in zip(model.weights, exported.weights):
        np.testing.assert_array_equal(original.numpy(), copy.numpy())
    x = np.random.default_rng(4).normal(size=(2, *TINY_INPUT_SHAPE)).astype("float32")
    np.testing.assert_array_equal(exported(x).numpy(), model(x).numpy())


def test_float32_stores_each_shared_kernel_once_and_naive_export_stores_n_copies():
    model = tiny_shared_block_model(repeats=3)
    randomize_normalizations(model, np.random.default_rng(8))
    kernel_bytes = {name: 4 * k.size for name, k in conv_kernels(model).items()}  # float32
    naive = convert.to_tflite(model, kind="float32")
    exported = convert.to_tflite(to_export_form(model), kind="float32")
    # Hand count: stem + (conv_a, conv_b) once; the converter folds each repeat's BN into its own copy.
    assert len(conv_filter_buffers(exported)) == len(conv_filter_buffers(naive)) == 1 + 2 * 3
    assert len(distinct_filters(exported)) == 3
    assert sum(a.nbytes for a in distinct_filters(exported).values()) == sum(kernel_bytes.values())
    assert len(distinct_filters(naive)) == 1 + 2 * 3
    assert sum(a.nbytes for a in distinct_filters(naive).values()) == kernel_bytes["stem_conv"] + 3 * (
        kernel_bytes["srb_conv_a"] + kernel_bytes["srb_conv_b"]
    )


def test_keras_round_trip_keeps_sharing_freezing_and_outputs(tmp_path):
    model = tiny_shared_block_model(repeats=2)
    randomize_normalizations(model, np.random.default_rng(9))
    exported = to_export_form(model)
    path = tmp_path / "export_form.keras"
    exported.save(path)
    restored = keras.models.load_model(path)
    x = np.random.default_rng(10).normal(size=(2, *INPUT_SHAPE)).astype("float32")
    np.testing.assert_array_equal(restored(x).numpy(), exported(x).numpy())
    assert len(restored.get_layer("srb_conv_a")._inbound_nodes) == 2
    assert not restored.get_layer("srb_bn_b_1_affine").trainable


def test_wrapped_and_subclassed_models_are_refused():
    wrapped = prune.apply_pruning(tiny_shared_block_model(), target_sparsity=0.5, begin_step=0, end_step=2, frequency=1)
    with pytest.raises(ValueError, match="strip_pruning"):
        to_export_form(wrapped)

    class Subclassed(keras.Model):
        def call(self, inputs):
            return inputs

    with pytest.raises(ValueError, match="no layer graph"):
        to_export_form(Subclassed())


# ---------------------------------------------------------------------------------------------
# Pruned -> export form -> prune-preserving QAT -> int8 -> TFLite Micro
# ---------------------------------------------------------------------------------------------


def qat_steps(model: keras.Model, x: np.ndarray, steps: int, learning_rate: float) -> None:
    """A few eager SGD steps on random labels (moves kernels, so lost sparsity would show)."""
    rng = np.random.default_rng(5)
    optimizer = keras.optimizers.SGD(learning_rate)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for step in range(steps):
        batch = x[4 * step: 4 * step + 4]
        with tf.GradientTape() as tape:
            value = loss(rng.integers(0, CLASSES, size=len(batch)), model(batch, training=True))
        optimizer.apply_gradients(zip(tape.gradient(value, model.trainable_variables), model.trainable_variables))


@pytest.fixture(scope="module")
def deployed():
    """The pruned SSN shared_resnet with signed gammas, exported three ways (the slow part: ~70 s)."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(16, *INPUT_SHAPE)).astype("float32")
    model = small_shared_resnet("ssn", shared=True)
    prune_by_magnitude(model, 0.5)
    model = stripped_like_tfmot(model)
    calibrate_normalizations(model, x, rng)
    exported = to_export_form(model)
    quantized = qat.quantize_model(exported, preserve_sparsity=True)
    # Also sets the input quantizer's range (TF-MOT starts it at [0, 0]).
    qat_steps(quantized, x, steps=2, learning_rate=0.01)
    representative = [x[i: i + 1] for i in range(len(x))]
    return {
        "x": x,
        "model": model,
        "exported": exported,
        "quantized": quantized,
        "int8": convert.to_tflite(quantized, kind="int8", representative_data=representative),
        # Post-training int8 of the export form: ranges from data, so it tracks the float model.
        "ptq_int8": convert.to_tflite(exported, kind="int8", representative_data=representative),
        # Without the rewrite: post-training int8 of the original float model (BN folded into the conv).
        "naive_int8": convert.to_tflite(model, kind="int8", representative_data=representative),
    }


@pytest.mark.slow  # the deployed fixture converts three int8 models (minutes on 2 cores)
def test_int8_is_full_integer_builtins_bit_exact_in_tflm_and_tracks_keras(deployed):
    x = deployed["x"]
    for kind in ("int8", "ptq_int8"):
        blob = deployed[kind]
        ops = flatbuffer.check_builtin_only(blob, allowed=INT8_BUILTINS)
        assert "DEQUANTIZE" not in ops and "MUL" not in ops, ops  # no float normalization islands
        flatbuffer.check_full_integer(blob)
        input_q, _ = convert.io_quantization(blob)
        result = tflm.verify_bit_exact(blob, input_q.quantize(x))
        assert result.bit_exact, (kind, result.to_dict())

    # The QAT flatbuffer computes what the fake-quant Keras model computes, to a few output steps
    # (measured: median 1, mean 1.4 LSB). Against the float model an untrained QAT model agrees less,
    # rewrite or not: TF-MOT's activation ranges start at [-6, 6] and move by EMA over training.
    output_scale = convert.io_quantization(deployed["int8"])[1].scale
    lsb = np.abs(convert.run_tflite(deployed["int8"], x) - deployed["quantized"](x, training=False).numpy()) / output_scale
    assert np.median(lsb) <= 2.0 and lsb.mean() <= 3.0, (np.median(lsb), lsb.mean())
    # With ranges calibrated on data the int8 export form tracks the float model (measured: 13/16 top-1,
    # logit RMS error 0.34 of the logit spread; this 4-channel random network has small logit margins).
    expected = deployed["model"](x, training=False).numpy()
    logits = convert.run_tflite(deployed["ptq_int8"], x)
    assert np.mean(logits.argmax(axis=1) == expected.argmax(axis=1)) >= 0.75
    assert np.sqrt(np.mean((logits - expected) ** 2)) <= 0.5 * expected.std()


@pytest.mark.slow  # the deployed fixture converts three int8 models (minutes on 2 cores)
def test_shared_kernels_stored_once_in_int8(deployed):
    model = deployed["model"]
    unique_convs = len(conv_kernels(model))
    conv_calls = unique_convs + 2 * len(SRB_BLOCKS) * (REPEATS - 1)
    weights_once = kernel_weights_counted_once(model)

    for kind in ("int8", "ptq_int8"):
        filters = conv_filter_buffers(deployed[kind])
        assert len(filters) == conv_calls  # every repeat still calls a conv
        assert len(distinct_filters(deployed[kind])) == unique_convs  # 2 kernels per SRB, not 2N
        assert sum(a.nbytes for a in distinct_filters(deployed[kind]).values()) == weights_once  # int8: 1 byte each

    # Without the rewrite the converter folds each repeat's BN into its own copy of the kernel. Per-channel
    # int8 makes copies whose BN scales have the same sign pattern byte-identical (de-duplicated), so by
    # hand: one stored kernel per distinct gamma sign pattern among the N repeats of each shared conv.
    expected_copies = expected_extra_bytes = 0
    for block in SRB_BLOCKS:
        for ab in "ab":
            patterns = {tuple(np.sign(model.get_layer(f"{block}_bn_{ab}_{i}").gamma.numpy())) for i in range(REPEATS)}
            expected_copies += len(patterns) - 1
            expected_extra_bytes += (len(patterns) - 1) * model.get_layer(f"{block}_conv_{ab}").kernel.shape.num_elements()
    assert expected_copies > 0  # the signs drawn make the naive export store extra copies
    naive = distinct_filters(deployed["naive_int8"])
    assert len(naive) == unique_convs + expected_copies
    assert sum(a.nbytes for a in naive.values()) == weights_once + expected_extra_bytes
    # All constants (measured: 3980 bytes vs 4332; c = 64, 256 mels, N = 3: 619,216 vs 983,728).
    stored = flatbuffer.flatbuffer_storage(deployed["int8"]).stored_bytes
    assert stored < flatbuffer.flatbuffer_storage(deployed["naive_int8"]).stored_bytes


@pytest.mark.slow  # the deployed fixture converts three int8 models (minutes on 2 cores)
def test_stripped_model_layers_carrying_other_models_nodes_are_judged_on_this_model(deployed):
    model, exported = deployed["model"], deployed["exported"]
    # strip_pruning reuses layer objects, so counting _inbound_nodes would see 3 models and call the
    # stem conv shared; the rule reads this model's nodes only, where the stem BN folds.
    assert len(model.get_layer("stem_conv")._inbound_nodes) > 1
    assert graph.batchnorm_is_folded_by_tfmot(model.get_layer("stem_bn"), model)
    replaced = {l.name for l in exported.layers if l.name.endswith("_affine") and "_band" not in l.name}
    assert replaced == {f"{name}_affine" for name in srb_batchnorm_names()}
    assert unfoldable_batchnorms(exported) == []


@pytest.mark.slow  # the deployed fixture converts three int8 models (minutes on 2 cores)
def test_pruning_zeros_survive_rewrite_qat_and_int8(deployed):
    model, exported, quantized = deployed["model"], deployed["exported"], deployed["quantized"]
    zeros = {n: e["zeros"] for n, e in prune.sparsity_report(model)["layers"].items()}
    assert sum(zeros.values()) >= 0.5 * kernel_weights_counted_once(model) - len(zeros)
    assert {n: e["zeros"] for n, e in prune.sparsity_report(exported)["layers"].items() if n in zeros} == zeros
    assert {n: e["zeros"] for n, e in prune.sparsity_report(quantized)["layers"].items() if n in zeros} == zeros

    # Every pruned position is zero in some stored int8 filter of the same layer ([out, kh, kw, in]).
    stored = list(distinct_filters(deployed["int8"]).values())
    for name, kernel in conv_kernels(model).items():
        pruned = np.transpose(kernel == 0.0, (3, 0, 1, 2))
        matches = [f for f in stored if f.shape == pruned.shape and np.all(f[pruned] == 0)]
        assert matches, name


def test_trainable_export_form_for_qat_fine_tunes_scale_and_shift_together():
    model = small_shared_resnet()
    frozen, trainable = to_export_form(model), to_export_form(model, trainable=True)
    affine = lambda m: [l for l in m.layers if l.name.endswith("_affine")]
    assert affine(frozen) and not any(l.trainable for l in affine(frozen))
    assert all(l.trainable for l in affine(trainable))
    names = {w.name for w in trainable.trainable_weights}
    for layer in affine(trainable):
        assert {f"{layer.name}/depthwise_kernel:0", f"{layer.name}/bias:0"} <= names

"""Tests for tfasc.deploy.flatbuffer: the reader against tf.lite.Interpreter's own view, and the analyses."""

import numpy as np
import pytest

import tfasc  # noqa: F401
import tensorflow as tf

from support.keras_models import INPUT_SHAPE, tiny_model
from tfasc.deploy import convert, flatbuffer


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    """Conv2D (+ folded BN) -> ReLU -> DepthwiseConv2D -> pooling -> Dense, float32 and int8."""
    model = tiny_model()
    calibration = np.random.default_rng(0).normal(size=(8, 1, *INPUT_SHAPE)).astype(np.float32)
    return {
        "float32": convert.to_tflite(model, kind="float32"),
        "int8": convert.to_tflite(model, kind="int8", representative_data=list(calibration)),
    }


def interpreter(tflite: bytes) -> tf.lite.Interpreter:
    # Reference kernels, no delegate: the XNNPACK delegate would append a DELEGATE node.
    result = tf.lite.Interpreter(
        model_content=tflite, experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF
    )
    result.allocate_tensors()
    return result


@pytest.mark.parametrize("kind", ["float32", "int8"])
def test_operators_match_the_interpreter(models, kind):
    tflite = models[kind]
    graph = flatbuffer.read(tflite).subgraphs[0]
    expected = [
        (d["index"], d["op_name"], tuple(d["inputs"].tolist()), tuple(d["outputs"].tolist()))
        for d in interpreter(tflite)._get_ops_details()
    ]
    assert [(op.index, op.name, op.inputs, op.outputs) for op in graph.operators] == expected


@pytest.mark.parametrize("kind", ["float32", "int8"])
def test_tensors_and_constants_match_the_interpreter(models, kind):
    tflite = models[kind]
    model = flatbuffer.read(tflite)
    graph = model.subgraphs[0]
    reference = interpreter(tflite)
    # The interpreter appends its own scratch tensors after the file's; compare the file's.
    details = {d["index"]: d for d in reference.get_tensor_details()}
    for tensor in graph.tensors:
        d = details[tensor.index]
        quantization = d["quantization_parameters"]
        assert tensor.name == d["name"]
        assert tensor.shape == tuple(d["shape"].tolist())
        assert np.dtype(tensor.type.lower()) == np.dtype(d["dtype"])
        np.testing.assert_allclose(tensor.scales, quantization["scales"], rtol=1e-7)
        assert tensor.zero_points == tuple(quantization["zero_points"].tolist())
        assert tensor.quantized_dimension == quantization["quantized_dimension"]
        data = model.data(tensor)
        if data:  # a constant: its bytes are what the interpreter holds for it
            values = np.frombuffer(data, dtype=np.dtype(tensor.type.lower())).reshape(tensor.shape)
            np.testing.assert_array_equal(values, reference.get_tensor(tensor.index))
    assert graph.inputs == (reference.get_input_details()[0]["index"],)
    assert graph.outputs == (reference.get_output_details()[0]["index"],)


def test_int8_analyses_against_hand_counts(models):
    tflite = models["int8"]
    assert flatbuffer.ops_used(tflite) == ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MEAN"]
    flatbuffer.check_full_integer(tflite)
    # int8 kernels: conv 3·3·1·8 bytes, depthwise 3·3·8, dense 8·3, each in its own buffer.
    kernels = 3 * 3 * 1 * 8 + 3 * 3 * 8 + 8 * 3
    assert flatbuffer.kernel_buffers(tflite) == {"operators": 3, "buffers": 3, "bytes": kernels}
    storage = flatbuffer.flatbuffer_storage(tflite)
    # Untrained, the conv's bias (its BN folded in) and the depthwise bias are both 8 int32 zeros:
    # two tensors, one de-duplicated buffer. The dense layer's zero bias is dropped altogether;
    # MEAN's two int32 axes complete the constants.
    assert storage.stored_bytes == kernels + 8 * 4 + 2 * 4
    assert storage.referenced_bytes == storage.stored_bytes + 8 * 4
    assert (storage.constant_tensors, storage.buffers, storage.identical_copy_bytes) == (6, 5, 0)


def test_float_tensors_are_named_by_the_full_integer_check(models):
    with pytest.raises(ValueError, match=r"CONV_2D:.*\(FLOAT32\)"):
        flatbuffer.check_full_integer(models["float32"])


def test_builtin_check_allowed_list_and_bad_bytes(models):
    tflite = models["float32"]
    reader = flatbuffer.read(tflite)
    assert flatbuffer.check_builtin_only(reader) == flatbuffer.ops_used(tflite)  # a reader or bytes
    with pytest.raises(ValueError, match="DEPTHWISE_CONV_2D"):
        flatbuffer.check_builtin_only(tflite, allowed={"CONV_2D", "FULLY_CONNECTED", "MEAN"})
    with pytest.raises(ValueError, match="TFL3"):
        flatbuffer.read(b"not a flatbuffer at all")
    with pytest.raises(ValueError, match="bytes"):
        flatbuffer.read("model.tflite")

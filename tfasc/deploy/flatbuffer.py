"""One reader for TFLite flatbuffers, and the analyses tfasc makes of them.

``read(tflite_bytes)`` walks the flatbuffer once with the schema module TensorFlow ships
(``tensorflow.lite.python.schema_py_generated``) and returns plain frozen records: per subgraph its
operators (op name, input/output tensor indices, in execution order) and tensors (type, shape,
buffer index, quantization), plus the bytes of every buffer. The analyses below work on that
record: the op list (``ops_used``, ``check_builtin_only``), the full-integer check
(``check_full_integer``) and what the file stores for weights (``kernel_buffers``,
``flatbuffer_storage``).

Tensor shapes are as stored, batch first: ``[1, freq, time, channels]`` for feature models,
``[1, samples, channels]`` for waveform models.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Iterable, Iterator

import tfasc  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from tensorflow.lite.python import schema_py_generated as tflite_schema


def _enum_names(enum_class) -> dict[int, str]:
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_") and isinstance(value, int)}


#: BuiltinOperator enum value -> name ("CONV_2D", ...), read from the schema TensorFlow ships.
BUILTIN_OP_NAMES: dict[int, str] = _enum_names(tflite_schema.BuiltinOperator)
#: TensorType enum value -> name ("INT8", "FLOAT32", ...).
TENSOR_TYPE_NAMES: dict[int, str] = _enum_names(tflite_schema.TensorType)

#: Ops whose second input is a weight tensor (the kernel).
KERNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")  # weights are input 1 of each

#: Tensor types a full-integer model may compute with (int32 biases, shapes and axes included).
INTEGER_TENSOR_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "BOOL"})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Tensor:
    """One tensor of a subgraph.

    Attributes:
        index: position in the subgraph's tensor list (what operators refer to).
        name: the converter's name for it.
        type: TensorType name (``"INT8"``, ``"FLOAT32"``, ...).
        shape: stored shape, batch first (``()`` for a scalar).
        buffer: index into ``Flatbuffer.buffers``; a buffer without bytes (0 is the sentinel)
            means the tensor is computed at run time.
        scales, zero_points: affine quantization, ``real = scale * (q - zero_point)``; one value
            per tensor, one per channel along ``quantized_dimension``, or empty when not quantized.
        quantized_dimension: the per-channel axis.
    """

    index: int
    name: str
    type: str
    shape: tuple[int, ...]
    buffer: int
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    quantized_dimension: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class Operator:
    """One operator invocation.

    Attributes:
        index: position in the subgraph's operator list (execution order).
        name: builtin op name (``"CONV_2D"``), ``"CUSTOM:<code>"`` or ``"UNKNOWN_<n>"``.
        inputs, outputs: tensor indices into the subgraph; ``-1`` is an optional input left out.
    """

    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Subgraph:
    """Tensors, operators and graph inputs/outputs (tensor indices) of one subgraph."""

    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Flatbuffer:
    """A TFLite model read once; ``subgraphs[0]`` is the main graph.

    Attributes:
        subgraphs: every subgraph, in file order.
        buffers: bytes of every buffer, by index (``b""`` for the empty ones).
    """

    subgraphs: tuple[Subgraph, ...]
    buffers: tuple[bytes, ...]

    def operators(self) -> Iterator[tuple[Subgraph, Operator]]:
        """Every operator with its subgraph, subgraph by subgraph in execution order."""
        for subgraph in self.subgraphs:
            for op in subgraph.operators:
                yield subgraph, op

    def data(self, tensor: Tensor) -> bytes:
        """The constant bytes behind ``tensor`` (``b""`` for a tensor computed at run time)."""
        return self.buffers[tensor.buffer]


def _op_name(op_code: tflite_schema.OperatorCode) -> str:
    # Codes above 127 live in BuiltinCode; older files only fill DeprecatedBuiltinCode.
    code = max(op_code.BuiltinCode(), op_code.DeprecatedBuiltinCode())
    if code == tflite_schema.BuiltinOperator.CUSTOM:
        custom = op_code.CustomCode()
        return "CUSTOM:" + (custom.decode() if custom else "?")
    return BUILTIN_OP_NAMES.get(code, f"UNKNOWN_{code}")


def _tensor(index: int, tensor: tflite_schema.Tensor) -> Tensor:
    quantization = tensor.Quantization()
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    dimension = 0
    if quantization is not None:
        scales = tuple(float(quantization.Scale(i)) for i in range(quantization.ScaleLength()))
        zero_points = tuple(int(quantization.ZeroPoint(i)) for i in range(quantization.ZeroPointLength()))
        dimension = int(quantization.QuantizedDimension())
    return Tensor(
        index=index,
        name=tensor.Name().decode(),
        type=TENSOR_TYPE_NAMES.get(tensor.Type(), f"UNKNOWN_{tensor.Type()}"),
        shape=tuple(int(tensor.Shape(i)) for i in range(tensor.ShapeLength())),
        buffer=int(tensor.Buffer()),
        scales=scales,
        zero_points=zero_points,
        quantized_dimension=dimension,
    )


def _subgraph(subgraph: tflite_schema.SubGraph, op_names: list[str]) -> Subgraph:
    operators = []
    for o in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(o)
        operators.append(Operator(
            index=o,
            name=op_names[op.OpcodeIndex()],
            inputs=tuple(int(op.Inputs(i)) for i in range(op.InputsLength())),
            outputs=tuple(int(op.Outputs(i)) for i in range(op.OutputsLength())),
        ))
    return Subgraph(
        tensors=tuple(_tensor(t, subgraph.Tensors(t)) for t in range(subgraph.TensorsLength())),
        operators=tuple(operators),
        inputs=tuple(int(subgraph.Inputs(i)) for i in range(subgraph.InputsLength())),
        outputs=tuple(int(subgraph.Outputs(i)) for i in range(subgraph.OutputsLength())),
    )


def _buffer_bytes(tflite_bytes: bytes, buffer: tflite_schema.Buffer) -> bytes:
    if buffer.DataLength():
        return buffer.DataAsNumpy().tobytes()
    if buffer.Offset() > 1:  # models over 2 GB keep data after the flatbuffer
        return bytes(tflite_bytes[buffer.Offset(): buffer.Offset() + buffer.Size()])
    return b""


def read(tflite_bytes: bytes) -> Flatbuffer:
    """Read a ``.tflite`` flatbuffer into a ``Flatbuffer`` record.

    Raises:
        ValueError: the bytes are not a TFLite flatbuffer (no ``TFL3`` file identifier).
    """
    if not isinstance(tflite_bytes, (bytes, bytearray)) or len(tflite_bytes) < 8:
        raise ValueError("expected the bytes of a .tflite flatbuffer")
    tflite_bytes = bytes(tflite_bytes)
    if tflite_bytes[4:8] != b"TFL3":
        raise ValueError(f"not a TFLite flatbuffer: identifier {tflite_bytes[4:8]!r}, expected b'TFL3'")
    model = tflite_schema.Model.GetRootAsModel(tflite_bytes, 0)
    op_names = [_op_name(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
    return Flatbuffer(
        subgraphs=tuple(_subgraph(model.Subgraphs(s), op_names) for s in range(model.SubgraphsLength())),
        buffers=tuple(_buffer_bytes(tflite_bytes, model.Buffers(b)) for b in range(model.BuffersLength())),
    )


def _as_flatbuffer(model: bytes | Flatbuffer) -> Flatbuffer:
    return model if isinstance(model, Flatbuffer) else read(model)


def ops_used(model: bytes | Flatbuffer) -> list[str]:
    """Sorted names of the operators the model's graphs actually invoke (``"CONV_2D"``, ...).

    Custom ops read ``"CUSTOM:<name>"``. Operator codes listed but never invoked are not returned.
    """
    return sorted({op.name for _, op in _as_flatbuffer(model).operators()})


def check_builtin_only(model: bytes | Flatbuffer, *, allowed: Iterable[str] | None = None) -> list[str]:
    """Return ``ops_used``; raise ``ValueError`` on a custom/unknown op or one outside ``allowed``."""
    ops = ops_used(model)
    bad = [op for op in ops if op.startswith(("CUSTOM:", "UNKNOWN_"))]
    if allowed is not None:
        allowed_set = set(allowed)
        bad += [op for op in ops if op not in allowed_set and op not in bad]
    if bad:
        raise ValueError(f"the flatbuffer uses ops {bad} that are not allowed builtins (all ops: {ops})")
    return ops


def check_full_integer(model: bytes | Flatbuffer) -> None:
    """Raise ``ValueError`` unless every operator reads and writes only integer tensors.

    This is what ``TFLITE_BUILTINS_INT8`` promises; checked on the result so that it also holds
    when the converter could not be given that flag (QAT without representative data).
    """
    offenders = [
        f"{op.name}:{subgraph.tensors[t].name}({subgraph.tensors[t].type})"
        for subgraph, op in _as_flatbuffer(model).operators()
        for t in op.inputs + op.outputs
        if t >= 0 and subgraph.tensors[t].type not in INTEGER_TENSOR_TYPES  # -1: optional input left out
    ]
    if offenders:
        raise ValueError(
            f"not a full-integer model; float tensors at: {', '.join(offenders[:10])}. A QAT model "
            "with normalizations TF-MOT does not fold (BatchNorm after a shared conv, sub-spectral "
            "normalization) needs representative_data so the converter can calibrate their "
            "multiply/add constants"
        )


def kernel_buffers(model: bytes | Flatbuffer) -> dict[str, int]:
    """How the flatbuffer stores the weights of its CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED ops.

    ``operators``: ops with a weight tensor; ``buffers``: distinct buffers those weights live in
    (a shared kernel stored once serves several ops from one buffer); ``bytes``: their size.
    """
    flatbuffer = _as_flatbuffer(model)
    operators, sizes = 0, {}
    for subgraph, op in flatbuffer.operators():
        if op.name not in KERNEL_OPS or len(op.inputs) < 2:
            continue
        operators += 1
        weights = subgraph.tensors[op.inputs[1]]
        sizes[weights.buffer] = len(flatbuffer.data(weights))
    return {"operators": operators, "buffers": len(sizes), "bytes": sum(sizes.values())}


@dataclasses.dataclass(frozen=True, kw_only=True)
class FlatbufferStorage:
    """Constant (weight) storage of a TFLite flatbuffer.

    Attributes:
        constant_tensors: tensors backed by a non-empty buffer.
        buffers: distinct non-empty buffers those tensors point to (the converter de-duplicates
            identical read-only buffers).
        stored_bytes: bytes of those distinct buffers: what flash holds.
        referenced_bytes: bytes summed per constant tensor (> stored_bytes when tensors share a
            buffer).
        identical_copy_bytes: bytes in buffers whose content equals an earlier buffer's; a
            shared kernel stored once per repeat shows up here.
    """

    constant_tensors: int
    buffers: int
    stored_bytes: int
    referenced_bytes: int
    identical_copy_bytes: int


def flatbuffer_storage(model: bytes | Flatbuffer) -> FlatbufferStorage:
    """What the flatbuffer stores for constant tensors; see ``FlatbufferStorage``."""
    flatbuffer = _as_flatbuffer(model)
    constants = [
        tensor.buffer for subgraph in flatbuffer.subgraphs for tensor in subgraph.tensors if flatbuffer.data(tensor)
    ]
    used = sorted(set(constants))
    seen_digests: set[bytes] = set()
    identical = 0
    for index in used:
        digest = hashlib.sha256(flatbuffer.buffers[index]).digest()
        if digest in seen_digests:
            identical += len(flatbuffer.buffers[index])
        seen_digests.add(digest)
    return FlatbufferStorage(
        constant_tensors=len(constants),
        buffers=len(used),
        stored_bytes=sum(len(flatbuffer.buffers[i]) for i in used),
        referenced_bytes=sum(len(flatbuffer.buffers[i]) for i in constants),
        identical_copy_bytes=identical,
    )

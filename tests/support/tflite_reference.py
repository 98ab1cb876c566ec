"""An int8 TFLite model run by tf.lite.Interpreter, the independent reference of the int8 path's tests."""

from __future__ import annotations

import numpy as np


def tflite_logits(tflite_path, inputs: np.ndarray, *, reference: bool) -> np.ndarray:
    """The int8 model's dequantized outputs in tf.lite.Interpreter (its reference kernels, which
    TFLite Micro matches bit for bit, or the optimized ones the export's metrics use), inputs
    quantized half away from zero (as TFLite does). The optimized kernels are the builtin ones without
    the XNNPack delegate, which rounds int8 differently."""
    import tensorflow as tf

    resolver = tf.lite.experimental.OpResolverType
    interpreter = tf.lite.Interpreter(model_path=str(tflite_path), experimental_op_resolver_type=(
        resolver.BUILTIN_REF if reference else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    scale, zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]
    logits = []
    for x in inputs:
        scaled = x.astype(np.float64) / scale
        q = np.clip(np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + zero, -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], q[np.newaxis])
        interpreter.invoke()
        raw = interpreter.get_tensor(out["index"])[0]
        logits.append(np.float32(out_scale) * (raw.astype(np.float32) - np.float32(out_zero)))
    return np.array(logits)

"""Host latency: int8 TFLite vs float Keras for the same small model, side by side.

Model: a few Conv2D/BN/ReLU + DepthwiseConv2D blocks on ``[batch, freq, time, channels]`` log-mel
features (default 64 x 100 x 1), QAT'd with tfasc.compress.qat and converted with
tfasc.deploy.convert. Both run one example at a time (batch 1), as on a device.

    python benchmarks/bench_int8_latency.py --freq 64 --time 100 --repeats 200
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tfasc  # noqa: F401  (selects tf_keras before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras

from tfasc.compress import qat
from tfasc.deploy import convert


def small_model(freq: int, time_steps: int, channels: int = 16, classes: int = 10) -> keras.Model:
    inputs = keras.Input((freq, time_steps, 1))
    x = inputs
    for i, (filters, stride) in enumerate([(channels, 2), (channels, 1), (2 * channels, 2)]):
        x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        x = keras.layers.DepthwiseConv2D(3, padding="same", name=f"dw{i}")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="logits")(x))


def median_ms(step, repeats: int) -> float:
    for _ in range(5):  # warm-up (tracing, allocation)
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--freq", type=int, default=64)
    parser.add_argument("--time", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="TFLite interpreter threads")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    model = small_model(args.freq, args.time)
    rng = np.random.default_rng(0)
    data = rng.normal(size=(32, args.freq, args.time, 1)).astype(np.float32)
    qat_model = qat.quantize_model(model, preserve_sparsity=False)
    qat_model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat_model.fit(data, rng.integers(0, 10, len(data)), batch_size=8, epochs=1, verbose=0)
    tflite = convert.to_tflite(qat_model, kind="int8", representative_data=[d[None] for d in data[:8]])

    example = data[:1]
    keras_call = tf.function(lambda x: model(x, training=False))
    keras_ms = median_ms(lambda: keras_call(example).numpy(), args.repeats)

    interpreter = tf.lite.Interpreter(model_content=tflite, num_threads=args.threads)
    interpreter.allocate_tensors()
    input_details = interpreter.get_input_details()[0]
    output_index = interpreter.get_output_details()[0]["index"]
    input_q = convert.TensorQuantization.from_details(input_details)
    example_int8 = input_q.quantize(example)

    def tflite_step():
        interpreter.set_tensor(input_details["index"], example_int8)
        interpreter.invoke()
        interpreter.get_tensor(output_index)

    tflite_ms = median_ms(tflite_step, args.repeats)

    print(f"model: input [1, {args.freq}, {args.time}, 1], {model.count_params()} params, int8 file {len(tflite)} bytes")
    print(f"{'runtime':<34}{'median ms / inference':>24}")
    print(f"{'float Keras (tf.function, CPU)':<34}{keras_ms:>24.3f}")
    print(f"{'int8 TFLite (optimized kernels)':<34}{tflite_ms:>24.3f}")
    print(f"ratio float Keras / int8 TFLite: {keras_ms / tflite_ms:.2f}x")


if __name__ == "__main__":
    main()

"""Tiny Keras models shared by the compression and deployment tests."""

import tfasc  # noqa: F401
import tf_keras as keras

INPUT_SHAPE = (16, 20, 1)  # [freq, time, channels]


def tiny_model(seed: int = 0, name: str | None = None) -> keras.Model:
    """Conv2D → BN → ReLU → DepthwiseConv2D → pooling → Dense on ``[batch, 16, 20, 1]`` features."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(8, 3, strides=2, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x), name=name)


class UndeclaredKernel(keras.layers.Layer):
    """A custom layer owning a kernel ``[channels, 3]`` that declares no ``LayerContract``: ``x @ kernel``."""

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(int(input_shape[-1]), 3))

    def call(self, inputs):
        return inputs @ self.kernel

"""A new layer is one class with its contract plus its registration (tfasc.layers.contract).

``ChannelScale`` below is defined here only: ``y = x * scale`` per channel on ``[batch, freq, time,
channels]``, its ``scale`` a prunable kernel. Nothing in tfasc names it, yet it prunes, counts
MACs, has an export form that quantizes, converts to builtin int8 ops and runs bit-exactly in
TFLite Micro. References: numpy and hand counts.
"""

from __future__ import annotations

import numpy as np

import tfasc  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tf_keras as keras

from tfasc.compress import kernels, prune
from tfasc.deploy import profile
from tfasc.layers.contract import LayerContract
from support.layer_test import run_layer_test

INPUT_SHAPE = (6, 5, 4)  # [freq, time, channels]


@keras.saving.register_keras_serializable(package="tfasc_test")
class ChannelScale(LayerContract, keras.layers.Layer):
    """``y = x * scale``, one learned scale per channel; ``[batch, freq, time, channels]`` in and out."""

    kernel_attributes = ("scale",)
    prunable = True

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(int(input_shape[-1]),), initializer="ones")
        super().build(input_shape)

    def call(self, inputs):
        return inputs * self.scale

    def count_macs(self, input_shape, output_shape) -> int:
        return int(np.prod(output_shape[1:]))  # one multiply per output element

    def export_form(self, inputs, *, name: str, trainable: bool):
        # A 1x1 depthwise conv without bias computes the same per-channel product, and TF-MOT and
        # TFLite Micro know it; the kernel (and its pruning zeros) is copied over.
        depthwise = keras.layers.DepthwiseConv2D(1, use_bias=False, trainable=trainable, name=f"{name}_depthwise")
        outputs = depthwise(inputs)
        depthwise.set_weights([self.scale.numpy().reshape(1, 1, -1, 1)])
        return outputs


def scale_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(INPUT_SHAPE)
    x = ChannelScale(name="scale")(inputs)
    x = keras.layers.Conv2D(3, 3, name="conv")(x)
    outputs = keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    scale = model.get_layer("scale").scale
    scale.assign(np.random.default_rng(seed).uniform(0.5, 1.5, scale.shape))
    return model


def test_new_layer_passes_the_whole_layer_test():
    run_layer_test(
        cls=ChannelScale,
        init_kwargs=dict(name="channel_scale"),
        input_data=np.random.default_rng(1).normal(size=(4, *INPUT_SHAPE)).astype(np.float32),
        expected_output_shape=(4, *INPUT_SHAPE),
        expected_num_trainable_weights=1,
        reference=lambda x, layer: x * layer.scale.numpy(),
    )


def test_new_layer_counts_macs_and_kernels():
    model = scale_model()
    macs = dict(profile.count_macs(model).per_call)
    assert macs["scale"] == 6 * 5 * 4  # a multiply per output element
    assert macs["conv"] == 4 * 3 * 3 * 3 * 3 * 4  # valid 3x3 -> 4x3 positions x 3 filters x 3x3x4 window
    assert [k.name for k in kernels.kernels_of(model.get_layer("scale"))] == ["scale/scale:0"]
    assert profile.distinct_kernels(model) == 3  # scale, conv, dense


def test_new_layer_is_pruned_like_any_kernel_layer():
    model = scale_model()
    plan = prune.plan_pruning(model, target_sparsity=0.5, mode="per_layer")
    assert {t.layer: t.params for t in plan.layers} == {"scale": 4, "conv": 3 * 3 * 4 * 3, "logits": 3 * 2}
    pruned = prune.apply_pruning(model, target_sparsity=0.5, begin_step=0, end_step=1, frequency=1, plan=plan)
    x = np.random.default_rng(2).normal(size=(8, *INPUT_SHAPE)).astype(np.float32)
    pruned.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    pruned.fit(x, np.zeros((8, 2), np.float32), batch_size=4, verbose=0, callbacks=prune.pruning_callbacks())
    stripped = prune.strip_pruning(pruned)
    assert np.count_nonzero(stripped.get_layer("scale").scale.numpy() == 0) == 2  # half of 4 channels

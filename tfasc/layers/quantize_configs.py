"""TF-MOT ``QuantizeConfig`` classes that tfasc layers declare in their contract.

Kept with the layers (not in ``tfasc.compress``) so a layer module can name its config without
importing the compression package; layer modules import this lazily, inside
``quantize_config()``, so importing a layer does not import TF-MOT. Registered under package
``tfasc`` so QAT models that use them load again
(``tfasc.compress.qat.load_quantized_model``).
"""

from __future__ import annotations

import tfasc  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tf_keras as keras
import tensorflow_model_optimization as tfmot


@keras.saving.register_keras_serializable(package="tfasc")
class OutputOnlyQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """Quantize only a weight-free layer's output: 8-bit, per-tensor, asymmetric, moving average.

    For layers with no weights to quantize whose output is an int8 tensor in the TFLite graph
    (sub-spectral normalization left in place: reshape + mul/add; swish; a residual add written as
    a layer). Measured on this stack: the int8 op list is then only builtins, identical to leaving
    such a layer un-annotated.
    """

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [
            tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False
            )
        ]

    def get_config(self):
        return {}

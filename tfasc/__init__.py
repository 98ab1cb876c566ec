"""tfasc: low-complexity audio classification in Keras/TensorFlow.

TF-MOT (pruning, quantization-aware training) works only with the legacy Keras 2 API, so this
package pins ``tf_keras`` and sets ``TF_USE_LEGACY_KERAS=1`` before anything imports TensorFlow:
importing tensorflow_io first with the variable unset would bind ``tf.keras`` to Keras 3.
"""

import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# CUDA / TensorRT start-up noise (logged at C++ error level) means nothing to a CPU user; real
# failures still surface as Python exceptions. Users can set TF_CPP_MIN_LOG_LEVEL themselves.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"

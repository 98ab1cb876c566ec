"""tfasc: low-complexity audio classification in Keras/TensorFlow.

TF-MOT (pruning, quantization-aware training) works only with the legacy Keras 2 API, so this
package pins ``tf_keras`` and sets ``TF_USE_LEGACY_KERAS=1`` before anything imports TensorFlow:
importing tensorflow_io first with the variable unset would bind ``tf.keras`` to Keras 3. That is
the only thing importing tfasc changes; the command-line tools quiet TensorFlow's logs themselves.
"""

import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"

"""Model registry and the baseline CNN."""

import numpy as np
import pytest

import tfasc  # noqa: F401
from tfasc import models


def test_unknown_model_suggests_nearest_name():
    with pytest.raises(ValueError, match="unknown model 'shared_resnt'; did you mean 'shared_resnet'"):
        models.build("shared_resnt", (32, 32, 1), 3)


def test_baseline_cnn_shapes_and_parameter_count():
    model = models.build("baseline_cnn", (16, 24, 2), 5, width=4, blocks=2)
    assert model(np.zeros((3, 16, 24, 2), np.float32)).shape == (3, 5)
    # conv 3x3: 2→4 and 4→8 (no bias), BN 4 values per channel, dense 8→5 with bias.
    expected = (3 * 3 * 2 * 4 + 4 * 4) + (3 * 3 * 4 * 8 + 4 * 8) + (8 * 5 + 5)
    assert model.count_params() == expected
    with pytest.raises(ValueError, match="width and blocks must be >= 1"):
        models.build("baseline_cnn", (16, 24, 2), 5, width=0)


def test_baseline_cnn_bn_momentum_reaches_every_batch_norm():
    model = models.build("baseline_cnn", (16, 24, 1), 5, width=4, blocks=3, bn_momentum=0.9)
    momenta = [layer.momentum for layer in model.layers if "BatchNormalization" in type(layer).__name__]
    assert momenta == [0.9, 0.9, 0.9]

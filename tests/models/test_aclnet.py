"""AclNet (Huang & Leanos 2018): Table 3's parameter counts, any input length, MACs per second."""

from __future__ import annotations

import numpy as np
import pytest

import tfasc  # noqa: F401

from tfasc import models
from tfasc.compress.graph import with_input_shape
from tfasc.deploy.profile import count_macs

#: Table 3: sample rate, conv type, LLF params (k), HLF params (k), total params (k), width multiplier.
TABLE_3 = [
    (16000, "dwsc", 1.44, 13.91, 15.35, 0.125),
    (16000, "dwsc", 1.44, 153.43, 154.87, 0.5),
    (16000, "dwsc", 1.44, 567.92, 569.4, 1.0),
    (44100, "dwsc", 1.81, 13.91, 15.72, 0.125),
    (44100, "dwsc", 1.81, 153.43, 155.23, 0.5),
    (44100, "dwsc", 1.81, 567.92, 569.73, 1.0),
    (44100, "sc", 6.99, 77.21, 84.21, 0.125),
    (44100, "sc", 6.99, 1190.0, 1197.0, 0.5),
    (44100, "sc", 6.99, 4730.0, 4737.0, 1.0),
    (44100, "sc", 6.99, 10620, 10627, 1.5),
]
#: Sec. 4.2's best (C1, S1, S2) per conv type, the settings of Table 3.
BEST_LLF = {"sc": (8, 2, 2), "dwsc": (16, 2, 4)}


def trainable(layer) -> int:
    return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)


def table_3_model(sample_rate, conv_type, width_multiplier):
    c1, s1, s2 = BEST_LLF[conv_type]
    return models.build("aclnet", (None, 1), 50, sample_rate=sample_rate, c1=c1, s1=s1, s2=s2,
                        conv_type=conv_type, width_multiplier=width_multiplier)


@pytest.mark.parametrize("sample_rate, conv_type, llf_k, hlf_k, total_k, width", TABLE_3)
def test_parameter_counts_reproduce_table_3(sample_rate, conv_type, llf_k, hlf_k, total_k, width):
    model = table_3_model(sample_rate, conv_type, width)
    llf = trainable(model.get_layer("llf"))
    total = trainable(model)
    for ours, paper in ((llf, llf_k), (total - llf, hlf_k), (total, total_k)):
        assert ours / 1000 == pytest.approx(paper, rel=0.01)


def test_any_input_length_gives_class_scores_and_whole_clips_equal_their_average_pool():
    model = models.build("aclnet", (None, 1), 5, sample_rate=8000, width_multiplier=0.125)
    rng = np.random.default_rng(0)
    for seconds in (0.5, 1.5, 5.0):
        x = rng.normal(size=(2, int(8000 * seconds), 1)).astype(np.float32)
        assert model(x, training=False).shape == (2, 5)
    mono = models.build("aclnet", (8000,), 3, sample_rate=8000, width_multiplier=0.125)
    assert mono(rng.normal(size=(1, 4000)).astype(np.float32)).shape == (1, 3)


def test_macs_per_second_follow_the_counting_rule():
    # 1 s at 16 kHz, DWSC (16, 2, 4), width 0.125: Conv1 8000 outputs x 16 x 9; Conv2 2000 positions
    # x 16 x (5 + 64); then the back-end on the 64 x 100 image (by layer, "same" 2x2 pools).
    model = with_input_shape(table_3_model(16000, "dwsc", 0.125), (16000, 1))
    per_call = dict(count_macs(model).per_call)
    assert per_call["llf"] == 8000 * 16 * 9 + 2000 * 16 * (5 + 64)
    assert per_call["conv3"] == 64 * 100 * 4 * 9
    assert per_call["conv4"] == 32 * 50 * 4 * (9 + 8)
    assert per_call["conv12"] == 2 * 4 * 64 * 50  # 64 x 100 pooled five times ("same"): 2 x 4


def test_bad_options_name_the_option():
    with pytest.raises(ValueError, match="conv_type"):
        models.build("aclnet", (16000, 1), 10, conv_type="separable")
    with pytest.raises(ValueError, match="width_multiplier"):
        models.build("aclnet", (16000, 1), 10, width_multiplier=0)

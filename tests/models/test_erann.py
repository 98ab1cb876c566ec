"""ERANNs (Verbitskiy et al. 2022): Table 1's structure, Eq. 2-4's temporal sizes, the parameter
counts of Tables 4, 6, 8 and 9 and any input length. A device-sized ERANN in int8 on TFLite Micro:
tests/recipes/test_recipes.py (the AudioSet recipe end to end); its blocks: tests/layers/test_erann.py."""

from __future__ import annotations

import numpy as np
import pytest

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc import models

#: (table, s_m, W, classes, parameters x 10^6 as printed): one row of each table.
PAPER_ROWS = [
    ("Table 4 AudioSet ERANN-2-4", 2, 4, 527, 24.5),
    ("Table 4 AudioSet ERANN-1-6", 1, 6, 527, 54.5),
    ("Table 6 ESC-50 ERANN-2-5", 2, 5, 50, 37.9),
    ("Table 8 UrbanSound8K ERANN-1-3", 1, 3, 10, 13.5),
    ("Table 9 RAVDESS ERANN-0-4", 0, 4, 8, 24.0),
]


def trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("row, temporal_param, widening, classes, millions", PAPER_ROWS, ids=[r[0] for r in PAPER_ROWS])
def test_parameter_counts_reproduce_the_papers_tables(row, temporal_param, widening, classes, millions):
    model = models.build("erann", (128, None, 1), classes, widening=widening, temporal_param=temporal_param)
    assert trainable(model) / 1e6 == pytest.approx(millions, rel=0.01)
    keras.backend.clear_session()


@pytest.mark.parametrize("temporal_param", [0, 1, 2, 3])
def test_stage_sizes_follow_table_1_and_eq_4(temporal_param):
    # Eq. 3: s_i = 4 for i <= s_m else 2 (i = 1..3), stage 4 strides time by 2; Table 1: frequency
    # halves from stage 1 on, channels 8W 2^i.
    widening, frames = 0.5, 1024
    strides = [4 if i <= temporal_param else 2 for i in (1, 2, 3)] + [2]
    model = models.build("erann", (128, None, 1), 7, widening=widening, temporal_param=temporal_param)
    outputs = [model.get_layer(f"stage{s}_arb4").output for s in range(5)]
    probe = keras.Model(model.input, outputs)
    shapes = [o.shape for o in probe(np.zeros((1, 128, frames, 1), np.float32))]
    time = frames
    for stage, shape in enumerate(shapes):
        if stage:
            time //= strides[stage - 1]
        assert tuple(shape) == (1, 128 // 2 ** stage, time, round(8 * widening * 2 ** stage))
    conv1 = model.get_layer("stage1_arb1").conv1.kernel.shape
    assert conv1[:2] == ((3, 6) if temporal_param >= 1 else (3, 3))  # Eq. 5: K1(2) x K1(s_1)


def test_any_length_is_padded_to_the_temporal_strides_product():
    model = models.build("erann", (128, None, 1), 4, widening=0.25, temporal_param=2)
    rng = np.random.default_rng(0)
    for frames in (64, 100, 513):
        assert model(rng.normal(size=(2, 128, frames, 1)).astype(np.float32), training=False).shape == (2, 4)
    assert model.get_layer("time_padding").multiple == 64  # 16 * 4 (s_1 = s_2 = 4)


def test_bad_options_name_the_option():
    with pytest.raises(ValueError, match="temporal_param"):
        models.build("erann", (128, None, 1), 10, temporal_param=4)
    with pytest.raises(ValueError, match="widening"):
        models.build("erann", (128, None, 1), 10, widening=0)
    with pytest.raises(ValueError, match="time_multiple"):
        models.build("erann", (128, None, 1), 10, temporal_param=3, time_multiple=64)

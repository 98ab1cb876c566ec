"""The Wu & Lee search space (Tables 1-3) and its presets against Table 4, layout [batch, freq, time, channels]."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc import models
from tfasc.compress.kernels import kernels_of
from tfasc.deploy import convert, flatbuffer, tflm
from tfasc.deploy.estimate import estimate_int8, random_inputs
from tfasc.models.searched_cnn import CNNSpec, SpecError, paper_size_bytes

#: Table 4, float32 model sizes in MB (10^6 bytes: 0.419 MB for model A's 104,762 weights).
TABLE_4_MB = {"wu_lee_a": 0.42, "wu_lee_b": 0.29}
#: Table 3, layer by layer.
TABLE_3 = {
    "wu_lee_a": ["3x3 Stem Conv. (76)", "3x3 IRwLB (76)", "3x3 DSC (133)", "2x2 AvgPool", "5x5 DSC (133)",
                 "5x5 DSC (232)", "2x2 MaxPool", "GlobalAvgPool", "Fully Connected"],
    "wu_lee_b": ["3x3 Stem Conv. (64)", "3x3 IRwLB (64)", "2x2 AvgPool", "3x3 DSC (64)", "2x2 AvgPool",
                 "5x5 DSC (64)", "3x3 DSC (64)", "2x2 AvgPool", "3x3 IRwLB (64)", "3x3 DSC (64)", "2x2 AvgPool",
                 "GlobalAvgPool", "Fully Connected"],
}
PAPER_INPUT = (128, 128, 2)


def paper_size_of_built_model(model: keras.Model) -> int:
    """4 bytes per kernel weight of every layer plus the output layer's bias (BatchNorm excluded)."""
    weights = sum(int(np.prod(k.shape)) for layer in model.layers for k in kernels_of(layer))
    return 4 * (weights + int(np.prod(model.get_layer("logits").bias.shape)))


@pytest.mark.parametrize("name", ["wu_lee_a", "wu_lee_b"])
def test_presets_match_table_4_size_and_table_3_layers(name):
    model = models.build(name, input_shape=PAPER_INPUT, num_classes=3)
    size_mb = paper_size_of_built_model(model) / 1e6
    assert size_mb == pytest.approx(TABLE_4_MB[name], rel=0.02)
    from tfasc.models.searched_cnn import PRESETS

    assert PRESETS[name].describe() == TABLE_3[name]
    assert model.output_shape == (None, 3)
    # Convolutions end at 128 / 2**blocks before global pooling.
    blocks = len(PRESETS[name].blocks)
    pooled = [layer for layer in model.layers if "pool" in layer.name and layer.name != "pool"][-1]
    assert pooled.output_shape[1:3] == (128 // 2**blocks, 128 // 2**blocks)


def test_closed_form_size_equals_built_models():
    rng = np.random.default_rng(3)
    from tfasc.search.space import SearchSpace, sample_spec

    for _ in range(10):
        spec = sample_spec(rng, SearchSpace())
        model = models.build("searched_cnn", (16, 16, 2), 5, **spec.to_dict())
        assert paper_size_bytes(spec, input_channels=2, num_classes=5) == paper_size_of_built_model(model)


def test_spec_round_trips_through_json_and_rejects_bad_values():
    spec = CNNSpec.from_dict({"stem_filters": 12, "growth_ratio": 1.5,
                              "blocks": [[0, 3, "avg"], {"module_a": 4, "module_b": 2, "pooling": "max"}]})
    assert CNNSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.channels() == [12, 18, 27]
    for bad, match in (
        ({"stem_filters": 12, "growth_ratio": 1.5, "blocks": [[0, 0, "avg"]]}, "module_b"),
        ({"stem_filters": 12, "growth_ratio": 1.5, "blocks": [[5, 1, "avg"]]}, "module_a"),
        ({"stem_filters": 12, "growth_ratio": 1.5, "blocks": [[1, 1, "min"]]}, "pooling"),
        ({"stem_filters": 0, "growth_ratio": 1.5, "blocks": [[1, 1, "avg"]]}, "stem_filters"),
        ({"stem_filters": 4, "growth_ratio": 1.5, "blocks": [[1, 1, "avg"]], "depth": 3}, "depth"),
    ):
        with pytest.raises(SpecError, match=match):
            CNNSpec.from_dict(bad)


def test_recipe_model_section_builds_searched_cnn(tmp_path):
    from tfasc.config.load import check_options

    options = {"stem_filters": 8, "growth_ratio": 1.25, "blocks": [[1, 3, "avg"], [0, 2, "max"]]}
    check_options("model", options, models.builder("searched_cnn"))
    model = models.build("searched_cnn", (16, 16, 2), 3, **options)
    assert [layer.name for layer in model.layers if layer.name.startswith("block")] == [
        "block1_a", "block1_b", "block1_avgpool", "block2_b", "block2_maxpool"]


#: What the space lowers to: convolutions with BatchNorm folded, Swish as LOGISTIC + MUL, the
#: inverted residual's shortcut as ADD, the poolings, global average pooling (MEAN) and the dense layer.
SPACE_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "LOGISTIC", "MUL", "ADD", "AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN",
             "FULLY_CONNECTED"}


def check_deployable(model: keras.Model) -> None:
    """int8 with builtin ops (random calibration) and TFLite Micro bit-exact against TFLite."""
    estimate = estimate_int8(model)
    assert estimate.flash_bytes == len(estimate.tflite_int8) and estimate.arena_bytes > 0
    ops = set(flatbuffer.check_builtin_only(estimate.tflite_int8))
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "LOGISTIC", "MUL", "MEAN", "FULLY_CONNECTED"} <= ops <= SPACE_OPS, ops
    input_q, _ = convert.io_quantization(estimate.tflite_int8)
    x = random_inputs(tuple(model.inputs[0].shape[1:]), 3, seed=1)
    result = tflm.verify_bit_exact(estimate.tflite_int8, input_q.quantize(x))
    assert result.bit_exact, result.to_dict()


@pytest.mark.parametrize("name", ["wu_lee_a", "wu_lee_b"])
def test_presets_quantize_and_run_bit_exactly_in_tflite_micro(name):
    check_deployable(models.build(name, input_shape=(32, 32, 2), num_classes=3))


def random_specs(count: int, seed: int):
    from tfasc.search.space import SearchSpace, sample_spec

    rng = np.random.default_rng(seed)
    # Small stems keep 20 conversions quick; every module, pooling and depth still occurs.
    space = SearchSpace(stem_filters=(4, 24))
    return [sample_spec(rng, space) for _ in range(count)]


@pytest.mark.slow
def test_twenty_random_specs_quantize_and_run_bit_exactly():
    specs = random_specs(20, seed=2026)
    assert {b.module_a for s in specs for b in s.blocks} == {0, 1, 2, 3, 4}
    for spec in specs:
        check_deployable(models.build("searched_cnn", (16, 16, 2), 3, **spec.to_dict()))

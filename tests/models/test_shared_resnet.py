"""Shared-ResNet of Table 1 (DCASE 2020 1B report, Chang_QTI_task1b): sizes from Tables 3/4, shapes, saving."""

from __future__ import annotations

import numpy as np
import pytest

import tfasc  # noqa: F401

import tf_keras as keras

import tfasc.models.shared_resnet  # noqa: F401  (registers "shared_resnet")
from tfasc.layers.normalization import SubSpectralNormalization
from tfasc.models import available, build


def trainable_count(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def table1_trainable_weights(c: int, in_channels: int, classes: int, repeats: int, shared: bool) -> int:
    """Hand count of Table 1: bias-free convs, BN/SSN gamma+beta, 1x1 conv+BN projections (RB5, RB6)."""
    norm = lambda ch: 2 * ch  # noqa: E731  gamma and beta (SSN shares its affine transform, Sec. 2.2)
    total = 5 * 5 * in_channels * c + norm(c)  # stem
    total += 3 * 3 * c * c + norm(c) + 1 * 1 * c * c + norm(c)  # RB1
    total += 3 * (2 * 3 * 3 * c * c + 2 * norm(c))  # RB2, RB3, RB4
    for cin, cout in ((c, 2 * c), (2 * c, 4 * c)):  # RB5, RB6 with their projections
        total += cin * cout + norm(cout) + cout * cout + norm(cout) + cin * cout + norm(cout)
        conv_sets = 1 if shared else repeats  # SRB1, SRB2
        total += conv_sets * 2 * cout * cout + repeats * 2 * norm(cout)
    total += 4 * c * classes + norm(classes)  # head
    return total


def test_registered():
    assert "shared_resnet" in available()


@pytest.mark.parametrize("classes,paper_params", [(10, 604_000), (3, 601_000)])
def test_parameter_count_matches_paper_tables(classes, paper_params):
    # c = 64, 256 mel bins, stereo, 10 s at 48 kHz with hop 1024 (431 frames), N = 3, S = 2.
    model = build("shared_resnet", input_shape=(256, 431, 2), num_classes=classes, channels=64, sub_bands=2, repeats=3)
    trainable = trainable_count(model)
    assert trainable == table1_trainable_weights(64, 2, classes, 3, shared=True)
    # Table 3 (10 classes): 604K; Table 4 (3 classes): 601K. PyTorch-style count: trainable only.
    assert abs(trainable - paper_params) / paper_params < 0.01, trainable
    assert trainable == {10: 603_668, 3: 601_862}[classes]


def test_sharing_saves_more_than_30_percent():
    kwargs = dict(input_shape=(256, 431, 2), num_classes=10, channels=64, repeats=3)
    shared = trainable_count(build("shared_resnet", shared=True, **kwargs))
    plain = trainable_count(build("shared_resnet", shared=False, **kwargs))
    assert plain == table1_trainable_weights(64, 2, 10, 3, shared=False) == 931_348
    assert shared <= 0.7 * plain  # Sec. 2.1: "reduces the model complexity by more than 30%"


@pytest.mark.parametrize("shared", [True, False])
def test_small_network_matches_the_hand_count(shared):
    model = build("shared_resnet", input_shape=(32, 40, 2), num_classes=3, channels=8, repeats=2, shared=shared)
    assert trainable_count(model) == table1_trainable_weights(8, 2, 3, 2, shared)


def test_functional_model_shares_conv_objects():
    model = build("shared_resnet", input_shape=(32, 40, 2), num_classes=3, channels=8, repeats=3)
    for block in ("srb1", "srb2"):
        for conv in ("conv_a", "conv_b"):
            assert len(model.get_layer(f"{block}_{conv}").inbound_nodes) == 3
        assert all(model.get_layer(f"{block}_bn_{ab}_{i}") for ab in "ab" for i in range(3))
    ssn = [layer for layer in model.layers if isinstance(layer, SubSpectralNormalization)]
    assert sorted(layer.name for layer in ssn) == [f"rb{i}_norm2" for i in range(1, 7)]
    bn_model = build("shared_resnet", input_shape=(32, 40, 2), num_classes=3, channels=8, normalization="bn")
    assert not any(isinstance(layer, SubSpectralNormalization) for layer in bn_model.layers)


@pytest.mark.parametrize("frames", [40, 57])
def test_logits_for_any_frame_count(frames):
    model = build("shared_resnet", input_shape=(32, None, 2), num_classes=3, channels=8, repeats=2)
    x = np.random.default_rng(0).normal(size=(2, 32, frames, 2)).astype("float32")
    for training in (False, True):
        logits = model(x, training=training).numpy()
        assert logits.shape == (2, 3)
        assert np.all(np.isfinite(logits))


def test_keras_round_trip_keeps_sharing_and_outputs(tmp_path):
    model = build("shared_resnet", input_shape=(32, 40, 2), num_classes=3, channels=8, repeats=3)
    rng = np.random.default_rng(1)
    model.set_weights([w + rng.uniform(0.05, 0.2, size=w.shape).astype("float32") for w in model.get_weights()])
    x = rng.normal(size=(2, 32, 40, 2)).astype("float32")
    expected = model(x, training=False).numpy()
    path = tmp_path / "shared_resnet.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored(x, training=False).numpy(), expected, rtol=1e-5, atol=1e-5)
    assert restored.count_params() == model.count_params()
    assert len(restored.get_layer("srb2_conv_a").inbound_nodes) == 3


def test_functional_model_prunes_shared_kernels_once():
    import tensorflow_model_optimization as tfmot

    model = build("shared_resnet", input_shape=(32, 40, 2), num_classes=3, channels=8, repeats=2)
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    # Eager: one step does not pay for tracing the whole training graph.
    pruned.compile(optimizer="sgd", loss=keras.losses.CategoricalCrossentropy(from_logits=True), run_eagerly=True)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 32, 40, 2)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, size=4)]
    pruned.fit(x, y, epochs=1, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    kernel = stripped.get_layer("srb2_conv_a").kernel.numpy()
    assert np.mean(kernel == 0.0) == pytest.approx(0.5)
    # Still one kernel per shared conv after pruning: same weights, same layers.
    assert stripped.count_params() == model.count_params()
    assert [layer.name for layer in stripped.layers] == [layer.name for layer in model.layers]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(input_shape=(40, 40, 2)), "not divisible"),  # 20 -> 10 -> 5 bins at RB3 with S=2
        (dict(input_shape=(32, 10, 2)), "too small"),
        (dict(input_shape=(32, 40, 2), normalization="group"), "normalization"),
        (dict(input_shape=(32, 40), ), "input_shape"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build("shared_resnet", num_classes=3, channels=8, **kwargs)

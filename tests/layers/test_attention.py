"""Attention pooling over time and the multi-level output (Chen et al. 2019 Sec. 3.1; tfasc.layers.attention).

The numpy references write the definitions out directly (a softmax over time, the mean of the levels'
sigmoids or softmaxes, then its logit or log), not the layers' log-softmax identities.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit, softmax

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.layers.attention import AttentionPooling, MultiLevelOutput
from support.layer_test import run_layer_test


def numpy_attention(x, layer):
    classes = x.shape[-1] // 2
    cla, att = expit(x[..., :classes].astype(np.float64)), x[..., classes:].astype(np.float64)
    weights = softmax(att, axis=1)  # over time
    return (weights * cla).sum(axis=1)


def numpy_sigmoid_mean(x, layer):
    return logit(expit(x.astype(np.float64)).mean(axis=1))


def numpy_softmax_mean(x, layer):
    return np.log(softmax(x.astype(np.float64), axis=-1).mean(axis=1))


def test_attention_pooling_is_a_softmax_over_time_weighted_mean_of_class_probabilities():
    x = np.random.default_rng(1).normal(0, 2, size=(6, 7, 2 * 5)).astype(np.float32)
    run_layer_test(cls=AttentionPooling, init_kwargs={}, input_data=x, expected_output_shape=(6, 5),
                   expected_num_trainable_weights=0, reference=numpy_attention, reference_atol=1e-6)


def test_attention_pooling_weights_one_time_step_when_its_attention_dominates():
    x = np.zeros((1, 4, 2), np.float32)
    x[0, :, 0] = [-3.0, 0.0, 2.0, 5.0]  # classification logits per step
    x[0, 2, 1] = 30.0  # attention on step 2 only
    out = AttentionPooling()(x).numpy()
    np.testing.assert_allclose(out, [[expit(2.0)]], rtol=1e-6)


def test_attention_pooling_refuses_an_odd_channel_count():
    with pytest.raises(ValueError, match="2 \\* classes"):
        AttentionPooling()(np.zeros((1, 3, 5), np.float32))


@pytest.mark.parametrize("levels", [3, 2])
def test_multi_level_output_is_the_logit_of_the_mean_of_the_levels_sigmoids(levels):
    x = np.random.default_rng(levels).normal(0, 4, size=(8, levels, 6)).astype(np.float32)
    run_layer_test(cls=MultiLevelOutput, init_kwargs={"sigmoid": True}, input_data=x, expected_output_shape=(8, 6),
                   expected_num_trainable_weights=0, reference=numpy_sigmoid_mean, reference_atol=1e-4,
                   reference_rtol=1e-4, int8_max_steps=3.0)


def test_multi_level_output_is_the_log_of_the_mean_of_the_levels_softmaxes():
    x = np.random.default_rng(3).normal(0, 3, size=(8, 3, 5)).astype(np.float32)
    run_layer_test(cls=MultiLevelOutput, init_kwargs={"sigmoid": False}, input_data=x, expected_output_shape=(8, 5),
                   reference=numpy_softmax_mean, reference_atol=1e-4, reference_rtol=1e-4, int8_max_steps=3.0)


def test_multi_level_output_stays_finite_for_confident_levels():
    # log(1 - p) for p = sigmoid(40) underflows in float32 if computed naively.
    x = np.array([[[40.0, -40.0], [38.0, -45.0], [41.0, -39.0]]], np.float32)
    out = MultiLevelOutput(sigmoid=True)(x).numpy()
    assert np.isfinite(out).all()
    z = x.astype(np.float64)  # logit(m) = log m - log(1 - m), with 1 - m = mean sigmoid(-z) (no cancellation)
    expected = np.log(expit(z).mean(axis=1)) - np.log(expit(-z).mean(axis=1))
    np.testing.assert_allclose(out, expected, rtol=1e-4)


def test_one_level_passes_its_logits_through():
    x = np.random.default_rng(0).normal(size=(2, 1, 4)).astype(np.float32)
    for sigmoid in (True, False):
        np.testing.assert_array_equal(MultiLevelOutput(sigmoid=sigmoid)(x).numpy(), x[:, 0])


def test_the_layers_round_trip_in_a_model_config():
    inputs = keras.Input((3, 4))
    model = keras.Model(inputs, MultiLevelOutput(sigmoid=False, name="combine")(inputs))
    again = keras.Model.from_config(model.get_config())
    assert again.get_layer("combine").sigmoid is False

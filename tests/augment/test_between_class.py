"""Waveform mixing [batch, samples, channels]: between-class (BC) mixing (Tokozume et al. 2018) and
standard mixup, against the numpy reference of ``support.bc_reference`` (the authors' formulas with
``librosa.A_weighting``) and plain numpy interpolation."""

from __future__ import annotations

import numpy as np
import pytest

import tfasc  # noqa: F401

import tensorflow as tf

from support.bc_reference import numpy_bc_mix, numpy_gain_db
from tfasc.augment.between_class import (
    draw_mix,
    gain_n_fft,
    make_waveform_mixer,
    mix_batch,
    mix_seed,
    partners_with_different_targets,
    sound_gain_db,
)
from tfasc.augment.waveform import WaveformAugmentPolicy

# The authors' frame lengths: 2048 samples at 16 kHz, 4096 at 44.1 kHz.
AUTHORS_N_FFT = {16000: 2048, 44100: 4096}


def tone(freq, sr, seconds=0.5, amplitude=0.5):
    return amplitude * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)


def noise(sr, seconds=0.5, amplitude=0.1, seed=0):
    return amplitude * np.random.default_rng(seed).standard_normal(int(sr * seconds))


def batch(*sounds):
    """Equal-length 1-D sounds as float32 ``[batch, samples, 1]``."""
    return np.stack(sounds)[:, :, None].astype(np.float32)


def one_hot(labels, classes):
    return np.eye(classes, dtype=np.float32)[labels]


@pytest.mark.parametrize("sr", [16000, 44100])
def test_gain_matches_the_numpy_a_weighted_reference(sr):
    n_fft = AUTHORS_N_FFT[sr]
    assert gain_n_fft(sr) == n_fft
    # A fade-in makes the loudest frame the last; silence hits the -80 dB floor.
    sounds = [tone(100, sr), tone(1000, sr, amplitude=0.05), tone(5000, sr), noise(sr),
              noise(sr) * np.linspace(0, 1, int(sr * 0.5)), np.zeros(int(sr * 0.5))]
    got = sound_gain_db(batch(*sounds), sr).numpy()
    expected = [numpy_gain_db(s, sr, n_fft) for s in sounds]
    # float32 spectra against float64: measured <= 2e-5 dB.
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert got[-1] == pytest.approx(-80.0)
    # The A-weighting itself: 100 Hz is 19.1 dB below 1 kHz (IEC 61672 table), same amplitude.
    same = sound_gain_db(batch(tone(100, sr), tone(1000, sr)), sr).numpy()
    assert same[1] - same[0] == pytest.approx(19.1, abs=0.3)


def test_gain_of_short_and_multichannel_clips():
    sr = 16000
    short = noise(sr, seconds=0.05)  # 800 samples < one 2048-sample frame: zero-padded to one
    assert sound_gain_db(batch(short), sr).numpy()[0] == pytest.approx(numpy_gain_db(short, sr, 2048), abs=1e-3)
    stereo = np.stack([noise(sr, seed=1), tone(440, sr)], axis=1).astype(np.float32)  # [samples, 2]
    got = sound_gain_db(stereo[None], sr).numpy()[0]
    assert got == pytest.approx(numpy_gain_db(stereo.mean(axis=1), sr, 2048), abs=1e-3)


def test_between_class_mix_and_targets_match_the_numpy_formula():
    sr = 16000
    clips = batch(tone(440, sr), noise(sr, amplitude=0.01), tone(3000, sr, amplitude=0.9), noise(sr, seed=3))
    targets = one_hot([0, 1, 2, 1], 3)
    partner = np.array([2, 0, 1, 2], np.int32)
    ratio = np.array([0.5, 0.2, 0.9, 1.0], np.float32)
    mixed, mixed_targets = mix_batch(clips, targets, partner, ratio, kind="between_class", sample_rate=sr)
    for i in range(4):
        expected = numpy_bc_mix(clips[i, :, 0], clips[partner[i], :, 0], float(ratio[i]), sr, 2048)
        np.testing.assert_allclose(mixed.numpy()[i, :, 0], expected, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(mixed_targets.numpy()[i], ratio[i] * targets[i] + (1 - ratio[i]) * targets[partner[i]],
                                   atol=1e-7)
    np.testing.assert_array_equal(mixed.numpy()[3], clips[3])  # r = 1: the clip itself, exactly


def test_standard_mixup_is_the_plain_interpolation():
    sr = 16000
    clips = np.random.default_rng(0).standard_normal((5, 1000, 2)).astype(np.float32)
    targets = np.random.default_rng(1).uniform(size=(5, 4)).astype(np.float32)  # soft targets mix alike
    partner = np.array([4, 3, 2, 1, 0], np.int32)
    ratio = np.array([0.1, 0.5, 0.7, 0.0, 1.0], np.float32)
    mixed, mixed_targets = mix_batch(clips, targets, partner, ratio, kind="mixup", sample_rate=sr)
    r = ratio.astype(np.float64)
    np.testing.assert_allclose(mixed.numpy(), r[:, None, None] * clips + (1 - r[:, None, None]) * clips[partner],
                               atol=1e-6)
    np.testing.assert_allclose(mixed_targets.numpy(), r[:, None] * targets + (1 - r[:, None]) * targets[partner], atol=1e-6)


@pytest.mark.parametrize("r", [0.5, 0.8])
def test_between_class_balances_the_gains_where_mixup_keeps_the_louder(r):
    """Tokozume et al. Sec. 3.3.2: in the BC mix the two sounds' A-weighted gains differ by
    ``20 log10(r / (1 - r))`` dB (0 at r = 0.5) whatever their own gains; mixup keeps their
    original difference (here ~40 dB) shifted by the same amount."""
    sr = 16000
    loud, quiet = tone(1000, sr, amplitude=0.9), noise(sr, amplitude=0.005, seed=7)
    clips = batch(loud, quiet)
    ratio = np.array([r, r], np.float32)
    partner = np.array([1, 0], np.int32)
    for kind, expected_difference in (("between_class", 20 * np.log10(r / (1 - r))),
                                      ("mixup", None)):
        mixed = mix_batch(clips, np.eye(2, dtype=np.float32), partner, ratio, kind=kind, sample_rate=sr)[0].numpy()
        # The mix's two components, by least squares on the known sources (independent of the code).
        a, b = np.linalg.lstsq(np.stack([loud, quiet], axis=1), mixed[0, :, 0].astype(np.float64), rcond=None)[0]
        difference = numpy_gain_db(a * loud, sr, 2048) - numpy_gain_db(b * quiet, sr, 2048)
        if kind == "between_class":
            assert difference == pytest.approx(expected_difference, abs=0.05)
        else:
            original = numpy_gain_db(loud, sr, 2048) - numpy_gain_db(quiet, sr, 2048)
            assert original > 35.0
            assert difference == pytest.approx(original + 20 * np.log10(r / (1 - r)), abs=0.05)


def test_partners_with_different_targets_follow_the_permutation():
    labels = np.array([0, 0, 1, 0, 2, 2, 0, 1])
    targets = one_hot(labels, 3)
    permutation = np.array([3, 0, 6, 1, 7, 2, 5, 4])
    got = partners_with_different_targets(targets, permutation).numpy()
    # Written out: walk the permutation cyclically from position i until the label differs.
    expected = []
    for i in range(len(labels)):
        walk = [permutation[(i + k) % len(labels)] for k in range(len(labels))]
        expected.append(next(j for j in walk if labels[j] != labels[i]))
    np.testing.assert_array_equal(got, expected)
    # One class only: the permutation unchanged. Multi-hot: a different label set.
    np.testing.assert_array_equal(partners_with_different_targets(one_hot([1, 1, 1], 2), [2, 0, 1]).numpy(), [2, 0, 1])
    multi = np.array([[1, 1, 0], [1, 1, 0], [1, 0, 0]], np.float32)
    np.testing.assert_array_equal(partners_with_different_targets(multi, [1, 0, 2]).numpy(), [2, 2, 1])


def test_draws_mix_a_fraction_and_pair_different_classes():
    targets = one_hot(np.arange(512) % 5, 5)
    partner, ratio = draw_mix(targets, [3, 4], prob=0.25, alpha=1.0, different_targets=True)
    partner, ratio = partner.numpy(), ratio.numpy()
    labels = np.arange(512) % 5
    assert np.all(labels[partner] != labels)
    unmixed = ratio == 1.0
    # Binomial(512, 0.75): standard deviation 0.019.
    assert abs(unmixed.mean() - 0.75) < 0.06
    mixed_ratios = ratio[~unmixed]
    assert abs(mixed_ratios.mean() - 0.5) < 0.06 and mixed_ratios.min() >= 0.0  # U(0, 1)
    any_partner, _ = draw_mix(targets, [3, 4], prob=1.0, alpha=0.2, different_targets=False)
    assert sorted(any_partner.numpy()) == list(range(512))  # a permutation


def test_mixer_is_a_function_of_seed_and_batch_index():
    sr = 8000
    rng = np.random.default_rng(0)
    clips = (rng.standard_normal((6, 2000, 1)) * rng.uniform(0.01, 1, (6, 1, 1))).astype(np.float32)
    targets = one_hot([0, 1, 2, 0, 1, 2], 3)
    policy = WaveformAugmentPolicy(mix="between_class")
    mixer = make_waveform_mixer(policy, 11, sr)
    first = [t.numpy() for t in mixer(clips, targets, 5)]
    again = [t.numpy() for t in tf.function(mixer)(tf.constant(clips), tf.constant(targets), tf.constant(5, tf.int64))]
    for a, b in zip(first, again):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.allclose(mixer(clips, targets, 6)[0].numpy(), first[0])
    assert not np.allclose(make_waveform_mixer(policy, 12, sr)(clips, targets, 5)[0].numpy(), first[0])
    # The draws are those of draw_mix seeded by mix_seed; each mixed example pairs two classes.
    partner, ratio = draw_mix(targets, mix_seed(11, 5), prob=1.0, alpha=1.0, different_targets=True)
    r = ratio.numpy()[:, None]
    np.testing.assert_allclose(first[1], r * targets + (1 - r) * targets[partner.numpy()], atol=1e-6)
    assert np.all(np.count_nonzero(first[1] > 0, axis=1) == 2)
    unchanged = make_waveform_mixer(WaveformAugmentPolicy(), 11, sr)(clips, targets, 5)
    assert unchanged[0] is clips and unchanged[1] is targets


def test_policy_mix_fields_validate_and_enable_the_waveform_path():
    assert not WaveformAugmentPolicy().enabled
    policy = WaveformAugmentPolicy(mix="mixup")
    assert policy.enabled and policy.mixes and not policy.per_example
    assert not WaveformAugmentPolicy(mix="mixup", mix_prob=0.0).enabled
    for bad, match in (
        (dict(mix="bc"), "augment.waveform.mix: expected one of"),
        (dict(mix_prob=1.5), "augment.waveform.mix_prob: expected a probability in"),
        (dict(mix_alpha=0.0), "augment.waveform.mix_alpha: expected a Beta concentration > 0"),
        (dict(mix_partners="same"), "augment.waveform.mix_partners: expected one of"),
    ):
        with pytest.raises(ValueError, match=match):
            WaveformAugmentPolicy(**bad)

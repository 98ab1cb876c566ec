"""Metrics against hand-computed values."""

import numpy as np
import pytest

from tfasc.metrics import average_precision, classification_metrics, multilabel_metrics


def test_macro_accuracy_is_mean_of_class_recalls():
    # class 0: 3 of 4 right; class 1: 1 of 1; class 2: 0 of 1.
    true = np.array([0, 0, 0, 0, 1, 2])
    predicted = np.array([0, 0, 0, 1, 1, 0])
    probabilities = np.full((6, 3), 0.1)
    probabilities[np.arange(6), predicted] = 0.8
    m = classification_metrics(probabilities, true, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["macro_accuracy"] == pytest.approx((0.75 + 1 + 0) / 3)
    assert m["per_class_accuracy"] == {"a": 0.75, "b": 1.0, "c": 0.0}
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 1, 0], [1, 0, 0]]
    expected_log_loss = -np.mean(np.log([0.8, 0.8, 0.8, 0.1, 0.8, 0.1]))
    assert m["log_loss"] == pytest.approx(expected_log_loss)


def test_average_precision_by_hand():
    # ranking: pos, neg, pos → precision at hits 1/1 and 2/3 → AP = (1 + 2/3) / 2
    assert average_precision(np.array([0.9, 0.5, 0.4]), np.array([1, 0, 1])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0.1, 0.2]), np.array([0, 0])) is None
    m = multilabel_metrics(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[1, 0], [0, 1]]), ["x", "y"])
    assert m["mAP"] == pytest.approx(1.0)


def tagging_problem(seed: int, examples: int = 60, classes: int = 6):
    """Random 0/1 targets and scores rounded to one decimal (many ties), with one class that has no
    positives and one that has no negatives."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((examples, classes)) < 0.3).astype(np.float32)
    targets[:, 0] = 0
    targets[:, 1] = 1
    targets[: classes, 2:] = np.eye(classes)[:, 2:]  # every other class has positives and negatives
    targets[classes : 2 * classes, 2:] = 1 - np.eye(classes)[:, 2:]
    scores = np.round(rng.random((examples, classes)) * 0.6 + 0.4 * targets, 1)
    return scores, targets


@pytest.mark.parametrize("seed", range(5))
def test_tagging_metrics_match_scikit_learn_and_scipy(seed):
    from scipy.stats import norm
    from sklearn.metrics import average_precision_score, roc_auc_score

    scores, targets = tagging_problem(seed)
    names = [f"c{i}" for i in range(targets.shape[1])]
    m = multilabel_metrics(scores, targets, names)
    assert len(np.unique(scores)) < 12  # ties everywhere
    expected_ap = {n: average_precision_score(targets[:, i], scores[:, i]) for i, n in enumerate(names) if i != 0}
    expected_auc = {n: roc_auc_score(targets[:, i], scores[:, i]) for i, n in enumerate(names) if i >= 2}
    assert m["per_class_ap"]["c0"] is None  # no positives: no AP, no AUC
    assert m["per_class_auc"]["c0"] is None and m["per_class_auc"]["c1"] is None  # c1: no negatives
    for name, value in expected_ap.items():
        assert m["per_class_ap"][name] == pytest.approx(value, abs=1e-12)
    for name, value in expected_auc.items():
        assert m["per_class_auc"][name] == pytest.approx(value, abs=1e-12)
    assert m["mAP"] == pytest.approx(np.mean(list(expected_ap.values())), abs=1e-12)
    mean_auc = np.mean(list(expected_auc.values()))
    assert m["mean_auc"] == pytest.approx(mean_auc, abs=1e-12)
    assert m["d_prime"] == pytest.approx(np.sqrt(2) * norm.ppf(mean_auc), abs=1e-9)
    assert m["examples"] == len(targets)


def test_average_precision_groups_tied_scores_as_scikit_learn():
    from sklearn.metrics import average_precision_score

    # Three tied scores, one positive among them: the order of the tied rows must not matter.
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    for targets in ([1, 1, 0, 0, 0], [1, 0, 0, 1, 0], [0, 0, 1, 0, 1]):
        expected = average_precision_score(targets, scores)
        assert average_precision(scores, np.array(targets)) == pytest.approx(expected, abs=1e-12)
    # by hand: the first threshold has precision 1 at recall 1/2, the tied group 2/4 at recall 1
    assert average_precision(scores, np.array([1, 0, 0, 1, 0])) == pytest.approx(0.5 * 1 + 0.5 * 0.5)


def test_d_prime_of_chance_and_of_perfect_ranking():
    perfect = multilabel_metrics(np.array([[0.9], [0.1]]), np.array([[1], [0]]), ["x"])
    assert perfect["mean_auc"] == 1.0 and perfect["d_prime"] is None  # infinite: not representable in JSON
    chance = multilabel_metrics(np.array([[0.5], [0.5]]), np.array([[1], [0]]), ["x"])
    assert chance["mean_auc"] == 0.5 and chance["d_prime"] == pytest.approx(0.0)
    nothing = multilabel_metrics(np.array([[0.5], [0.5]]), np.array([[0], [0]]), ["x"])
    assert nothing["mAP"] is None and nothing["mean_auc"] is None and nothing["d_prime"] is None


def test_report_table_ranks_classes_by_ap_and_keeps_the_ends_of_a_long_list():
    from tfasc.formatting import tagging_section

    rng = np.random.default_rng(3)
    aps = rng.permutation(np.linspace(0.05, 0.95, 30))
    metrics = {"mAP": float(aps.mean()), "mean_auc": 0.8, "d_prime": 1.19, "examples": 12,
               "per_class_ap": {f"class{i}": float(ap) for i, ap in enumerate(aps)},
               "per_class_auc": {f"class{i}": 0.8 for i in range(30)}}
    metrics["per_class_ap"]["class7"] = None  # no positives: ranked last
    lines = tagging_section("eval", {"float": metrics})
    rows = [line.split(" | ") for line in lines if line.startswith("| ") and not line.startswith("| rank")]
    shown = [row[1] for row in rows if row[1].startswith("class")]
    ranked = [f"class{i}" for i in np.argsort(-np.where(np.arange(30) == 7, -1.0, aps), kind="stable")]
    assert shown == ranked[:10] + ranked[-10:] and shown[-1] == "class7"
    assert sum(line.startswith("| … |") for line in lines) == 1
    assert "| mAP | " + f"{metrics['mAP']:.4f} |" in lines

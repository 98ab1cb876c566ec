"""Multi-label tagging end to end through the training CLI: an AudioSet-layout dataset with an
unbalanced training list, balanced sampling, sigmoid outputs, train → qat → export, and the int8
model's mAP recomputed with TFLite's interpreter and scikit-learn."""

import json

import numpy as np
import pytest

from sklearn.metrics import average_precision_score

from support.audioset_layout import CLASSES, write_audioset_layout
from support.tflite_reference import tflite_logits
from tfasc.config import load_recipe
from tfasc.data.prepare import normalized, prepare_data
from tfasc.train import main

#: The model under test: any registered model name with its options (e.g. the ERANN family).
MODEL = "{name: baseline_cnn, width: 8, blocks: 2, bn_momentum: 0.9}"

# Trained on the unbalanced list, evaluated on the evaluation list (AudioSet's layout).
TAGGING_RECIPE = """
stages: [train, qat, export]
data:
  dataset: audioset
  root: {root}
  segments_csv: unbalanced_train_segments.csv
  eval_segments_csv: eval_segments.csv
  sample_rate: 8000
  duration_s: 1.0
  channels: 1
  batch_size: 16
  sampling: balanced
  cache_dir: {cache}
features: {{n_fft: 256, hop_length: 128, n_mels: 32}}
model: {model}
training: {{epochs: 8, learning_rate: 0.01, loss: {{name: binary_crossentropy}}}}
compress: {{qat: {{epochs: 1}}}}
export: {{verify_examples: 4, smallest_arena: false, representative_examples: 16}}
output: {{tensorboard: false}}
"""

TAGGING_KEYS = {"mAP", "mean_auc", "d_prime", "per_class_ap", "per_class_auc"}


def int8_scores(tflite_path, inputs: np.ndarray, *, reference: bool) -> np.ndarray:
    """Per-class sigmoid probabilities of the int8 model in TFLite's interpreter."""
    return 1 / (1 + np.exp(-tflite_logits(tflite_path, inputs, reference=reference).astype(np.float64)))


@pytest.mark.slow
def test_tagging_run_reports_map_and_a_verified_int8_model(tmp_path):
    written = write_audioset_layout(tmp_path / "audioset", unbalanced_clips=96, seed=1)
    first_labels = np.bincount([s.labels[0] for s in written["unbalanced_train"]], minlength=len(CLASSES))
    assert first_labels[0] >= 5 * first_labels[-1]  # the training list is unbalanced
    recipe = tmp_path / "tagging.yaml"
    recipe.write_text(TAGGING_RECIPE.format(root=tmp_path / "audioset", cache=tmp_path / "cache", model=MODEL))
    out = tmp_path / "run"
    assert main([str(recipe), "--out", str(out)]) == 0

    report = json.loads((out / "report.json").read_text())
    names = [name for _, name, _ in CLASSES]
    deploy = report["deploy"]
    assert report["data"]["classes"] == names and report["data"]["sampling"] == "balanced"
    assert report["data"]["outputs"] == "sigmoid"
    assert deploy["tflm"]["bit_exact"] is True
    for metrics in (report["metrics"], deploy["metrics"], deploy["float_metrics"]):
        assert TAGGING_KEYS <= set(metrics) and set(metrics["per_class_ap"]) == set(names)

    # The int8 mAP again, independently: the bundle's .tflite in TFLite's interpreter on the
    # evaluation inputs the export scored, then scikit-learn's AP per class.
    data = prepare_data(load_recipe(out / "recipe.yaml"))
    targets = data.eval_targets
    scores = int8_scores(out / deploy["files"]["int8"]["path"], normalized(data.eval.features, data),
                         reference=deploy["int8_evaluation_kernels"].startswith("reference"))
    expected_map = np.mean([average_precision_score(targets[:, k], scores[:, k]) for k in range(len(names))])
    assert deploy["metrics"]["mAP"] == pytest.approx(expected_map, abs=0.01)

    # The float model learned the classes: its mAP is far above chance (each class's positive rate).
    chance = targets.mean(axis=0).mean()
    assert report["metrics"]["mAP"] > chance + 0.3, (report["metrics"]["mAP"], chance)
    assert deploy["metrics"]["mAP"] > chance + 0.25
    markdown = (out / "report.md").read_text()
    assert "## Tagging metrics of the exported models" in markdown and "balanced sampling" in markdown
    assert "| d' (from the mean AUC) |" in markdown and all(f"| {name} |" in markdown for name in names)

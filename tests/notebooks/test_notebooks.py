"""The notebooks run as written (their code cells, in order, on tiny settings)."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.mark.slow
def test_keras_fit_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("TFASC_NOTEBOOK_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("TFASC_NOTEBOOK_CLIPS", "36")
    monkeypatch.setenv("TFASC_NOTEBOOK_EPOCHS", "1")
    monkeypatch.chdir(tmp_path)
    notebook = json.loads((NOTEBOOKS / "keras_fit.ipynb").read_text())
    namespace: dict = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "keras_fit.ipynb", "exec"), namespace)
    result = namespace["result"]
    assert set(result["per_class_accuracy"]) == {"indoor", "outdoor", "transportation"}
    assert 0.0 <= result["macro_accuracy"] <= 1.0
    assert namespace["train"].features.shape[1:] == (64, 126, 2)

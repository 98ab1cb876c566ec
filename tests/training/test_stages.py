"""The stage table and the run directory's manifest; a toy stage registered from this module."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tfasc.config import RecipeError
from tfasc.training import stages
from tfasc.training.context import FLOAT_MODEL, StageContext
from tfasc.training.rundir import Artifact, Manifest

from support.recipes import write_tiny_recipe


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_table_orders_stages_and_checks_their_inputs():
    assert stages.names()[:6] == ("train", "mix_train", "finetune", "prune", "qat", "export")
    stages.check_order(["train", "qat", "export"])
    stages.check_order(["mix_train", "finetune", "export"])
    with pytest.raises(RecipeError, match="'finetune' needs a float model"):
        stages.check_order(["finetune", "export"])
    with pytest.raises(RecipeError, match="order"):
        stages.check_order(["train", "export", "prune"])
    with pytest.raises(RecipeError, match="'prune' needs a float model"):
        stages.check_order(["prune", "export"])
    with pytest.raises(RecipeError, match="unknown stage 'quantize'"):
        stages.check_order(["train", "quantize"])


def test_manifest_records_hashes_and_answers_by_kind(tmp_path):
    (tmp_path / "a.keras").write_bytes(b"trained")
    (tmp_path / "b.keras").write_bytes(b"pruned weights")
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "model.tflite").write_bytes(b"int8")
    manifest = Manifest(tmp_path)
    assert manifest.newest("float_model") is None and not manifest.is_done("train")
    manifest.record("train", [Artifact("a.keras", "float_model")], time_s=1.0)
    manifest.record("prune", [Artifact("b.keras", "float_model", traits=("sparse",))], time_s=2.0)
    manifest.record("export", [Artifact("deploy", "bundle")], time_s=3.0)

    assert manifest.newest("float_model") == tmp_path / "b.keras"
    assert manifest.traits("float_model") == ("sparse",)
    entry = json.loads((tmp_path / "manifest.json").read_text())["stages"]["prune"]["artifacts"][0]
    assert entry["bytes"] == len(b"pruned weights") and entry["sha256"] == sha256(tmp_path / "b.keras")
    assert manifest.is_done("export")

    manifest.forget(["prune", "export"])
    assert not (tmp_path / "b.keras").exists() and not (tmp_path / "deploy").exists()
    assert manifest.newest("float_model") == tmp_path / "a.keras" and manifest.traits("float_model") == ()
    (tmp_path / "a.keras").unlink()
    assert not manifest.is_done("train")  # an artifact gone means the stage must run again


class WeightNormStage(stages.Stage):
    """A toy stage: the L2 norm of the newest float model's weights, as a later analysis stage would."""

    name = "weight_norm"
    needs = (FLOAT_MODEL,)
    artifacts = (Artifact("weight_norm.json", "weight_norm"),)
    report_section = "weight_norm"

    def run(self, context: StageContext) -> dict:
        model = context.load(FLOAT_MODEL, by=self.name)
        norm = float(np.sqrt(sum(np.sum(np.square(w)) for w in model.get_weights())))
        context.output("weight_norm.json").write_text(json.dumps({"norm": norm}))  # moved in on success
        return {"norm": norm}

    def markdown(self, report: dict) -> list[str]:
        return ["## Weight norm", "", f"- {report[self.report_section]['norm']:.3f}", ""]


@pytest.fixture
def toy_stage():
    stage = stages.register(WeightNormStage(), after="train")
    yield stage
    stages.unregister(stage.name)


def test_a_toy_stage_is_one_class_plus_its_registration(toy_stage, tmp_path, capsys):
    import tf_keras as keras

    from tfasc.train import main, parse_args

    assert parse_args(["r.yaml", "--from", "weight_norm"]).from_stage == "weight_norm"
    recipe = write_tiny_recipe(tmp_path, "toy.yaml")
    out = tmp_path / "run"
    toy_stages = ["--set", "stages=[train, weight_norm]"]
    assert main([str(recipe), "--out", str(out), *toy_stages]) == 0

    weights = keras.models.load_model(out / "model.keras", compile=False).get_weights()
    expected = np.sqrt(sum(float(np.sum(np.square(w.astype(np.float64)))) for w in weights))
    report = json.loads((out / "report.json").read_text())
    assert report["weight_norm"]["norm"] == pytest.approx(expected, rel=1e-5)
    assert "## Weight norm" in (out / "report.md").read_text()
    manifest = json.loads((out / "manifest.json").read_text())["stages"]
    assert list(manifest) == ["train", "weight_norm"]
    artifact = manifest["weight_norm"]["artifacts"][0]
    assert artifact["sha256"] == sha256(out / "weight_norm.json")

    capsys.readouterr()
    assert main([str(recipe), "--out", str(out), *toy_stages, "--from", "weight_norm"]) == 0
    printed = capsys.readouterr().out
    assert "stage train: already done" in printed and "stage weight_norm finished" in printed

"""Cross-validation (``python -m tfasc.crossval``) on a tiny FSDD-layout dataset: one run per held-out
speaker, the report's numbers against numpy on the folds' own reports, --fold / --report-only,
resume after a hard kill, and one-line errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from tfasc.crossval import main

SPEAKERS = ("ann", "bob", "cat")
CLIPS = {0: 4, 1: 4, 2: 2}  # per digit and speaker: unbalanced, so accuracy and macro accuracy differ

RECIPE = """
stages: [train, export]
data:
  dataset: fsdd
  root: {root}
  split: speaker
  sample_rate: 8000
  duration_s: 0.25
  channels: 1
  batch_size: 8
  cache_dir: {cache}
features: {{n_fft: 256, hop_length: 64, n_mels: 16}}
model: {{name: baseline_cnn, width: 4, blocks: 1}}
training: {{epochs: 4, learning_rate: 0.03}}
export: {{representative_examples: 8, verify_examples: 4, smallest_arena: false}}
output: {{dir: {runs}, tensorboard: false, plots: {plots}}}
crossval: {{option: eval_speaker, folds: {folds}}}
"""


def write_fsdd(root: Path) -> Path:
    """``recordings/{digit}_{speaker}_{i}.wav``: a tone per digit, shifted a little per speaker, in noise."""
    rng = np.random.default_rng(0)
    (root / "recordings").mkdir(parents=True)
    t = np.arange(2000) / 8000
    for s, speaker in enumerate(SPEAKERS):
        for digit, clips in CLIPS.items():
            for i in range(clips):
                tone = np.sin(2 * np.pi * (500 + 900 * digit + 40 * s) * t) + 0.3 * rng.normal(size=t.size)
                with wave.open(str(root / "recordings" / f"{digit}_{speaker}_{i}.wav"), "wb") as handle:
                    handle.setnchannels(1)
                    handle.setsampwidth(2)
                    handle.setframerate(8000)
                    handle.writeframes((3000 * tone).astype("<i2").tobytes())
    return root


def write_recipe(tmp_path: Path, folds=SPEAKERS, *, plots: bool = True, name: str = "cv.yaml") -> Path:
    if not (tmp_path / "fsdd").exists():
        write_fsdd(tmp_path / "fsdd")
    path = tmp_path / name
    path.write_text(RECIPE.format(root=tmp_path / "fsdd", cache=tmp_path / "cache", runs=tmp_path / "runs",
                                  folds=json.dumps(list(folds)), plots=json.dumps(plots)))
    return path


def fold_reports(out: Path, folds) -> list[dict]:
    return [json.loads((out / f"fold-{fold}" / "report.json").read_text()) for fold in folds]


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def check_report(out: Path, folds) -> dict:
    """crossval.json against numpy on the folds' own report.json."""
    summary = json.loads((out / "crossval.json").read_text())
    reports = fold_reports(out, folds)
    assert summary["finished"] == list(folds)
    assert [entry["fold"] for entry in summary["per_fold"]] == list(folds)
    sources = {"float": lambda r: r["metrics"], "int8": lambda r: r["deploy"]["metrics"]}
    assert set(summary["summary"]) == set(sources)
    for model, source in sources.items():
        for metric in ("accuracy", "macro_accuracy"):
            values = np.array([source(r)[metric] for r in reports])
            assert [e[model][metric] for e in summary["per_fold"]] == values.tolist()
            stats = summary["summary"][model][metric]
            assert stats["mean"] == pytest.approx(np.mean(values), abs=1e-12)
            if len(folds) > 1:
                assert stats["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
            else:
                assert stats["std"] is None
        pooled = np.sum([np.array(source(r)["confusion_matrix"]) for r in reports], axis=0)
        assert summary["pooled"][model]["confusion_matrix"] == pooled.tolist()
        assert summary["pooled"][model]["examples"] == pooled.sum() == len(folds) * sum(CLIPS.values())
        assert summary["pooled"][model]["accuracy"] == pytest.approx(np.trace(pooled) / pooled.sum())
    assert summary["classes"] == reports[0]["data"]["classes"]
    for plot in summary.get("plots", {}).values():
        assert (out / plot).is_file(), plot
    return summary


@pytest.mark.slow
def test_folds_report_resume_and_report_only(tmp_path, capsys):
    recipe = write_recipe(tmp_path, folds=SPEAKERS[:2])
    out = tmp_path / "cv"
    # --fold: only that fold trains; the report covers it and names the missing one.
    assert main([str(recipe), "--out", str(out), "--fold", "bob"]) == 0
    printed = capsys.readouterr().out
    assert not (out / "fold-ann").exists() and (out / "fold-bob" / "report.json").is_file()
    summary = json.loads((out / "crossval.json").read_text())
    assert summary["finished"] == ["bob"] and summary["missing"] == ["ann"]
    assert "1 of 2 folds finished; missing: ann" in printed and "missing: ann" in (out / "crossval.md").read_text()
    assert summary["summary"]["int8"]["accuracy"]["std"] is None  # no sample std of one fold
    finished = {p: p.stat().st_mtime_ns for p in (out / "fold-bob").rglob("*") if p.is_file()}
    manifest = (out / "fold-bob" / "manifest.json").read_text()

    # The same command without --fold trains the rest; the finished fold is left as it was.
    assert main([str(recipe), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(data.eval_speaker='bob'): finished in" in printed and "not trained again" in printed
    assert {p: p.stat().st_mtime_ns for p in (out / "fold-bob").rglob("*") if p.is_file()} == finished
    assert (out / "fold-bob" / "manifest.json").read_text() == manifest
    summary = check_report(out, SPEAKERS[:2])
    assert summary["missing"] == []
    assert "mean ± std" in printed and "pooled int8" in printed
    # Each fold is an ordinary run of the recipe with its data option set.
    assert "eval_speaker: ann" in (out / "fold-ann" / "recipe.yaml").read_text()
    assert fold_reports(out, ["ann"])[0]["data"]["eval_examples"] == sum(CLIPS.values())

    # --report-only trains nothing and gives the same numbers.
    before = (out / "crossval.json").read_text()
    assert main([str(recipe), "--out", str(out), "--report-only"]) == 0
    assert "stage train" not in capsys.readouterr().out
    assert json.loads((out / "crossval.json").read_text())["summary"] == json.loads(before)["summary"]

    # Another recipe is refused, naming the recorded one.
    assert main([str(recipe), "--out", str(out), "--set", "training.epochs=2"]) == 2
    assert "crossval-recipe.yaml: this cross-validation was started with a different recipe" in one_error_line(capsys)


@pytest.mark.slow
def test_killed_crossval_continues_without_retraining_finished_folds(tmp_path):
    folds = SPEAKERS[:2]
    recipe = write_recipe(tmp_path, folds=folds, plots=False)
    out = tmp_path / "runs" / "cv-crossval"  # the default folder: <output.dir>/<recipe>-crossval
    command = [sys.executable, "-m", "tfasc.crossval", str(recipe)]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "fold-ann" / "report.json"
    deadline = time.time() + 300
    while not first.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the cross-validation finished (or failed) before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "crossval.json").exists() and not (out / "fold-bob" / "report.json").exists()
    finished = {p: p.stat().st_mtime_ns for p in (out / "fold-ann").rglob("*") if p.is_file()}
    manifest = (out / "fold-ann" / "manifest.json").read_text()

    resumed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "(data.eval_speaker='ann'): finished in" in resumed.stdout
    assert resumed.stdout.count("[tfasc] stage train\n") == 1  # only the interrupted fold trains
    assert {p: p.stat().st_mtime_ns for p in (out / "fold-ann").rglob("*") if p.is_file()} == finished
    assert (out / "fold-ann" / "manifest.json").read_text() == manifest
    assert check_report(out, folds)["missing"] == []
    assert "2 of 2 folds finished" in resumed.stdout and resumed.stdout.rstrip().endswith(f"done: {out}")


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["crossval.option=null", "crossval.folds=[]"], "crossval.option and crossval.folds: not set"),
        (["crossval.option=eval_spekaer"], "crossval.option: 'eval_spekaer' is not an option of the fsdd loader; "
                                           "its options: split, eval_speaker"),
        (["crossval.folds=[ann, dan]"], "crossval.folds: fold 'dan': data (fsdd loader): option eval_speaker='dan' "
                                        "is not a speaker"),
        (["crossval.folds=[ann, ann]"], "crossval.folds: expected distinct folds"),
        (["crossval.folds=[a/b, a_b]"], "crossval.folds: 'a/b' and 'a_b' would share the folder fold-a_b"),
    ],
)
def test_crossval_setup_errors_are_one_line_and_exit_2(tmp_path, capsys, overrides, expected):
    recipe = write_recipe(tmp_path)
    out = tmp_path / "cv"
    assert main([str(recipe), "--out", str(out), *(a for o in overrides for a in ("--set", o))]) == 2
    assert expected in one_error_line(capsys)
    assert not out.exists()  # nothing claimed


def test_unknown_fold_and_report_only_without_a_crossval(tmp_path, capsys):
    recipe = write_recipe(tmp_path)
    out = tmp_path / "cv"
    assert main([str(recipe), "--out", str(out), "--fold", "dan"]) == 2
    assert "--fold dan: not one of crossval.folds ['ann', 'bob', 'cat']" in one_error_line(capsys)
    assert main([str(recipe), "--out", str(out), "--report-only"]) == 2
    assert "no cross-validation here yet" in one_error_line(capsys)
    assert not out.exists()

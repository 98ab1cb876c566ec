"""``python -m tfasc.search`` (Wu & Lee, Sec. 3.3): limits, JSONL records, resume after a kill, retraining."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tfasc.config.load import load_recipe
from tfasc.models.searched_cnn import CNNSpec
from tfasc.search import run as search_run
from tfasc.search.space import SearchSpace, sample_spec
from support.recipes import write_tiny_recipe

#: A budget a test can afford: two one-epoch candidates from a small corner of the space.
TINY_SEARCH = [
    "model={name: wu_lee_b}",
    "search.candidates=2",
    "search.space.stem_filters=[4, 10]",
    "search.limits.min_paper_size_bytes=0",
    "search.limits.max_paper_size_bytes=null",
    "search.training.epochs=1",
    "search.retrain=[accuracy, loss]",
]


def test_sampling_is_uniform_over_every_table_2_item():
    rng = np.random.default_rng(0)
    specs = [sample_spec(rng, SearchSpace()) for _ in range(4000)]
    counts = np.bincount([len(s.blocks) for s in specs])[2:]
    assert counts.sum() == 4000 and np.all(np.abs(counts / 4000 - 1 / 3) < 0.03)
    growth = np.unique([s.growth_ratio for s in specs], return_counts=True)
    assert list(growth[0]) == [1.0, 1.25, 1.5, 1.75, 2.0] and np.all(np.abs(growth[1] / 4000 - 0.2) < 0.03)
    module_a = np.bincount([b.module_a for s in specs for b in s.blocks], minlength=5)
    assert np.all(np.abs(module_a / module_a.sum() - 0.2) < 0.02)
    module_b = np.bincount([b.module_b for s in specs for b in s.blocks], minlength=5)
    assert module_b[0] == 0 and np.all(np.abs(module_b[1:] / module_b.sum() - 0.25) < 0.02)
    stems = [s.stem_filters for s in specs]
    assert min(stems) == 4 and max(stems) == 128


def record(draw, accuracy, loss, status="trained"):
    return {"draw": draw, "key": f"k{draw}", "status": status, "accuracy": accuracy, "loss": loss,
            "spec": {"stem_filters": 4 + draw, "growth_ratio": 1.0, "blocks": [[0, 1, "avg"]]},
            "paper_size_bytes": 1000, "flash_bytes": 2000, "arena_bytes": 3000, "macs_per_second": 4000.0}


def test_best_by_accuracy_and_by_loss_can_differ():
    records = [record(4, 0.95, float("nan")), record(0, 0.90, 0.30), record(1, 0.93, 0.35), record(2, 0.91, 0.20),
               record(3, 0.99, 0.1, "rejected"), record(5, 0.99, 0.1, "failed")]
    assert search_run.best(records, "accuracy")["draw"] == 1
    assert search_run.best(records, "loss")["draw"] == 2


def test_resuming_refuses_other_draw_settings_but_not_a_larger_budget(tmp_path):
    path = write_tiny_recipe(tmp_path)
    directory = tmp_path / "search"
    directory.mkdir()
    search_run._check_same_draws(directory, load_recipe(path, TINY_SEARCH))
    search_run._check_same_draws(directory, load_recipe(path, [*TINY_SEARCH, "search.candidates=9", "training.epochs=4"]))
    with pytest.raises(search_run.SearchError, match=r"other search\.seed, search\.limits"):
        search_run._check_same_draws(directory, load_recipe(path, [*TINY_SEARCH, "search.seed=3",
                                                                    "search.limits.max_arena_bytes=1000"]))


def test_a_candidate_that_diverges_is_recorded_as_failed(tmp_path):
    """A real divergence (learning rate 1e30): the draw gets a "failed" line with the reason, so a
    resumed search goes past it instead of training it again; the budget ends with a clear error."""
    recipe = load_recipe(write_tiny_recipe(tmp_path), [*TINY_SEARCH, "search.max_draws=1",
                                                       "search.training.learning_rate=1.0e+30"])
    setup = search_run._Setup(input_shape=(16, 4, 1), num_classes=3, input_seconds=0.5)
    with pytest.raises(search_run.SearchError, match="search.max_draws: 1 draws gave only 0"):
        search_run.search_candidates(recipe, tmp_path, setup)
    (failed,) = search_run.read_records(tmp_path / search_run.CANDIDATES_FILE)
    assert failed["status"] == "failed" and "loss became nan" in failed["reason"]
    assert not (tmp_path / "candidates" / "draw-00000").exists()


def test_records_survive_a_line_cut_short_by_a_kill(tmp_path):
    path = tmp_path / "candidates.jsonl"
    search_run.append_record(path, record(0, 0.5, 1.0))
    with open(path, "a") as handle:
        handle.write('{"draw": 1, "key": "k1", "sta')  # killed mid-write
    assert [r["draw"] for r in search_run.read_records(path)] == [0]
    search_run.append_record(path, record(1, 0.6, 0.9))
    assert [r["draw"] for r in search_run.read_records(path)] == [0, 1]
    # A complete last record whose newline was never written is kept, and the next line goes after it.
    path.write_text(json.dumps(record(0, 0.5, 1.0)))
    search_run.append_record(path, record(1, 0.6, 0.9))
    assert [r["draw"] for r in search_run.read_records(path)] == [0, 1]
    # A damaged last line is dropped by the reader and by the next append alike.
    path.write_text(json.dumps(record(0, 0.5, 1.0)) + "\n" + '{"draw": 1, "status": "trained"}\n')
    assert [r["draw"] for r in search_run.read_records(path)] == [0]
    search_run.append_record(path, record(2, 0.6, 0.9))
    assert [r["draw"] for r in search_run.read_records(path)] == [0, 2]
    path.write_text('{"draw": 0\n' + json.dumps(record(1, 0.6, 0.9)) + "\n")
    with pytest.raises(search_run.SearchError, match="line 1 is not a candidate record"):
        search_run.read_records(path)


def test_device_limits_name_what_is_exceeded():
    limits = load_recipe_limits(max_int8_flash_bytes=1000, max_arena_bytes=500, max_macs_per_second=1e6)
    problems = search_run.device_violations({"flash_bytes": 1200, "arena_bytes": 400}, limits, 2e6)
    assert problems == ["int8 flash 1,200 > 1,000 bytes", "2,000,000 MACs/s > 1,000,000"]
    assert search_run.device_violations({"flash_bytes": 1000, "arena_bytes": 500}, limits, 1e6) == []
    assert search_run.device_violations({}, limits, 2e6) == ["2,000,000 MACs/s > 1,000,000"]  # before converting


def load_recipe_limits(**values):
    from tfasc.config.schema import SearchLimits

    return SearchLimits(**values)


def test_candidate_and_final_recipes(tmp_path):
    recipe = load_recipe(write_tiny_recipe(tmp_path), [*TINY_SEARCH, "model.bn_momentum=0.9",
                                                       "search.training.learning_rate=0.01"])
    spec = CNNSpec.from_dict({"stem_filters": 6, "growth_ratio": 1.5, "blocks": [[0, 1, "avg"], [3, 2, "max"]]})
    candidate = search_run.candidate_recipe(recipe, spec, 7)
    assert candidate.model.name == "searched_cnn" and candidate.stages == ("train",)
    assert candidate.model.options == {"bn_momentum": 0.9, **spec.to_dict()}
    assert candidate.training.learning_rate == 0.01 and candidate.training.epochs == 1
    final = search_run.final_recipe(recipe, spec, "loss")
    assert final.stages == recipe.stages and final.training == recipe.training
    assert final.model.options == candidate.model.options


def run_search_command(recipe: Path, overrides, out: Path, **kwargs):
    args = [sys.executable, "-m", "tfasc.search", str(recipe), "--out", str(out)]
    for override in overrides:
        args += ["--set", override]
    return subprocess.Popen(args, cwd=recipe.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, **kwargs)


@pytest.mark.slow
def test_search_keeps_limits_resumes_after_a_kill_and_ends_in_a_verified_bundle(tmp_path):
    recipe = write_tiny_recipe(tmp_path)
    # Limits that the small corner of the space straddles (measured with seed 0: int8 13-106 KB, arena
    # 28-67 KB; draws 2 and 6 fit, draws 0, 1, 3, 4 and 5 do not).
    overrides = [*TINY_SEARCH, "search.limits.max_int8_flash_bytes=24000", "search.limits.max_arena_bytes=60000"]
    out = tmp_path / "search"
    records_path = out / search_run.CANDIDATES_FILE

    first = run_search_command(recipe, overrides, out)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and first.poll() is None:
        if records_path.is_file() and sum(json.loads(l)["status"] == "trained"
                                          for l in records_path.read_text().splitlines() if l.strip()) >= 1:
            break
        time.sleep(0.2)
    assert first.poll() is None, first.stdout.read()
    time.sleep(1.0)  # into the next candidate's training
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = search_run.read_records(records_path)

    second = run_search_command(recipe, overrides, out)
    output, _ = second.communicate(timeout=900)
    assert second.returncode == 0, output
    records = search_run.read_records(records_path)
    assert records[: len(before)] == before  # nothing rewritten
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)), "a candidate was repeated"
    trained = [r for r in records if r["status"] == "trained"]
    assert len(trained) == 2 and any(r["status"] == "rejected" for r in records)
    for r in trained:
        assert r["flash_bytes"] <= 24000 and r["arena_bytes"] <= 60000
        assert 0.0 <= r["accuracy"] <= 1.0 and np.isfinite(r["loss"])
        assert (out / r["run_dir"] / "model.keras").is_file()
    for r in records:
        if r["status"] == "rejected":
            assert r["flash_bytes"] > 24000 or r["arena_bytes"] > 60000
    assert "candidate 2/2" in output

    summary = json.loads((out / search_run.SUMMARY_JSON).read_text())
    assert summary["best_accuracy"]["key"] == max(trained, key=lambda r: (r["accuracy"], -r["loss"]))["key"]
    for criterion in ("accuracy", "loss"):
        result = summary["retrained"][criterion]
        assert result["bit_exact"] is True
        run_dir = out / result["run_dir"]
        assert (run_dir / "deploy" / "model_data.cc").is_file() or any((run_dir / "deploy").iterdir())
    assert (out / search_run.SUMMARY_MD).read_text().startswith("# Architecture search")


def test_summary_table_and_plots(tmp_path):
    rng = np.random.default_rng(1)
    records = []
    for draw in range(12):
        spec = sample_spec(rng, SearchSpace())
        records.append({**record(draw, float(rng.uniform(0.5, 0.9)), float(rng.uniform(0.2, 1.0))),
                        "key": spec.key(), "spec": spec.to_dict(), "paper_size_bytes": 300_000 + draw,
                        "flash_bytes": 90_000, "arena_bytes": 40_000, "macs_per_second": 5e6 + draw})
    recipe = load_recipe(write_tiny_recipe(tmp_path), TINY_SEARCH)
    summary = search_run.summarize(recipe, records, {})
    assert [r["draw"] for r in summary["top"]] == [r["draw"] for r in sorted(records, key=lambda r: -r["accuracy"])][:10]
    growth = {}
    for r in records:
        growth.setdefault(f"{r['spec']['growth_ratio']:g}", []).append(r["accuracy"])
    assert summary["mean_accuracy_by_growth_ratio"] == pytest.approx({g: np.mean(v) for g, v in growth.items()})
    table = search_run.render_markdown(summary)
    assert table.count("\n| ") == 11  # header + 10 rows
    written = search_run.make_plots(records, tmp_path)
    assert sorted(written) == ["plots/accuracy_by_growth_ratio.png", "plots/accuracy_vs_macs.png",
                               "plots/accuracy_vs_size.png"]
    for name in written:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

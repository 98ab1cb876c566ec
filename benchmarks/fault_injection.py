"""Kill a full recipe run (train, prune, QAT, export) with SIGKILL at random points, rerun the same
command, and check that every run finishes complete and consistent.

    python benchmarks/fault_injection.py [--trials 20] [--seed 0] [--kills 1] [--workdir DIR]

One uninterrupted run (after a warm-up run that synthesizes the data and fills the feature cache)
gives the reference duration and results; each trial then starts the
same command in a fresh run directory, kills it after a uniformly random time within that duration
(``--kills`` times), runs it again to the end and checks:

- the rerun exits 0 and writes ``report.json`` with every stage's section;
- every stage is done by the manifest (artifacts match their recorded size and SHA-256);
- each history CSV (train, prune, qat) lists every epoch exactly once;
- report.md, the plots and the bundle are there; no staging folder or temporary file is left and
  the lock is free;
- the int8 model is bit-exact in TFLite Micro and the input normalization equals the reference run's.

Prints one line per trial and ``K/N finished complete and consistent``; exits 1 unless all did.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPE = """
stages: [train, prune, qat, export]
data:
  dataset: dcase2020_1b
  root: {root}
  synthesize: {{clips: 48, seed: 11, sample_rate: 8000, duration_s: 1.0, channels: 1}}
  sample_rate: 8000
  duration_s: 1.0
  channels: 1
  batch_size: 8
  cache_dir: {cache}
features: {{n_fft: 256, hop_length: 128, n_mels: 16}}
model: {{name: baseline_cnn, width: 4, blocks: 2}}
augment: {{mixup_alpha: 0.3, mixup_prob: 0.5}}
training: {{epochs: {epochs}, learning_rate: 0.003, steps_per_epoch: 6}}
compress:
  prune: {{epochs: {epochs}, target_sparsity: 0.5}}
  qat: {{epochs: {epochs}}}
export: {{representative_examples: 8, verify_examples: 4, smallest_arena: false}}
output: {{tensorboard: false}}
"""

HISTORIES = {"train": "history.csv", "prune": "prune_history.csv", "qat": "qat_history.csv"}


def epochs_in(path: Path) -> list[int]:
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def check_run(run_dir: Path, *, epochs: int, reference: dict) -> list[str]:
    """Everything wrong with a finished run directory (empty when it is complete and consistent)."""
    from tfasc.cli import quiet_tensorflow

    quiet_tensorflow()  # before the run-directory module loads TensorFlow
    from tfasc.training.rundir import Manifest, RunLock

    problems = []
    report_path = run_dir / "report.json"
    if not report_path.is_file():
        return ["no report.json"]
    report = json.loads(report_path.read_text())
    for section in ("metrics", "prune", "qat", "deploy"):
        if section not in report:
            problems.append(f"report.json lacks {section!r}")
    manifest = Manifest(run_dir)
    for stage in report.get("stages", []):
        mismatch = manifest.mismatch(stage)
        if mismatch:
            problems.append(f"stage {stage}: {mismatch}")
    for stage, name in HISTORIES.items():
        logged = epochs_in(run_dir / "logs" / name)
        if logged != list(range(epochs)):
            problems.append(f"{name}: epochs {logged}, expected 0..{epochs - 1} once each")
    for name in ("report.md", "plots/training_curves.png", "deploy/model_int8.tflite", "recipe.yaml"):
        if not (run_dir / name).is_file():
            problems.append(f"{name} missing")
    leftovers = [p.name for folder in (run_dir, run_dir / "stages") for p in folder.glob(".*.tmp-*")]
    if leftovers:
        problems.append(f"staging or temporary leftovers {leftovers}")
    try:
        with RunLock(run_dir):
            pass
    except Exception as error:  # noqa: BLE001 - reported, not raised
        problems.append(f"lock not free: {error}")
    if not report.get("deploy", {}).get("tflm", {}).get("bit_exact"):
        problems.append("int8 model not bit-exact in TFLite Micro")
    if report.get("data", {}).get("normalization") != reference["data"]["normalization"]:
        problems.append("input normalization differs from the reference run")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kills", type=int, default=1, help="kills per trial before the final rerun")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each of train, prune and qat")
    parser.add_argument("--workdir", default=None, help="folder for data, cache and runs (default: a temp dir)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tfasc-faults-"))
    workdir.mkdir(parents=True, exist_ok=True)
    recipe = workdir / "faults.yaml"
    recipe.write_text(RECIPE.format(root=workdir / "data", cache=workdir / "cache", epochs=args.epochs))

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "tfasc.train", str(recipe), "--out", str(out)]

    started = time.monotonic()
    # A first run synthesizes the data and fills the feature cache; the second, timed, is what a
    # trial repeats, so kill times cover the whole of it.
    subprocess.run(command(workdir / "warm-up"), cwd=workdir, check=True, capture_output=True)
    reference_dir = workdir / "reference"
    timed = time.monotonic()
    subprocess.run(command(reference_dir), cwd=workdir, check=True, capture_output=True)
    duration = time.monotonic() - timed
    reference = json.loads((reference_dir / "report.json").read_text())
    print(f"reference run: {duration:.1f} s, int8 macro accuracy {reference['deploy']['metrics']['macro_accuracy']:.3f}")

    consistent = 0
    outcomes = []  # whether each trial was killed at least once (not finished before its kill time)
    for trial in range(args.trials):
        out = workdir / f"trial-{trial:02d}"
        kills = []
        for _ in range(args.kills):
            delay = rng.uniform(0.0, duration)
            process = subprocess.Popen(command(out), cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                process.wait(timeout=delay)
                kills.append(f"finished before {delay:.1f} s")
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
                done = [s for s in ("train", "prune", "qat", "export") if (out / "stages" / f"{s}.json").exists()]
                kills.append(f"killed at {delay:.1f} s (stages done: {','.join(done) or 'none'})")
        outcomes.append(any(k.startswith("killed") for k in kills))
        rerun = subprocess.run(command(out), cwd=workdir, capture_output=True, text=True)
        problems = [f"rerun exit {rerun.returncode}: {rerun.stderr.strip().splitlines()[-1:]}"] if rerun.returncode else []
        problems += check_run(out, epochs=args.epochs, reference=reference)
        consistent += not problems
        print(f"trial {trial + 1:2d}: {'; '.join(kills)} -> {'complete and consistent' if not problems else problems}",
              flush=True)
    killed = sum(1 for line in outcomes if line)
    print(f"{consistent}/{args.trials} finished complete and consistent; {killed} of them were killed mid-run "
          f"({time.monotonic() - started:.0f} s in all)")
    return 0 if consistent == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())

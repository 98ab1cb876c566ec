"""The run directory: where a run lives, which run a command continues, who may write it, and its manifest.

``manifest.json`` records, for each finished stage, the artifacts it produced (path relative to the
run directory, what kind of thing it is, size and SHA-256) and its time, plus the time all
invocations spent on the run. A stage asks the manifest for its input by kind ("the newest float
model", "the QAT model") instead of knowing which other stages ran; a stage counts as done only
when its entry is there and every artifact still has the recorded size and hash. A file that does
not match is never trusted: the stage that made it runs again.

One process writes a run directory at a time (:class:`RunLock`, an ``flock`` on ``.lock`` that the
kernel releases when the process dies, even by ``kill -9``). A folder is claimed by its recipe only
once a stage has made progress there, so a first attempt that failed early does not lock out the
corrected recipe.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import socket
import stat
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from tfasc.config.load import dump_recipe
from tfasc.errors import UserError
from tfasc.files import is_temporary, remove, sha256_file, write_atomic

RECIPE_FILE = "recipe.yaml"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".lock"
REPORT_FILE = "report.json"
NORMALIZATION_FILE = "normalization.json"
CHECKPOINT_DIR = "checkpoints"
MANIFEST_FORMAT = 1


class RunDirError(UserError):
    """A run directory that cannot be used as asked (busy, another recipe's, not a run, a file)."""


def has_progress(run_dir: Path) -> bool:
    """Whether any stage of the run finished or saved a checkpoint: only then is the folder claimed
    (a damaged manifest counts as progress: nothing is thrown away on a guess)."""
    checkpoints = Path(run_dir) / CHECKPOINT_DIR
    if checkpoints.is_dir() and any(checkpoints.iterdir()):
        return True
    try:
        return bool(Manifest(run_dir).stages())
    except RunDirError:
        return True


def is_finished(run_dir: Path, stages: Iterable[str]) -> bool:
    """Whether the run has its report and every stage is done (files as recorded): a kill while
    the last files were moved in leaves it unfinished, so the same command picks it up again."""
    if not (Path(run_dir) / REPORT_FILE).is_file():
        return False
    try:
        manifest = Manifest(run_dir)
        return all(manifest.is_done(stage) for stage in stages)
    except RunDirError:
        return False


def read_run_json(path: Path, what: str) -> dict:
    """A JSON mapping the run recorded, or a :class:`RunDirError` naming ``path`` and the ``what``
    the run cannot tell without it."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing; the run has no {what} (did it finish? run its recipe again)") from None
    except (OSError, ValueError) as error:
        raise RunDirError(f"{path}: damaged ({error}); the run cannot tell its {what}") from error
    if not isinstance(value, dict):
        raise RunDirError(f"{path}: damaged (not a mapping); the run cannot tell its {what}")
    return value


def read_normalization(path: Path):
    """The input normalization a run recorded (``normalization.json``, written before training).

    A file from before normalization modes (``{"mean", "std"}``) reads as ``global``.
    """
    from tfasc.data.normalization import Normalization, NormalizationError

    recorded = read_run_json(path, "input normalization")
    if "mode" not in recorded and {"mean", "std"} <= set(recorded):
        recorded = {"mode": "global", "mean": [recorded["mean"]], "std": [recorded["std"]]}
    try:
        return Normalization.from_json(recorded)
    except NormalizationError as error:
        raise RunDirError(f"{path}: damaged ({error}); the run cannot tell its input normalization") from error


def _new_run_dir(parent: Path, name: str) -> Path:
    """Create ``<parent>/<name>-<timestamp>`` (``-2``, ``-3``, ... when taken): never shared."""
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 1000):
        candidate = parent / (f"{name}-{stamp}" if attempt == 1 else f"{name}-{stamp}-{attempt}")
        try:
            candidate.mkdir()  # atomic: of two processes in the same second, one gets each name
            return candidate
        except FileExistsError:
            continue
    raise RunDirError(f"{parent}: could not create a new run directory for {name!r}")


_RUN_STAMP = re.compile(r"-(\d{8}-\d{6})(?:-(\d+))?$")


def _run_order(path: Path) -> tuple[str, int]:
    """``name-YYYYmmdd-HHMMSS[-N]`` sorts by stamp, then by collision suffix (numerically)."""
    match = _RUN_STAMP.search(path.name)
    return (match.group(1), int(match.group(2) or 1)) if match else ("", 0)


#: What a first attempt writes into ``--out`` before its ``recipe.yaml``, besides temporary siblings
#: of files being written: a folder holding only these is a run killed during data preparation, and
#: is taken as new.
_BEFORE_RECIPE = (LOCK_FILE, NORMALIZATION_FILE)


def _unstarted_leftover(entry: Path) -> bool:
    return (entry.name in _BEFORE_RECIPE or is_temporary(entry.name)) and entry.is_file() and not entry.is_symlink()


def _training_text(recipe) -> str:
    """The recipe as recorded, less what may change from one launch of the same run to the next: the
    workers' addresses and this worker's index (not their number: a pass over the data depends on the
    replicas, :mod:`tfasc.training.distribute`), and ``data.feature_workers`` (the features are
    bit-identical whatever it is)."""
    import dataclasses

    placement = recipe.distribute
    placement = dataclasses.replace(placement, worker_index=0,
                                    workers=tuple(f"worker{i}:1" for i in range(len(placement.workers))))
    return dump_recipe(dataclasses.replace(recipe, distribute=placement,
                                           data=dataclasses.replace(recipe.data, feature_workers=1)))


def _same_training(recorded: Path, text: str) -> bool:
    """Whether the recipe file ``recorded`` trains what the recipe of ``text`` (:func:`_training_text`) does."""
    from tfasc.config.load import RecipeError, load_recipe

    if recorded.read_text() == text:
        return True
    try:
        return _training_text(load_recipe(recorded)) == text
    except (RecipeError, OSError):
        return False


def resolve_run_dir(recipe, *, out: Path | str | None = None, rerun: bool = False) -> tuple[Path, bool]:
    """The run directory for ``recipe`` (created when new) and whether it continues an existing run.

    With ``out``: that folder; it must be empty (or hold only what a first attempt killed during data
    preparation left: the lock, ``normalization.json``, temporary files), hold a run of the same
    resolved recipe, or hold a run that has made no progress yet (its recipe is replaced). With ``rerun`` (``--from``) it must
    hold an earlier run, whose recipe may differ (re-running stages may change their settings).
    Without ``out``: the newest ``<output.dir>/<name>-<timestamp>`` whose recipe matches and which
    has no report yet is resumed (with ``rerun``: the newest run of that name); otherwise a new
    timestamped folder is made. Recipes that differ only in the workers' addresses or ``data.feature_workers``
    count as the same (:func:`_training_text`).
    """
    text = _training_text(recipe)
    if out is not None:
        run_dir = Path(out)
        if run_dir.exists() and not run_dir.is_dir():
            raise RunDirError(f"--out {run_dir}: is a file; expected a run directory (new or existing)")
        recorded = run_dir / RECIPE_FILE
        if recorded.is_file() and (rerun or not has_progress(run_dir) or _same_training(recorded, text)):
            return run_dir, True
        if recorded.is_file():
            raise RunDirError(
                f"--out {run_dir}: holds a run of a different recipe ({recorded}); choose another --out "
                "or remove that folder"
            )
        if rerun:
            raise RunDirError(f"--from: {run_dir} holds no earlier run; run all stages first (without --from)")
        if run_dir.exists() and not all(_unstarted_leftover(entry) for entry in run_dir.iterdir()):
            raise RunDirError(f"--out {run_dir}: exists and is not a tfasc run directory; choose another --out")
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir, False
    parent = Path(recipe.output.dir)
    if parent.exists() and not parent.is_dir():
        raise RunDirError(f"output.dir: {parent} is a file; expected a folder for run directories")
    candidates = [p for p in parent.glob(f"{recipe.name}-*") if (p / RECIPE_FILE).is_file()]
    for candidate in sorted(candidates, key=_run_order, reverse=True):
        if rerun or (_same_training(candidate / RECIPE_FILE, text) and not is_finished(candidate, recipe.stages)):
            return candidate, True
    if rerun:
        raise RunDirError(f"--from: no earlier run of {recipe.name!r} in {parent}; run all stages first or give --out")
    return _new_run_dir(parent, recipe.name), False


class RunLock:
    """Exclusive right to write one run directory, for as long as the ``with`` block runs.

    A second writer fails at once with a :class:`RunDirError` naming the process that holds it.
    """

    def __init__(self, run_dir: Path | str) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._handle = None

    def __enter__(self) -> "RunLock":
        try:
            # O_NOFOLLOW: a crafted ``.lock`` symlink must not let us truncate a file elsewhere.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as error:
            raise RunDirError(f"{self.path}: cannot open the run's lock file ({error.strerror or error})") from error
        handle = os.fdopen(fd, "r+")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            handle.close()
            raise RunDirError(f"{self.path}: not a regular file; remove it")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunDirError(
                f"{self.path.parent}: in use by {holder}; wait for it to finish or choose another --out"
            ) from None
        handle.truncate(0)
        command = " ".join(Path(sys.argv[0]).name if i == 0 else a for i, a in enumerate(sys.argv))
        handle.write(f"process {os.getpid()} on {socket.gethostname()} ({command}) since "
                     f"{datetime.now().isoformat(timespec='seconds')}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.truncate(0)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def file_digest(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (names and contents, in sorted order)."""
    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        sha256_file(file, digest)
    return digest.hexdigest()


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


@dataclass(frozen=True)
class Artifact:
    """One thing a stage writes: ``path`` relative to the run directory, of ``kind`` (e.g.
    ``float_model``), with ``traits`` later stages may ask about (e.g. ``sparse`` for a pruned model)."""

    path: str
    kind: str
    traits: tuple[str, ...] = ()


class Manifest:
    """``manifest.json`` of one run directory: finished stages in the order they finished."""

    def __init__(self, run_dir: Path | str) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / MANIFEST_FILE

    def _read(self) -> dict:
        if not self.path.exists():
            return {"format": MANIFEST_FORMAT, "stages": {}, "time_s": 0.0}
        try:
            manifest = json.loads(self.path.read_text())
            if not isinstance(manifest, dict) or not isinstance(manifest.get("stages"), dict):
                raise ValueError("no 'stages' mapping")
            for stage, entry in manifest["stages"].items():
                artifacts = entry.get("artifacts") if isinstance(entry, dict) else None
                if not isinstance(artifacts, list):
                    raise ValueError(f"stage {stage!r} has no list of artifacts")
                for artifact in artifacts:
                    self._check_artifact_entry(stage, artifact)
        except (ValueError, AttributeError, OSError) as error:
            raise RunDirError(f"{self.path}: damaged run manifest ({error}); remove the run directory or "
                              "restore the file") from error
        return manifest

    def _check_artifact_entry(self, stage: str, artifact) -> None:
        """A manifest names files the run may hash, load and delete: each must be a plain relative
        path inside the run directory (a crafted ``/home`` or ``../..`` would otherwise be removed)."""
        if not isinstance(artifact, dict):
            raise ValueError(f"stage {stage!r}: an artifact entry is not a mapping")
        path = artifact.get("path")
        if not isinstance(path, str) or not path or Path(path).is_absolute() or ".." in Path(path).parts:
            raise ValueError(f"stage {stage!r}: artifact path {path!r} is not a path inside the run directory")
        root = self.run_dir.resolve()
        if not (self.run_dir / path).resolve().is_relative_to(root):
            raise ValueError(f"stage {stage!r}: artifact {path!r} leads outside the run directory")
        if not isinstance(artifact.get("bytes"), int) or not isinstance(artifact.get("sha256"), str) \
                or not isinstance(artifact.get("kind"), str):
            raise ValueError(f"stage {stage!r}: artifact {path!r} lacks its kind, size or SHA-256")

    def _write(self, manifest: dict) -> None:
        write_atomic(self.path, json.dumps(manifest, indent=2) + "\n")

    def stages(self) -> dict[str, dict]:
        """Stage name -> its entry (``artifacts``, ``time_s``, ``finished``), in finishing order."""
        return self._read()["stages"]

    def mismatch(self, stage: str) -> str | None:
        """Why ``stage`` does not count as done (not recorded; an artifact missing, resized or
        changed since it was recorded), or None when it is done."""
        entry = self.stages().get(stage)
        if entry is None:
            return "not finished"
        for artifact in entry["artifacts"]:
            problem = self._artifact_problem(artifact)
            if problem:
                return problem
        return None

    def is_done(self, stage: str) -> bool:
        """Whether ``stage`` finished and every artifact it recorded still has its size and hash."""
        return self.mismatch(stage) is None

    def _artifact_problem(self, artifact: dict) -> str | None:
        path = self.run_dir / artifact["path"]
        if not path.exists():
            return f"{path} is missing"
        if _size(path) != artifact["bytes"] or file_digest(path) != artifact["sha256"]:
            return f"{path} does not match what the stage wrote (size or SHA-256 differ)"
        return None

    def record(self, stage: str, artifacts: Iterable[Artifact], *, time_s: float) -> dict:
        """Record ``stage`` as finished with ``artifacts`` (sizes and hashes taken now)."""
        entries = []
        for artifact in artifacts:
            path = self.run_dir / artifact.path
            entries.append({"path": artifact.path, "kind": artifact.kind, "traits": list(artifact.traits),
                            "bytes": _size(path), "sha256": file_digest(path)})
        manifest = self._read()
        manifest["stages"].pop(stage, None)  # re-recorded stages move to the end: newest last
        manifest["stages"][stage] = {
            "artifacts": entries,
            "time_s": time_s,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self._write(manifest)
        return manifest["stages"][stage]

    def forget(self, stages: Iterable[str]) -> None:
        """Drop ``stages`` from the manifest and remove what they produced."""
        manifest = self._read()
        for stage in stages:
            entry = manifest["stages"].pop(stage, None)
            for artifact in (entry or {}).get("artifacts", []):
                remove(self.run_dir / artifact["path"])
        self._write(manifest)

    def add_time(self, seconds: float) -> float:
        """Add ``seconds`` of work to the run's total over all invocations; returns the new total."""
        manifest = self._read()
        manifest["time_s"] = manifest.get("time_s", 0.0) + max(0.0, seconds)
        self._write(manifest)
        return manifest["time_s"]

    def total_time(self) -> float:
        """Seconds spent on this run by every invocation so far (as last recorded)."""
        return self._read().get("time_s", 0.0)

    def _newest_entry(self, kind: str) -> dict | None:
        found = None
        for entry in self.stages().values():
            for artifact in entry["artifacts"]:
                if artifact["kind"] == kind:
                    found = artifact
        return found

    def newest(self, kind: str) -> Path | None:
        """The artifact of ``kind`` recorded last (e.g. the pruned model over the trained one), or None."""
        found = self._newest_entry(kind)
        return None if found is None else self.run_dir / found["path"]

    def traits(self, kind: str) -> tuple[str, ...]:
        """Traits of the newest artifact of ``kind`` (empty when there is none)."""
        found = self._newest_entry(kind)
        return tuple(found.get("traits", ())) if found else ()

    def require(self, kind: str, *, by: str) -> Path:
        """Like :meth:`newest`, verified: a missing input, or one that changed since it was recorded,
        is an error naming the stage that needed it and the file."""
        found = self._newest_entry(kind)
        if found is None:
            raise RunDirError(
                f"{self.run_dir}: stage {by!r} needs a {kind.replace('_', ' ')}, which no finished stage of "
                "this run produced; run the earlier stages first"
            )
        problem = self._artifact_problem(found)
        if problem:
            raise RunDirError(f"stage {by!r} refused its input: {problem}; run the stage that made it again")
        return self.run_dir / found["path"]


class RunClock:
    """Adds the time of this invocation to the manifest's total as it goes (at every epoch and
    stage end), so ``time_s`` sums all invocations, killed ones included up to their last tick."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self._last = time.monotonic()

    def tick(self) -> float:
        now = time.monotonic()
        total = self.manifest.add_time(now - self._last)
        self._last = now
        return total

"""The run directory: where a run lives, which run a command continues, and its manifest.

``manifest.json`` records, for each finished stage, the artifacts it produced (path relative to the
run directory, what kind of thing it is, size and SHA-256) and its time. A stage asks the manifest
for its input by kind ("the newest float model", "the QAT model") instead of knowing which other
stages ran; a stage counts as done only when its entry is there and its artifacts still are.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from tfasc.config.load import RecipeError, dump_recipe
from tfasc.files import remove, write_atomic

RECIPE_FILE = "recipe.yaml"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1


def resolve_run_dir(recipe, *, out: Path | str | None = None, rerun: bool = False) -> tuple[Path, bool]:
    """The run directory for ``recipe`` and whether it continues an existing run.

    With ``out``: that folder; it must be empty or hold a run of the same resolved recipe (any
    tfasc run when ``rerun``: re-running stages may change their settings).
    Without: the newest ``<output.dir>/<name>-<timestamp>`` whose recipe matches and which has no
    report yet is resumed (with ``rerun``: the newest run of that name); otherwise a new
    timestamped folder is made.
    """
    text = dump_recipe(recipe)
    if out is not None:
        run_dir = Path(out)
        recorded = run_dir / RECIPE_FILE
        if recorded.exists():
            if recorded.read_text() != text and not rerun:
                raise RecipeError(
                    f"{run_dir} holds a run of a different recipe ({recorded}); choose another --out "
                    "or remove that folder"
                )
            return run_dir, True
        if run_dir.exists() and any(run_dir.iterdir()):
            raise RecipeError(f"{run_dir} exists and is not a tfasc run directory; choose another --out")
        return run_dir, False
    parent = Path(recipe.output.dir)
    for candidate in sorted(parent.glob(f"{recipe.name}-*"), reverse=True):
        recorded = candidate / RECIPE_FILE
        if not recorded.is_file():
            continue
        if rerun or (recorded.read_text() == text and not (candidate / "report.json").exists()):
            return candidate, True
    if rerun:
        raise RecipeError(f"--from: no earlier run of {recipe.name!r} in {parent}; run all stages first or give --out")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return parent / f"{recipe.name}-{stamp}", False


def file_digest(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (names and contents, in sorted order)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
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
            return {"format": MANIFEST_FORMAT, "stages": {}}
        return json.loads(self.path.read_text())

    def _write(self, manifest: dict) -> None:
        write_atomic(self.path, json.dumps(manifest, indent=2) + "\n")

    def stages(self) -> dict[str, dict]:
        """Stage name -> its entry (``artifacts``, ``time_s``, ``finished``), in finishing order."""
        return self._read()["stages"]

    def is_done(self, stage: str) -> bool:
        """Whether ``stage`` finished and every artifact it recorded is still there."""
        entry = self.stages().get(stage)
        return entry is not None and all((self.run_dir / a["path"]).exists() for a in entry["artifacts"])

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
        """Like :meth:`newest`, but a missing input is an error naming the stage that needed it."""
        path = self.newest(kind)
        if path is None or not path.exists():
            raise RecipeError(
                f"{self.run_dir}: stage {by!r} needs a {kind.replace('_', ' ')}, which no finished stage of "
                "this run produced; run the earlier stages first"
            )
        return path

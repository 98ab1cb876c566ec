"""``python -m tfasc.cache list|clear [--dir DIR] [KEY ...]``: see and free the feature cache.

``list`` prints one line per entry (key, size, last used, rows x feature shape, shards, description) and
per leftover of an interrupted build, then the total; ``clear`` removes the named entries, or every
entry and leftover (never a build in progress), and prints what it freed. DIR defaults to
``.tfasc_cache``, the default ``data.cache_dir`` of a recipe. Needs no TensorFlow.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import tfasc  # noqa: F401

DEFAULT_DIR = ".tfasc_cache"


def entry_line(info) -> str:
    """One ``list`` line: what a human needs to recognise the entry and decide to keep it."""
    from tfasc.data.cache import format_size

    used = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.last_used))
    head = f"{info.key}  {format_size(info.size):>8}  last used {used}"
    if info.status == "ok":
        index = info.index
        shape = "x".join(str(n) for n in index.get("feature_shape", []))
        skipped = f", {len(index['skipped'])} skipped" if index["skipped"] else ""
        shards = len(index["shards"])
        return (f"{head}  {index['rows']} x [{shape}] {index.get('dtype', '')} in {shards} shard{'s' if shards != 1 else ''}"
                f"  {index.get('description', '')}{skipped}")
    if info.status == "damaged":
        return f"{head}  DAMAGED: {info.problem} (rebuilt when next used)"
    if info.status == "orphan":
        return f"{head}  orphan: left by an interrupted build"
    return f"{head}  building: in progress in another process"


def list_cache(cache_dir: Path | str, *, checksum: bool = False) -> str:
    """The ``list`` report of ``cache_dir``."""
    from tfasc.data.cache import format_size, require_dir, scan

    cache_dir = require_dir(cache_dir)
    infos = scan(cache_dir, checksum=checksum)
    entries = sum(1 for info in infos if info.status in ("ok", "damaged"))
    total = f"{entries} entries, {format_size(sum(info.size for info in infos))} in {cache_dir}"
    return "\n".join([*(entry_line(info) for info in infos), total])


def clear_cache(cache_dir: Path | str, keys: list[str]) -> str:
    """Remove the entries ``keys`` (all entries and leftovers when empty); what was freed.

    Raises:
        CacheError: a missing folder, or a key that names no entry (nothing is removed then).
    """
    from tfasc.data.cache import CacheError, format_size, require_dir, scan
    from tfasc.files import remove

    cache_dir = require_dir(cache_dir)
    infos = scan(cache_dir)
    if keys:
        by_key = {info.key: info for info in infos if info.status in ("ok", "damaged")}
        unknown = [key for key in keys if key not in by_key]
        if unknown:
            raise CacheError(f"{cache_dir}: no cache entry {', '.join(unknown)} (python -m tfasc.cache list shows them)")
        chosen = [by_key[key] for key in dict.fromkeys(keys)]
    else:
        chosen = [info for info in infos if info.status != "building"]
    for info in chosen:
        remove(info.path)
    leftovers = sum(1 for info in chosen if info.status == "orphan")
    building = sum(1 for info in infos if info.status == "building")
    message = f"freed {format_size(sum(info.size for info in chosen))}: {len(chosen) - leftovers} entries"
    message += f", {leftovers} leftovers of interrupted builds" if leftovers else ""
    message += f"; left {building} build(s) in progress" if building and not keys else ""
    return f"{message} in {cache_dir}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfasc.cache", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("list", help="one line per cache entry, and the total")
    show.add_argument("--dir", default=DEFAULT_DIR, help=f"cache folder (data.cache_dir; default {DEFAULT_DIR})")
    show.add_argument("--verify", action="store_true", help="also check the SHA-256 of every entry's shards (reads every byte)")
    clear = commands.add_parser("clear", help="remove entries (all, and leftovers of interrupted builds, without KEY)")
    clear.add_argument("--dir", default=DEFAULT_DIR, help=f"cache folder (data.cache_dir; default {DEFAULT_DIR})")
    clear.add_argument("keys", nargs="*", metavar="KEY", help="entries to remove (as list prints them)")
    args = parser.parse_args(argv)
    from tfasc.cli import run_command

    if args.command == "list":
        return run_command(lambda: list_cache(args.dir, checksum=args.verify))
    return run_command(lambda: clear_cache(args.dir, args.keys))


if __name__ == "__main__":
    sys.exit(main())

"""Atomic publishing: a reader sees the old folder/file or the new one, never half of one.

publish(tmp_dir, final_dir): the new folder is fsynced, then renamed over final_dir; a replaced folder
is kept as `<name>.previous` (one generation). write_json: a file written to a temp name, fsynced, renamed."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

PREVIOUS = ".previous"


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under root (root included)."""
    for dirpath, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(Path(dirpath))


def fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data: dict) -> None:
    """Writes JSON to `<path>.tmp`, fsyncs it and renames it over path."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)


def publish(tmp_dir, final_dir, keep_previous: bool = True) -> Path:
    """Atomically publish tmp_dir as final_dir: move (or copy) it into a temp sibling, fsync, os.replace.
    An existing final_dir is swapped out only once the new one is complete, and kept as
    `<final_dir>.previous` (an older .previous is removed); keep_previous=False: removed instead, with any
    older .previous."""
    tmp_dir, final_dir = Path(tmp_dir), Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = final_dir.with_name(f"{final_dir.name}.tmp-{os.getpid()}")
    if staging.resolve() == tmp_dir.resolve():
        pass  # the caller built it in place as the staging sibling
    elif tmp_dir.resolve().parent == final_dir.resolve().parent:
        if staging.exists():
            shutil.rmtree(staging)
        os.replace(tmp_dir, staging)  # already a sibling: no copy needed
    else:
        if staging.exists():
            shutil.rmtree(staging)
        shutil.copytree(tmp_dir, staging)
    fsync_tree(staging)
    old = None
    if final_dir.exists():
        old = final_dir.with_name(f"{final_dir.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final_dir, old)  # directories cannot be replaced over a non-empty target
    try:
        os.replace(staging, final_dir)
    except Exception:
        if old is not None:
            os.replace(old, final_dir)
        raise
    fsync_dir(final_dir.parent)
    prev = final_dir.with_name(final_dir.name + PREVIOUS)
    if old is not None or not keep_previous:
        shutil.rmtree(prev, ignore_errors=True)
    if old is not None:
        try:
            if not keep_previous:
                raise OSError("not kept")
            os.replace(old, prev)
        except OSError:
            shutil.rmtree(old, ignore_errors=True)
    return final_dir

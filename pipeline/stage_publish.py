"""Stage `publish`: the built adapter folder (the adapter stage's, with the evaluate stage's results)
goes into adapters/<name>/ atomically. An existing adapter of that name is replaced only when the recipe
says `replace: true`; it is then kept as adapters/<name>.previous (replacing an older .previous) until the
next successful build of that name."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pipeline.errors import StageError

PREVIOUS = ".previous"


def exists_message(name: str) -> str:
    return (f"adapter '{name}' exists: tick 'Replace existing adapter' (CLI --replace) or choose another "
            "name")


def publish_adapter(src: Path, adapters_dir: Path, name: str, replace: bool) -> tuple[Path, Path | None]:
    """Copies src to adapters_dir/<name> (staged beside it, fsynced, renamed); returns (final, previous)."""
    from pipeline.stage_adapter import _fsync_tree
    adapters_dir.mkdir(parents=True, exist_ok=True)
    final = adapters_dir / name
    if final.exists() and not replace:
        raise StageError(exists_message(name))
    staging = adapters_dir / f"{name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(src, staging)
    _fsync_tree(staging)
    previous = None
    if final.exists():
        previous = adapters_dir / f"{name}{PREVIOUS}"
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(final, previous)
    try:
        os.replace(staging, final)
    except BaseException:
        if previous is not None:
            os.replace(previous, final)
        raise
    fd = os.open(adapters_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return final, previous


def run(job, d: Path) -> dict:
    r = job.recipe
    src = Path(job.out["adapter"]["adapter_dir"])
    meta_file = src / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["timings"] = dict(job.timings)  # every stage before this one, attempts added up
    meta_file.write_text(json.dumps(meta, indent=2, default=str))
    final, previous = publish_adapter(src, job.ws.adapters, r.adapter_name, r.replace)
    job.log.log(f"published adapter adapters/{r.adapter_name} onto base '{job.out['onnx']['base_name']}'"
                + (f"; the one it replaced is kept as adapters/{previous.name}" if previous else ""))
    return {"adapter_dir": str(final), "previous": str(previous or ""), "size_bytes": meta.get("size_bytes")}

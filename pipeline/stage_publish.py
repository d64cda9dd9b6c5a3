"""Stage `publish`: the built adapter folder (the adapter stage's, with the evaluate stage's results)
goes into adapters/<name>/ atomically. An existing adapter of that name is replaced only when the recipe
says `replace: true`; it is then kept as adapters/<name>.previous (replacing an older .previous) until the
next successful build of that name."""
from __future__ import annotations

import json
from pathlib import Path

from artifacts.publish import PREVIOUS
from pipeline.errors import StageError


def exists_message(name: str, adapters_dir: Path | None = None) -> str:
    if adapters_dir is not None and _protected(Path(adapters_dir) / name):
        return (f"adapter '{name}' exists and ships with the studio (protected): choose another name (only the "
                "operator can replace it, from the command line with --replace)")
    return (f"adapter '{name}' exists: tick 'Replace existing adapter' (CLI --replace) or choose another "
            "name")


def _protected(d: Path) -> bool:
    try:
        return json.loads((d / "metadata.json").read_text(encoding="utf-8")).get("protected") is True
    except (OSError, ValueError, AttributeError):
        return False


def publish_adapter(src: Path, adapters_dir: Path, name: str, replace: bool) -> tuple[Path, Path | None]:
    """Publishes a copy of src as adapters_dir/<name> (artifacts.publish: staged, fsynced, renamed; the
    replaced one kept as <name>.previous); returns (final, previous or None)."""
    from artifacts import publish
    final = Path(adapters_dir) / name
    if final.exists() and not replace:
        raise StageError(exists_message(name, adapters_dir))
    replacing = final.exists()
    publish(src, final)
    return final, (final.with_name(name + PREVIOUS) if replacing else None)


def run(job, d: Path) -> dict:
    r = job.recipe
    src = Path(job.out["adapter"]["adapter_dir"])
    meta_file = src / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["timings"] = dict(job.timings)  # every stage before this one, attempts added up
    meta_file.write_text(json.dumps(meta, indent=2, default=str))
    from pipeline.runner import _clear_stale_tmp
    _clear_stale_tmp(job.ws.adapters, r.adapter_name)  # a killed earlier attempt's staging folder
    final, previous = publish_adapter(src, job.ws.adapters, r.adapter_name, r.replace)
    job.log.log(f"published adapter adapters/{r.adapter_name} onto base '{job.out['onnx']['base_name']}'"
                + (f"; the one it replaced is kept as adapters/{previous.name}" if previous else ""))
    return {"adapter_dir": str(final), "previous": job.ws.shown(previous), "size_bytes": meta.get("size_bytes")}

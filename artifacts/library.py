"""Read the artifact library on disk: ONNX bases (models/<base>/base.json) and adapters
(adapters/<name>/metadata.json + adapter.onnx_adapter). Paths are always passed in.

An adapter fits a base when metadata.base_fingerprint == base.json.fingerprint and every
tensor in its .onnx_adapter is a LoRA input of that base (name, and fixed dims) as listed in
base.json `lora_inputs`. Anything else is refused with a human-readable reason.

Folders hold untrusted files (a Space's users, a crashed job, a hostile upload): listing uses lstat, so
only real folders and regular files count. A symlinked adapter folder or file is refused (never
followed), a FIFO or device is never opened for reading, JSON files are capped in size, and a symlink
loop is one refused entry, never an error for the whole listing.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .adapter_file import ADAPTER_FILE, has_rows, read_adapter_tensors
from .names import is_temp_name, safe_name
from .policy import clean_message

BASE_JSON = "base.json"          # models/<base>/base.json, written by the pipeline (pipeline/runner.py)
METADATA_JSON = "metadata.json"  # adapters/<name>/metadata.json


class LibraryError(Exception):
    pass


MAX_JSON_BYTES = 4 << 20  # base.json / metadata.json


def is_regular(p: Path) -> bool:
    """A regular file, not followed through a symlink (lstat)."""
    try:
        return stat.S_ISREG(os.lstat(p).st_mode)
    except (OSError, ValueError):
        return False


def is_real_dir(p: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(p).st_mode)
    except (OSError, ValueError):
        return False


def read_json(p: Path, limit: int = MAX_JSON_BYTES) -> dict:
    """A JSON object from a regular file (no symlink, FIFO or device: opened without following links and
    without blocking), at most `limit` bytes. FileNotFoundError when missing, ValueError when not usable."""
    st = os.lstat(p)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError("not a regular file")
    fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError("not a regular file")
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise ValueError(f"larger than {limit >> 20} MB")
    d = json.loads(raw.decode("utf-8"))
    if not isinstance(d, dict):
        raise ValueError("not a JSON object")
    return d




# ---------------------------------------------------------------- bases
@dataclass
class BaseInfo:
    name: str
    dir: Path
    meta: dict = field(default_factory=dict)
    ok: bool = True
    reason: str = ""

    @property
    def fingerprint(self) -> str | None:
        return self.meta.get("fingerprint")

    @property
    def rows(self) -> bool:
        """The LoRA inputs carry a leading per-row dim (`lora_rows`): a stacked pair of adapters gives
        each batch row its own LoRA, so compare mode runs as one batch of 2 (pipeline/lora_layout.py)."""
        return has_rows(self.meta.get("lora_inputs") or {})


def read_base(model_dir: str | os.PathLike) -> BaseInfo:
    d = Path(model_dir)
    info = BaseInfo(name=d.name, dir=d)
    if not is_regular(d / "genai_config.json"):
        info.ok, info.reason = False, "genai_config.json missing"
    bj = d / "base.json"
    try:
        info.meta = read_json(bj)
        info.name = str(info.meta.get("name") or d.name)
    except FileNotFoundError:
        info.ok, info.reason = False, (info.reason or "base.json missing")
    except (ValueError, OSError) as e:
        info.ok, info.reason = False, f"base.json unreadable: {e}"
    return info


def list_bases(models_dir: str | os.PathLike) -> list[BaseInfo]:
    """Every folder of models_dir holding a base.json or genai_config.json (temp dirs skipped)."""
    out = []
    for p in _real_dirs(models_dir):
        if is_regular(p / "base.json") or is_regular(p / "genai_config.json"):
            out.append(read_base(p))
    return out


def _entries(root: str | os.PathLike) -> list[os.DirEntry]:
    """The entries of a folder, sorted, without temp names; [] when it cannot be listed."""
    try:
        with os.scandir(root) as it:
            return sorted((e for e in it if not is_temp_name(e.name)), key=lambda e: e.name)
    except (OSError, ValueError):
        return []


def _real_dirs(root: str | os.PathLike) -> list[Path]:
    """Sub-folders that are real folders (symlinks are not followed)."""
    out = []
    for e in _entries(root):
        try:
            if e.is_dir(follow_symlinks=False):
                out.append(Path(e.path))
        except OSError:
            pass
    return out


# ---------------------------------------------------------------- adapters
@dataclass
class AdapterInfo:
    name: str
    dir: Path
    path: Path | None = None          # the .onnx_adapter file
    metadata: dict = field(default_factory=dict)
    size: int = 0                     # bytes of the .onnx_adapter file
    ok: bool = False
    reason: str = ""


def _adapter_file(d: Path) -> Path | None:
    p = d / ADAPTER_FILE
    if is_regular(p):
        return p
    others = [Path(e.path) for e in _entries(d) if e.name.endswith(".onnx_adapter") and is_regular(Path(e.path))]
    return others[0] if others else None


def stat_signature(d: Path) -> tuple:
    """Cheap change detector for one adapter folder: (mtime_ns, size, inode) of metadata + weights."""
    sig = []
    for n in ("metadata.json", ADAPTER_FILE):
        try:
            st = os.lstat(d / n)
            sig.append((n, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            sig.append((n, None))
    return tuple(sig)


def _dims_match(shape: tuple, dims: list) -> bool:
    if len(shape) != len(dims):
        return False
    return all(not (isinstance(d, int) and d > 0) or d == s for s, d in zip(shape, dims))


def check_adapter(adapter_dir: str | os.PathLike, base: BaseInfo | dict | None) -> AdapterInfo:
    d = Path(adapter_dir)
    info = AdapterInfo(name=d.name, dir=d)
    if not is_real_dir(d):
        info.reason = "a symbolic link or not a folder (not followed)"
        return info
    try:
        info.metadata = read_json(d / "metadata.json")
    except FileNotFoundError:
        info.reason = "metadata.json missing"
        return info
    except (ValueError, OSError) as e:
        info.reason = f"metadata.json corrupt: {e}"
        return info
    info.path = _adapter_file(d)
    if info.path is None:
        info.reason = f"{ADAPTER_FILE} missing"
        return info
    info.size = os.lstat(info.path).st_size
    bmeta = base.meta if isinstance(base, BaseInfo) else (base or {})
    if not bmeta:
        info.reason = "base has no base.json: cannot check the adapter fits"
        return info
    bfp, afp = bmeta.get("fingerprint"), info.metadata.get("base_fingerprint")
    if not afp:
        info.reason = "metadata.json has no base_fingerprint"
        return info
    if afp != bfp:
        info.reason = (f"built for another base (base_fingerprint {str(afp)[:12]}..., "
                       f"base '{bmeta.get('name')}' is {str(bfp)[:12]}...)")
        return info
    try:
        tensors = read_adapter_tensors(info.path)
    except Exception as e:  # onnxruntime raises its own exception types
        msg = clean_message(str(e).splitlines()[0] if str(e) else type(e).__name__)
        info.reason = f"{info.path.name} unreadable or truncated: {msg[:200]}"
        return info
    if not tensors:
        info.reason = f"{info.path.name} holds no tensors"
        return info
    lora_inputs = bmeta.get("lora_inputs") or {}
    if not lora_inputs:
        info.reason = "base has no LoRA inputs (lora_inputs empty in base.json)"
        return info
    unknown = sorted(set(tensors) - set(lora_inputs))
    if unknown:
        info.reason = (f"{len(unknown)} tensor(s) are not LoRA inputs of the base, e.g. "
                       f"'{unknown[0]}'")
        return info
    bad = [k for k, s in tensors.items() if not _dims_match(s, lora_inputs[k])]
    if bad:
        info.reason = (f"tensor '{bad[0]}' has shape {list(tensors[bad[0]])}, the base expects "
                       f"{lora_inputs[bad[0]]}")
        return info
    info.ok = True
    return info


def adapter_dirs(adapters_dir: str | os.PathLike) -> list[Path]:
    """Every adapter entry: real folders, and symlinks (check_adapter refuses them, so they are listed
    with the reason); plain files are not adapters."""
    out = []
    for e in _entries(adapters_dir):
        try:
            if e.is_dir(follow_symlinks=False) or e.is_symlink():
                out.append(Path(e.path))
        except OSError:
            pass
    return out


def list_adapters(adapters_dir: str | os.PathLike, base: BaseInfo | dict | str | os.PathLike | None
                  ) -> list[AdapterInfo]:
    """Every adapter folder with ok/reason against `base` (a BaseInfo, base.json dict, or model dir)."""
    if base is not None and not isinstance(base, (BaseInfo, dict)):
        base = read_base(base)
    return [check_adapter(d, base) for d in adapter_dirs(adapters_dir)]


def delete_adapter(adapters_dir: str | os.PathLike, name: str) -> None:
    """Remove adapters/<name>: renamed to a temp name first (so readers skip it), then deleted."""
    if not safe_name(name):
        raise LibraryError(f"unsafe adapter name: {name!r}")
    root = Path(adapters_dir)
    target = root / name
    if os.path.islink(target):  # a symlinked entry (refused by the library): remove the link, never its target
        target.unlink()
        return
    if not is_real_dir(target):
        raise LibraryError(f"no adapter named {name!r}")
    trash = root / f"{name}.tmp-delete-{os.getpid()}"
    os.replace(target, trash)
    shutil.rmtree(trash, ignore_errors=True)


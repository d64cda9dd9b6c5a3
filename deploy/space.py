"""Export a chat-only Hugging Face Space: a folder that runs `python app.py` on one ONNX base and its
adapters with onnxruntime-genai and Gradio only (no pipeline, Olive, transformers or torch).

Layout of the export:
  README.md          Spaces YAML header (sdk gradio, sdk_version, app_file, python_version, hardware)
  requirements.txt   CPU: onnxruntime-genai + onnxruntime; GPU hardware: the -cuda / -gpu builds
  app.py             chat-only launcher (deploy/space_app.py)
  engine/            the chat engine, copied
  artifacts/         the on-disk contract (bases, adapters, names), copied
  ui/                __init__, interface, chat_tab, slots, library_tab, and engine.py = ui/chat_engine.py (the
                     chat-only engine, under the Space's name for it: imports of ui.chat_engine in the
                     shipped code are rewritten to ui.engine)
  deploy/launch.py   share/auth options
  models/<base>/     the ONNX base (genai_config.json, model.onnx, tokenizer, base.json)
  adapters/<name>/   adapter.onnx_adapter + metadata.json for each adapter

  .studio-export      the export marker (artifacts.EXPORT_MARKER): only a marked folder may be replaced by
                     another export or published (never uploaded itself)

The export is atomic (artifacts.publish): it is written into `<out>.tmp-<pid>` beside the target and
renamed at the end; a replaced export is kept as `<out>.previous`."""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import artifacts  # noqa: E402

ORT_GENAI_VERSION = "0.18.0"
ORT_VERSION = "1.31.1"
GRADIO_VERSION = "6.31.0"
PYTHON_VERSION = "3.11"

CPU_HARDWARE = ("cpu-basic", "cpu-upgrade")
GPU_HARDWARE = ("t4-small", "t4-medium", "l4x1", "l4x4", "l40sx1", "l40sx4", "l40sx8", "a10g-small",
                "a10g-large", "a10g-largex2", "a10g-largex4", "a100-large", "a100x4", "a100x8", "h100",
                "h100x8", "zero-a10g")
HARDWARE = CPU_HARDWARE + GPU_HARDWARE

# the code an exported Space runs: (source in this project, destination in the Space)
CODE = [
    # the onnxruntime-genai backend only: engine/ort_backend.py needs torch, which a Space does not install
    *[(f"engine/{f}", f"engine/{f}") for f in ("__init__.py", "chat.py", "registry.py", "sampling.py", "templates.py",
                                                "live.py", "og_backend.py")],
    ("ui/__init__.py", "ui/__init__.py"),
    ("ui/interface.py", "ui/interface.py"),
    ("ui/hardening.py", "ui/hardening.py"),
    ("ui/chat_tab.py", "ui/chat_tab.py"),
    ("ui/slots.py", "ui/slots.py"),
    ("ui/library_tab.py", "ui/library_tab.py"),
    ("ui/chat_engine.py", "ui/engine.py"),
    *[(f"artifacts/{f.name}", f"artifacts/{f.name}") for f in sorted((PROJECT_ROOT / "artifacts").glob("*.py"))],
    ("deploy/launch.py", "deploy/launch.py"),
    ("deploy/clients.py", "deploy/clients.py"),
    ("deploy/space_app.py", "app.py"),
]
# modules that a Space holds under another name: (name in this project, name in the Space)
RENAMED_MODULES = [("ui.chat_engine", "ui.engine")]
ADAPTER_FILES = (artifacts.ADAPTER_FILE, "metadata.json")


class ExportError(Exception):
    """An export that cannot be made; the message says why."""


@dataclass
class ExportResult:
    out: Path
    base: str
    adapters: list[str]
    hardware: str
    files: list[str] = field(default_factory=list)
    size_bytes: int = 0


def is_gpu(hardware: str) -> bool:
    return hardware in GPU_HARDWARE


def requirements(hardware: str) -> str:
    if hardware not in HARDWARE:
        raise ExportError(f"unknown Space hardware {hardware!r}; choose one of: {', '.join(HARDWARE)}")
    if is_gpu(hardware):
        ort = [f"onnxruntime-genai-cuda=={ORT_GENAI_VERSION}", f"onnxruntime-gpu=={ORT_VERSION}"]
        note = "# GPU Space: CUDA builds of onnxruntime and onnxruntime-genai (never with the CPU ones)."
    else:
        ort = [f"onnxruntime-genai=={ORT_GENAI_VERSION}", f"onnxruntime=={ORT_VERSION}"]
        note = "# CPU Space: onnxruntime-genai on the CPU build of onnxruntime."
    lines = [note, "# Chat only: no torch, transformers or Olive.", *ort, f"gradio=={GRADIO_VERSION}", "numpy"]
    return "\n".join(lines) + "\n"


def _yaml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def _fmt(v, nd=4) -> str:
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return "" if v is None else str(v)


def adapter_table(adapters: list[artifacts.AdapterInfo], detail: bool = False) -> list[str]:
    """Markdown table of adapters from their metadata (detail: also alpha and size) for the model cards."""
    cols = ["adapter", "dataset", "examples", "rank"] + (["alpha"] if detail else []) + \
        ["steps", "train loss", "held-out loss"] + (["size"] if detail else [])
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for a in adapters:
        m = a.metadata or {}
        ds = m.get("dataset") if isinstance(m.get("dataset"), dict) else {}
        cells = [f"`{a.name}`", Path(str(ds.get("train_file", ""))).name, _fmt(ds.get("examples")), _fmt(m.get("rank"))]
        cells += [_fmt(m.get("alpha"))] if detail else []
        cells += [_fmt(m.get("steps")), _fmt(m.get("train_loss")), _fmt(m.get("eval_loss"))]
        cells += [_fmt(m.get("size_bytes"))] if detail else []
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def readme(title: str, emoji: str, hardware: str, base: artifacts.BaseInfo, adapters: list[artifacts.AdapterInfo],
           short_description: str | None = None) -> str:
    meta = base.meta or {}
    head = ["---", f"title: {_yaml_str(title)}", f"emoji: {emoji}", "colorFrom: indigo", "colorTo: green",
            "sdk: gradio", f"sdk_version: {GRADIO_VERSION}", "app_file: app.py",
            f'python_version: "{PYTHON_VERSION}"', f"suggested_hardware: {hardware}", "pinned: false"]
    if short_description:
        head.append(f"short_description: {_yaml_str(short_description[:60])}")
    head.append("tags:\n- onnxruntime-genai\n- onnx\n- int4\n- lora")
    head.append("---")
    rows = adapter_table(adapters)
    body = f"""
# {title}

Chat with an int4 ONNX model served by [onnxruntime-genai](https://github.com/microsoft/onnxruntime-genai),
with LoRA adapters chosen per request (hot-swapped, nothing is reloaded). Exported by LoRA studio
(`python -m deploy space`).

- base: `{base.dir.name}` ({meta.get('precision', '?')}, built from `{meta.get('source_model', '?')}`,
  fingerprint `{str(meta.get('fingerprint', ''))[:12]}`)
- suggested hardware: `{hardware}` ({'GPU: CUDA builds' if is_gpu(hardware) else 'CPU'})

{chr(10).join(rows) if adapters else '(no adapters: the base only)'}

## Run it locally
```bash
python -m venv .venv && . .venv/bin/activate
pip install -r requirements.txt
python app.py --port 7860            # add --auth USER:PASS (or STUDIO_AUTH=user:pass) to require a login
```
Set the Space secret `STUDIO_AUTH=user:pass` to require a login on the Space as well.
"""
    return "\n".join(head) + "\n" + body


def _copy_file(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def _copy_code(src: Path, dst: Path) -> None:
    """Copies a source file into the Space, naming renamed modules as the Space does."""
    text = src.read_text(encoding="utf-8")
    for old, new in RENAMED_MODULES:
        text = re.sub(rf"\b{re.escape(old)}\b", new, text)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(text, encoding="utf-8")
    shutil.copymode(src, dst)


def _base_files(info: artifacts.BaseInfo) -> list[Path]:
    """The files of an ONNX base folder that an export or a model repository ships (no hidden ones)."""
    return [f for f in sorted(info.dir.iterdir()) if f.is_file() and not f.name.startswith(".")]


def _select(base: str, adapters: list[str] | None, models_dir: Path, adapters_dir: Path):
    if not artifacts.safe_name(base):
        raise ExportError(f"unsafe base name {base!r}: use letters, digits, '.', '_' or '-' (no paths)")
    bdir = models_dir / base
    if not (bdir / "genai_config.json").is_file():
        names = [b.dir.name for b in artifacts.list_bases(models_dir) if (b.dir / "genai_config.json").is_file()]
        raise ExportError(f"no ONNX base {base!r} in {models_dir} (no genai_config.json); "
                          f"available: {', '.join(names) or 'none'}")
    info = artifacts.read_base(bdir)
    if not info.ok:
        raise ExportError(f"base {base!r} is not usable: {info.reason}")
    if adapters is None:  # every adapter that fits the base
        chosen = [a for a in artifacts.list_adapters(adapters_dir, info) if a.ok]
    else:
        chosen = []
        for name in adapters:
            if not artifacts.safe_name(name):
                raise ExportError(f"unsafe adapter name {name!r}: use letters, digits, '.', '_' or '-'")
            adir = adapters_dir / name
            if not adir.is_dir():
                raise ExportError(f"no adapter {name!r} in {adapters_dir}")
            a = artifacts.check_adapter(adir, info)
            if not a.ok:
                raise ExportError(f"adapter {name!r} does not fit base {base!r}: {a.reason}")
            chosen.append(a)
    return info, chosen


def export_space(out: str | Path, base: str = "default", adapters: list[str] | None = None,
                 hardware: str = "cpu-basic", models_dir: str | Path | None = None,
                 adapters_dir: str | Path | None = None, title: str | None = None, emoji: str = "🦜",
                 force: bool = False, log=None, keep_previous: bool = True, owner: str | None = None,
                 quota: str | None = None) -> ExportResult:
    """Writes the Space folder `out` (must not exist, or be empty; with force it may be a previous export,
    marked by artifacts.EXPORT_MARKER, never another folder). adapters=None: all the adapters that fit
    the base; []: the base only. A replaced export is kept as `<out>.previous` unless keep_previous=False
    (exports from the page: each is a copy of a base, and the export limit counts names)."""
    log = log or (lambda msg: None)
    models_dir, adapters_dir = _dirs(models_dir, adapters_dir)
    reqs = requirements(hardware)  # validates the hardware
    info, chosen = _select(base, adapters, models_dir, adapters_dir)
    out = Path(out).expanduser().resolve()
    if out.name in ("", ".", "..") or out == out.parent:
        raise ExportError(f"{out}: not a usable output folder")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if out.is_symlink():
        raise ExportError(f"{out} is a symbolic link: choose another folder")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise ExportError(f"{out} exists and is not empty: choose another name, or replace it (on the page: "
                              "tick 'Replace a previous export of that name'; on the command line: --force)")
        if not artifacts.is_marked_export(out):
            raise ExportError(f"{out} is not a previous Space export (no {artifacts.EXPORT_MARKER} marker): "
                              "refusing to replace it; choose another folder")
    for a in (models_dir, adapters_dir, PROJECT_ROOT):
        if out == a or a.is_relative_to(out):
            raise ExportError(f"{out}: refusing to export over the project, models or adapters folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        for src, dst in CODE:
            _copy_code(PROJECT_ROOT / src, tmp / dst)
        (tmp / "deploy" / "__init__.py").write_text('"""Launch options (share/auth) of this Space."""\n')
        for f in _base_files(info):
            _copy_file(f, tmp / "models" / base / f.name)
        for a in chosen:
            for name in ADAPTER_FILES:
                if (a.dir / name).is_file():
                    _copy_file(a.dir / name, tmp / "adapters" / a.name / name)
        title = title or f"LoRA studio chat: {base}"
        (tmp / "README.md").write_text(readme(title, emoji, hardware, info, chosen), encoding="utf-8")
        (tmp / "requirements.txt").write_text(reqs, encoding="utf-8")
        (tmp / ".gitattributes").write_text("*.onnx filter=lfs diff=lfs merge=lfs -text\n"
                                             "*.onnx.data filter=lfs diff=lfs merge=lfs -text\n"
                                             "*.onnx_adapter filter=lfs diff=lfs merge=lfs -text\n")
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        # (owner: the tag of the web client that exported it, artifacts/owners.py; the marker is never pushed)
        (tmp / artifacts.EXPORT_MARKER).write_text("a Space folder exported by LoRA studio (deploy/space.py)\n"
                                                   + (f"{artifacts.OWNER_LINE}{owner}\n" if owner else "")
                                                   + (f"{artifacts.QUOTA_LINE}{quota}\n" if quota else ""))
        if out.exists() and not any(out.iterdir()):
            out.rmdir()
        artifacts.publish(tmp, out, keep_previous=keep_previous)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"exported Space to {out}: base {base}, adapters {', '.join(a.name for a in chosen) or 'none'}, "
        f"hardware {hardware}, {len(files)} files, {size / 1e6:.1f} MB")
    return ExportResult(out, base, [a.name for a in chosen], hardware, files, size)


def _dirs(models_dir: str | Path | None, adapters_dir: str | Path | None) -> tuple[Path, Path]:
    """The models and adapters folders: as given, else models/ and adapters/ of the workspace
    ($STUDIO_HOME, default: the project)."""
    root = artifacts.workspace_root()
    return (Path(models_dir).resolve() if models_dir else root / "models",
            Path(adapters_dir).resolve() if adapters_dir else root / "adapters")

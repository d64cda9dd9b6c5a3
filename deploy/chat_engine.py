"""The chat and library side of ui.engine.AppEngine, without build jobs: no pipeline, Olive, transformers
or torch import. Exported Spaces ship this file as ui/engine.py (so ui/chat_tab.py and ui/library_tab.py
run unchanged on it); `AppEngine` is the same class under the name the tabs import."""
from __future__ import annotations

import inspect
import os
import threading
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path

from engine import library


class UIError(Exception):
    """A problem to show to the user as a message (never as a traceback)."""


SAMPLING_KEYS = ("temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty", "seed")


def make_sampling(**kw):
    """engine.chat.SamplingParams from the UI controls; keys the engine does not know are dropped."""
    from engine.chat import SamplingParams
    if is_dataclass(SamplingParams):
        known = {f.name for f in fields(SamplingParams)}
    else:
        known = set(inspect.signature(SamplingParams).parameters)
    aliases = {"max_new_tokens": ("max_new_tokens", "max_tokens", "max_length")}
    args = {}
    for k, v in kw.items():
        if v is None:
            continue
        for name in aliases.get(k, (k,)):
            if name in known:
                args[name] = v
                break
    return SamplingParams(**args)


@dataclass(frozen=True)
class _Root:
    root: Path


def default_root() -> Path:
    """$STUDIO_HOME, else the folder above this file (the Space root, or the project root)."""
    return Path(os.environ.get("STUDIO_HOME") or Path(__file__).resolve().parent.parent).resolve()


class ChatOnlyEngine:
    """Serves models/<base>/ with adapters/<name>/ read-only: pickers, chat engines, library tables."""

    read_only = True

    def __init__(self, root: str | Path | None = None, models_dir: str | Path | None = None,
                 adapters_dir: str | Path | None = None, provider: str = "auto"):
        root = Path(root).resolve() if root else default_root()
        self.ws = _Root(root)
        self.models_dir = Path(models_dir).resolve() if models_dir else root / "models"
        self.adapters_dir = Path(adapters_dir).resolve() if adapters_dir else root / "adapters"
        self.provider = provider
        self._chat: dict[str, object] = {}
        self._chat_lock = threading.Lock()
        self._base_locks: dict[str, threading.Lock] = {}

    def bases(self) -> list[library.BaseInfo]:
        return [b for b in library.list_bases(self.models_dir) if (b.dir / "genai_config.json").is_file()]

    def base_names(self) -> list[str]:
        return [b.dir.name for b in self.bases()]

    def default_base(self) -> str | None:
        names = self.base_names()
        if not names:
            return None
        return "default" if "default" in names else names[0]

    def chat(self, base: str | None):
        if not base:
            raise UIError(f"no ONNX base model in {self.models_dir}")
        if base not in self.base_names():
            raise UIError(f"unknown base model {base!r}; available: {', '.join(self.base_names()) or 'none'}")
        with self._chat_lock:
            eng = self._chat.get(base)
            if eng is not None:
                return eng
            lock = self._base_locks.setdefault(base, threading.Lock())
        with lock:
            eng = self._chat.get(base)
            if eng is None:
                from engine.chat import ChatEngine
                eng = ChatEngine(str(self.models_dir / base), str(self.adapters_dir), provider=self.provider)
                with self._chat_lock:
                    self._chat[base] = eng
            return eng

    def loaded_engines(self) -> dict:
        with self._chat_lock:
            return dict(self._chat)

    def refresh(self) -> None:
        for eng in self.loaded_engines().values():
            try:
                eng.refresh()
            except Exception:
                pass

    def variants(self, base: str | None) -> tuple[list[str], list[tuple[str, str]]]:
        eng = self.chat(base)
        eng.refresh()
        names = [n for n in eng.variants() if n != "base"]
        return ["base"] + names, [(str(n), str(r)) for n, r in eng.refused()]

    def adapters(self, base: str | None = None) -> list[library.AdapterInfo]:
        info = next((b for b in self.bases() if b.dir.name == base), None) if base else None
        return library.list_adapters(self.adapters_dir, info)

    def delete_adapter(self, name: str) -> None:
        raise UIError("this app is read-only: adapters cannot be deleted here")

    # no build jobs in a chat-only app
    def list_jobs(self) -> list:
        return []

    def running_job(self) -> None:
        return None

    def current_job(self) -> None:
        return None


AppEngine = ChatOnlyEngine

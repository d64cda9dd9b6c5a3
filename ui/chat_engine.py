"""The chat and library side of the app engine, without build jobs: standard library and engine/ only
(no pipeline, Olive, transformers or torch import), so that `app.py --chat-only` and exported Spaces load
none of them.

- ChatEngineSide: bases and adapters on disk (artifacts) and one engine.chat.ChatEngine per ONNX base
  in models/, created lazily and kept; no build jobs (list_jobs/running_job/current_job say so).
  ui.engine.AppEngine subclasses it and adds the job side.
- ChatOnlyEngine: the read-only one of `app.py --chat-only` and of exported Spaces (which ship this file
  as ui/engine.py): rooted at a folder holding models/ and adapters/; adapters cannot be deleted.

ui/chat_tab.py and ui/library_tab.py import UIError and make_sampling from here, so they run on either."""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import fields
from pathlib import Path

import artifacts


class UIError(Exception):
    """A problem to show to the user as a message (never as a traceback). Its text may quote the user's input,
    so lone surrogates are replaced: Gradio's JSON encoder refuses them and cut the answer (red-team pass 18)."""

    def __init__(self, *args):
        super().__init__(*(artifacts.limits.without_surrogates(a) if isinstance(a, str) else a for a in args))


def make_sampling(**kw):
    """engine.chat.SamplingParams from the UI controls; None values and keys the engine does not know are
    dropped. UIError for a seed outside 0..2**31-1 or a value that is not a finite number (so that a bad
    value fails this request only, before the engine sees it)."""
    from engine.chat import SamplingParams
    known = {f.name for f in fields(SamplingParams)}
    kw = {k: v for k, v in kw.items() if v is not None and k in known}
    try:
        for k, v in kw.items():
            kw[k] = artifacts.check_seed(v) if k == "seed" else v
            if k != "seed":
                artifacts.check_finite(k, v)
    except artifacts.LimitError as e:
        raise UIError(str(e)) from None
    return SamplingParams(**kw)


def check_conversation(*texts) -> None:
    """UIError when a request's messages together exceed artifacts.max_prompt_chars (checked before
    anything is tokenized)."""
    try:
        artifacts.check_prompt_chars(sum(len(t) for t in texts if isinstance(t, str)))
        for t in texts:
            if isinstance(t, str):
                artifacts.check_text("the message", t)
    except artifacts.LimitError as e:
        raise UIError(str(e)) from None


def default_root() -> Path:
    """The workspace: $STUDIO_HOME, else the project root (or the Space root)."""
    return artifacts.workspace_root()


class ChatEngineSide:
    """Pickers, chat engines and library tables over models/<base>/ and adapters/<name>/.

    `ws` is an artifacts.Workspace (only its root, shown() and scrub() are used here); models_dir and
    adapters_dir default to <root>/models and <root>/adapters. read_only (a class attribute): adapters cannot
    be deleted."""

    read_only = False
    no_base_hint = ""  # appended to the "no ONNX base model" message (the studio points to the Build tab)

    def __init__(self, ws, models_dir: str | Path | None = None, adapters_dir: str | Path | None = None,
                 provider: str = "auto"):
        self.ws = ws
        self.models_dir = Path(models_dir).resolve() if models_dir else Path(ws.root) / "models"
        self.adapters_dir = Path(adapters_dir).resolve() if adapters_dir else Path(ws.root) / "adapters"
        self.provider = provider
        self._chat: OrderedDict[str, object] = OrderedDict()  # loaded engines, least recently used first
        self._held: dict[object, int] = {}  # engine -> requests using it (never closed while held)
        self._chat_lock = threading.Lock()
        self._base_locks: dict[str, threading.Lock] = {}
        self._failed: dict[str, tuple[tuple, str]] = {}  # base -> (its folder's signature, why it did not load)

    # ------------------------------------------------------------------ bases and chat engines
    def bases(self) -> list[artifacts.BaseInfo]:
        """ONNX bases that can be served (genai_config.json present); HF folders are not bases."""
        return [b for b in artifacts.list_bases(self.models_dir) if (b.dir / "genai_config.json").is_file()]

    def base_names(self) -> list[str]:
        return [b.dir.name for b in self.bases()]

    def default_base(self) -> str | None:
        names = self.base_names()
        if not names:
            return None
        return "default" if "default" in names else names[0]

    def _is_base(self, base: str) -> bool:
        """base in base_names(), without reading every base.json (chat() runs on each request)."""
        d = self.models_dir / base
        return (isinstance(base, str) and artifacts.safe_name(base) and d.name == base
                and artifacts.is_real_dir(d) and artifacts.is_regular(d / "genai_config.json"))

    def _shown(self, path) -> str:
        """A folder as the page may name it (Workspace.shown: never the server's folders)."""
        return self.ws.shown(path)

    def _scrubbed(self, text: str) -> str:
        """A library's message as the page may show it: the workspace, the project, the models and adapters
        folders (which may lie elsewhere) named as the page names them."""
        text = self.ws.scrub(text)
        for d in (self.models_dir, self.adapters_dir):
            text = text.replace(str(d), self._shown(d))
        return text

    @staticmethod
    def _signature(d: Path) -> tuple:
        """What a base folder holds, cheaply (names, sizes, times): a base that failed to load is tried again
        only once it changed."""
        try:
            with os.scandir(d) as it:
                stats = [(e.name, e.stat(follow_symlinks=False)) for e in it]
            return tuple(sorted((name, st.st_mtime_ns, st.st_size) for name, st in stats))
        except OSError:
            return ()

    def chat(self, base: str | None, hold: bool = False):
        """The ChatEngine of models/<base>/, created on first use and kept while it is one of the
        max_loaded_bases() used last (the least recently used one that no request holds, other than the default
        base, is closed to make room: anyone may publish bases, and each loaded engine kept its model in memory for
        good, red-team pass 18).
        hold=True: the caller uses it until release(engine), and it is not closed before that."""
        while True:
            eng = self._load(base)
            pinned = self._pinned()
            with self._chat_lock:
                if self._chat.get(base) is not eng:  # closed to make room in between: load it again
                    continue
                self._chat.move_to_end(base)
                if hold:
                    self._held[eng] = self._held.get(eng, 0) + 1
                evicted = self._evict_locked(pinned)
            for e in evicted:
                e.close()
            return eng

    def release(self, eng) -> None:
        """A request that held `eng` (chat(hold=True)) is done with it."""
        pinned = self._pinned()
        with self._chat_lock:
            n = self._held.get(eng, 0) - 1
            if n > 0:
                self._held[eng] = n
            else:
                self._held.pop(eng, None)
            evicted = self._evict_locked(pinned)
        for e in evicted:
            e.close()

    def _pinned(self) -> str | None:
        """The default base when an eviction may follow (it reads base folders: done before taking the lock, and
        only when more engines are loaded than the cap)."""
        return self.default_base() if len(self._chat) > artifacts.limits.max_loaded_bases() else None

    def _evict_locked(self, pinned: str | None = None) -> list:
        """(self._chat_lock held) Engines taken out to keep at most max_loaded_bases(): the least recently used
        that no request holds, never the default base (`pinned`: the one the page opens with, so that a client
        cycling through other bases cannot make its users wait for reloads, red-team pass 19); the caller
        closes them."""
        cap, out = artifacts.limits.max_loaded_bases(), []
        for b in list(self._chat):
            if len(self._chat) <= cap:
                break
            if self._held.get(self._chat[b], 0) == 0 and b != next(reversed(self._chat)) and b != pinned:
                out.append(self._chat.pop(b))
        return out

    def loaded_bases(self) -> list[str]:
        with self._chat_lock:
            return list(self._chat)

    def _load(self, base: str | None):
        if not base:
            raise UIError(f"no ONNX base model in {self._shown(self.models_dir)}{self.no_base_hint}")
        if not self._is_base(base):
            raise UIError(f"unknown base model {base!r}; available: {', '.join(self.base_names()) or 'none'}")
        with self._chat_lock:
            eng = self._chat.get(base)
            if eng is not None:
                return eng
            lock = self._base_locks.setdefault(base, threading.Lock())
        with lock:  # one load per base; other bases are not blocked
            eng = self._chat.get(base)
            if eng is None:
                from engine.chat import ChatEngine
                sig = self._signature(self.models_dir / base)
                failed = self._failed.get(base)
                if failed is not None and failed[0] == sig:  # (parsing a broken model again costs each request)
                    raise UIError(failed[1])
                try:
                    eng = ChatEngine(str(self.models_dir / base), str(self.adapters_dir), provider=self.provider)
                except Exception as e:
                    why = f"base {base!r} does not load: {self._scrubbed(artifacts.clean_message(e))}"
                    self._failed[base] = (sig, why)
                    raise UIError(why) from None
                self._failed.pop(base, None)
                with self._chat_lock:
                    self._chat[base] = eng
            return eng

    def refresh(self) -> None:
        """Newly published (or deleted) adapters become visible to every loaded engine."""
        with self._chat_lock:
            engines = list(self._chat.values())
        for eng in engines:
            try:
                eng.refresh()
            except Exception:
                pass

    def variants(self, base: str | None) -> tuple[list[str], list[tuple[str, str]]]:
        """(['base', fitting adapters...], [(refused adapter, reason)]) for one base."""
        eng = self.chat(base, hold=True)
        try:
            eng.refresh()
            names = [n for n in eng.variants() if n != "base"]
            return ["base"] + names, [(str(n), str(r)) for n, r in eng.refused()]
        finally:
            self.release(eng)

    # ------------------------------------------------------------------ library
    def adapters(self, base: str | None = None) -> list[artifacts.AdapterInfo]:
        info = next((b for b in self.bases() if b.dir.name == base), None) if base else None
        return artifacts.list_adapters(self.adapters_dir, info)

    def delete_adapter(self, name: str) -> None:
        if self.read_only:
            raise UIError("this app is read-only: adapters cannot be deleted here")
        artifacts.delete_adapter(self.adapters_dir, name)
        self.refresh()

    # ------------------------------------------------------------------ no build jobs here
    def list_jobs(self) -> list:
        return []

    def running_job(self) -> str | None:
        return None

    def current_job(self) -> str | None:
        return None



class ChatOnlyEngine(ChatEngineSide):
    """Serves models/<base>/ with adapters/<name>/ read-only (root: default_root())."""

    read_only = True

    def __init__(self, root: str | Path | None = None, models_dir: str | Path | None = None,
                 adapters_dir: str | Path | None = None, provider: str = "auto"):
        root = Path(root).resolve() if root else default_root()
        super().__init__(artifacts.Workspace(root), models_dir, adapters_dir, provider)

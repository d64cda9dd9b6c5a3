"""AppEngine: the state behind the UI, shared by every browser session.

- the job side: creates, launches, cancels and resumes build jobs (pipeline.jobs) in one workspace
  and folds their event files incrementally into JobState objects (so the 1 s poll is cheap);
- the chat side: one ChatEngine per ONNX base in models/, created lazily and kept;
- the library: bases and adapters on disk (engine.library).
"""
from __future__ import annotations

import inspect
import threading
from dataclasses import fields, is_dataclass
from pathlib import Path

from engine import library
from pipeline import jobs
from pipeline.events import JobState, read_events
from pipeline.recipe import Recipe
from pipeline.workspace import Workspace


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


class _Follower:
    """An incrementally folded JobState for one job folder."""

    def __init__(self, job_dir: Path):
        self.job_dir = job_dir
        self.state = JobState()
        self.offset = 0
        self.lock = threading.Lock()

    def poll(self) -> JobState:
        with self.lock:
            events, self.offset = read_events(self.job_dir / "events.jsonl", self.offset)
            for e in events:
                self.state.apply(e)
            st = self.state
            if st.status in ("running", "pending") and not jobs.is_running(self.job_dir):
                return jobs.state(self.job_dir)  # ended without job_end (killed) -> "interrupted"
            return st


class AppEngine:
    def __init__(self, workspace: Workspace | None = None, models_dir: str | Path | None = None,
                 adapters_dir: str | Path | None = None, provider: str = "auto"):
        self.ws = workspace or Workspace.default()
        self.models_dir = Path(models_dir).resolve() if models_dir else self.ws.models
        self.adapters_dir = Path(adapters_dir).resolve() if adapters_dir else self.ws.adapters
        self.provider = provider
        self._chat: dict[str, object] = {}
        self._chat_lock = threading.Lock()
        self._base_locks: dict[str, threading.Lock] = {}
        self._followers: dict[str, _Follower] = {}
        self._job_lock = threading.Lock()

    # ------------------------------------------------------------------ bases and chat engines
    def bases(self) -> list[library.BaseInfo]:
        """ONNX bases that can be served (genai_config.json present); HF folders are not bases."""
        return [b for b in library.list_bases(self.models_dir) if (b.dir / "genai_config.json").is_file()]

    def base_names(self) -> list[str]:
        return [b.dir.name for b in self.bases()]

    def default_base(self) -> str | None:
        names = self.base_names()
        if not names:
            return None
        return "default" if "default" in names else names[0]

    def chat(self, base: str | None):
        """The ChatEngine of models/<base>/ (created on first use, then kept)."""
        if not base:
            raise UIError("no ONNX base model in " + str(self.models_dir) + ": build one in the Build tab")
        if base not in self.base_names():
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
                eng = ChatEngine(str(self.models_dir / base), str(self.adapters_dir), provider=self.provider)
                with self._chat_lock:
                    self._chat[base] = eng
            return eng

    def loaded_engines(self) -> dict:
        with self._chat_lock:
            return dict(self._chat)

    def refresh(self) -> None:
        """Newly published (or deleted) adapters become visible to every loaded engine."""
        for eng in self.loaded_engines().values():
            try:
                eng.refresh()
            except Exception:
                pass

    def variants(self, base: str | None) -> tuple[list[str], list[tuple[str, str]]]:
        """(['base', fitting adapters...], [(refused adapter, reason)]) for one base."""
        eng = self.chat(base)
        eng.refresh()
        names = list(eng.variants())
        if "base" in names:
            names.remove("base")
        return ["base"] + names, [(str(n), str(r)) for n, r in eng.refused()]

    # ------------------------------------------------------------------ library
    def adapters(self, base: str | None = None) -> list[library.AdapterInfo]:
        info = None
        if base:
            for b in self.bases():
                if b.dir.name == base:
                    info = b
        return library.list_adapters(self.adapters_dir, info)

    def delete_adapter(self, name: str) -> None:
        library.delete_adapter(self.adapters_dir, name)
        self.refresh()

    # ------------------------------------------------------------------ jobs
    def job_dir(self, job_id: str) -> Path:
        if not job_id or "/" in job_id or job_id.startswith("."):
            raise UIError(f"no job {job_id!r}")
        d = self.ws.runs / job_id
        if not (d / "recipe.yaml").exists():
            raise UIError(f"no job {job_id!r} in {self.ws.runs}")
        return d

    def start(self, recipe: Recipe) -> str:
        """Validate, create and launch a job; returns its id. One build at a time per workspace."""
        with self._job_lock:
            running = self.running_job()
            if running is not None:
                raise UIError(f"job {running} is still running: cancel it or wait until it ends")
            job_dir = jobs.create_job(recipe, self.ws)  # raises RecipeError
            jobs.launch(job_dir, self.ws)
            return job_dir.name

    def cancel(self, job_id: str) -> float:
        d = self.job_dir(job_id)
        if not jobs.is_running(d):
            raise UIError(f"job {job_id} is not running")
        return jobs.cancel(d)

    def resume(self, job_id: str) -> str:
        d = self.job_dir(job_id)
        with self._job_lock:
            if jobs.is_running(d):
                raise UIError(f"job {job_id} is already running")
            running = self.running_job()
            if running is not None:
                raise UIError(f"job {running} is running: wait for it or cancel it first")
            st = jobs.state(d)
            if st.status == "ok":
                raise UIError(f"job {job_id} already finished successfully")
            jobs.launch(d, self.ws)
        return job_id

    def job_state(self, job_id: str) -> JobState:
        d = self.job_dir(job_id)
        with self._job_lock:
            f = self._followers.get(job_id)
            if f is None:
                f = self._followers[job_id] = _Follower(d)
        return f.poll()

    def running_job(self) -> str | None:
        """A job whose process is alive (also one just launched that has not written job_start)."""
        for j in self.list_jobs():
            if j.status in ("running", "pending") and jobs.is_running(j.job_dir):
                return j.job_id
        return None

    def list_jobs(self) -> list[jobs.JobInfo]:
        return jobs.list_jobs(self.ws)

    def current_job(self) -> str | None:
        """The running job, else the latest one (what a freshly opened page shows)."""
        running = self.running_job()
        if running is not None:
            return running
        all_jobs = self.list_jobs()
        return all_jobs[0].job_id if all_jobs else None

    def recipe_of(self, job_id: str) -> Recipe:
        return Recipe.load(self.job_dir(job_id) / "recipe.yaml")

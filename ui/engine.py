"""AppEngine: the state behind the studio UI, shared by every browser session.

- the chat side and the library (ui.chat_engine.ChatEngineSide, which AppEngine extends): one
  ChatEngine per ONNX base in models/, created lazily and kept; bases and adapters on disk;
- the job side: creates, launches, cancels and resumes build jobs (pipeline.jobs) in one workspace
  and folds their event files incrementally into JobState objects (so the 1 s poll is cheap);
- the request policy (artifacts.Policy): check_recipe, data_file and preview_model are the only way a
  request's paths, model and trust_remote_code reach the pipeline (start() checks every recipe).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import artifacts
from artifacts import JOB_ID_MAX, Policy, PolicyError, Workspace, safe_name
from pipeline import jobs
from pipeline.events import JobState, read_events, seconds_run
from pipeline.recipe import Recipe, RecipeError
from ui.chat_engine import ChatEngineSide, UIError


class NotYours(UIError):
    """A web client asked to see or change another client's build."""


class _Follower:
    """An incrementally folded JobState for one job folder."""

    def __init__(self, job_dir: Path):
        self.job_dir = job_dir
        self.state = JobState()
        self.offset = 0
        self.last: list[dict] = []  # the last event read: all that jobs.is_running looks at
        self.lock = threading.Lock()

    def poll(self) -> JobState:
        with self.lock:
            events, self.offset = read_events(self.job_dir / "events.jsonl", self.offset)
            for e in events:
                self.state.apply(e)
            self.last = events[-1:] or self.last
            st = self.state
            if st.status in ("running", "pending") and not jobs.is_running(self.job_dir, self.last):
                return jobs.state(self.job_dir)  # ended without job_end (killed) -> "interrupted"
            return st


class AppEngine(ChatEngineSide):
    """The chat side (ChatEngineSide, deletion allowed) plus build jobs in one workspace."""

    no_base_hint = ": build one in the Build tab"

    def __init__(self, workspace: Workspace | None = None, models_dir: str | Path | None = None,
                 adapters_dir: str | Path | None = None, provider: str = "auto", policy: Policy | None = None):
        super().__init__(workspace or Workspace.default(), models_dir, adapters_dir, provider)
        self.policy = policy or Policy(self.ws)
        self._followers: dict[str, _Follower] = {}
        self._job_lock = threading.Lock()

    # ------------------------------------------------------------------ request policy
    def check_recipe(self, recipe: Recipe, client: str | None = None) -> Recipe:
        """A copy of a request's recipe with its data files and local base model replaced by the paths
        the policy allows (absolute, links resolved); UIError for anything else, before any file is read."""
        try:
            r = Recipe.from_dict(recipe.to_dict())
            r.train_file = str(self.policy.data_file(r.train_file, "train_file", client))
            if (r.eval_file or "").strip():
                r.eval_file = str(self.policy.data_file(r.eval_file, "eval_file", client))
            if getattr(r, "base", ""):  # a published ONNX base to build onto: models/<base>
                r.base = self.policy.base_name(r.base)
            if (r.base_model or "").strip() or not getattr(r, "base", ""):
                r.base_model = self.policy.base_model(r.base_model)
            self.policy.trust_remote_code(r.trust_remote_code)
            self.policy.base_output(r.base_name)
            if r.replace:
                self.policy.adapter_change(r.adapter_name, "adapter_name", client=client)
            self.policy.adapter_lookalike(r.adapter_name, client=client)
        except PolicyError as e:
            raise UIError(str(e)) from None
        return r

    def preset_of(self, recipe: Recipe) -> str:
        """The preset a request's recipe resolves to, judged only on what the policy lets it name: a base model
        it refuses counts as not on disk ('3-4b' for 'auto'), so the preset note cannot probe folders elsewhere on
        the server (nor parse their safetensors headers)."""
        from pipeline.presets import resolve_preset
        if recipe.preset != "auto":
            return recipe.preset
        r = Recipe.from_dict(recipe.to_dict())
        try:
            if (r.base or "").strip():
                r.base = self.policy.base_name(r.base)
            else:
                r.base_model = self.policy.base_model(r.base_model)
        except PolicyError:
            r.base, r.base_model = "", ""
        return resolve_preset(r, self.models_dir)

    def delete_adapter(self, name: str, client: str | None = None) -> None:
        try:
            self.policy.adapter_change(name, adapters_dir=self.adapters_dir, client=client)
        except PolicyError as e:
            raise UIError(str(e)) from None
        super().delete_adapter(name)

    def data_file(self, value, what: str = "train_file", client: str | None = None) -> Path:
        try:
            return self.policy.data_file(value, what, client)
        except PolicyError as e:
            raise UIError(str(e)) from None

    def preview_model(self, value) -> str:
        """The base model whose tokenizer a data preview may load (its code is never run)."""
        try:
            return self.policy.base_model(value)
        except PolicyError as e:
            raise UIError(str(e)) from None

    # ------------------------------------------------------------------ jobs
    def job_dir(self, job_id: str) -> Path:
        if not isinstance(job_id, str) or not safe_name(job_id, JOB_ID_MAX):
            shown = job_id[:40] + "..." if isinstance(job_id, str) and len(job_id) > 40 else job_id
            raise UIError(f"no job {shown!r}: a job id is up to {JOB_ID_MAX} letters, digits, '.', '_' or '-'")
        d = self.ws.runs / job_id
        if not (d / "recipe.yaml").exists():
            raise UIError(f"no job {job_id!r} in runs/ of the workspace")
        return d

    def _own(self, d: Path, client: str | None, doing: str) -> None:
        """A run's owner (the client recorded when it started, pipeline/jobs.py) or the operator (client None) may
        see or change it; another web client is refused (red-team pass 28: strangers cancelled, resumed and read
        each other's builds, logs and data)."""
        if client is not None and jobs.client_of_run(d) != client:
            raise NotYours(f"job {d.name} is another user's build: only they can {doing}")

    def _check_client_adapters(self, recipe: Recipe, client: str | None) -> None:
        """A web client builds a new adapter only while it owns fewer than limits.max_adapters_per_client()
        (replacing one of its own is always allowed), and a new base (a build from a model, not onto a published
        base) only while it owns fewer than limits.max_bases_per_client()."""
        if client is None:
            return
        # (counted by quota: every login session's together, artifacts/owners.quota_of, red-team pass 34)
        who = artifacts.quota_holder(client)
        bases = artifacts.limits.max_bases_per_client()
        if bases and not getattr(recipe, "base", ""):
            counted_b = [b for b in artifacts.list_bases(self.models_dir)
                         if artifacts.counts_against(self.ws, b.meta or {}, client)]
            mine_b = sorted(b.name for b in counted_b)
            if len(mine_b) >= bases and (recipe.base_name or "") not in mine_b:
                own = artifacts.owner_tag(self.ws, client)
                shown = sorted(b.name for b in counted_b if (b.meta or {}).get("owner") == own) or ["none of them yours"]
                raise UIError(f"{who} built {len(mine_b)} base(s) on this server ({', '.join(shown[:4])}; the "
                              f"limit is {bases}): build your adapters onto a published base")
        limit = artifacts.limits.max_adapters_per_client()
        if not limit:
            return
        counted = [a for a in artifacts.list_adapters(self.adapters_dir, None)
                   if artifacts.counts_against(self.ws, a.metadata or {}, client)]
        own = artifacts.owner_tag(self.ws, client)
        mine = sorted(a.name for a in counted if (a.metadata or {}).get("owner") == own)
        if recipe.adapter_name in mine and recipe.replace:
            return
        if len(counted) >= limit:  # (names: only the client's own; the others of its group are not its to see)
            raise UIError(f"{who} {len(counted)} adapters on this server (the limit is {limit}): "
                          + (f"delete one of yours in the Library tab, or rebuild one with replace ({', '.join(mine[:8])})"
                             if mine else "the others of your network or of the login sessions built them"))

    def _check_client_time(self, client: str | None, job_dir: Path | None = None) -> None:
        """A web client's build time (red-team pass 33: one stranger held the only build slot for as long as it
        liked, resuming a run that the time limit stopped, or starting the next): a run resumes only while its
        attempts together ran less than STUDIO_MAX_JOB_MIN, and a client starts or resumes builds only while its
        runs of the last 24 hours ran less than STUDIO_MAX_BUILD_MIN_PER_CLIENT. The operator (None): no limit."""
        if client is None:
            return
        job_limit = artifacts.limits.max_job_seconds()
        if job_dir is not None and job_limit is not None:
            used = seconds_run(job_dir / "events.jsonl")
            if used >= job_limit:
                raise UIError(f"job {job_dir.name} has run {used / 60:.0f} min, the operator's limit per build "
                              f"({job_limit / 60:g} min, STUDIO_MAX_JOB_MIN): start a build with fewer steps")
        day_limit = artifacts.limits.max_client_build_seconds()
        if day_limit is None:
            return
        since = time.time() - 86400
        used = 0.0
        quota = artifacts.quota_of(client)  # (every login session's runs together: red-team pass 34)
        for j in jobs.list_jobs(self.ws):
            if artifacts.quota_of(jobs.client_of_run(j.job_dir)) != quota:
                continue
            f = j.job_dir / "events.jsonl"
            try:
                if f.stat().st_mtime >= since:
                    used += seconds_run(f)
            except OSError:
                continue
        if used >= day_limit:
            whose = "your builds" if artifacts.is_address(client) else "the builds of users without a known address (login sessions)"
            raise UIError(f"{whose} ran {used / 60:.0f} min in the last 24 hours, the operator's limit per user "
                          f"({day_limit / 60:g} min, STUDIO_MAX_BUILD_MIN_PER_CLIENT): the build slot is shared, "
                          "try again later")

    def start(self, recipe: Recipe, client: str | None = None) -> str:
        """Validate, create and launch a job; returns its id. One build at a time per workspace. client: who asks
        (a web request's address, deploy/clients.share_of; None: not known), recorded as the run's owner (who may
        see, cancel and resume it) and for runs/'s per-client share."""
        recipe = self.check_recipe(recipe, client)
        self._check_client_adapters(recipe, client)
        self._check_client_time(client)
        self._check_room()
        with self._job_lock:
            running = self.running_job()
            if running is not None:
                raise UIError(f"job {running} is still running: cancel it or wait until it ends")
            # (a resume makes no new run) the oldest ended runs make room for this one
            jobs.make_room(self.ws, artifacts.limits.max_runs(), artifacts.limits.run_keep_seconds())
            try:
                artifacts.limits.check_runs_room(self.ws.runs)
            except artifacts.LimitError as e:
                raise UIError(str(e)) from None
            lend = self.policy.allow_server_token  # the server's HF_TOKEN only when the operator allows it
            job_dir = jobs.create_job(recipe, self.ws, lend_token=lend, client=client)  # raises RecipeError
            jobs.launch(job_dir, self.ws, lend_token=lend)
            return job_dir.name

    def _check_room(self) -> None:
        try:
            artifacts.check_build_room(self.ws.root)
        except artifacts.LimitError as e:
            raise UIError(str(e)) from None

    def cancel(self, job_id: str, client: str | None = None) -> float:
        d = self.job_dir(job_id)
        self._own(d, client, "cancel it")
        if not jobs.is_running(d):
            raise UIError(f"job {job_id} is not running")
        return jobs.cancel(d)

    def resume(self, job_id: str, client: str | None = None) -> str:
        d = self.job_dir(job_id)
        self._own(d, client, "resume it")
        try:  # a job made by the command line (or under wider flags) runs again only if this policy allows it
            self._check_client_adapters(self.check_recipe(Recipe.load(d / "recipe.yaml"), client), client)
        except (UIError, RecipeError) as e:
            raise UIError(f"job {job_id} cannot be resumed from this page: {e}") from None
        self._check_client_time(client, d)
        self._check_room()
        with self._job_lock:
            if jobs.is_running(d):
                raise UIError(f"job {job_id} is already running")
            running = self.running_job()
            if running is not None:
                raise UIError(f"job {running} is running: wait for it or cancel it first")
            st = jobs.state(d)
            if st.status == "ok":
                raise UIError(f"job {job_id} already finished successfully")
            jobs.launch(d, self.ws, lend_token=self.policy.allow_server_token)
        return job_id

    def job_state(self, job_id: str, client: str | None = None) -> JobState:
        d = self.job_dir(job_id)
        self._own(d, client, "see its log, data and results")
        with self._job_lock:
            f = self._followers.get(job_id)
            if f is None:
                f = self._followers[job_id] = _Follower(d)
        return f.poll()

    def running_job(self, all_jobs: list[jobs.JobInfo] | None = None) -> str | None:
        """A job whose process is alive (also one just launched that has not written job_start)."""
        for j in self.list_jobs() if all_jobs is None else all_jobs:
            if j.status in ("running", "pending") and jobs.is_running(j.job_dir):
                return j.job_id
        return None

    def list_jobs(self, client: str | None = None) -> list[jobs.JobInfo]:
        """Every run (client None: the operator), or the runs a web client started."""
        all_jobs = jobs.list_jobs(self.ws)
        return all_jobs if client is None else [j for j in all_jobs if jobs.client_of_run(j.job_dir) == client]

    def current_job(self, client: str | None = None) -> str | None:
        """The running job (whoever's: the page says a build is running), else the client's latest one (what a
        freshly opened page shows)."""
        running = self.running_job()
        if running is not None:
            return running
        mine = self.list_jobs(client)
        return mine[0].job_id if mine else None

    def recipe_of(self, job_id: str, client: str | None = None) -> Recipe:
        d = self.job_dir(job_id)
        self._own(d, client, "see its recipe")
        return Recipe.load(d / "recipe.yaml")

"""Build jobs as subprocesses. Each job has a folder runs/<job_id>/ with its recipe, its event log
and the pid of its process (the leader of its own process group, so that cancel reaches every child:
Olive, the trainer's data loader workers, the ONNX builder). The UI and the CLI only read these files."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.events import EventLog, JobState, read_events
from pipeline.recipe import Recipe, RecipeError, default_adapter_name
from artifacts import PROJECT_ROOT, Workspace

CANCEL_GRACE_S = 3.0
CANCEL_GRACE_FINETUNE_S = 30.0  # fine-tuning first finishes its step and writes a checkpoint


@dataclass
class JobInfo:
    job_id: str
    job_dir: Path
    status: str  # running | ok | failed | cancelled | interrupted | pending
    adapter: str
    started: float | None
    error: str


def new_job_id(recipe: Recipe) -> str:
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{recipe.adapter_name}"


def preflight(recipe: Recipe, ws: Workspace, lend_token: bool = True) -> None:
    """The checks that need no model load, so that bad input is refused before a job exists:
    the recipe's values, the dataset files, the adapter name, the base (a published one with its prepared
    weights, or a local model folder and its module names). lend_token=False: a Hub id is looked up
    without the server's own token."""
    from pipeline import data
    from pipeline.errors import StageError
    from pipeline.hub import _looks_local, check_hub_id, resolve_model
    from pipeline.stage_prepare import check_targets, prepared_weights
    from pipeline.stage_publish import exists_message
    recipe.validate()
    if not recipe.adapter_name:
        raise RecipeError("adapter_name is empty (create_job derives one)")
    if (ws.adapters / recipe.adapter_name).exists() and not recipe.replace:
        raise RecipeError(exists_message(recipe.adapter_name, ws.adapters))
    for label, path in (("train_file", recipe.train_file), ("eval_file", recipe.eval_file)):
        if path:
            data.load_examples(ws.resolve_input(path), recipe.data_format)
    if recipe.base:
        try:
            meta, model_dir = prepared_weights(ws, recipe.base)
            check_targets(recipe.base, meta, data.resolve_target_modules(model_dir, recipe.lora.target_modules))
        except StageError as e:
            raise RecipeError(str(e)) from None
        return
    local = ws.resolve_input(recipe.base_model)
    if local.exists() or _looks_local(recipe.base_model):
        model_dir = resolve_model(recipe.base_model, project_root=ws.root)
        check_model_folder(model_dir, recipe.trust_remote_code)
        data.resolve_target_modules(model_dir, recipe.lora.target_modules)
    else:
        check_hub_id(recipe.base_model, lend_token=lend_token)


def check_model_folder(model_dir: Path, trust_remote_code: bool) -> None:
    """A model that needs its own Python code (auto_map in config.json) only with trust_remote_code."""
    from pipeline.data import DataError
    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{model_dir}/config.json is not readable JSON ({type(e).__name__})") from None
    if not isinstance(cfg, dict):
        raise DataError(f"{model_dir}/config.json is not a JSON object")
    if cfg.get("auto_map") and not trust_remote_code:
        raise RecipeError(f"{model_dir} needs its own Python code (auto_map in config.json), which is not "
                          "run unless the recipe sets trust_remote_code: true (only for models you trust)")


def create_job(recipe: Recipe, ws: Workspace | None = None, lend_token: bool = True,
               client: str | None = None) -> Path:
    """Checks the recipe and its inputs (raises RecipeError/DataError with a message that names the
    problem) and makes the job folder. An empty adapter_name is derived (unique) and saved in the job's
    recipe.yaml. client: who asked for it (a web request's address, deploy/clients.py), kept in the folder
    for make_room's per-client share."""
    ws = ws or Workspace.default()
    if not recipe.adapter_name:
        recipe.adapter_name = default_adapter_name(recipe.train_file, ws.adapters)
    preflight(recipe, ws, lend_token)
    # the job runs in the project folder: pin what this process found elsewhere (its working directory)
    recipe.train_file, recipe.eval_file = ws.pin_input(recipe.train_file), ws.pin_input(recipe.eval_file)
    if not recipe.base:
        recipe.base_model = ws.pin_model(recipe.base_model)
    ws.runs.mkdir(parents=True, exist_ok=True)
    job_id = new_job_id(recipe)
    job_dir = ws.runs / job_id
    n = 1
    while job_dir.exists():
        n += 1
        job_dir = ws.runs / f"{job_id}-{n}"
    job_dir.mkdir()
    recipe.save(job_dir / "recipe.yaml")
    if client:
        (job_dir / CLIENT_FILE).write_text(client + "\n")
    return job_dir


CLIENT_FILE = "client"


def client_of_run(job_dir: Path) -> str | None:
    try:
        return (job_dir / CLIENT_FILE).read_text().strip() or None
    except OSError:
        return None


def quota_of_run(job_dir: Path) -> str:
    """Whose share of runs/ and of uploads a run counts against: its client's quota (artifacts/owners.quota_of:
    every login session's together), or UNKNOWN_CLIENT."""
    from artifacts import quota_of
    return quota_of(client_of_run(job_dir)) or UNKNOWN_CLIENT


# what makes huggingface_hub send a token it was not given (the server's own, from the env or its token file)
TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def launch(job_dir: Path, ws: Workspace | None = None, lend_token: bool = True) -> int:
    """Starts (or resumes) the job process in the background; returns its pid. lend_token=False (a job
    asked for by a web request, artifacts.Policy.allow_server_token off): the process gets no Hugging
    Face token and huggingface_hub sends none implicitly, so a request cannot download (or probe) what
    only the server's token can see."""
    ws = ws or Workspace.default()
    if is_running(job_dir):
        raise RuntimeError(f"job {job_dir.name} is already running")
    env = dict(os.environ, STUDIO_HOME=str(ws.root), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # the datasets library copies the training data into its cache: keep that copy with the job (deleted with
    # it), not in the server user's ~/.cache, unless the operator chose a datasets cache
    env.setdefault("HF_DATASETS_CACHE", str(job_dir / "cache" / "datasets"))
    if not lend_token:
        for k in TOKEN_ENV:
            env.pop(k, None)
        env["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
    # written before the process starts, so that a reader never mistakes a (re)launched job for the
    # previous attempt's end
    (job_dir / "pid").unlink(missing_ok=True)
    log = EventLog(job_dir / "events.jsonl")
    log.emit("job_queued", job_id=job_dir.name)
    out = open(job_dir / "process.log", "ab")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "_run-job", str(job_dir)],
                                cwd=str(PROJECT_ROOT), env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
        log.emit("job_end", status="failed", error=f"could not start the job process: {e}")
        raise
    (job_dir / "pid").write_text(f"{proc.pid} {_start_time(proc.pid) or ''}".strip())
    _children[proc.pid] = proc
    return proc.pid


_children: dict[int, subprocess.Popen] = {}  # reaped so that finished jobs do not linger as zombies


def _start_time(pid: int) -> str | None:
    """When process pid started (/proc/<pid>/stat field 22, clock ticks since boot); None without /proc."""
    from pipeline.watch import proc_stat
    fields = proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else None


def _pid(job_dir: Path) -> int | None:
    """The job's process id, or None when the process recorded is gone. The pid file holds the id and the
    process's start time: after a restart of the server (or of the machine) a recycled id names another
    process, which must be neither counted as the job nor signalled by a cancel."""
    try:
        fields = (job_dir / "pid").read_text().split()
        pid = int(fields[0])
    except (OSError, ValueError, IndexError):
        return None
    if pid not in _children:
        now = _start_time(pid)
        if now is not None and (len(fields) < 2 or now != fields[1]):
            return None  # (a pid file without the start time: from before it was recorded, or its process
        # died before it could be read; either way the process is not known to be the job's)
    return pid


def _alive(pid: int) -> bool:
    proc = _children.get(pid)
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie of someone else's counts as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def is_running(job_dir: Path, events: list[dict] | None = None) -> bool:
    if events is None:
        events, _ = read_events(job_dir / "events.jsonl")
    last = events[-1].get("type") if events else None
    if last == "job_end":
        return False
    pid = _pid(job_dir)
    if pid is None:
        return last == "job_queued"  # being launched: the pid file follows in a moment
    return _alive(pid)


def state(job_dir: Path) -> JobState:
    events, _ = read_events(job_dir / "events.jsonl")
    st = JobState.from_events(events)
    if st.status in ("running", "pending") and not is_running(job_dir, events):
        if st.status == "running" or (job_dir / "pid").exists():
            st.interrupt("the job process ended without finishing (killed?); it can be resumed")
    return st


def cancel(job_dir: Path, grace_s: float | None = None) -> float:
    """Stops the job's whole process tree; returns the seconds it took. SIGTERM first (the job writes
    its own 'cancelled' event; fine-tuning checkpoints first), SIGKILL to the group after `grace_s`
    (default: 3 s, 30 s while fine-tuning)."""
    t0 = time.perf_counter()
    pid = _pid(job_dir)
    if pid is None or not _alive(pid):
        return 0.0
    finetune = state(job_dir).stage == "finetune"
    if grace_s is None:
        grace_s = CANCEL_GRACE_FINETUNE_S if finetune else CANCEL_GRACE_S
    try:
        # While fine-tuning, only the leader hears SIGTERM: it ends its step and checkpoints. Its data
        # loader workers (on CUDA) must not: one that dies mid-step fails the step before the checkpoint.
        # They go with the group's SIGKILL below, once the leader is done.
        if finetune:
            os.kill(pid, signal.SIGTERM)
        else:
            os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    while _alive(pid) and time.perf_counter() - t0 < grace_s:
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)  # the leader and anything it left behind
    except ProcessLookupError:
        pass
    while _alive(pid) and time.perf_counter() - t0 < grace_s + 2:
        time.sleep(0.05)
    events, _ = read_events(job_dir / "events.jsonl")
    if not events or events[-1].get("type") != "job_end":
        EventLog(job_dir / "events.jsonl").emit("job_end", status="cancelled", error="cancelled by the user")
    return time.perf_counter() - t0


_ENDED = ("ok", "failed", "cancelled", "interrupted")
_infos: dict[Path, tuple[tuple, JobInfo]] = {}  # ended jobs by the stat of their files (list_jobs)


def _stat_key(d: Path) -> tuple | None:
    try:
        e, r = (d / "events.jsonl").stat(), (d / "recipe.yaml").stat()
    except OSError:
        return None
    return e.st_mtime_ns, e.st_size, r.st_mtime_ns, r.st_size


def list_jobs(ws: Workspace | None = None) -> list[JobInfo]:
    """Every job of the workspace, newest first. An ended job is read again only when its files change (the
    page lists the runs on every load, and every request that fails its build leaves a run)."""
    ws = ws or Workspace.default()
    if not ws.runs.exists():
        return []
    jobs = []
    for d in sorted(ws.runs.iterdir(), reverse=True):
        if d.name.startswith(".") or not (d / "recipe.yaml").exists():
            continue
        key = _stat_key(d)
        hit = _infos.get(d)
        if key is not None and hit is not None and hit[0] == key:
            jobs.append(hit[1])
            continue
        st = state(d)
        try:
            adapter = Recipe.load(d / "recipe.yaml").adapter_name
        except Exception:
            adapter = "?"
        info = JobInfo(d.name, d, st.status, adapter, st.started, st.error)
        if key is not None and st.status in _ENDED:
            _infos[d] = (key, info)
        jobs.append(info)
    return jobs


def holds_work(st: JobState) -> bool:
    """Whether an ended run holds work worth keeping: it finished, or a stage past `prepare` ended (AWQ weights,
    an ONNX base, an adapter), or fine-tuning took a step (its checkpoint resumes it)."""
    return st.status == "ok" or st.stages.get("finetune", {}).get("done", 0) > 0 or \
        any(v["state"] == "done" for name, v in st.stages.items() if name != "prepare")


def run_kind(d: Path) -> tuple[JobState, str]:
    """A run's state and what it holds: "live" (running or pending), "empty" (ended without work), "finished"
    (ended ok) or "resumable" (ended with work, not finished). make_room and uploads_in_use both go by it."""
    st = state(d)
    if st.status not in _ENDED or is_running(d):
        return st, "live"
    return st, "empty" if not holds_work(st) else "finished" if st.status == "ok" else "resumable"


def _recipe_data_files(f: Path) -> list[str]:
    """The train_file and eval_file of a saved recipe, read from their top-level entries (a full Recipe.load costs
    ~1.5 ms, and uploads_in_use reads every run). An entry is its line and the indented lines after it (YAML
    folds a long quoted value, e.g. a non-ASCII path, onto a second line: pass 27). Raises when an entry does not
    parse: the caller then reads the whole recipe."""
    import yaml
    out, block = [], None
    with open(f, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    for line in lines + [""]:
        if block is not None and line[:1] in (" ", "\t"):
            block.append(line)
            continue
        if block is not None:
            v = yaml.safe_load("\n".join(block))
            v = next(iter(v.values())) if isinstance(v, dict) and len(v) == 1 else None
            if isinstance(v, str) and v.strip():
                out.append(v.strip())
            block = None
        if line.startswith(("train_file:", "eval_file:")):
            block = [line]
    return out


def _run_data_files(f: Path) -> list[str]:
    try:
        return _recipe_data_files(f)
    except Exception:  # noqa: BLE001 - an entry the line reader cannot take: the whole recipe, the slow way
        r = Recipe.load(f)
        return [p.strip() for p in (r.train_file, r.eval_file) if p and p.strip()]


def uploads_in_use(ws: Workspace, share_bytes: int | None = None, total_bytes: int | None = None) -> set[str]:
    """Names of the files in uploads/ that a run needs: its recipe names them as training or held-out data (a path
    relative to the workspace or, as the app records it, an absolute one). They stay when uploads/ makes room
    (artifacts.limits.make_uploads_room).
    - A running or pending run's data is always kept.
    - A resumable run's (ended, not finished, holding work: resuming reads its data again) is kept within
      `share_bytes` per client (its recorded address; runs without one count as one client) and `total_bytes`
      for all resumable runs together: each client's newest run first, clients round by round.
    - A finished run or one that ended without work needs nothing (passes 25-26: start-and-cancel, and finished
      builds, pinned uploads for good; four quarters pinned the whole folder)."""
    if not ws.runs.exists():
        return set()
    up = os.path.realpath(ws.uploads)
    keep: set[str] = set()
    ended: list = []  # (run start, run name, client, [names])
    for d in ws.runs.iterdir():
        f = d / "recipe.yaml"
        if d.name.startswith(".") or d.is_symlink() or not f.is_file():
            continue
        try:
            st, kind = run_kind(d)
            if kind in ("empty", "finished"):
                continue
            paths = _run_data_files(f)
        except Exception:  # noqa: BLE001 - a run folder being written or damaged: nothing it names is known
            continue
        names = []
        for p in paths:
            p = p.replace("\\", "/")
            full = os.path.realpath(p if os.path.isabs(p) else os.path.join(ws.root, p))
            if os.path.dirname(full) == up:
                names.append(os.path.basename(full))
        if kind == "live":
            keep.update(names)
        elif names:
            ended.append((st.started or 0.0, d.name, quota_of_run(d), names))
    # each client's newest run first, then its next ones, round by round; within a round the oldest run first,
    # so newer runs of other clients cannot push a client's run out of the total (pass 27)
    by_client: dict[str, list] = {}
    for run in sorted(ended, reverse=True):
        by_client.setdefault(run[2], []).append(run)
    order = [run for k in range(max((len(v) for v in by_client.values()), default=0))
             for run in sorted(v[k] for v in by_client.values() if k < len(v))]
    held: dict[str, int] = {}
    total = 0
    for _, _, client, names in order:
        for n in names:
            if n in keep:
                continue
            try:
                size = (ws.uploads / n).stat().st_size
            except OSError:
                continue
            mine = held.get(client, 0)
            if (share_bytes is not None and mine + size > share_bytes) or \
                    (total_bytes is not None and total + size > total_bytes):
                continue
            held[client], total = mine + size, total + size
            keep.add(n)
    return keep


UNKNOWN_CLIENT = "?"  # the share of runs whose client is not known (the command line, a tunnel without addresses)


def make_room(ws: Workspace, limit: int, keep_s: float = 24 * 3600.0) -> list[str]:
    """Makes room in runs/ for one more run; returns the ids removed. Until runs/ holds fewer than `limit` folders:

    - the oldest ended runs that hold no work (holds_work), then the oldest that finished (their adapter is
      published and stays; the run's log and loss curve go);
    - then resumable runs (ended with work, not finished) of a client that holds more than a quarter of `limit`
      of them, the one holding most first, its oldest first. Runs without a recorded client count as one client;
    - then any resumable run that ended more than `keep_s` ago (24 h; $STUDIO_RUN_KEEP_H), oldest first: four
      clients holding a quarter each had locked runs/ for good (pass 22).
    A running or pending run is never removed, nor a resumable run of a client within its quarter: when only those
    are left, there is no room (artifacts.limits.check_runs_room says so). Red-team passes 18-21: start-and-cancel
    filled runs/ and refused every later build for good; removing runs with work let start, prepare, cancel erase
    other users' resumable runs; keeping every run with work let complete 9 s builds fill it for good; trimming a
    client's runs while there was room, or by a client the requester could pretend to be, erased others' runs."""
    if not ws.runs.exists():
        return []
    for left in ws.runs.glob(".*.removing"):  # a removal cut short before
        shutil.rmtree(left, ignore_errors=True)
    dirs = [d for d in ws.runs.iterdir() if d.is_dir() and not d.is_symlink() and not d.name.startswith(".")]
    excess = len(dirs) - limit + 1
    if excess <= 0:
        return []
    empty, finished, resumable = [], [], {}
    for d in dirs:
        st, kind = run_kind(d)
        when = (st.ended or st.started or 0.0, d.name, d)
        if kind == "empty":
            empty.append(when)
        elif kind == "finished":
            finished.append(when)
        elif kind == "resumable":
            resumable.setdefault(quota_of_run(d), []).append(when)
    gone = [d for _, _, d in (sorted(empty) + sorted(finished))[:excess]]
    share = max(1, limit // 4)
    for runs in resumable.values():
        runs.sort()
    while len(gone) < excess:
        most = max(resumable.values(), key=len, default=[])
        if len(most) <= share:
            break
        gone.append(most.pop(0)[2])
    cut = time.time() - keep_s
    old = sorted(w for runs in resumable.values() for w in runs if w[0] < cut)
    gone += [d for _, _, d in old[:max(0, excess - len(gone))]]
    removed = []
    for d in gone:
        trash = d.with_name(f".{d.name}.removing")
        try:
            d.rename(trash)  # gone from the page at once; deleted below
        except OSError:
            continue
        shutil.rmtree(trash, ignore_errors=True)
        _infos.pop(d, None)
        removed.append(d.name)
    return removed


def wait(job_dir: Path, timeout_s: float | None = None, poll_s: float = 0.2) -> JobState:
    t0 = time.time()
    while is_running(job_dir):
        if timeout_s is not None and time.time() - t0 > timeout_s:
            break
        time.sleep(poll_s)
    return state(job_dir)


def summary(job_dir: Path) -> dict:
    st = state(job_dir)
    return {"job_id": job_dir.name, "status": st.status, "error": st.error, "result": st.result,
            "stages": st.stages}


def dump(job_dir: Path) -> str:
    return json.dumps(summary(job_dir), indent=2)

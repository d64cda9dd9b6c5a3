"""Crash and cancel test of build jobs on the embedded default model (CPU).

1. kill -9 of the job's process group during each stage (prepare, awq forced on CPU with few calibration
   samples, finetune, onnx, adapter), the moment found from the job's events; then `resume`: the job
   continues from the last finished stage and ends ok. Meanwhile a watcher thread lists the adapter
   library (artifacts.list_adapters) every 20 ms: it must never list a broken adapter.
2. cancel (pipeline.jobs.cancel) during finetune and during the ONNX build (whose builder is a child
   process), several times each (resume in between): seconds until the whole process tree is gone.

  python bench/crash_test.py [--cancels 4] [--out bench/results/crash-<date>.json]

HF_TOKEN is set to a recognizable fake value for every job; afterwards runs/ is searched for it."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

import artifacts as library  # noqa: E402
from pipeline import jobs  # noqa: E402
from pipeline.events import read_events  # noqa: E402
from pipeline.recipe import Recipe  # noqa: E402
from pipeline.stages import STAGE_NAMES as STAGES  # noqa: E402
from artifacts import Workspace  # noqa: E402

FAKE_TOKEN = "hf_FAKEtokenHARDENING0123456789abcdef"


def make_ws(root: Path) -> Workspace:
    for d in ("models", "adapters"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.symlink(ROOT / "models" / "default-hf", root / "models" / "default-hf")
    os.symlink(ROOT / "data", root / "data")
    return Workspace(root)


def recipe(name: str, awq: bool = True, steps: int = 12) -> Recipe:
    r = Recipe(base="", base_model="models/default-hf", train_file="data/travel/train.jsonl",
               eval_file="data/travel/test.jsonl", adapter_name=name, base_name="crash-int4")
    # (4 samples of 64 tokens make autoawq fail: it drops texts longer than the block length)
    r.awq.enabled, r.awq.device, r.awq.calib_samples, r.awq.calib_seq_len = awq, "cpu", 8, 256
    r.lora.max_steps, r.lora.batch_size, r.lora.max_seq_len, r.lora.eval_steps = steps, 4, 128, 6
    r.onnx.precision, r.onnx.execution_provider = "int4", "cpu"
    return r


def events(job: Path) -> list[dict]:
    return read_events(job / "events.jsonl")[0]


def running_stage(job: Path, since: int) -> str | None:
    cur = None
    for e in events(job)[since:]:
        if e["type"] == "stage_start":
            cur = e["stage"]
        elif e["type"] in ("stage_end", "stage_skip") and e.get("stage") == cur:
            cur = None
    return cur


def tree(pid: int) -> list[psutil.Process]:
    try:
        p = psutil.Process(pid)
        return [p] + p.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def wait_for(cond, timeout: float, what: str, poll: float = 0.02):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class LibraryWatcher(threading.Thread):
    """Lists the adapter library every 20 ms; records every listed adapter that is not ok."""

    def __init__(self, ws: Workspace):
        super().__init__(daemon=True)
        self.ws, self.stop, self.checks, self.broken = ws, threading.Event(), 0, []

    def run(self):
        while not self.stop.is_set():
            base = self.ws.models / "crash-int4"
            if (base / "base.json").exists():
                for a in library.list_adapters(self.ws.adapters, base):
                    if not a.ok:
                        self.broken.append((time.time(), a.name, a.reason))
            else:
                names = [d.name for d in library.adapter_dirs(self.ws.adapters)]
                if names:
                    self.broken.append((time.time(), ",".join(names), "adapter listed before its base"))
            self.checks += 1
            time.sleep(0.02)


def at_moment(job: Path, n0: int, stage: str, pid: int) -> bool:
    """Whether `stage` runs (events from n0 on) and has reached the moment to strike: finetune once
    training steps come, onnx once the builder child runs, any other stage at its stage_start."""
    if running_stage(job, n0) != stage:
        return False
    if stage == "finetune":
        return any(e["type"] == "step" for e in events(job)[n0:])
    if stage == "onnx":
        return any("onnxruntime_genai.models.builder" in " ".join(p.cmdline()) for p in alive(tree(pid)))
    return True


def kill_during(job: Path, ws: Workspace, stage: str, timeout: float = 900) -> dict:
    """(Re)starts the job, waits until `stage` is running, kill -9 of its process group."""
    n0 = len(events(job))
    pid = jobs.launch(job, ws)
    t0 = time.time()
    try:
        wait_for(lambda: at_moment(job, n0, stage, pid) or not jobs.is_running(job), timeout, f"stage {stage}",
                 poll=0.01)
    except TimeoutError:
        pass
    st_at_kill = running_stage(job, n0)
    if st_at_kill is None and not jobs.is_running(job):
        raise RuntimeError(f"the job ended before stage {stage}: {jobs.state(job).status} {jobs.state(job).error}")
    procs = alive(tree(pid))
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not alive(procs), 10, "the killed tree to go")
    proc = jobs._children.pop(pid, None)
    if proc is not None:
        proc.wait(10)  # reap it, as the app or the CLI would
    done = sorted(p.parent.name for p in (job / "stages").glob("*/DONE.json"))
    return {"target": stage, "running_at_kill": st_at_kill, "after_s": round(time.time() - t0, 2),
            "processes_killed": len(procs), "stages_done": done,
            "state_after": jobs.state(job).status}


def crash_resume(ws: Workspace) -> dict:
    job = jobs.create_job(recipe("crash"), ws)
    kills = []
    # publish is one rename (atomic, instantaneous): a kill there cannot be timed reliably, so the job often
    # ends first; its atomicity is the rename's (artifacts.publish), and the library checker runs throughout
    for stage in [s for s in STAGES if s != "publish"]:
        for attempt in range(1, 4):
            k = kill_during(job, ws, stage)
            k["attempt"] = attempt
            print("kill", k, flush=True)
            if stage not in k["stages_done"] or attempt == 3:
                break
            # a short stage (adapter: one file conversion) can finish between the poll that saw it running and
            # the kill: forget its result and what came after (as if the kill had landed) and strike it again
            for later in STAGES[STAGES.index(stage):]:
                (job / "stages" / later / "DONE.json").unlink(missing_ok=True)
        kills.append(k)
    n0 = len(events(job))
    jobs.launch(job, ws)
    st = jobs.wait(job, timeout_s=1800)
    ev = events(job)[n0:]
    resumed = [e["stage"] for e in ev if e["type"] == "stage_skip" and e.get("resumed")]
    leftovers = [str(p.relative_to(ws.root)) for d in (ws.adapters, ws.models, ws.cache) if d.exists()
                 for p in d.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    ad = [a for a in library.list_adapters(ws.adapters, ws.models / "crash-int4") if a.name == "crash"]
    return {"job": job.name, "kills": kills, "final_status": st.status, "final_error": st.error,
            "resumed_stages_last_attempt": resumed, "leftover_tmp": leftovers,
            "adapter_ok": bool(ad and ad[0].ok), "adapter_reason": ad[0].reason if ad else "missing"}


def cancel_times(ws: Workspace, n: int) -> dict:
    """n cancels during finetune, then n during the ONNX builder, resuming in between."""
    job = jobs.create_job(recipe("cancel", awq=False, steps=10), ws)
    out = {"finetune": [], "onnx": []}
    for stage in ("finetune", "onnx"):
        for i in range(n):
            shutil.rmtree(ws.models / "crash-int4", ignore_errors=True)
            for c in ws.cache.glob("onnx-*") if ws.cache.exists() else []:
                shutil.rmtree(c, ignore_errors=True)  # so that the ONNX stage builds (no cache hit)
            n0 = len(events(job))
            pid = jobs.launch(job, ws)
            wait_for(lambda: at_moment(job, n0, stage, pid) or not jobs.is_running(job), 900, f"{stage} to run",
                     poll=0.01)
            if running_stage(job, n0) != stage:
                raise RuntimeError(f"stage {stage} did not run: {jobs.state(job).status} {jobs.state(job).error}")
            procs = alive(tree(pid))
            t0 = time.perf_counter()
            secs = jobs.cancel(job)
            wait_for(lambda: not alive(procs), 30, "the cancelled tree to go", poll=0.005)
            gone = time.perf_counter() - t0
            leftover = [p.pid for p in alive(procs)]
            st = jobs.state(job)
            out[stage].append({"cancel_s": round(secs, 3), "tree_gone_s": round(gone, 3),
                               "processes": len(procs), "left": leftover, "status": st.status})
            print("cancel", stage, out[stage][-1], flush=True)
    # finally it still completes
    n0 = len(events(job))
    jobs.launch(job, ws)
    st = jobs.wait(job, timeout_s=1800)
    summary = {}
    for stage, rows in out.items():
        g = [r["tree_gone_s"] for r in rows]
        summary[stage] = {"n": len(g), "median_s": round(statistics.median(g), 3), "max_s": round(max(g), 3),
                          "processes_max": max(r["processes"] for r in rows),
                          "all_status_cancelled": all(r["status"] == "cancelled" for r in rows)}
    return {"job": job.name, "rows": out, "summary": summary, "final_status": st.status}


def token_leaks(ws: Workspace, token: str) -> list[str]:
    hits = []
    for p in ws.root.rglob("*"):
        if p.is_file() and not p.is_symlink() and p.stat().st_size < 50_000_000:
            try:
                if token.encode() in p.read_bytes():
                    hits.append(str(p.relative_to(ws.root)))
            except OSError:
                pass
    return hits


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cancels", type=int, default=4)
    ap.add_argument("--out", default="")
    ap.add_argument("--skip-crash", action="store_true")
    ap.add_argument("--skip-cancel", action="store_true")
    args = ap.parse_args(argv)
    saved = dict(os.environ)
    try:
        return _main(args)
    finally:  # called from a test: leave the environment as it was
        os.environ.clear()
        os.environ.update(saved)


def _main(args) -> dict:
    os.environ["HF_TOKEN"] = FAKE_TOKEN
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tmp = Path(tempfile.mkdtemp(prefix="crash-"))
    ws = make_ws(tmp / "ws")
    os.environ["STUDIO_HOME"] = str(ws.root)
    watcher = LibraryWatcher(ws)
    watcher.start()
    res: dict = {"device": "cpu", "cpus": os.cpu_count()}
    t0 = time.time()
    try:
        if not args.skip_crash:
            res["crash_resume"] = crash_resume(ws)
        watcher.stop.set()  # the cancel part deletes the base on purpose (to rebuild the ONNX stage)
        if not args.skip_cancel:
            res["cancel"] = cancel_times(ws, args.cancels)
    finally:
        watcher.stop.set()
        watcher.join()
        for d in ws.runs.glob("*") if ws.runs.exists() else []:
            jobs.cancel(d)
    res["library_checks"] = watcher.checks
    res["library_broken_listings"] = watcher.broken[:20]
    res["token_leaks"] = token_leaks(ws, FAKE_TOKEN)
    res["seconds"] = round(time.time() - t0, 1)
    res["workspace"] = str(ws.root)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k != "cancel"}, indent=2))
    if "cancel" in res:
        print(json.dumps(res["cancel"]["summary"], indent=2))
    return res


if __name__ == "__main__":
    main()

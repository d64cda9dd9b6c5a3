"""The job's event log: one JSON object per line, appended by the job process, read by the UI and CLI.

Readers keep a byte offset and only read complete lines, so a UI that reconnects (or a browser that
refreshes) simply re-reads the file from the start and is back in sync with a running job.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from pipeline.stages import STAGE_NAMES, WEIGHTS
from artifacts.limits import without_surrogates


class EventLog:
    def __init__(self, path: str | Path, echo: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self._lock = threading.Lock()

    def emit(self, type: str, **fields) -> dict:
        event = {"t": round(time.time(), 3), "type": type, **fields}
        line = json.dumps(event, default=str, ensure_ascii=False) + "\n"
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (refused in recipes and data; from a library's text here)
            event = without_surrogates(event)
            line = json.dumps(event, default=str, ensure_ascii=False) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        if self.echo:
            print(format_event(event), flush=True)
        return event

    def log(self, message: str, level: str = "info") -> None:
        self.emit("log", level=level, message=str(message))

    def progress(self, stage: str, done: int, total: int) -> None:
        self.emit("progress", stage=stage, done=int(done), total=int(total))


def read_events(path: str | Path, offset: int = 0) -> tuple[list[dict], int]:
    """Complete events after byte `offset`, and the offset to continue from."""
    path = Path(path)
    if not path.exists():
        return [], offset
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    events = []
    for raw in data[:end].splitlines():
        try:
            events.append(json.loads(raw))
        except json.JSONDecodeError:
            continue  # a torn line from a killed writer: skip it
    return events, offset + end


def seconds_run(path: str | Path) -> float:
    """How long a job's attempts ran in all: from each job_start to its job_end, or, for an attempt that was killed
    without one, to its last event (the operator's time limit counts a web client's build over all its attempts:
    pipeline/watch.py)."""
    events, _ = read_events(path)
    total, start, last = 0.0, None, None
    for e in events:
        t = e.get("t")
        if not isinstance(t, (int, float)):
            continue
        if e.get("type") == "job_start":
            if start is not None and last is not None:
                total += max(0.0, last - start)
            start = last = t
        elif start is not None:
            last = t
            if e.get("type") == "job_end":
                total += max(0.0, t - start)
                start = last = None
    if start is not None and last is not None:
        total += max(0.0, last - start)
    return total


def format_event(e: dict) -> str:
    ts = time.strftime("%H:%M:%S", time.localtime(e.get("t", 0)))
    kind = e.get("type")
    if kind == "log":
        return f"{ts} [{e.get('level', 'info')}] {e.get('message', '')}"
    if kind == "step":
        lr = e.get("lr")
        return f"{ts} step {e.get('step')}: loss {e.get('loss'):.4f}" + (f" lr {lr:.2e}" if lr else "")
    if kind == "eval":
        return f"{ts} step {e.get('step')}: held-out loss {e.get('eval_loss'):.4f}"
    if kind == "stage_start":
        return f"{ts} == {e['stage']} =="
    if kind == "stage_end":
        return f"{ts} == {e['stage']} done in {e.get('seconds', 0):.1f} s =="
    if kind == "stage_skip":
        return f"{ts} == {e['stage']} skipped: {e.get('reason', '')} =="
    if kind == "resume":
        return f"{ts} {e.get('stage')}: resumed at step {e.get('step')}"
    if kind == "eval_result":
        return (f"{ts} held-out loss on the served model ({e.get('n')} examples): base "
                f"{e.get('base_loss', 0):.4f} (ppl {e.get('base_ppl', 0):.2f}) -> adapter "
                f"{e.get('adapter_loss', 0):.4f} (ppl {e.get('adapter_ppl', 0):.2f})")
    if kind == "progress":
        return f"{ts} {e['stage']}: {e['done']}/{e['total']}"
    if kind == "job_start":
        return f"{ts} job {e.get('job_id')} started"
    if kind == "job_queued":
        return f"{ts} job {e.get('job_id')} launched"
    if kind == "job_end":
        err = f": {e['error']}" if e.get("error") else ""
        return f"{ts} job {e.get('status')}{err}"
    return f"{ts} {json.dumps(e, default=str)}"


class JobState:
    """Everything the UI shows about a job, folded from its events.

    stages[name]: state (waiting | running | done | cached | skipped | failed | cancelled | interrupted),
    seconds (all attempts added up), done/total (progress), reason (why skipped or cached).
    started: the first attempt's start; resumed_step: the fine-tuning step the last resume continued at;
    eval: the evaluate stage's result (as in the adapter's metadata.json "eval")."""

    def __init__(self):
        self.status = "pending"
        self.error = ""
        self.stage = ""
        self.stages: dict[str, dict] = {s: {"state": "waiting", "seconds": None, "done": 0, "total": 0,
                                            "reason": ""} for s in STAGE_NAMES}
        self.steps: list[tuple[int, float]] = []
        self.evals: list[tuple[int, float]] = []
        self.lines: list[str] = []
        self.result: dict = {}
        self.started = None
        self.ended = None
        self.resumed_step: int | None = None
        self.eval: dict = {}

    def apply(self, e: dict) -> None:
        kind = e.get("type")
        self.lines.append(format_event(e))
        st = self.stages.get(e.get("stage", ""), None)
        if kind == "job_queued":
            self.status, self.error = "pending", ""
        elif kind == "job_start":
            self.status, self.error = "running", ""
            self.started = self.started or e.get("t")  # the job's start: kept across attempts
            self.ended = None
            for s in self.stages.values():
                if s["state"] in ("running", "failed", "cancelled", "interrupted"):
                    s["state"] = "waiting"
        elif kind == "job_end":
            self.status, self.ended = e.get("status", "failed"), e.get("t")
            self.error = e.get("error", "")
            self.result = e.get("result") or self.result
            for s in self.stages.values():
                if s["state"] == "running":
                    s["state"] = "failed" if self.status == "failed" else self.status
        elif kind == "stage_start" and st is not None:
            self.stage = e["stage"]
            st["state"] = "running"
        elif kind == "stage_end" and st is not None:
            st["state"], st["seconds"] = "done", e.get("seconds")
        elif kind == "stage_skip" and st is not None:
            if e.get("resumed"):  # finished in an earlier attempt: as it ended then
                st["state"], st["reason"] = e.get("state", "done"), e.get("was", "")
            else:
                st["state"] = "cached" if e.get("cached") else "skipped"
                st["reason"] = e.get("reason", "")
            st["seconds"] = e.get("seconds", st["seconds"])
        elif kind == "progress" and st is not None:
            st["done"], st["total"] = e.get("done", 0), e.get("total", 0)
        elif kind == "step":
            self.steps.append((int(e["step"]), float(e["loss"])))
        elif kind == "eval":
            self.evals.append((int(e["step"]), float(e["eval_loss"])))
        elif kind == "resume":
            self.resumed_step = int(e.get("step", 0))
            # the curve continues at the checkpoint: points after it from the cancelled attempt go
            self.steps = [p for p in self.steps if p[0] <= self.resumed_step]
            self.evals = [p for p in self.evals if p[0] <= self.resumed_step]
        elif kind == "eval_result":
            self.eval = {k: v for k, v in e.items() if k not in ("t", "type")}

    @classmethod
    def from_events(cls, events: list[dict]) -> "JobState":
        state = cls()
        for e in events:
            state.apply(e)
        return state

    def interrupt(self, error: str) -> None:
        """The job's process is gone without a job_end (kill -9, a crash): nothing is running any more."""
        self.status, self.error = "interrupted", error
        for s in self.stages.values():
            if s["state"] == "running":
                s["state"] = "interrupted"

    def fraction(self) -> float:
        total = 0.0
        for name, s in self.stages.items():
            if s["state"] in ("done", "cached", "skipped"):
                total += WEIGHTS[name]
            elif s["state"] in ("running", "cancelled", "interrupted", "failed") and s["total"]:
                total += WEIGHTS[name] * min(1.0, s["done"] / s["total"])
        return round(total, 3)

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

STAGES = ["prepare", "awq", "finetune", "onnx", "adapter"]


class EventLog:
    def __init__(self, path: str | Path, echo: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self._lock = threading.Lock()

    def emit(self, type: str, **fields) -> dict:
        event = {"t": round(time.time(), 3), "type": type, **fields}
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
    """Everything the UI shows about a job, folded from its events."""

    def __init__(self):
        self.status = "pending"
        self.error = ""
        self.stage = ""
        self.stages: dict[str, dict] = {s: {"state": "waiting", "seconds": None, "done": 0, "total": 0}
                                        for s in STAGES}
        self.steps: list[tuple[int, float]] = []
        self.evals: list[tuple[int, float]] = []
        self.lines: list[str] = []
        self.result: dict = {}
        self.started = None
        self.ended = None

    def apply(self, e: dict) -> None:
        kind = e.get("type")
        self.lines.append(format_event(e))
        st = self.stages.get(e.get("stage", ""), None)
        if kind == "job_queued":
            self.status, self.error = "pending", ""
        elif kind == "job_start":
            self.status, self.started, self.error = "running", e.get("t"), ""
            for s in self.stages.values():
                if s["state"] in ("running", "failed"):
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
            st["state"] = "cached" if e.get("cached") else "skipped"
            st["seconds"] = e.get("seconds", st["seconds"])
        elif kind == "progress" and st is not None:
            st["done"], st["total"] = e.get("done", 0), e.get("total", 0)
        elif kind == "step":
            self.steps.append((int(e["step"]), float(e["loss"])))
        elif kind == "eval":
            self.evals.append((int(e["step"]), float(e["eval_loss"])))

    @classmethod
    def from_events(cls, events: list[dict]) -> "JobState":
        state = cls()
        for e in events:
            state.apply(e)
        return state

    def fraction(self) -> float:
        weights = {"prepare": 0.05, "awq": 0.2, "finetune": 0.45, "onnx": 0.2, "adapter": 0.1}
        total = 0.0
        for name, s in self.stages.items():
            if s["state"] in ("done", "cached", "skipped"):
                total += weights[name]
            elif s["state"] == "running" and s["total"]:
                total += weights[name] * min(1.0, s["done"] / s["total"])
        return round(total, 3)

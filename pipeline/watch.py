"""Stops a build run at the operator's limits: its time ($STUDIO_MAX_JOB_MIN) and the memory its processes
hold ($STUDIO_MAX_JOB_MEM_GB). A stop is a cancel: SIGTERM to the job itself (fine-tuning ends its step and
checkpoints, so Resume continues), then, after the cancel grace, the job's process group is killed with the
event written first."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from artifacts.limits import JOB_MEMORY_ENV, JOB_MINUTES_ENV, max_job_memory_bytes, max_job_seconds

POLL_S = 0.5
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def time_limit_message(limit_s: float, counted: bool = False) -> str:
    if counted:  # a web client's build: its attempts together (a resume does not start the clock again)
        return (f"stopped at the operator's time limit of {limit_s / 60:g} min per build, its attempts together "
                f"({JOB_MINUTES_ENV}); it cannot run longer from the page (a build with fewer steps can)")
    return (f"stopped at the operator's time limit of {limit_s / 60:g} min per run ({JOB_MINUTES_ENV}); "
            "Resume continues where it stopped")


def memory_limit_message(used: int, limit: int) -> str:
    return (f"stopped at the operator's memory limit of {limit / 1e9:g} GB per run ({JOB_MEMORY_ENV}): the job's "
            f"processes held {used / 1e9:.2f} GB; Resume continues where it stopped (a smaller batch size or "
            "sequence length needs less)")


def proc_stat(pid) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3, the state, first), or None. The name (field
    2) is in parentheses and may hold spaces: the fields start after its last ')'."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def tree_rss_bytes(root: int) -> int:
    """Resident memory of `root` and every process below it (children of children too), from /proc. Processes
    that end while it reads are skipped; 0 where /proc is not there."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for e in entries:
        fields = proc_stat(e) if e.isdigit() else None
        if fields is None:
            continue
        try:
            parents[int(e)] = int(fields[1])    # field 4: ppid
            rss[int(e)] = int(fields[21]) * _PAGE  # field 24: rss in pages
        except (IndexError, ValueError):
            continue
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    total, todo, seen = 0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return total


class LimitWatch:
    """A daemon thread that stops this process's run when it passes a limit; `reason` says which (None while
    none was passed). `on_stop(reason)` writes the job's end event before the group is killed."""

    def __init__(self, on_stop, env=None, used_s: float | None = None):
        """used_s: the time the job's earlier attempts ran, counted against the time limit (a web client's build,
        red-team pass 33: a resume started the clock again, so one client held the only build slot for as long
        as it liked); None: this attempt only (the operator's)."""
        self.time_limit = max_job_seconds(env)
        self.used_s = used_s
        self.memory_limit = max_job_memory_bytes(env)
        self.reason: str | None = None
        self._on_stop = on_stop
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self.time_limit is not None or self.memory_limit is not None

    def start(self) -> "LimitWatch":
        if self.active:
            self._thread = threading.Thread(target=self._watch, name="limit-watch", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()

    def _passed(self, started: float) -> str | None:
        if self.time_limit is not None and (self.used_s or 0.0) + time.monotonic() - started >= self.time_limit:
            return time_limit_message(self.time_limit, self.used_s is not None)
        if self.memory_limit is not None:
            used = tree_rss_bytes(os.getpid())
            if used > self.memory_limit:
                return memory_limit_message(used, self.memory_limit)
        return None

    def _watch(self) -> None:
        from pipeline.jobs import CANCEL_GRACE_FINETUNE_S
        started = time.monotonic()
        while not self._done.wait(POLL_S):
            reason = self._passed(started)
            if reason is None:
                continue
            self.reason = reason
            os.kill(os.getpid(), signal.SIGTERM)
            if self._done.wait(CANCEL_GRACE_FINETUNE_S):
                return  # the run ended by itself within the grace
            self._on_stop(reason)
            if os.getpgrp() == os.getpid():  # jobs.launch starts the job as its own process group
                os.killpg(os.getpgrp(), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)

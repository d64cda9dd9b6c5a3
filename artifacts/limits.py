"""Limits shared by the app and the pipeline: upload and dataset file size, prompt characters, the text
template rule, seed range, finite sampling values. Standard library only."""
from __future__ import annotations

import math
import os
import shutil
import string
from typing import Mapping

UPLOAD_ENV = "STUDIO_MAX_UPLOAD_MB"
MAX_UPLOAD_MB_DEFAULT = 8.0  # uploads to the app (and request bodies) and dataset files


def max_upload_bytes(env: Mapping[str, str] | None = None) -> int:
    """The size limit for uploads, request bodies and dataset files: $STUDIO_MAX_UPLOAD_MB, default 8 MB."""
    env = os.environ if env is None else env
    try:
        mb = float(env.get(UPLOAD_ENV, MAX_UPLOAD_MB_DEFAULT))
    except ValueError:
        mb = MAX_UPLOAD_MB_DEFAULT
    return int(mb * 1e6)

UPLOADS_ENV = "STUDIO_MAX_UPLOADS_MB"
MAX_UPLOADS_MB_DEFAULT = 256.0  # all the files kept in <workspace>/uploads/ together
EXPORTS_ENV = "STUDIO_MAX_EXPORTS"
MAX_EXPORTS_DEFAULT = 8         # exported Space folders in <workspace>/exports/ (each a copy of a base)


def _env_number(env, name: str, default: float) -> float:
    env = os.environ if env is None else env
    try:
        v = float(env.get(name, default))
    except ValueError:
        return default
    return v if math.isfinite(v) and v >= 0 else default


def check_uploads_room(folder, new_bytes: int, env: Mapping[str, str] | None = None) -> None:
    """LimitError when keeping `new_bytes` more in the uploads folder would pass $STUDIO_MAX_UPLOADS_MB
    (default 256) for all its files together: requests cannot fill the disk."""
    limit = int(_env_number(env, UPLOADS_ENV, MAX_UPLOADS_MB_DEFAULT) * 1e6)
    used = 0
    try:
        with os.scandir(folder) as it:
            for e in it:
                if e.is_file(follow_symlinks=False):
                    used += e.stat(follow_symlinks=False).st_size
    except FileNotFoundError:
        pass
    if used + new_bytes > limit:
        raise LimitError(f"the uploads folder is full ({used / 1e6:.0f} MB of {limit / 1e6:g} MB): the operator "
                         f"can remove old runs or uploads, or raise {UPLOADS_ENV}")


def max_uploads_bytes(env: Mapping[str, str] | None = None) -> int:
    """$STUDIO_MAX_UPLOADS_MB (256) in bytes: all the files of uploads/ together."""
    return int(_env_number(env, UPLOADS_ENV, MAX_UPLOADS_MB_DEFAULT) * 1e6)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB" if n >= 1000 else f"{n} bytes"


def make_uploads_room(folder, new_bytes: int, in_use=frozenset(), env: Mapping[str, str] | None = None) -> list[str]:
    """Makes room for `new_bytes` more under $STUDIO_MAX_UPLOADS_MB by removing the least recently used files of
    the uploads folder that no run needs; returns the names removed. `in_use`: the names runs need, or a callable
    giving them, called only when room must be made (it reads every run's recipe). A file in use, a link or
    anything not a plain file is never removed. LimitError, with nothing removed, when the new file would not fit
    even with every removable file gone.
    Red-team passes 24-26: uploads were only ever refused, so a few clients with fresh content filled uploads/ once
    and every later upload was refused for good; then a refused upload first removed every removable file; then
    every upload into a full folder read every run. Room is made down to nine tenths of the limit."""
    limit = max_uploads_bytes(env)
    files, used = [], 0
    try:
        with os.scandir(folder) as it:
            for e in it:
                if e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    used += st.st_size
                    files.append((st.st_mtime, e.name, st.st_size))
    except FileNotFoundError:
        return []
    if used + new_bytes <= limit:
        return []
    keep = in_use() if callable(in_use) else in_use
    removable = sorted(f for f in files if f[1] not in keep)
    kept = used - sum(f[2] for f in removable)
    if kept + new_bytes > limit:
        raise LimitError(f"the uploads folder is full: this file ({_size(new_bytes)}) does not fit in "
                         f"{_size(limit)} beside the {_size(kept)} that runs still use; the operator can "
                         f"remove old runs or raise {UPLOADS_ENV}")
    # room for the new file and a tenth of the folder more (when files that can go allow it), so that the uploads
    # after it do not each read every run again (pass 26: ~2 CPU-s an upload with 1,000 runs and a full folder)
    goal = max(limit - limit // 10, kept + new_bytes)
    removed = []
    for _, name, size in removable:
        if used + new_bytes <= goal:
            break
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            continue
        used -= size
        removed.append(name)
    return removed


FREE_DISK_ENV = "STUDIO_MIN_FREE_GB"
MIN_FREE_GB_DEFAULT = 5.0       # a build from the app starts only with this much free disk under the workspace


def check_build_room(folder, env: Mapping[str, str] | None = None) -> None:
    """LimitError when the disk holding `folder` has less than $STUDIO_MIN_FREE_GB (default 5) free: builds
    started from the app write runs, caches, bases and adapters (tens of MB for the default model, GBs for
    a 3-4 B one), and a link holder starting one after another must not fill the server's disk."""
    need = _env_number(env, FREE_DISK_ENV, MIN_FREE_GB_DEFAULT) * 1e9
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < need:
        raise LimitError(f"not enough free disk for a build: {free / 1e9:.1f} GB free, {need / 1e9:g} GB needed; "
                         f"the operator can remove old runs (runs/), bases or adapters, or lower {FREE_DISK_ENV}")


MODEL_GB_ENV = "STUDIO_MAX_MODEL_GB"


def check_download_room(size: int, folder, what: str, env: Mapping[str, str] | None = None) -> None:
    """LimitError when downloading `size` bytes into `folder` (the Hugging Face cache) would pass the operator's
    cap ($STUDIO_MAX_MODEL_GB; unset or 0: none) or leave less than the free-disk floor ($STUDIO_MIN_FREE_GB).
    Checked before a Hub model is downloaded: the floor checked when a build starts knows nothing of the size
    of what the build is about to fetch."""
    cap = _env_number(env, MODEL_GB_ENV, 0.0) * 1e9
    if cap and size > cap:
        raise LimitError(f"{what} is {size / 1e9:,.1f} GB to download, over the operator's limit of {cap / 1e9:g} GB "
                         f"({MODEL_GB_ENV})")
    floor = _env_number(env, FREE_DISK_ENV, MIN_FREE_GB_DEFAULT) * 1e9
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if size + floor > free:
        raise LimitError(f"{what} is {size / 1e9:,.1f} GB to download; the disk of the Hugging Face cache has "
                         f"{free / 1e9:,.1f} GB free and keeps {floor / 1e9:g} GB ({FREE_DISK_ENV}) free")


UPLOAD_BUDGET_ENV = "STUDIO_UPLOAD_BUDGET_MB"


def upload_budget_bytes(env: Mapping[str, str] | None = None) -> int:
    """Bytes the whole server accepts through /gradio_api/upload per hour (Gradio keeps uploads an hour):
    $STUDIO_UPLOAD_BUDGET_MB, default 20 times the upload limit."""
    return int(_env_number(env, UPLOAD_BUDGET_ENV, 20 * max_upload_bytes(env) / 1e6) * 1e6)


def max_exports(env: Mapping[str, str] | None = None) -> int:
    """How many exported Space folders a request may create in exports/: $STUDIO_MAX_EXPORTS, default 8
    (replacing a previous export is always allowed; at the limit a web client's oldest export makes room, never
    the operator's: artifacts/policy.Policy.new_export)."""
    return int(_env_number(env, EXPORTS_ENV, MAX_EXPORTS_DEFAULT))


CLIENT_BASES_ENV = "STUDIO_MAX_BASES_PER_CLIENT"


def max_bases_per_client(env: Mapping[str, str] | None = None) -> int:
    """New ONNX bases (models/<name>, a full copy of a model each) one web client may build:
    $STUDIO_MAX_BASES_PER_CLIENT, default 1; 0: no limit. Red-team pass 30: base builds were outside the adapter
    limit, one a minute, until the free-disk floor stopped everyone's builds."""
    return max(0, int(_env_number(env, CLIENT_BASES_ENV, 1)))


CLIENT_EXPORTS_ENV = "STUDIO_MAX_EXPORTS_PER_CLIENT"


def max_exports_per_client(env: Mapping[str, str] | None = None) -> int:
    """Export folders one web client may have in exports/: $STUDIO_MAX_EXPORTS_PER_CLIENT, default 2 (0: no
    limit; replacing one of its own is always allowed). Red-team pass 29: one client filled all of
    STUDIO_MAX_EXPORTS, which only their owner may replace, and nobody else could export."""
    return max(0, int(_env_number(env, CLIENT_EXPORTS_ENV, 2)))


CLIENT_ADAPTERS_ENV = "STUDIO_MAX_ADAPTERS_PER_CLIENT"
CLIENT_ADAPTERS_DEFAULT = 8


def max_adapters_per_client(env: Mapping[str, str] | None = None) -> int:
    """Adapters one web client may have in adapters/ (artifacts/owners.py): $STUDIO_MAX_ADAPTERS_PER_CLIENT,
    default 8; 0: no limit. A new build beyond it is refused until the client deletes one of its own or replaces
    it (red-team pass 28: rank-512, one-step builds published 55 MB adapters every 13 s, never removed). The
    operator (a request with no known client) is not limited."""
    return max(0, int(_env_number(env, CLIENT_ADAPTERS_ENV, CLIENT_ADAPTERS_DEFAULT)))


RUNS_ENV = "STUDIO_MAX_RUNS"
MAX_RUNS_DEFAULT = 1000  # job folders in <workspace>/runs/ (each failed request leaves one, ~30 kB)


def max_runs(env: Mapping[str, str] | None = None) -> int:
    """Job folders runs/ keeps: $STUDIO_MAX_RUNS, default 1,000. A build from the page leaves a run even when it
    fails at once, and the page lists them; ended runs make room for new ones (jobs.make_room)."""
    return max(1, int(_env_number(env, RUNS_ENV, MAX_RUNS_DEFAULT)))


def check_runs_room(runs_dir, env: Mapping[str, str] | None = None) -> None:
    """LimitError when runs/ already holds max_runs() job folders (after jobs.make_room: every one of them running,
    pending or another client's resumable run)."""
    limit = max_runs(env)
    try:
        with os.scandir(runs_dir) as it:
            n = sum(1 for e in it if e.is_dir(follow_symlinks=False) and not e.name.startswith("."))
    except FileNotFoundError:
        return
    if n >= limit:
        raise LimitError(f"runs/ already holds {n} runs (the limit is {limit}), each running or resumable (stopped "
                         f"after fine-tuning steps): resume one, or the operator can remove old runs or raise "
                         f"{RUNS_ENV}")


RUN_KEEP_ENV = "STUDIO_RUN_KEEP_H"


def run_keep_seconds(env: Mapping[str, str] | None = None) -> float:
    """How long a resumable run (stopped after fine-tuning steps) is kept for sure once runs/ is full:
    $STUDIO_RUN_KEEP_H hours, default 24 (jobs.make_room)."""
    return _env_number(env, RUN_KEEP_ENV, 24.0) * 3600


LOADED_BASES_ENV = "STUDIO_MAX_LOADED_BASES"


def max_loaded_bases(env: Mapping[str, str] | None = None) -> int:
    """Chat engines (one per base, each holding its model in memory) the app keeps loaded at once:
    $STUDIO_MAX_LOADED_BASES, default 2; the least recently used idle one is closed to make room."""
    return max(1, int(_env_number(env, LOADED_BASES_ENV, 2)))


JOB_MINUTES_ENV = "STUDIO_MAX_JOB_MIN"


def max_job_seconds(env: Mapping[str, str] | None = None) -> float | None:
    """How long one run of a build job may take before it is stopped as if cancelled (it resumes where it
    stopped; for a web client's build the clock counts all its attempts, pipeline/watch.py): $STUDIO_MAX_JOB_MIN
    minutes; unset or 0: no limit. One job runs at a
    time, so an operator sharing the app can keep one link holder from holding the build slot for hours."""
    minutes = _env_number(env, JOB_MINUTES_ENV, 0.0)
    return minutes * 60 if minutes > 0 else None


CLIENT_BUILD_MINUTES_ENV = "STUDIO_MAX_BUILD_MIN_PER_CLIENT"


def max_client_build_seconds(env: Mapping[str, str] | None = None) -> float | None:
    """How long one web client's builds may run in all over 24 hours before it may start or resume no more (the
    build slot is one for everyone): $STUDIO_MAX_BUILD_MIN_PER_CLIENT minutes; unset: twice STUDIO_MAX_JOB_MIN
    where that is set (a shared app sets it), else no limit; 0: no limit."""
    env = os.environ if env is None else env
    if (env.get(CLIENT_BUILD_MINUTES_ENV) or "").strip():
        minutes = _env_number(env, CLIENT_BUILD_MINUTES_ENV, 0.0)
    else:
        job = max_job_seconds(env)
        minutes = 2 * job / 60 if job else 0.0
    return minutes * 60 if minutes > 0 else None


JOB_MEMORY_ENV = "STUDIO_MAX_JOB_MEM_GB"


def max_job_memory_bytes(env: Mapping[str, str] | None = None) -> int | None:
    """How much memory (resident, the job's process and all its children together) one build run may hold
    before it is stopped as if cancelled: $STUDIO_MAX_JOB_MEM_GB; unset or 0: no limit. Checked twice a
    second, so an allocation faster than that can pass it for an instant: a guard for the shared machine,
    not a hard cap (the operator's cgroup or container limit is one)."""
    gb = _env_number(env, JOB_MEMORY_ENV, 0.0)
    return int(gb * 1e9) if gb > 0 else None


SHARED_JOB_MINUTES = 120


def shared_job_defaults(env) -> list[str]:
    """When the app is shared (a share link, a login, a Space) and the operator set no job limits: a build run
    may hold at most half of this machine's memory, and run SHARED_JOB_MINUTES minutes, before it is stopped as
    if cancelled (resumable). Red-team pass 28: one stranger's build at batch 64 x 2,048 tokens took 12 GB in
    45 s and was still climbing on a 24 GB machine. Sets the variables in `env` (os.environ: the build jobs
    inherit them) and returns what it set, for the launch message."""
    said = []
    if not (env.get(JOB_MEMORY_ENV) or "").strip():
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 0
        if total > 0:
            env[JOB_MEMORY_ENV] = f"{max(1.0, total / 2e9):.1f}"
            said.append(f"{JOB_MEMORY_ENV}={env[JOB_MEMORY_ENV]} (half of this machine's memory)")
    if not (env.get(JOB_MINUTES_ENV) or "").strip():
        env[JOB_MINUTES_ENV] = str(SHARED_JOB_MINUTES)
        said.append(f"{JOB_MINUTES_ENV}={SHARED_JOB_MINUTES}")
    if said and not (env.get(CLIENT_BUILD_MINUTES_ENV) or "").strip():  # (derived: max_client_build_seconds)
        day = max_client_build_seconds(env)
        if day:
            said.append(f"{CLIENT_BUILD_MINUTES_ENV}={day / 60:g} (per web client in 24 hours, twice the job limit)")
    return said


PROMPT_ENV = "STUDIO_MAX_PROMPT_CHARS"
MAX_PROMPT_CHARS_DEFAULT = 32_000
TEMPLATE_MAX_CHARS = 4_000
SEED_MAX = 2**31 - 1


class LimitError(ValueError):
    """A value over a limit or of the wrong shape; the message says which and what is allowed."""


def max_prompt_chars(env: Mapping[str, str] | None = None) -> int:
    """Characters one chat request may carry (all its messages), checked before tokenization:
    $STUDIO_MAX_PROMPT_CHARS, default 32,000."""
    env = os.environ if env is None else env
    try:
        n = int(env.get(PROMPT_ENV, MAX_PROMPT_CHARS_DEFAULT))
    except ValueError:
        n = MAX_PROMPT_CHARS_DEFAULT
    return max(1, n)


def check_prompt_chars(n_chars: int) -> None:
    limit = max_prompt_chars()
    if n_chars > limit:
        raise LimitError(f"the conversation is {n_chars:,} characters long; at most {limit:,} are accepted "
                         f"(clear the chat, or the operator can raise {PROMPT_ENV})")


def check_seed(seed) -> int:
    """An integer seed in 0..2**31-1."""
    if isinstance(seed, float):
        if not math.isfinite(seed) or not seed.is_integer():
            raise LimitError(f"seed must be a whole number from 0 to {SEED_MAX}")
        seed = int(seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise LimitError(f"seed must be a whole number from 0 to {SEED_MAX}")
    return seed


def unicode_problem(s: str) -> str:
    """'' for text that is valid Unicode; else why not. JSON's \\ud800 escapes decode to lone surrogates, which
    no UTF-8 writer (event logs, Gradio's orjson, tokenizers) accepts: they cut streams and crashed jobs."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"holds a lone surrogate (\\u{ord(s[e.start]):04x} at character {e.start + 1}), which is not valid text"
    return ""


def without_surrogates(v):
    """v (text, or lists/dicts of it) with every lone surrogate replaced by U+FFFD: what may still be written
    as UTF-8 or sent back to a browser after unicode_problem found one."""
    if isinstance(v, str):
        return v.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(v, dict):
        return {without_surrogates(k): without_surrogates(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [without_surrogates(x) for x in v]
    return v


def check_text(name: str, s: str) -> str:
    """LimitError unless `s` is valid Unicode text (unicode_problem)."""
    why = unicode_problem(s)
    if why:
        raise LimitError(f"{name} {why}")
    return s


def check_finite(name: str, value) -> float:
    """A finite number (sampling values: temperature, top_p, ...)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise LimitError(f"{name} must be a number") from None
    if not math.isfinite(v):
        raise LimitError(f"{name} must be a finite number")
    return v


def check_template(t) -> str:
    """A text template: {prompt} then {response}, each once, nothing else in braces ({{ }} for literal
    ones), no format specs or conversions, at most 4,000 characters."""
    if not isinstance(t, str):
        raise LimitError(f"template must be text, got {type(t).__name__}")
    if len(t) > TEMPLATE_MAX_CHARS:
        raise LimitError(f"template is {len(t):,} characters long; at most {TEMPLATE_MAX_CHARS:,} are accepted")
    check_text("template", t)
    try:
        parsed = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(t) if f is not None]
    except ValueError as e:
        raise LimitError(f"template {t[:80]!r} is not valid: {e} (write literal braces as {{{{ and }}}})") from None
    fields = [f for f, _, _ in parsed]
    unknown = sorted({f for f in fields if f not in ("prompt", "response")})
    if unknown:
        raise LimitError(f"template has unknown placeholder(s) {', '.join('{' + u[:40] + '}' for u in unknown)}: "
                         "only {prompt} and {response} are allowed (write literal braces as {{ and }})")
    if any(spec or conv for _, spec, conv in parsed):
        raise LimitError("template placeholders take no format spec or conversion: write {prompt} and {response} "
                         "only (no ':' or '!' inside the braces)")
    for need in ("prompt", "response"):
        if need not in fields:
            raise LimitError(f"template must contain {{{need}}}")
        if fields.count(need) > 1:
            raise LimitError(f"template must contain {{{need}}} once")
    if fields.index("prompt") > fields.index("response"):
        raise LimitError("template must put {prompt} before {response}")
    return t

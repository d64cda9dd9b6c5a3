"""Runs one build job inside its own process: the stages of pipeline/stages.py in order, each recorded in
the job's event log, each leaving `stages/<stage>/DONE.json` so that a cancelled or killed job resumes from
the last finished stage (fine-tuning also from its last checkpoint). Stage seconds add up across attempts
(`stages/<stage>/spent.json` keeps what unfinished attempts took). AWQ and the ONNX base of a new base are
kept in a content-hash cache; an adapter built onto a published base skips both."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time
import traceback
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from pipeline.errors import Cancelled, StageError
from pipeline.events import EventLog, seconds_run
from pipeline.recipe import Recipe, RecipeError
from artifacts import Workspace, publish, write_json
from pipeline.watch import LimitWatch

__all__ = ["JobRunner", "StageError", "Cancelled", "user_message"]


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _clear_stale_tmp(parent: Path, name: str) -> None:
    """Removes `<name>.tmp-<pid>` (and publish's `<name>.old-<pid>`) folders left by a job process that was killed (its pid is gone), so a
    resumed job leaves no half-written folder behind. Folders of live processes are left alone."""
    if not parent.is_dir():
        return
    for p in [*parent.glob(f"{name}.tmp-*"), *parent.glob(f"{name}.old-*")]:
        pid = p.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            with open(f"/proc/{pid}/stat") as f:  # a killed job not yet reaped by its parent is a zombie
                if f.read().rsplit(")", 1)[-1].split()[0] != "Z":
                    continue  # still alive: someone else's publish in progress
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        except OSError:
            pass
        shutil.rmtree(p, ignore_errors=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class JobRunner:
    """The context every stage function gets: recipe, workspace, event log, outputs of earlier stages."""

    def __init__(self, job_dir: Path, ws: Workspace | None = None, echo: bool = False):
        self.job_dir = Path(job_dir)
        self.ws = ws or Workspace.default()
        self.log = EventLog(self.job_dir / "events.jsonl", echo=echo)
        self.recipe = Recipe.load(self.job_dir / "recipe.yaml")
        self.out: dict[str, dict] = {}
        self.timings: dict[str, float] = {}

    # ---- stage bookkeeping ---------------------------------------------------------------------
    def stage_dir(self, name: str) -> Path:
        d = self.job_dir / "stages" / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _run_stage(self, name: str, fn):
        d = self.job_dir / "stages" / name
        done, spent = d / "DONE.json", d / "spent.json"
        if done.exists():
            rec = json.loads(done.read_text())
            self.out[name] = rec["outputs"]
            self.timings[name] = rec.get("seconds", 0.0)
            self.log.emit("stage_skip", stage=name, reason="finished in an earlier attempt (resumed)",
                          resumed=True, seconds=rec.get("seconds"), state=rec.get("state", "done"),
                          was=rec.get("reason", ""))
            return
        self.log.emit("stage_start", stage=name)
        before = json.loads(spent.read_text()).get("seconds", 0.0) if spent.exists() else 0.0
        t0 = time.perf_counter()
        try:
            outputs = fn(self, self.stage_dir(name)) or {}
        except BaseException:
            write_json(spent, {"seconds": round(before + time.perf_counter() - t0, 2)})
            raise
        seconds = round(before + time.perf_counter() - t0, 2)
        cached = outputs.pop("_cached", False)
        skip = outputs.pop("_skip", "")
        self.out[name] = outputs
        self.timings[name] = seconds
        state = "skipped" if skip else "cached" if cached else "done"
        write_json(done, {"outputs": outputs, "seconds": seconds, "cached": cached, "state": state,
                           "reason": skip or (f"cached: {cached}" if cached else ""), "finished": _now()})
        if skip:
            self.log.emit("stage_skip", stage=name, reason=skip, seconds=seconds)
        elif cached:
            self.log.emit("stage_skip", stage=name, reason=f"cached: {cached}", cached=True, seconds=seconds)
        else:
            self.log.emit("stage_end", stage=name, seconds=seconds, outputs=outputs)

    # ---- helpers for the stages -------------------------------------------------------------------
    @staticmethod
    def sha(obj) -> str:
        return _sha(obj)

    def fingerprint(self, model_dir: Path) -> str:
        from pipeline.stage_adapter import model_fingerprint
        return model_fingerprint(model_dir, memo=self.ws.cache / "fingerprints.json")

    def cached(self, kind: str, key: str, build) -> tuple[Path, bool]:
        """Content-hash cache: `build(tmp_dir)` fills a folder that is then published as cache/kind-key."""
        final = self.ws.cache / f"{kind}-{key}"
        if (final / "CACHE.json").exists():
            return final, True
        self.ws.cache.mkdir(parents=True, exist_ok=True)
        _clear_stale_tmp(self.ws.cache, f"{kind}-{key}")
        tmp = self.ws.cache / f"{kind}-{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        info = build(tmp) or {}
        write_json(tmp / "CACHE.json", {"kind": kind, "key": key, "created": _now(), **info})
        publish(tmp, final)
        return final, False

    def _prepared_path(self) -> str:
        """Where a new base's prepared weights are, as base.json records them: relative to the workspace
        when inside it (the recipe's own relative path for a local base model used as is)."""
        model_dir = Path(self.out["awq"]["model_dir"])
        given = Path(self.recipe.base_model).expanduser()
        if not given.is_absolute() and (self.ws.root / given).resolve() == model_dir.resolve():
            return given.as_posix()
        return self.ws.relative(model_dir) or str(model_dir.resolve())

    def publish_base(self, onnx_dir: Path, info: dict, ep: str) -> Path:
        """A new ONNX base is published once into models/<base_name>/ with base.json."""
        from artifacts import owner_tag, quota_tag
        from pipeline.data import file_sha256
        from pipeline.jobs import client_of_run
        r = self.recipe
        client = client_of_run(self.job_dir)
        fp = self.out["awq"]["fingerprint"]
        asked = _int4_settings(asdict(r.onnx))
        name = r.base_name or _derive_base_name(r.base_model, r.onnx.precision, ep, fp, _int4_tag(asked))
        final = self.ws.models / name
        meta_path = final / "base.json"
        if os.path.lexists(final) and (final.is_symlink() or not meta_path.is_file()):
            # an HF checkpoint, a link or anything else that is not a base published here: never replaced
            raise StageError(f"models/{name} already exists and is not an ONNX base built here (no base.json); "
                             "choose another base_name")
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("fingerprint") == fp and meta.get("precision") == r.onnx.precision \
                    and meta.get("execution_provider") == ep:
                if _int4_settings(meta) != asked:
                    raise StageError(
                        f"models/{name} holds this base with other int4 settings ({_int4_text(_int4_settings(meta))}, "
                        f"asked: {_int4_text(asked)}); choose another base_name (or leave it "
                        "empty: the derived name tells the settings apart)")
                if meta.get("lora_inputs") != info.get("lora_inputs"):
                    raise StageError(
                        f"models/{name} holds an older build of this base with other LoRA slots "
                        f"(layout {meta.get('lora_layout', 'builder')}"
                        f"{', per-row' if meta.get('lora_rows') else ''}); adapters built for one do not fit "
                        f"the other. Delete models/{name} and rebuild its adapters, or choose another base_name")
                self.log.log(f"ONNX base {name} already published")
                return final
            raise StageError(f"models/{name} already holds a different base model (fingerprint "
                             f"{meta.get('fingerprint', '?')[:12]}); choose another base_name")
        self.ws.models.mkdir(parents=True, exist_ok=True)
        _clear_stale_tmp(self.ws.models, name)
        tmp = self.ws.models / f"{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(onnx_dir, tmp)
        awq_info = self.out["awq"].get("info", {})
        applied = not awq_info.get("skipped")
        calib = self.job_dir / "stages/prepare/calib.jsonl"
        write_json(tmp / "base.json", {
            "name": name, "fingerprint": fp, "source_model": self.ws.shown_model(r.base_model),
            "source_fingerprint": self.out["prepare"]["model_fingerprint"],
            "precision": r.onnx.precision, "block_size": r.onnx.block_size,
            "accuracy_level": r.onnx.accuracy_level, "symmetric": bool(r.onnx.symmetric), "execution_provider": ep,
            "target_modules": sorted(r.lora.target_modules), "lora_inputs": info.get("lora_inputs", {}),
            "lora_layout": info.get("lora_layout", "builder"), "lora_rows": bool(info.get("lora_rows")),
            "awq": {**r.to_dict()["awq"], "applied": applied, "note": awq_info.get("skipped", "")},
            "prepared": {"source": self.ws.shown_model(r.base_model), "awq": awq_info if applied else None,
                         "calib_sha256": file_sha256(calib) if applied and calib.exists() else None,
                         "fingerprint": fp, "path": self._prepared_path()},
            # the tag of the web client that built it (artifacts/owners.py; none from the command line): a
            # client's bases count towards STUDIO_MAX_BASES_PER_CLIENT
            "owner": owner_tag(self.ws, client),
            "quota": quota_tag(self.ws, client),  # (what the limits count by)
            "created": _now()})
        publish(tmp, final)
        self.log.log(f"published ONNX base models/{name}")
        return final

    # ---- whole job ----------------------------------------------------------------------------------
    def run(self) -> int:
        from pipeline import stage_finetune

        def on_term(signum, frame):
            if stage_finetune.cooperative():  # fine-tuning checkpoints first, then raises Cancelled
                stage_finetune.request_cancel()
                return
            raise Cancelled()

        signal.signal(signal.SIGTERM, on_term)
        # a web client's build: the time limit counts its earlier attempts too (pipeline/watch.py)
        from pipeline.jobs import client_of_run
        used = seconds_run(self.log.path) if client_of_run(self.job_dir) else None
        self.log.emit("job_start", job_id=self.job_dir.name, recipe=self.recipe.to_dict(), pid=os.getpid())
        watch = LimitWatch(lambda reason: self.log.emit("job_end", status="cancelled", error=reason),
                           used_s=used).start()
        try:
            return self._run_all(watch)
        finally:
            watch.stop()

    def _run_all(self, watch: LimitWatch) -> int:
        from pipeline.stages import STAGES
        try:
            self.recipe.validate()
            if not self.recipe.adapter_name:
                raise RecipeError("the job's recipe has no adapter_name (jobs.create_job derives one)")
            for name, _, fn in STAGES:
                self._run_stage(name, fn)
        except Cancelled:
            self.log.emit("job_end", status="cancelled",
                          error=watch.reason or "cancelled by the user")
            return 130
        except KeyboardInterrupt:
            self.log.emit("job_end", status="cancelled", error="interrupted")
            return 130
        except Exception as e:  # every failure ends as an event with a readable cause
            (self.job_dir / "traceback.txt").write_text(traceback.format_exc())
            msg = user_message(e)
            self.log.emit("job_end", status="failed", error=msg)
            return 1
        result = {"adapter": self.recipe.adapter_name, "base": self.out["onnx"]["base_name"],
                  "timings": self.timings, "train_loss": self.out["finetune"].get("train_loss"),
                  "eval_loss": self.out["finetune"].get("eval_loss"),
                  "eval": self.out.get("evaluate", {}).get("eval"),
                  "previous": self.out["publish"].get("previous", "")}
        self.log.emit("job_end", status="ok", result=result)
        return 0


def user_message(e: BaseException) -> str:
    from pipeline.data import DataError
    from pipeline.stage_adapter import AdapterError
    if isinstance(e, (RecipeError, DataError, StageError, AdapterError, FileNotFoundError)):
        return str(e)
    return f"{type(e).__name__}: {e} (details in traceback.txt of the job)"


def _derive_base_name(base_model: str, precision: str, ep: str, fp: str, tag: str = "") -> str:
    stem = Path(base_model.rstrip("/")).name or "model"
    stem = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem)[:40].strip("-.") or "model"
    return f"{stem}-{precision}{tag}-{ep}-{fp[:8]}"


def _int4_settings(d: dict) -> tuple | None:
    """(block_size, accuracy_level, symmetric) of an int4 base (a recipe's onnx section as a dict, or a
    base.json); None for other precisions. Bases published before the symmetric option are asymmetric."""
    if d.get("precision") != "int4":
        return None
    return int(d.get("block_size", 128)), int(d.get("accuracy_level", 4)), bool(d.get("symmetric"))


def _int4_text(t: tuple | None) -> str:
    return "not int4" if t is None else f"block_size {t[0]}, accuracy_level {t[1]}, " + \
        ("symmetric" if t[2] else "asymmetric")


def _int4_tag(t: tuple | None) -> str:
    """The derived base name's mark of non-default int4 settings (_int4_settings; '' for the defaults: names
    stay as before)."""
    if t is None:
        return ""
    return (f"-b{t[0]}" if t[0] != 128 else "") + (f"-a{t[1]}" if t[1] != 4 else "") + ("-sym" if t[2] else "")

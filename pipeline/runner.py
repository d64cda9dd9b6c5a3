"""Runs one build job inside its own process: the five stages in order, each recorded in the job's
event log, each leaving `stages/<stage>/DONE.json` so that a cancelled or killed job resumes from the
last finished stage. AWQ and the ONNX base are also kept in a content-hash cache, so a second
adapter for the same base only fine-tunes and extracts."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from pipeline.data import read_texts
from pipeline.events import EventLog
from pipeline.recipe import Recipe, RecipeError
from artifacts import Workspace, publish, write_json


class StageError(RuntimeError):
    """A stage failed for a reason the user can act on; the message says which."""


class Cancelled(BaseException):
    pass


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
        done = self.job_dir / "stages" / name / "DONE.json"
        if done.exists():
            rec = json.loads(done.read_text())
            self.out[name] = rec["outputs"]
            self.timings[name] = rec.get("seconds", 0.0)
            self.log.emit("stage_skip", stage=name, reason="finished in an earlier attempt (resumed)",
                          resumed=True, seconds=rec.get("seconds"))
            return
        self.log.emit("stage_start", stage=name)
        t0 = time.perf_counter()
        outputs = fn(self.stage_dir(name)) or {}
        seconds = round(time.perf_counter() - t0, 2)
        cached = outputs.pop("_cached", False)
        self.out[name] = outputs
        self.timings[name] = seconds
        write_json(done, {"outputs": outputs, "seconds": seconds, "cached": cached, "finished": _now()})
        if cached:
            self.log.emit("stage_skip", stage=name, reason=f"cached: {cached}", cached=True, seconds=seconds)
        else:
            self.log.emit("stage_end", stage=name, seconds=seconds, outputs=outputs)

    def fingerprint(self, model_dir: Path) -> str:
        from pipeline.stage_adapter import model_fingerprint
        return model_fingerprint(model_dir, memo=self.ws.cache / "fingerprints.json")

    def _cached(self, kind: str, key: str, build) -> tuple[Path, bool]:
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

    # ---- the stages -------------------------------------------------------------------------------
    def prepare(self, d: Path) -> dict:
        from transformers import AutoTokenizer

        from pipeline import data, hub
        r = self.recipe
        model_dir = hub.resolve_model(r.base_model, log=self.log, project_root=self.ws.root)
        from pipeline.jobs import check_model_folder
        check_model_folder(model_dir, r.trust_remote_code)  # also for a model just downloaded from the Hub
        targets = data.resolve_target_modules(model_dir, r.lora.target_modules)
        if targets != r.lora.target_modules:  # 'auto': the job's recipe records what it resolved to
            self.log.log(f"lora.target_modules auto -> {','.join(targets)}")
            r.lora.target_modules = targets
            r.save(self.job_dir / "recipe.yaml")
        tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=r.trust_remote_code)
        if not r.template and not getattr(tok, "chat_template", None):
            raise StageError(f"{r.base_model} has no chat template: give a text template with {{prompt}} "
                             "and {response}")
        train_path = self.ws.resolve_input(r.train_file)
        train = data.load_examples(train_path, r.data_format)
        eval_path = self.ws.resolve_input(r.eval_file) if r.eval_file else None
        evals = data.load_examples(eval_path, r.data_format) if eval_path else []
        texts = [data.render_text(ex, tok, r.template) for ex in train]
        eval_texts = [data.render_text(ex, tok, r.template) for ex in evals]
        calib = data.calibration_texts(train, tok, r.template, r.awq.calib_samples)
        for name, rows in (("train.jsonl", texts), ("eval.jsonl", eval_texts), ("calib.jsonl", calib)):
            data.write_texts(d / name, rows)
        ep = r.onnx.execution_provider
        if ep == "auto":
            ep = "cuda" if _has_cuda() else "cpu"
        self.log.log(f"model {model_dir}; {len(train)} training examples"
                     + (f", {len(evals)} held-out" if evals else "") + f"; ONNX for {ep}")
        return {"model_dir": str(model_dir), "model_fingerprint": self.fingerprint(model_dir),
                "train_file": str(train_path), "train_sha256": data.file_sha256(train_path),
                "train_examples": len(train), "eval_file": str(eval_path or ""),
                "eval_sha256": data.file_sha256(eval_path) if eval_path else "",
                "eval_examples": len(evals), "execution_provider": ep}

    def awq(self, d: Path) -> dict:
        from pipeline.stage_awq import run_awq
        p = self.out["prepare"]
        cfg = self.recipe.awq
        calib = read_texts(self.job_dir / "stages/prepare/calib.jsonl")
        if not cfg.enabled:
            self.log.log("AWQ is off in the recipe: fine-tuning on the original float weights")
        key = _sha({"model": p["model_fingerprint"], "awq": self.recipe.to_dict()["awq"],
                    "cuda": _has_cuda() if cfg.device == "auto" else cfg.device})
        info: dict = {}

        def build(tmp: Path):
            nonlocal info
            info = run_awq(Path(p["model_dir"]), tmp / "model", cfg, calib, self.log,
                           trust_remote_code=self.recipe.trust_remote_code) or {}
            return {"info": info, "calibration": self.out["prepare"]["train_file"]}

        path, hit = self._cached("awq", key, build)
        if hit:
            info = json.loads((path / "CACHE.json").read_text()).get("info", {})
        return {"model_dir": str(path / "model"), "fingerprint": self.fingerprint(path / "model"),
                "info": info, "_cached": str(path) if hit else False}

    def finetune(self, d: Path) -> dict:
        from pipeline.stage_finetune import run_finetune
        train = read_texts(self.job_dir / "stages/prepare/train.jsonl")
        evals = read_texts(self.job_dir / "stages/prepare/eval.jsonl") or None
        res = run_finetune(Path(self.out["awq"]["model_dir"]), train, evals, self.recipe.lora, d, self.log)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in res.items()}

    def onnx(self, d: Path) -> dict:
        from pipeline.stage_onnx import build_onnx
        r = self.recipe
        ep = self.out["prepare"]["execution_provider"]
        awq = self.out["awq"]
        key = _sha({"model": awq["fingerprint"], "onnx": r.to_dict()["onnx"], "ep": ep,
                    "targets": sorted(r.lora.target_modules), "layout": 3})  # 3: + per-row LoRA dim
        info: dict = {}

        def build(tmp: Path):
            nonlocal info
            info = build_onnx(Path(awq["model_dir"]), Path(self.out["finetune"]["peft_dir"]), r.onnx, ep,
                              tmp / "model", self.log) or {}
            return {"info": info}

        path, hit = self._cached("onnx", key, build)
        if hit:
            info = json.loads((path / "CACHE.json").read_text()).get("info", {})
        base_dir = self._publish_base(path / "model", info, ep)
        return {"onnx_dir": str(base_dir), "base_name": base_dir.name, "cache": str(path),
                "_cached": str(path) if hit else False}

    def _publish_base(self, onnx_dir: Path, info: dict, ep: str) -> Path:
        """The ONNX base is published once into models/<base_name>/ with base.json."""
        r = self.recipe
        fp = self.out["awq"]["fingerprint"]
        name = r.base_name or _derive_base_name(r.base_model, r.onnx.precision, ep, fp)
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
        write_json(tmp / "base.json", {
            "name": name, "fingerprint": fp, "source_model": r.base_model,
            "source_fingerprint": self.out["prepare"]["model_fingerprint"],
            "precision": r.onnx.precision, "block_size": r.onnx.block_size,
            "accuracy_level": r.onnx.accuracy_level, "execution_provider": ep,
            "target_modules": sorted(r.lora.target_modules), "lora_inputs": info.get("lora_inputs", {}),
            "lora_layout": info.get("lora_layout", "builder"), "lora_rows": bool(info.get("lora_rows")),
            "awq": {**r.to_dict()["awq"], "applied": not self.out["awq"].get("info", {}).get("skipped"),
                    "note": self.out["awq"].get("info", {}).get("skipped", "")},
            "created": _now()})
        publish(tmp, final)
        self.log.log(f"published ONNX base models/{name}")
        return final

    def adapter(self, d: Path) -> dict:
        from pipeline.stage_adapter import convert_adapter
        r = self.recipe
        ft, prep, onnx = self.out["finetune"], self.out["prepare"], self.out["onnx"]
        self.ws.adapters.mkdir(parents=True, exist_ok=True)
        _clear_stale_tmp(self.ws.adapters, r.adapter_name)
        final = self.ws.adapters / r.adapter_name
        tmp = self.ws.adapters / f"{r.adapter_name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        info = convert_adapter(Path(ft["peft_dir"]), Path(onnx["onnx_dir"]), tmp / "adapter.onnx_adapter") or {}
        shutil.copytree(ft["peft_dir"], tmp / "peft")
        timings = dict(self.timings)
        size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        meta = {
            "name": r.adapter_name, "format": "onnx_adapter",
            "base_fingerprint": self.out["awq"]["fingerprint"], "base_name": onnx["base_name"],
            "base_model": r.base_model,
            "dataset": {"train_file": r.train_file, "sha256": prep["train_sha256"],
                        "examples": prep["train_examples"], "eval_file": r.eval_file,
                        "eval_sha256": prep["eval_sha256"], "eval_examples": prep["eval_examples"]},
            "recipe": r.to_dict(), "rank": r.lora.r, "alpha": r.lora.alpha,
            "target_modules": r.lora.target_modules, "steps": ft.get("steps"),
            "train_loss": ft.get("train_loss"), "eval_loss": ft.get("eval_loss"),
            "timings": timings, "size_bytes": size, "created": _now(), "job": self.job_dir.name,
            "tensors": info.get("tensors"),
        }
        write_json(tmp / "metadata.json", meta)
        publish(tmp, final)
        self.log.log(f"published adapter adapters/{r.adapter_name} ({size / 1e6:.2f} MB)")
        return {"adapter_dir": str(final), "size_bytes": size}

    # ---- whole job ----------------------------------------------------------------------------------
    def run(self) -> int:
        def on_term(signum, frame):
            raise Cancelled()

        signal.signal(signal.SIGTERM, on_term)
        self.log.emit("job_start", job_id=self.job_dir.name, recipe=self.recipe.to_dict(), pid=os.getpid())
        try:
            self.recipe.validate()
            for name in ("prepare", "awq", "finetune", "onnx", "adapter"):
                self._run_stage(name, getattr(self, name))
        except Cancelled:
            self.log.emit("job_end", status="cancelled", error="cancelled by the user")
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
                  "eval_loss": self.out["finetune"].get("eval_loss")}
        self.log.emit("job_end", status="ok", result=result)
        return 0


def user_message(e: BaseException) -> str:
    from pipeline.data import DataError
    if isinstance(e, (RecipeError, DataError, StageError, FileNotFoundError)):
        return str(e)
    return f"{type(e).__name__}: {e} (details in traceback.txt of the job)"


def _has_cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:
        return False


def _derive_base_name(base_model: str, precision: str, ep: str, fp: str) -> str:
    stem = Path(base_model.rstrip("/")).name or "model"
    stem = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem)[:40].strip("-.") or "model"
    return f"{stem}-{precision}-{ep}-{fp[:8]}"


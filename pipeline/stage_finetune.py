"""LoRA fine-tuning through Olive's LoRA pass (Python API: `olive.workflows.run` with a config dict).

How Olive 0.13 builds its Trainer: `olive.passes.pytorch.lora.LoRA.train_and_save_new_model` creates
`transformers.Trainer(model, args, train_dataset, eval_dataset, data_collator)` with no `callbacks`
argument, so the Trainer uses `transformers.trainer.DEFAULT_CALLBACKS`. We append our own
TrainerCallback there for the duration of the run (the workflow runs in this process: LocalSystem)
and turn its `on_log` into `step` / `eval` events. Olive swallows many pass errors and can return
without an output model ("No output model produced"): we check for the PEFT folder and raise.
"""
from __future__ import annotations

import json
import os
import logging
import shutil
import time
from pathlib import Path

from pipeline.data import write_texts
from pipeline.errors import Cancelled


class FinetuneError(RuntimeError):
    pass


_cancel = {"active": False, "requested": False}


def cooperative() -> bool:
    """True while a fine-tuning runs that checkpoints on cancel (the job's SIGTERM handler asks)."""
    return _cancel["active"]


def request_cancel() -> None:
    _cancel["requested"] = True


def last_checkpoint(trainer_dir: Path) -> tuple[str | None, int]:
    """The newest complete checkpoint folder under trainer_dir and its step (None, 0 when none)."""
    best, step = None, 0
    for c in Path(trainer_dir).glob("checkpoint-*"):
        try:
            k = int(c.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if k > step and (c / "trainer_state.json").is_file():
            best, step = str(c), k
    return best, step


def _data_config(name: str, path: Path, max_seq_len: int, batch_size: int) -> dict:
    return {
        "name": name,
        "type": "HuggingfaceContainer",
        "load_dataset_config": {"data_name": "json", "split": "train", "data_files": [str(path)]},
        "pre_process_data_config": {
            "text_cols": "text",
            # one example per sequence (the default 'join' packs texts into max_seq_len blocks and
            # yields nothing when the data set is shorter than one block)
            "strategy": "line-by-line",
            "max_seq_len": max_seq_len,
            "pad_to_max_len": False,  # Olive's collator pads each batch; labels of padding are ignored
            "add_special_tokens": False,  # the rendered texts carry their own special tokens
            "max_samples": None,
        },
        "dataloader_config": {"batch_size": batch_size},
    }


def _make_callback(log, state: dict):
    from transformers import TrainerCallback

    def stop_here(control):  # a cancel was asked: checkpoint at this point, then stop (on_save raises)
        if _cancel["requested"]:
            control.should_save = True
            control.should_training_stop = True
        return control

    class EventCallback(TrainerCallback):
        def on_log(self, args, st, control, logs=None, **kw):
            logs = logs or {}
            if "loss" in logs:
                state["losses"].append(float(logs["loss"]))
                log.emit("step", step=int(st.global_step), loss=float(logs["loss"]),
                         lr=float(logs.get("learning_rate", 0.0)))
            if "eval_loss" in logs:
                state["eval_loss"] = float(logs["eval_loss"])
                log.emit("eval", step=int(st.global_step), eval_loss=float(logs["eval_loss"]))
            if "train_loss" in logs:
                state["train_loss"] = float(logs["train_loss"])
            return stop_here(control)

        def on_evaluate(self, args, st, control, **kw):  # the Trainer saves right after evaluating
            return stop_here(control)

        def on_step_end(self, args, st, control, **kw):
            state["steps"] = int(st.global_step)
            log.progress("finetune", int(st.global_step), int(st.max_steps or 0))
            return stop_here(control)

        def on_save(self, args, st, control, **kw):
            if _cancel["requested"]:
                log.log(f"cancelled: checkpoint at step {int(st.global_step)} saved")
                raise Cancelled()

    return EventCallback()


def olive_config(model_dir, train_file, eval_file, cfg, out_dir, cuda: bool,
                 training_overrides: dict | None = None, data_overrides: dict | None = None,
                 resume_from: str | None = None) -> dict:
    """The Olive workflow (one LoRA pass) for this fine-tuning; `olive run --config` accepts it.

    `training_overrides` (e.g. {"dataloader_num_workers": 4}) are merged into `training_args` last;
    `data_overrides` (e.g. {"pre_process_data_config": {"strategy": "join"}}) into the training data
    config, a dict section by section. Olive drops (with a warning) keys that are not fields of
    transformers.TrainingArguments."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    olive_out = out_dir / "olive"
    train_dc = _data_config("train_data", Path(train_file), cfg.max_seq_len, cfg.batch_size)
    for key, value in (data_overrides or {}).items():
        if isinstance(value, dict) and isinstance(train_dc.get(key), dict):
            train_dc[key] = {**train_dc[key], **value}
        else:
            train_dc[key] = value
    data_configs = [train_dc]
    if eval_file:
        data_configs.append(_data_config("eval_data", Path(eval_file), cfg.max_seq_len, cfg.batch_size))
    eval_texts = bool(eval_file)
    log_every = max(1, min(10, cfg.max_steps // 20 or 1))
    training_args = {
        "max_steps": cfg.max_steps,
        "learning_rate": cfg.learning_rate,
        "per_device_train_batch_size": cfg.batch_size,
        "per_device_eval_batch_size": cfg.batch_size,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "logging_steps": log_every,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": 2,
        "report_to": "none",
        "gradient_checkpointing": False,
        "output_dir": str(out_dir / "trainer"),
        "overwrite_output_dir": True,
        "disable_tqdm": True,
        "warmup_ratio": 0.0,
    }
    # data loading off the training thread on CUDA: measured on an H200 (bench/finetune_levers.py, 3.8 B
    # model, batch 8): 0.164 s/step with 4 workers + pinned memory vs 0.232 s with the default 0 (+41 %
    # samples/s); persistent, so the small data sets' many epochs do not respawn them. On the CPU the
    # workers would take cores from the training itself. STUDIO_DATALOADER_WORKERS sets the number.
    raw = os.environ.get("STUDIO_DATALOADER_WORKERS", "").strip()
    if raw and not raw.isdigit():
        raise FinetuneError(f"STUDIO_DATALOADER_WORKERS={raw!r}: expected a whole number of data loader workers")
    workers = int(raw) if raw else (min(4, os.cpu_count() or 1) if cuda else 0)
    if workers > 0:
        training_args.update({"dataloader_num_workers": workers, "dataloader_pin_memory": cuda,
                              "dataloader_persistent_workers": True})
    if not cuda:
        training_args["use_cpu"] = True
    if eval_texts:
        training_args["eval_strategy"] = "steps"
        training_args["eval_steps"] = min(cfg.eval_steps, cfg.max_steps)
    if resume_from:
        training_args["resume_from_checkpoint"] = str(resume_from)
    training_args.update(training_overrides or {})
    pass_cfg = {
        "type": "LoRA",
        "train_data_config": "train_data",
        "r": cfg.r,
        "alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "target_modules": list(cfg.target_modules),
        "torch_dtype": "bfloat16" if cuda else "float32",
        "device_map": "auto" if cuda else None,  # "current_device" calls torch.cuda even on CPU
        "training_args": training_args,
    }
    if eval_texts:
        pass_cfg["eval_data_config"] = "eval_data"
    accel = {"device": "gpu", "execution_providers": ["CUDAExecutionProvider"]} if cuda else \
        {"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}
    config = {
        "input_model": {"type": "HfModel", "model_path": str(model_dir),
                        "load_kwargs": {"attn_implementation": "sdpa" if cuda else "eager",
                                        "trust_remote_code": False}},
        "systems": {"local_system": {"type": "LocalSystem", "accelerators": [accel]}},
        "data_configs": data_configs,
        "passes": {"f": pass_cfg},
        "host": "local_system",
        "target": "local_system",
        "output_dir": str(olive_out),
        "cache_dir": str(out_dir / "olive-cache"),
        "no_artifacts": True,
        "log_severity_level": 3,
    }
    return config


def run_finetune(model_dir, train_texts, eval_texts, cfg, out_dir, log, device: str = "auto",
                 training_overrides: dict | None = None, data_overrides: dict | None = None) -> dict:
    import torch

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    cuda = torch.cuda.is_available() and device != "cpu"
    if not train_texts:
        raise FinetuneError("no training texts")
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = out_dir / "data"
    data_dir.mkdir(exist_ok=True)
    train_file = data_dir / "train.jsonl"
    write_texts(train_file, train_texts)
    eval_file = None
    if eval_texts:
        eval_file = data_dir / "eval.jsonl"
        write_texts(eval_file, eval_texts)

    resume_from, resume_step = last_checkpoint(out_dir / "trainer")
    olive_out = out_dir / "olive"
    for stale in (olive_out, out_dir / "olive-cache"):  # an earlier attempt's partial Olive state
        shutil.rmtree(stale, ignore_errors=True)
    if resume_from:
        log.emit("resume", stage="finetune", step=resume_step)
        log.log(f"resuming fine-tuning from the checkpoint at step {resume_step}")
    config = olive_config(model_dir, train_file, eval_file if eval_texts else None, cfg, out_dir, cuda,
                          training_overrides, data_overrides, resume_from)
    (out_dir / "olive_config.json").write_text(json.dumps(config, indent=2))

    import transformers.trainer as tt
    from olive.workflows import run as olive_run

    state = {"losses": [], "eval_loss": None, "train_loss": None, "steps": 0}
    cb = _make_callback(log, state)
    # capture Olive's own error logs: it often logs a pass failure and returns without a model
    captured: list[str] = []

    class _Grab(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                captured.append(record.getMessage())

    grab = _Grab()
    olive_logger = logging.getLogger("olive")
    olive_logger.addHandler(grab)
    tt.DEFAULT_CALLBACKS.append(cb)
    _cancel.update(active=True, requested=False)
    # Olive creates the LoRA (random A) before the Trainer seeds anything: seed first, so that the same
    # recipe gives the same adapter (and a resumed run the same one as an uninterrupted run)
    from transformers import set_seed
    set_seed(cfg.seed)
    t0 = time.time()
    log.log(f"LoRA fine-tuning with Olive: r={cfg.r} alpha={cfg.alpha} targets={','.join(cfg.target_modules)} "
            f"steps={cfg.max_steps} batch={cfg.batch_size} lr={cfg.learning_rate} on "
            f"{'cuda' if cuda else 'cpu'} ({len(train_texts)} train / {len(eval_texts or [])} eval texts)")
    try:
        olive_run(config)
        if _cancel["requested"]:  # asked after the last step: the run is complete, but the job stops
            raise Cancelled()
    except Exception as e:
        raise FinetuneError(f"Olive LoRA failed: {type(e).__name__}: {e}") from e
    finally:
        _cancel.update(active=False)
        if cb in tt.DEFAULT_CALLBACKS:
            tt.DEFAULT_CALLBACKS.remove(cb)
        olive_logger.removeHandler(grab)
    seconds = time.time() - t0

    adapters = sorted(olive_out.rglob("adapter_config.json"))
    if not adapters:
        cause = "; ".join(captured[-3:]) or "no error was logged"
        raise FinetuneError(f"Olive finished without an output model (No output model produced): {cause}")
    peft_dir = out_dir / "peft"
    if peft_dir.exists():
        shutil.rmtree(peft_dir)
    peft_dir.mkdir()
    src = adapters[-1].parent
    for f in src.iterdir():
        if f.is_file() and (f.name.startswith("adapter_") or f.suffix == ".md"):
            shutil.copy2(f, peft_dir / f.name)
    if not (peft_dir / "adapter_model.safetensors").is_file():
        raise FinetuneError(f"Olive's adapter folder {src} has no adapter_model.safetensors")
    for junk in ("olive-cache", "trainer"):  # Olive's model cache and the Trainer's scratch folder
        shutil.rmtree(out_dir / junk, ignore_errors=True)
    # last logged loss (the Trainer's own "train_loss" is the mean over the run: kept as train_loss_mean)
    train_loss = state["losses"][-1] if state["losses"] else state["train_loss"]
    log.log(f"fine-tuning done in {seconds:.1f} s: {state['steps']} steps, train loss {train_loss}, "
            f"eval loss {state['eval_loss']}")
    return {"peft_dir": str(peft_dir), "steps": state["steps"], "train_loss": train_loss,
            "eval_loss": state["eval_loss"], "train_loss_mean": state["train_loss"],
            "seconds": round(seconds, 2), "losses": state["losses"], "resumed_from_step": resume_step}


def run(job, d: Path) -> dict:
    """Stage `finetune`: LoRA on the prepared weights (the awq stage's output), resuming from the last
    checkpoint of an earlier attempt."""
    from pipeline.data import read_texts
    train = read_texts(job.job_dir / "stages/prepare/train.jsonl")
    evals = read_texts(job.job_dir / "stages/prepare/eval.jsonl") or None
    res = run_finetune(Path(job.out["awq"]["model_dir"]), train, evals, job.recipe.lora, d, job.log)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in res.items()}

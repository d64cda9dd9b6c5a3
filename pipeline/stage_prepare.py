"""Stage `prepare`: the model to train on and the data, rendered.

Onto a published base (recipe.base): the model is exactly that base's prepared weights
(base.json["prepared"]["path"], fingerprint-checked), the target modules must be slots of the base.
A new base (recipe.base == ""): base_model is resolved (local folder or Hub download).
The held-out set is the eval file, or a seeded split carved from the train file (data.split_heldout).
Writes train.jsonl / eval.jsonl (texts for the trainer), heldout.jsonl (messages, prompt and text of each
held-out example, for the evaluate stage) and, for a new base, calib.jsonl (AWQ calibration texts).
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.errors import StageError


def base_meta(models_dir: Path, base: str) -> dict:
    """base.json of a published base that records its prepared weights; StageError saying what to do."""
    meta_file = Path(models_dir) / base / "base.json"
    rebuild = ("rebuild it (for 'default': python -m pipeline build recipes/default-base.yaml), or build a "
               "new base (base: \"\" with base_model)")
    if not meta_file.is_file():
        have = sorted(p.parent.name for p in Path(models_dir).glob("*/base.json"))
        raise StageError(f"base '{base}' is not published (no models/{base}/base.json); published bases: "
                         f"{', '.join(have) or 'none'}. Pick one, or build a new base (base: \"\" with "
                         "base_model)")
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as e:
        raise StageError(f"models/{base}/base.json is not readable JSON ({type(e).__name__}): {rebuild}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("prepared"), dict) \
            or not meta["prepared"].get("path") or not meta["prepared"].get("fingerprint"):
        raise StageError(f"base '{base}' was built before bases recorded the weights they were prepared from "
                         f"(models/{base}/base.json has no 'prepared'), so an adapter cannot be trained on "
                         f"exactly its weights: {rebuild}")
    return meta


def prepared_dir(root: Path, meta: dict) -> Path:
    p = Path(meta["prepared"]["path"]).expanduser()
    return p if p.is_absolute() else Path(root) / p


def prepared_weights(ws, base: str, fingerprint=None) -> tuple[dict, Path]:
    """(base.json, folder of its prepared HF weights). With `fingerprint` (a function of a folder), the
    weights' fingerprint is checked against the one recorded when the base was built."""
    meta = base_meta(ws.models, base)
    path = prepared_dir(ws.root, meta)
    shown = meta["prepared"]["path"]
    how = ("restore them, or rebuild the base (for 'default': python -m pipeline build "
           "recipes/default-base.yaml)")
    if not (path / "config.json").is_file() or not list(path.glob("*.safetensors")):
        raise StageError(f"base '{base}' was prepared from the weights in {shown}, which are not there "
                         f"any more: {how}")
    if fingerprint is not None:
        fp = fingerprint(path)
        if fp != meta["prepared"]["fingerprint"]:
            raise StageError(f"the weights in {shown} changed since base '{base}' was built from them "
                             f"(fingerprint {fp[:12]}, the base recorded {meta['prepared']['fingerprint'][:12]}): "
                             f"an adapter trained on them would not fit the served model; {how}")
    return meta, path


def check_targets(base: str, meta: dict, targets: list[str]) -> None:
    slots = set(meta.get("target_modules") or [])
    missing = [t for t in targets if t not in slots]
    if missing:
        raise StageError(f"base '{base}' has LoRA slots for {', '.join(sorted(slots))} only, not "
                         f"{', '.join(missing)}: use lora.target_modules auto or a subset of its slots")


def _has_cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:
        return False


def run(job, d: Path) -> dict:
    from transformers import AutoTokenizer

    from pipeline import data, hub
    from pipeline.jobs import check_model_folder
    r = job.recipe
    meta = None
    if r.base:
        meta, model_dir = prepared_weights(job.ws, r.base, job.fingerprint)
        job.log.log(f"building onto base '{r.base}': training on its prepared weights {meta['prepared']['path']}")
    else:
        model_dir = hub.resolve_model(r.base_model, log=job.log, project_root=job.ws.root)
    check_model_folder(model_dir, r.trust_remote_code)  # also for a model just downloaded from the Hub
    targets = data.resolve_target_modules(model_dir, r.lora.target_modules)
    if meta is not None:
        check_targets(r.base, meta, targets)
    if targets != r.lora.target_modules:  # 'auto': the job's recipe records what it resolved to
        job.log.log(f"lora.target_modules auto -> {','.join(targets)}")
        r.lora.target_modules = targets
        r.save(job.job_dir / "recipe.yaml")
    tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=r.trust_remote_code)
    if not r.template and not getattr(tok, "chat_template", None):
        raise StageError(f"{r.base_model} has no chat template: give a text template with {{prompt}} "
                         "and {response}")
    train_path = job.ws.resolve_input(r.train_file)
    examples = data.load_examples(train_path, r.data_format)
    if r.eval_file:
        eval_path = job.ws.resolve_input(r.eval_file)
        train, held = examples, data.load_examples(eval_path, r.data_format)
        source = job.ws.shown(r.eval_file)
    else:
        eval_path = None
        train, held = data.split_heldout(examples, r.eval_fraction, r.lora.seed)
        source = f"held-out split of {job.ws.shown(r.train_file)}"
    texts = [data.render_text(ex, tok, r.template) for ex in train]
    eval_texts = [data.render_text(ex, tok, r.template) for ex in held]
    for name, rows in (("train.jsonl", texts), ("eval.jsonl", eval_texts)):
        data.write_texts(d / name, rows)
    with open(d / "heldout.jsonl", "w", encoding="utf-8") as f:
        for ex, text in zip(held, eval_texts):
            f.write(json.dumps({"messages": ex["messages"], "prompt": data.render_prompt(ex, tok, r.template),
                                "text": text}, ensure_ascii=False) + "\n")
    if meta is None:
        data.write_texts(d / "calib.jsonl", data.calibration_texts(train, tok, r.template, r.awq.calib_samples))
        ep = r.onnx.execution_provider
        if ep == "auto":
            ep = "cuda" if _has_cuda() else "cpu"
    else:
        ep = meta.get("execution_provider", "cpu")
    job.log.log(f"model {job.ws.shown(model_dir)}; {len(train)} training examples; "  # the page shows the log
                + data.heldout_note(len(examples), r.eval_file, len(held), r.eval_fraction, r.lora.seed)
                + f"; ONNX for {ep}")
    return {"model_dir": str(model_dir), "model_fingerprint": job.fingerprint(model_dir),
            "train_file": str(train_path), "train_sha256": data.file_sha256(train_path),
            "train_examples": len(train), "eval_file": str(eval_path or ""),
            "eval_sha256": data.file_sha256(eval_path) if eval_path else "",
            "eval_examples": len(held), "eval_source": source, "execution_provider": ep,
            "base": r.base, "base_fingerprint": meta["fingerprint"] if meta else "",
            "source_model": meta["prepared"].get("source", "") if meta else r.base_model}

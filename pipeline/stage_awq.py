"""AWQ preparation: activation-aware scaling and clipping applied to float weights.

autoawq's `quantize(..., export_compatible=True)` applies the AWQ scales and clipping but keeps the
weights in float; we save the plain HF model (`model.model.save_pretrained`) plus tokenizer files.
NOT `save_quantized`: it writes an AWQ quantization_config over float weights that neither
transformers 5 nor the onnxruntime-genai builder can load (see shared notes, stack.md).
The int4 quantization itself happens later in the ONNX builder.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "chat_template.jinja", "generation_config.json", "vocab.json", "merges.txt",
                   "added_tokens.json")


class AWQError(RuntimeError):
    pass


def copy_model(src: Path, dst: Path) -> list[str]:
    """Hard-link (or copy) every file of a model folder into dst."""
    dst.mkdir(parents=True, exist_ok=True)
    done = []
    for f in sorted(Path(src).iterdir()):
        if not f.is_file():
            continue
        target = dst / f.name
        if target.exists():
            target.unlink()
        try:
            os.link(f, target)
        except OSError:
            shutil.copy2(f, target)
        done.append(f.name)
    return done


def _want_device(cfg) -> tuple[str | None, str]:
    import torch
    if not cfg.enabled:
        return None, "AWQ is disabled in the recipe (awq.enabled = false): the base weights are used as is"
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise AWQError("awq.device = cuda but no CUDA GPU is available; use 'auto' (skips AWQ on CPU) or 'cpu'")
    if cfg.device == "auto" and not torch.cuda.is_available():
        return None, ("no CUDA GPU: AWQ skipped (awq.device = auto). On CPU it takes minutes even for "
                      "small models; set awq.device = cpu to force it")
    return ("cuda" if cfg.device in ("auto", "cuda") else "cpu"), ""


def run_awq(model_dir, out_dir, cfg, calib_texts, log, trust_remote_code: bool = False) -> dict:
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    device, reason = _want_device(cfg)
    if device is None:
        log.log(reason)
        copy_model(model_dir, out_dir)
        return {"skipped": reason}
    import json

    import torch
    model_type = json.loads((model_dir / "config.json").read_text()).get("model_type", "?")
    try:
        from awq import AutoAWQForCausalLM
        from awq.models.base import BaseAWQForCausalLM  # noqa: F401
        from awq.models.auto import AWQ_CAUSAL_LM_MODEL_MAP
    except Exception as e:
        raise AWQError(f"autoawq cannot be imported ({type(e).__name__}: {e})") from None
    if model_type not in AWQ_CAUSAL_LM_MODEL_MAP:
        raise AWQError(f"autoawq does not support the architecture {model_type!r}; disable AWQ "
                       "(awq.enabled = false) for this model")
    if not calib_texts:
        raise AWQError("AWQ needs calibration texts, got none")
    from transformers import AutoTokenizer

    dtype = torch.float16 if device == "cuda" else torch.float32
    t0 = time.time()
    log.log(f"AWQ on {device} ({dtype}): {len(calib_texts)} calibration texts, "
            f"{cfg.calib_seq_len} tokens each, group size {cfg.group_size}, {cfg.w_bit} bit")
    tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    try:
        model = AutoAWQForCausalLM.from_pretrained(str(model_dir), torch_dtype=dtype, device_map=device,
                                                   trust_remote_code=trust_remote_code,
                                                   safetensors=True)
        quant_config = {"zero_point": True, "q_group_size": cfg.group_size, "w_bit": cfg.w_bit,
                        "version": "GEMM"}
        # autoawq splits the joined calibration tokens into blocks of max_calib_seq_len; it needs at
        # least one full block, so cap the length at what the texts provide.
        n_tok = sum(len(tok(t)["input_ids"]) for t in calib_texts)
        seq_len = max(8, min(cfg.calib_seq_len, n_tok // max(1, len(calib_texts)) or 8, n_tok))
        model.quantize(tok, quant_config=quant_config, calib_data=list(calib_texts),
                       max_calib_samples=len(calib_texts), max_calib_seq_len=seq_len,
                       export_compatible=True)
    except Exception as e:
        hint = ""
        if isinstance(e, AssertionError):
            hint = (" (autoawq needs every linear layer's output size divisible by 64 and its input size "
                    "divisible by the group size)")
        raise AWQError(f"AWQ failed on the {model_type} architecture: {type(e).__name__}: {e}{hint}") from e
    out_dir.mkdir(parents=True, exist_ok=True)
    inner = model.model
    inner.to(torch.float32 if device == "cpu" else dtype)
    if getattr(inner.config, "quantization_config", None) is not None:
        del inner.config.quantization_config
    inner.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    for name in TOKENIZER_FILES:  # keep the original tokenizer files byte for byte
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, out_dir / name)
    seconds = time.time() - t0
    log.log(f"AWQ done in {seconds:.1f} s")
    del model, inner
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"device": device, "dtype": str(dtype).replace("torch.", ""), "seconds": round(seconds, 2),
            "calib_texts": len(calib_texts), "calib_seq_len": seq_len, "group_size": cfg.group_size,
            "w_bit": cfg.w_bit, "model_type": model_type}


def run(job, d: Path) -> dict:
    """Stage `awq`: skipped onto a published base (its prepared weights are used) and when AWQ is off;
    otherwise AWQ on the resolved model, kept in the content-hash cache."""
    import json

    from pipeline.data import read_texts
    from pipeline.stage_prepare import _has_cuda
    p = job.out["prepare"]
    r = job.recipe
    if r.base:
        return {"_skip": f"building onto base '{r.base}'", "model_dir": p["model_dir"],
                "fingerprint": p["base_fingerprint"], "info": {"skipped": f"onto base '{r.base}'"}}
    cfg = r.awq
    device, reason = _want_device(cfg)
    if device is None:  # off in the recipe, or 'auto' without a GPU: the model's own weights, as they are
        job.log.log(reason)
        return {"_skip": reason, "model_dir": p["model_dir"], "fingerprint": p["model_fingerprint"],
                "info": {"skipped": reason}}
    calib = read_texts(job.job_dir / "stages/prepare/calib.jsonl")
    key = job.sha({"model": p["model_fingerprint"], "awq": r.to_dict()["awq"],
                   "cuda": _has_cuda() if cfg.device == "auto" else cfg.device})
    info: dict = {}

    def build(tmp: Path):
        nonlocal info
        info = run_awq(Path(p["model_dir"]), tmp / "model", cfg, calib, job.log,
                       trust_remote_code=r.trust_remote_code) or {}
        return {"info": info, "calibration": p["train_file"]}

    path, hit = job.cached("awq", key, build)
    if hit:
        info = json.loads((path / "CACHE.json").read_text()).get("info", {})
    return {"model_dir": str(path / "model"), "fingerprint": job.fingerprint(path / "model"),
            "info": info, "_cached": str(path) if hit else False}

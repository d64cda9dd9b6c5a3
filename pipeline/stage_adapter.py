"""PEFT LoRA -> onnxruntime `.onnx_adapter` for a base built by stage_onnx; fingerprints.

`olive convert-adapters` writes names the genai graph does not have (`self_attn`, no q/k/v split), so
this is a small converter of our own. It reads the model's LoRA inputs and writes exactly those names
and shapes, for either layout (pipeline/lora_layout.py):
- "fused_qkv" (Phi3 bases built by the pipeline): `model.layers.{i}.attn.{qkv,o}_proj.lora_{A,B}.MatMul.weight`;
  PEFT's `qkv_proj` A as [in, r], its B as [r, q+2kv] (rows of PEFT's B are already q|k|v);
- "builder" (Llama-style separate q/k/v, or Phi3 bases built before the fused layout): keys
  `...attn.{q,k,v,o}_proj...`, a fused `qkv_proj` A copied to q/k/v and B split by columns into
  [q_size, kv_size, kv_size].
B is multiplied by alpha/r (alpha/sqrt(r) with rslora). Slots the adapter does not fill (e.g. o_proj when
it targets only qkv_proj) get zeros of the adapter's rank. Every name and shape is checked against the model.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

KEY = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:self_attn|attn)\.(q_proj|k_proj|v_proj|o_proj|qkv_proj)"
                 r"\.lora_(A|B)(?:\.default)?\.weight$")


class AdapterError(ValueError):
    pass


def _model_inputs(onnx_dir: Path) -> dict:
    from pipeline.stage_onnx import lora_inputs
    gcfg = json.loads((onnx_dir / "genai_config.json").read_text())
    return lora_inputs(onnx_dir / gcfg["model"]["decoder"]["filename"])


def _dtype_of(onnx_dir: Path) -> np.dtype:
    import onnx
    gcfg = json.loads((onnx_dir / "genai_config.json").read_text())
    m = onnx.load(str(onnx_dir / gcfg["model"]["decoder"]["filename"]), load_external_data=False)
    for i in m.graph.input:
        if ".lora_" in i.name:
            return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
    return np.dtype(np.float32)


def peft_to_tensors(peft_dir, q_size: int | None = None, kv_size: int | None = None,
                    layout: str = "builder") -> tuple[dict, dict]:
    """{onnx input name: np.ndarray} (scaling folded into B) and the adapter config, named for the
    `layout` ("builder": q/k/v slots; "fused_qkv": one qkv slot)."""
    from pipeline.lora_layout import BUILDER, FUSED
    if layout not in (BUILDER, FUSED):
        raise ValueError(f"unknown LoRA layout {layout!r}")
    from safetensors.numpy import load_file
    peft_dir = Path(peft_dir)
    cfg_file, w_file = peft_dir / "adapter_config.json", peft_dir / "adapter_model.safetensors"
    if not cfg_file.is_file() or not w_file.is_file():
        raise AdapterError(f"{peft_dir}: not a PEFT folder (needs adapter_config.json and "
                           "adapter_model.safetensors)")
    acfg = json.loads(cfg_file.read_text())
    if acfg.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"{peft_dir}: adapter type {acfg.get('peft_type')} is not LoRA")
    if isinstance(acfg.get("target_modules"), str):
        acfg["target_modules"] = [acfg["target_modules"]]
    r = int(acfg["r"])
    alpha = float(acfg.get("lora_alpha", r))
    scale = alpha / r
    if acfg.get("use_rslora"):
        scale = alpha / r ** 0.5
    if acfg.get("use_dora"):
        raise AdapterError(f"{peft_dir}: DoRA adapters cannot be served in the LoRA slots")
    if acfg.get("rank_pattern") or acfg.get("alpha_pattern"):
        raise AdapterError(f"{peft_dir}: per-module rank_pattern/alpha_pattern is not supported: every "
                           "LoRA slot of an adapter must share one rank and one alpha")
    # the raw state dict may be bf16: read through torch when numpy cannot
    try:
        sd = load_file(str(w_file))
    except Exception:
        from safetensors.torch import load_file as tload
        sd = {k: v.float().numpy() for k, v in tload(str(w_file)).items()}
    out, unknown = {}, []
    for key, w in sd.items():
        m = KEY.search(key)
        if not m:
            unknown.append(key)
            continue
        layer, proj, ab = int(m.group(1)), m.group(2), m.group(3)
        w = w.astype(np.float32)
        t = w.T.copy()  # A: [r, in] -> [in, r]; B: [out, r] -> [r, out]
        if ab == "B":
            t = t * scale
        if proj in ("q_proj", "k_proj", "v_proj") and layout == FUSED:
            raise AdapterError(f"{peft_dir}: the adapter does not fit this base: it has separate {proj} "
                               "LoRA weights, but this base "
                               "packs q/k/v into one qkv_proj slot (fused_qkv layout): it was trained for "
                               "another model")
        if proj == "qkv_proj" and layout == FUSED:
            parts = {"qkv_proj": t}
        elif proj == "qkv_proj":
            if q_size is None:
                raise AdapterError("a fused qkv_proj LoRA needs the model's q/kv sizes")
            if ab == "A":
                parts = {"q_proj": t, "k_proj": t, "v_proj": t}
            else:
                if t.shape[1] != q_size + 2 * kv_size:
                    raise AdapterError(f"{peft_dir}: qkv_proj LoRA B has {t.shape[1]} outputs, the model's "
                                       f"qkv has {q_size + 2 * kv_size} (another hidden size?)")
                parts = {"q_proj": t[:, :q_size], "k_proj": t[:, q_size:q_size + kv_size],
                         "v_proj": t[:, q_size + kv_size:]}
        else:
            parts = {proj: t}
        for p, arr in parts.items():
            out[f"model.layers.{layer}.attn.{p}.lora_{ab}.MatMul.weight"] = np.ascontiguousarray(arr)
    if unknown:
        raise AdapterError(f"{peft_dir}: LoRA weights for modules the ONNX slots do not have: "
                           f"{', '.join(sorted(unknown)[:4])}{' ...' if len(unknown) > 4 else ''} "
                           "(only attention q/k/v/o projections can be served)")
    if not out:
        raise AdapterError(f"{peft_dir}: no LoRA weights found")
    ranks = {(a.shape[1] if ".lora_A." in n else a.shape[0]) for n, a in out.items()}
    if len(ranks) != 1:
        raise AdapterError(f"{peft_dir}: LoRA weights of different ranks {sorted(ranks)}; the slots need one rank")
    return out, acfg


def _sizes(onnx_dir: Path, inputs: dict):
    q = inputs.get("model.layers.0.attn.q_proj.lora_B.MatMul.weight")
    k = inputs.get("model.layers.0.attn.k_proj.lora_B.MatMul.weight")
    return (q[-1] if q else None), (k[-1] if k else None)


def convert_adapter(peft_dir, onnx_dir, out_file) -> dict:
    peft_dir, onnx_dir, out_file = Path(peft_dir), Path(onnx_dir), Path(out_file)
    inputs = _model_inputs(onnx_dir)
    if not inputs:
        raise AdapterError(f"{onnx_dir}: the ONNX model has no LoRA inputs (built without slots?)")
    from artifacts import ROWS_DIM, has_rows, write_adapter_file
    from pipeline.lora_layout import layout_of
    layout = layout_of(inputs)
    q_size, kv_size = _sizes(onnx_dir, inputs)
    tensors, acfg = peft_to_tensors(peft_dir, q_size, kv_size, layout)
    missing_in_model = sorted(set(tensors) - set(inputs))
    if missing_in_model:
        have = sorted({n.split(".")[4] for n in inputs})
        raise AdapterError(f"the adapter does not fit this model: it has LoRA weights "
                           f"{', '.join(missing_in_model[:3])}{' ...' if len(missing_in_model) > 3 else ''} "
                           f"that the model has no slot for (its slots: {', '.join(have)}; "
                           f"the adapter targets {', '.join(acfg.get('target_modules') or [])}; "
                           f"layout {layout})")
    rows = has_rows(inputs)
    if rows:  # one adapter = one row, broadcast over the batch (pipeline/lora_layout.py, rows)
        tensors = {k: v[None] for k, v in tensors.items()}
    rank = None
    for name, arr in tensors.items():
        dims = inputs[name]
        if len(dims) != arr.ndim:
            raise AdapterError(f"{name}: rank-{arr.ndim} tensor for a rank-{len(dims)} input")
        for d, s in zip(dims, arr.shape):
            if isinstance(d, int) and d > 0 and d != s:
                raise AdapterError(f"the adapter does not fit this model: {name} has shape {list(arr.shape)}, "
                                   f"the model expects {dims} (another hidden size or model?)")
        rank = arr.shape[-1] if ".lora_A." in name else arr.shape[-2]
    # slots the adapter does not fill get zero-rank tensors?  No: the model's defaults are rank 0 and
    # an adapter must set every slot with one rank; fill the others with zeros of the adapter's rank.
    dtype = _dtype_of(onnx_dir)
    for name, dims in inputs.items():
        if name not in tensors:
            shape = [1 if d == ROWS_DIM else rank if not isinstance(d, int) or d <= 0 else d for d in dims]
            tensors[name] = np.zeros(shape, dtype=np.float32)
    write_adapter_file({name: arr.astype(dtype) for name, arr in tensors.items()}, out_file)
    return {"file": str(out_file), "rank": int(acfg["r"]), "alpha": acfg.get("lora_alpha"),
            "target_modules": sorted(acfg.get("target_modules") or []), "tensors": len(tensors),
            "lora_layout": layout, "lora_rows": rows, "size_bytes": out_file.stat().st_size}


def model_fingerprint(model_dir, memo: Path | None = None) -> str:
    """sha256 over config.json and the safetensors weights (sorted by name). With `memo` (a JSON file),
    a folder whose files have the same names, sizes and mtimes as last time is not read again: hashing
    a 3.8 B model's 7.6 GB takes seconds, and every build fingerprints its base and AWQ output."""
    model_dir = Path(model_dir)
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise AdapterError(f"{model_dir}: no .safetensors weights to fingerprint")
    if (model_dir / "config.json").is_file():
        files = [model_dir / "config.json"] + files
    sig = [[f.name, st.st_size, st.st_mtime_ns] for f in files for st in [f.stat()]]
    key = str(model_dir.resolve())
    seen = {}
    if memo is not None and Path(memo).is_file():
        try:
            seen = json.loads(Path(memo).read_text())
        except ValueError:
            seen = {}
        if seen.get(key, {}).get("sig") == sig:
            return seen[key]["sha256"]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    digest = h.hexdigest()
    if memo is not None:
        seen[key] = {"sig": sig, "sha256": digest}
        Path(memo).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(memo).with_name(f"{Path(memo).name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(seen))
        tmp.replace(memo)
    return digest


def _name_base_as_shown(peft: Path, ws) -> None:
    """PEFT records the base model's folder (adapter_config.json base_model_name_or_path, the README card);
    adapters travel to the Library, exported Spaces and the Hub, so a local folder is named as ws.shown names
    it, never with the server's folders."""
    cfg = peft / "adapter_config.json"
    d = json.loads(cfg.read_text(encoding="utf-8"))
    src = d.get("base_model_name_or_path")
    if not (isinstance(src, str) and Path(src).is_absolute()):
        return
    d["base_model_name_or_path"] = ws.shown_model(src)
    cfg.write_text(json.dumps(d, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    card = peft / "README.md"
    if card.is_file():
        card.write_text(card.read_text(encoding="utf-8").replace(src, ws.shown_model(src)), encoding="utf-8")


def _recorded_recipe(ws, r) -> dict:
    """The recipe as the adapter's metadata records it: file paths named as ws.shown names them (the app
    resolves a request's paths to absolute ones; metadata travels to everyone who opens the Library and to
    exported Spaces)."""
    d = r.to_dict()
    for key in ("train_file", "eval_file"):
        d[key] = ws.shown(d.get(key))
    d["base_model"] = ws.shown_model(d.get("base_model"))
    return d


def run(job, d: Path) -> dict:
    """Stage `adapter`: the PEFT LoRA as .onnx_adapter for the base, with peft/ and metadata.json, in
    <stage>/built/<name>/ (the evaluate stage serves it from there, publish copies it into adapters/)."""
    from datetime import datetime, timezone

    from artifacts import owner_tag, quota_tag
    from pipeline.jobs import client_of_run
    r = job.recipe
    client = client_of_run(job.job_dir)
    ft, prep, onnx = job.out["finetune"], job.out["prepare"], job.out["onnx"]
    out = d / "built" / r.adapter_name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    info = convert_adapter(Path(ft["peft_dir"]), Path(onnx["onnx_dir"]), out / "adapter.onnx_adapter") or {}
    shutil.copytree(ft["peft_dir"], out / "peft")
    _name_base_as_shown(out / "peft", job.ws)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    meta = {
        "name": r.adapter_name, "format": "onnx_adapter",
        "base_fingerprint": job.out["awq"]["fingerprint"], "base_name": onnx["base_name"],
        "base_model": job.ws.shown_model(prep.get("source_model", r.base_model)),
        "dataset": {"train_file": job.ws.shown(r.train_file), "sha256": prep["train_sha256"],
                    "examples": prep["train_examples"], "eval_file": job.ws.shown(r.eval_file),
                    "eval_sha256": prep["eval_sha256"], "eval_examples": prep["eval_examples"],
                    "eval_source": prep.get("eval_source", job.ws.shown(r.eval_file))},
        "recipe": _recorded_recipe(job.ws, r), "rank": r.lora.r, "alpha": r.lora.alpha,
        "target_modules": r.lora.target_modules, "steps": ft.get("steps"),
        "train_loss": ft.get("train_loss"), "eval_loss": ft.get("eval_loss"),
        "timings": dict(job.timings), "size_bytes": size,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "job": job.job_dir.name,
        "tensors": info.get("tensors"),
        # who may replace or delete it from the web page: the tag of the client that started the build
        # (artifacts/owners.py; none for the command line and the operator)
        "owner": owner_tag(job.ws, client),
        "quota": quota_tag(job.ws, client),  # whose per-client limit it counts against
    }
    (out / "metadata.json").write_text(json.dumps(meta, indent=2, default=str))
    served = (out / "adapter.onnx_adapter").stat().st_size
    job.log.log(f"adapter {r.adapter_name} built: adapter.onnx_adapter {served / 1e6:.2f} MB (what is served; "
                f"{size / 1e6:.2f} MB with its PEFT copy)")
    return {"adapter_dir": str(out), "size_bytes": size}

"""ONNX base for onnxruntime-genai with float LoRA slots.

1. The onnxruntime-genai model builder is called directly (`python -m onnxruntime_genai.models.builder`
   in a subprocess), not through Olive: Olive 0.13's ModelBuilder pass imports
   `onnxruntime_genai.models.quantized_model`, which no longer exists in onnxruntime-genai 0.18 (see
   shared notes, stack.md). With `adapter_path` the builder bakes the PEFT LoRA into the graph as
   `/model/layers.{i}/attn/{q,k,v,o}_proj/lora_{A,B}/MatMul` nodes (Phi3's fused qkv LoRA split into
   q/k/v); `nodes_to_exclude` keeps those MatMuls out of int4 quantization so the slots stay float.
   0.18 reads `block_size` / `accuracy_level` (the old int4_* names are silently ignored).
2. Olive's ExtractAdapters pass (what `olive generate-adapter --adapter_format onnx_adapter` runs)
   turns the LoRA weights into graph inputs with a dynamic rank and rank-0 defaults, so the model
   runs with no adapter set.
3. LoRA layout (pipeline/lora_layout.py): when the q/k/v slots come from a fused `qkv_proj` (Phi3), the
   graph is rewritten in place to the "fused_qkv" layout: one packed q/k/v base projection, one LoRA A,
   one LoRA B (B_qkv = [Bq | Bk | Bv]), one Add, GroupQueryAttention fed packed QKV. Same function,
   about half the LoRA kernels per token (H200 Phi-3.5-mini int4 + r16 adapter: 79 -> 149 tokens/s,
   no CUDA graph; slots without adapter 251 -> 304; bench/NOTES.md). Models with separate q/k/v
   projections (Llama style; their q/k/v LoRAs have different A's) keep the builder's layout.
   The result says which: `lora_layout: "fused_qkv" | "builder"`; `lora_inputs` are the final graph's.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROJ = ("q_proj", "k_proj", "v_proj", "o_proj")


class OnnxBuildError(RuntimeError):
    pass


def _resolve_ep(ep: str) -> str:
    if ep in ("cpu", "cuda"):
        return ep
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def lora_node_names(num_layers: int) -> list[str]:
    return [f"/model/layers.{i}/attn/{p}/lora_{ab}/MatMul"
            for i in range(num_layers) for p in PROJ for ab in ("A", "B")]


def _run_builder(model_dir: Path, peft_dir: Path, precision: str, ep: str, out: Path, cache: Path,
                 cfg, num_layers: int, log) -> None:
    extra = [f"adapter_path={peft_dir}"]
    if precision == "int4":
        extra += [f"block_size={cfg.block_size}", f"accuracy_level={cfg.accuracy_level}",
                  # asymmetric with zero points: the AWQ scheme (default); symmetric: what fpA_intB takes
                  f"is_symmetric={'true' if cfg.symmetric else 'false'}",
                  # builder 0.18 bug: with is_symmetric=false a tied LM head/embedding is wired to the
                  # float lm_head weight (GatherBlockQuantized without scales: the model fails to load),
                  # so tied models get a separate embedding; untied models (Phi-3.5-mini) are unaffected
                  "shared_embeddings=false",
                  "nodes_to_exclude=" + ",".join(lora_node_names(num_layers))]
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(model_dir), "-o", str(out),
           "-p", precision, "-e", ep, "-c", str(cache), "--extra_options", *extra]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not (out / "genai_config.json").is_file():
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-12:]
        raise OnnxBuildError("onnxruntime-genai builder failed (exit %d): %s" % (proc.returncode, "\n".join(tail)))


def _extract_adapters(onnx_dir: Path, out: Path, log) -> Path:
    """Olive ExtractAdapters on onnx_dir/model.onnx -> out (model.onnx + weights + adapter file)."""
    from olive.workflows import run as olive_run
    config = {
        "input_model": {"type": "ONNXModel", "model_path": str(onnx_dir), "onnx_file_name": "model.onnx"},
        "systems": {"local_system": {"type": "LocalSystem", "accelerators": [
            {"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}]}},
        "passes": {"e": {"type": "ExtractAdapters", "save_format": "onnx_adapter", "adapter_type": "lora",
                         "make_inputs": True, "dynamic_lora_r": True, "optional_inputs": True}},
        "host": "local_system", "target": "local_system",
        "output_dir": str(out), "cache_dir": str(out.parent / "olive-cache"),
        "no_artifacts": True, "log_severity_level": 3,
    }
    try:
        olive_run(config)
    except Exception as e:
        raise OnnxBuildError(f"Olive ExtractAdapters failed: {type(e).__name__}: {e}") from e
    onnx_files = sorted(out.rglob("*.onnx"))
    if not onnx_files:  # Olive can return without an output ("No output model produced")
        raise OnnxBuildError("Olive ExtractAdapters produced no model (No output model produced); "
                             "does the model have LoRA nodes?")
    return onnx_files[0]


def lora_inputs(model_path: Path) -> dict:
    """{input_name: [dims]} of the model's LoRA inputs (dynamic dims as their names)."""
    import onnx
    m = onnx.load(str(model_path), load_external_data=False)
    res = {}
    for i in m.graph.input:
        if ".lora_" not in i.name:
            continue
        dims = [d.dim_param if d.dim_param else d.dim_value for d in i.type.tensor_type.shape.dim]
        res[i.name] = dims
    return res


def hf_has_fused_qkv(model_dir: Path) -> bool:
    """Whether the HF checkpoint stores attention q/k/v as one `qkv_proj` weight (Phi3)."""
    from safetensors import safe_open
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(f), framework="np") as st:
            if any(".qkv_proj." in k for k in st.keys()):
                return True
    return False


def _apply_layout(out_dir: Path, model_dir: Path, layout: str, log, rows: bool = True) -> str:
    """Rewrite out_dir's graph: the fused qkv layout when it applies, then (rows=True) the per-row LoRA
    dim that lets compare mode batch two variants (pipeline/lora_layout.py). Returns the q/k/v layout."""
    import onnx

    from pipeline import lora_layout as LL
    levers = []
    if layout != LL.BUILDER:
        m = onnx.load(str(LL.model_file(out_dir)), load_external_data=False)
        applicable = LL.has_qkv_slots(m) and hf_has_fused_qkv(model_dir)
        del m
        if applicable:
            levers.append("fuse_qkv")
        elif layout == LL.FUSED:
            raise OnnxBuildError("lora_layout fused_qkv asked for, but the model has no q/k/v LoRA slots "
                                 "from a fused qkv_proj")
    if rows:
        levers.append(LL.ROWS)
    if not levers:
        return LL.BUILDER
    try:
        info = LL.rewrite_in_place(out_dir, levers)
    except LL.LayoutError as e:
        raise OnnxBuildError(f"the LoRA slot layout ({'+'.join(levers)}) does not fit this graph: {e}") from e
    if "fuse_qkv" in levers:
        log.log(f"LoRA layout fused_qkv: {info['layers']} layers, one q/k/v projection and one LoRA A/B each")
    if rows:
        log.log("LoRA slots take a per-row dim: compare mode runs two variants as one batch of 2")
    return LL.FUSED if "fuse_qkv" in levers else LL.BUILDER


def build_onnx(model_dir, peft_dir, cfg, ep, out_dir, log, lora_layout: str = "auto", rows: bool = True) -> dict:
    """lora_layout: "auto" (fused_qkv where the q/k/v slots come from a fused qkv_proj, else builder),
    "fused_qkv" (error if it does not apply) or "builder" (the genai builder's graph, for comparisons).
    rows: give every LoRA input the leading per-row dim (compare mode as one batch; False for benches)."""
    if lora_layout not in ("auto", "fused_qkv", "builder"):
        raise ValueError(f"lora_layout must be auto, fused_qkv or builder, not {lora_layout!r}")
    model_dir, peft_dir, out_dir = Path(model_dir), Path(peft_dir), Path(out_dir)
    ep = _resolve_ep(ep)
    hf = json.loads((model_dir / "config.json").read_text())
    arch = (hf.get("architectures") or ["?"])[0]
    if (arch == "Phi3ForCausalLM" and hf.get("original_max_position_embeddings") not in
            (None, hf.get("max_position_embeddings")) and
            (hf.get("rope_parameters") or hf.get("rope_scaling") or {}).get("rope_type",
                                                                               (hf.get("rope_scaling") or {}).get("type")) not in ("longrope", "su")):
        raise OnnxBuildError("this Phi3 config has max_position_embeddings != original_max_position_embeddings "
                             "without LongRoPE factors: the onnxruntime-genai builder cannot build it; set both "
                             "to the same value in config.json")
    num_layers = int(hf["num_hidden_layers"])
    precision = cfg.precision
    work = out_dir.parent / (out_dir.name + ".work")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    timings = {}

    t0 = time.time()
    log.log(f"building the {precision} ONNX model for {ep} with onnxruntime-genai (LoRA slots kept float)")
    built = work / "built"
    _run_builder(model_dir, peft_dir, precision, ep, built, work / "hf-cache", cfg, num_layers, log)
    timings["builder"] = round(time.time() - t0, 2)
    log.log(f"builder: {timings['builder']:.1f} s")

    t0 = time.time()
    extracted = work / "extracted"
    model_file = _extract_adapters(built, extracted, log)
    timings["extract_adapters"] = round(time.time() - t0, 2)
    log.log(f"Olive ExtractAdapters: {timings['extract_adapters']:.1f} s")

    # assemble: the extracted graph (+ its external data) and the builder's genai/tokenizer files
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    for f in model_file.parent.iterdir():
        if f.is_file() and (f.suffix in (".onnx", ".data", ".onnx_adapter") or f.name.endswith(".onnx.data")):
            shutil.move(str(f), out_dir / f.name)
    for f in built.iterdir():
        if f.is_file() and not (f.suffix == ".onnx" or f.name.endswith(".onnx.data")) and \
                not (out_dir / f.name).exists():
            shutil.copy2(f, out_dir / f.name)
    gcfg_path = out_dir / "genai_config.json"
    gcfg = json.loads(gcfg_path.read_text())
    gcfg["model"]["decoder"]["filename"] = model_file.name
    gcfg_path.write_text(json.dumps(gcfg, indent=4))
    # the adapter baked in at build time is not part of the base: the pipeline writes its own
    first_adapter = [f.name for f in out_dir.glob("*.onnx_adapter")]
    for name in first_adapter:
        (out_dir / name).rename(work / name)

    t0 = time.time()
    layout = _apply_layout(out_dir, model_dir, lora_layout, log, rows)
    timings["layout"] = round(time.time() - t0, 2)
    inputs = lora_inputs(out_dir / model_file.name)
    if not inputs:
        raise OnnxBuildError("the ONNX model has no LoRA inputs after ExtractAdapters")
    shutil.rmtree(work, ignore_errors=True)
    files = sorted(f.name for f in out_dir.iterdir())
    size = sum(f.stat().st_size for f in out_dir.iterdir())
    log.log(f"ONNX base: {len(inputs)} LoRA inputs ({layout} layout), {size / 1e6:.1f} MB")
    return {"lora_inputs": inputs, "lora_layout": layout, "lora_rows": rows, "files": files, "precision": precision, "execution_provider": ep,
            "block_size": cfg.block_size if precision == "int4" else None,
            "accuracy_level": cfg.accuracy_level if precision == "int4" else None,
            "symmetric": cfg.symmetric if precision == "int4" else None,
            "timings": timings, "size_bytes": size}


def run(job, d: Path) -> dict:
    """Stage `onnx`: skipped onto a published base; otherwise the int4 ONNX base (content-hash cache),
    published once into models/<base_name>/ with base.json (job.publish_base)."""
    r = job.recipe
    if r.base:
        return {"_skip": f"building onto base '{r.base}'", "onnx_dir": str(job.ws.models / r.base),
                "base_name": r.base}
    ep = job.out["prepare"]["execution_provider"]
    awq = job.out["awq"]
    onnx_opts = r.to_dict()["onnx"]
    if not onnx_opts.get("symmetric"):  # keys of builds made before the option stay valid
        onnx_opts.pop("symmetric", None)
    key = job.sha({"model": awq["fingerprint"], "onnx": onnx_opts, "ep": ep,
                   "targets": sorted(r.lora.target_modules), "layout": 3})  # 3: + per-row LoRA dim
    info: dict = {}

    def build(tmp: Path):
        nonlocal info
        info = build_onnx(Path(awq["model_dir"]), Path(job.out["finetune"]["peft_dir"]), r.onnx, ep,
                          tmp / "model", job.log) or {}
        return {"info": info}

    path, hit = job.cached("onnx", key, build)
    if hit:
        info = json.loads((path / "CACHE.json").read_text()).get("info", {})
    base_dir = job.publish_base(path / "model", info, ep)
    return {"onnx_dir": str(base_dir), "base_name": base_dir.name, "cache": str(path),
            "_cached": str(path) if hit else False}

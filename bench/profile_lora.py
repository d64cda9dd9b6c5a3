"""Where does the per-token cost of an active LoRA adapter go?

1. Graph inspection (no GPU needed; works on a `-e cuda` build made on the CPU):
     python bench/profile_lora.py inspect MODEL_DIR [MODEL_DIR ...]
   counts LoRA MatMul / Add nodes per layer, their dtypes against the model's io dtype, Cast nodes
   touching them, whether q/k/v carry separate copies of one LoRA-A, how many MatMulNBits the
   attention projections use.
2. onnxruntime profiling of decode steps with and without the adapter (genai_config session_options
   enable_profiling, set through og.Config.overlay; CUDA graph off, since a captured graph hides nodes):
     python bench/profile_lora.py profile --model HF_DIR --work WORK --device cuda --out $OUT/profile.json
   builds (or reuses) the int4 slots model of bench/run.py, converts the r16 adapter, applies the
   bench/lora_rewrite.py levers, and for each variant x {no adapter, r16} sums the node times of the
   decode steps per token, by op type and by role (LoRA MatMul / LoRA Add / MatMulNBits / attention /
   other). On the CUDA EP a node's time is what the host spends in it (launch + any sync), not the
   kernel's device time: for M=1 decode that is the cost that matters when the GPU waits on launches.
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402
import lora_rewrite as RW  # noqa: E402
from pipeline.lora_layout import model_file, num_layers  # noqa: E402

DT = {1: "float32", 10: "float16", 16: "bfloat16", 7: "int64", 6: "int32", 2: "uint8"}


def inspect(model_dir: Path) -> dict:
    import onnx
    mfile = model_file(Path(model_dir))
    m = onnx.load(str(mfile), load_external_data=False)
    g = m.graph
    inputs = {}
    for i in g.input:
        inputs.setdefault(i.name, []).append(i)
    prod = {o: n for n in g.node for o in n.output}
    cons = collections.defaultdict(list)
    for n in g.node:
        for x in n.input:
            cons[x].append(n)
    logits = next(o for o in g.output if o.name == "logits")
    io = DT.get(logits.type.tensor_type.elem_type)
    lora_in = {k: v[0] for k, v in inputs.items() if "lora" in k}
    lora_mm = [n for n in g.node if n.op_type == "MatMul" and any(x in lora_in for x in n.input)]
    lora_dtypes = collections.Counter(DT.get(v.type.tensor_type.elem_type) for v in lora_in.values())
    casts_near = [n.name for n in g.node if n.op_type == "Cast" and (
        any(prod.get(x) in lora_mm for x in n.input) or any(c in lora_mm for o in n.output for c in cons[o]))]
    lora_add = [n for n in g.node if n.op_type == "Add" and "/lora/" in n.name]
    L = num_layers(m)
    per_layer = {}
    for i in range(L):
        pre = f"/model/layers.{i}/attn/"
        per_layer[i] = {"lora_matmuls": sum(n.name.startswith(pre) for n in lora_mm),
                        "lora_adds": sum(n.name.startswith(pre) for n in lora_add),
                        "attn_matmulnbits": sum(n.name.startswith(pre) and n.op_type == "MatMulNBits" for n in g.node)}
    a_nodes = [n for n in lora_mm if "/lora_A/" in n.name]
    same_input_a = collections.Counter((n.input[0]) for n in a_nodes)
    shared_x = {x: c for x, c in same_input_a.items() if c > 1}
    init_defaults = {t.name: list(t.dims) for t in g.initializer if t.name in lora_in}
    ops = collections.Counter(n.op_type for n in g.node)
    res = {
        "model": str(mfile), "layers": L, "io_dtype": io, "ops": dict(ops),
        "lora_inputs": len(lora_in), "lora_input_dtypes": dict(lora_dtypes),
        "lora_inputs_listed_twice": sum(len(v) > 1 for k, v in inputs.items() if "lora" in k),
        "lora_inputs_with_rank0_default": sum(0 in d for d in init_defaults.values()),
        "lora_matmuls": len(lora_mm), "lora_adds": len(lora_add), "casts_touching_lora": casts_near,
        "per_layer": per_layer[0], "per_layer_all_equal": all(v == per_layer[0] for v in per_layer.values()),
        "lora_A_matmuls_reading_the_same_input": sorted(set(shared_x.values())),
        "lora_matmuls_per_token": len(lora_mm), "lora_kernels_per_token_estimate": len(lora_mm) + len(lora_add),
    }
    if not lora_mm:
        return res
    ex = lora_mm[0]
    res["example_lora_matmul"] = {"name": ex.name, "inputs": list(ex.input),
                                  "weight_dims": [d.dim_param or d.dim_value for d in
                                                  lora_in[next(x for x in ex.input if x in lora_in)].type.tensor_type.shape.dim]}
    return res


# ---------------------------------------------------------------- profiling
def role(name: str, op: str) -> str:
    if "/lora_A/" in name or "/lora_B/" in name:
        return "LoRA MatMul"
    if "/lora/" in name:
        return "LoRA Add"
    if op == "MatMulNBits":
        return "MatMulNBits (int4)"
    if op in ("GroupQueryAttention", "MultiHeadAttention", "Attention"):
        return "attention"
    if op.startswith("Memcpy"):
        return "Memcpy"
    return "other"


def generate_profiled(model_dir: Path, adapter: Path | None, device: str, prompt: list[int], steps: int,
                      prefix: Path) -> float:
    """Run in a child process: onnxruntime-genai writes the profile only when the process ends."""
    import onnxruntime_genai as og
    model = C.og_model(model_dir, device, graph=False,
                       overlay={"model": {"decoder": {"session_options": {"enable_profiling": str(prefix)}}}})
    ads = None
    if adapter:
        ads = og.Adapters(model)
        ads.load(str(adapter), "a")
    gen = C.og_generator(model, prompt, steps + 1, ads, "a" if adapter else None)
    t0 = time.perf_counter()
    k = C.decode_rest(gen)
    return (time.perf_counter() - t0) / k


def profile_once(model_dir: Path, adapter: Path | None, device: str, prompt: list[int], steps: int,
                 prefix: Path) -> dict:
    import subprocess
    cmd = [sys.executable, __file__, "_one", str(model_dir), str(adapter or ""), device, json.dumps(prompt),
           str(steps), str(prefix)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"profiling child failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    wall = float(r.stdout.strip().splitlines()[-1])
    files = sorted(glob.glob(str(prefix) + "*.json"))
    if not files:
        raise RuntimeError(f"no profile written with prefix {prefix}")
    ev = json.load(open(files[-1]))
    runs = sorted((e for e in ev if e.get("cat") == "Session" and e["name"] == "model_run"), key=lambda e: e["ts"])
    if len(runs) < 4:
        raise RuntimeError(f"only {len(runs)} model runs in the profile")
    dec = runs[2:]  # run 0: prefill, run 1: first decode (warm-up)
    lo, hi = dec[0]["ts"], dec[-1]["ts"] + dec[-1]["dur"]
    nodes = [e for e in ev if e.get("cat") == "Node" and lo <= e["ts"] <= hi and e["name"].endswith("_kernel_time")]
    n = len(dec)
    by_op, by_role, by_name, count_role = (collections.Counter() for _ in range(4))
    providers = collections.Counter()
    for e in nodes:
        op = e["args"].get("op_name", "?")
        nm = e["name"][:-len("_kernel_time")]
        by_op[op] += e["dur"] / n
        by_role[role(nm, op)] += e["dur"] / n
        count_role[role(nm, op)] += 1 / n
        by_name[re.sub(r"layers\.\d+", "layers.*", nm)] += e["dur"] / n
        providers[e["args"].get("provider", "?")] += 1 / n
    run_us = C.median([r["dur"] for r in dec])
    return {"decode_steps": n, "model_run_us_median": run_us, "wall_ms_per_token": 1000 * wall,
            "node_us_per_token": round(sum(by_op.values()), 1),
            "by_role_us": {k: round(v, 1) for k, v in by_role.most_common()},
            "nodes_per_token_by_role": {k: round(v, 1) for k, v in count_role.most_common()},
            "by_op_us": {k: round(v, 1) for k, v in by_op.most_common(12)},
            "top_nodes_us": {k: round(v, 1) for k, v in by_name.most_common(15)},
            "nodes_per_provider_per_token": dict(providers), "profile_file": files[-1]}


def profile_all(a) -> dict:
    log = C.Log()
    ep, (bs, acc) = a.device, a.quant
    tag = f"int4-bs{bs}-acc{acc}-{ep}"
    slots = a.work / f"{tag}-slots"
    if not (slots / "genai_config.json").exists():  # reuse a build of bench/run.py in the same --work
        C.build_slots(a.model, a.model / "lora_r16", slots, ep, bs, acc, log)
    ad = a.work / f"{tag}-r16.onnx_adapter"
    C.convert(a.model / "lora_r16", slots, ad)
    variants = {"slots": (slots, ad)}
    for lever in a.levers:
        d = a.work / f"{slots.name}-{lever}"
        f = a.work / f"{slots.name}-{lever}-r16.onnx_adapter"
        if not (d / "genai_config.json").exists():
            RW.rewrite(slots, d, lever)
        RW.convert_adapter_file(ad, f, lever)
        variants[lever] = (d, f)
    vocab = json.loads((a.model / "config.json").read_text())["vocab_size"]
    prompt = [int(x) for x in np.random.default_rng(0).integers(16, vocab, 16)]
    res = {"info": C.device_info(a.device), "settings": {k: str(v) for k, v in vars(a).items()},
           "inspect": {k: inspect(v[0]) for k, v in variants.items()}, "profiles": {}}
    pdir = a.work / "profiles"
    pdir.mkdir(exist_ok=True)
    for name, (d, f) in variants.items():
        for with_ad in (False, True):
            key = f"{name} {'+ r16' if with_ad else 'no adapter'}"
            log(f"profiling {key}")
            prefix = pdir / f"{time.strftime('%H%M%S')}_{key.replace(' ', '_').replace('+', 'p')}"
            res["profiles"][key] = profile_once(d, f if with_ad else None, a.device, prompt, a.steps, prefix)
            if a.out:
                C.write_json(a.out, res)
    return res


def table(res: dict) -> str:
    roles = ["LoRA MatMul", "LoRA Add", "MatMulNBits (int4)", "attention", "Memcpy", "other"]
    lines = ["| variant | wall ms/token | model_run us | node us/token | " + " | ".join(roles) +
             " | LoRA nodes/token |", "|---" * (5 + len(roles)) + "|"]
    for k, p in res["profiles"].items():
        br = p["by_role_us"]
        nl = p["nodes_per_token_by_role"].get("LoRA MatMul", 0) + p["nodes_per_token_by_role"].get("LoRA Add", 0)
        lines.append(f"| {k} | {p['wall_ms_per_token']:.2f} | {p['model_run_us_median']:.0f} | "
                     f"{p['node_us_per_token']:.0f} | " + " | ".join(f"{br.get(r, 0):.0f}" for r in roles) +
                     f" | {nl:.0f} |")
    first = next(iter(res["profiles"].values()), None)
    if first:
        lines.append("\ntop nodes (us/token), first variant with adapter:")
        key = next((k for k in res["profiles"] if k.endswith("+ r16")), None)
        for n, us in list(res["profiles"][key]["top_nodes_us"].items())[:10]:
            lines.append(f"  {us:8.1f}  {n}")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        d, ad, dev, prompt, steps, prefix = sys.argv[2:8]
        print(generate_profiled(Path(d), Path(ad) if ad else None, dev, json.loads(prompt), int(steps), Path(prefix)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("inspect")
    i.add_argument("dirs", nargs="+", type=Path)
    p = sub.add_parser("profile")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--quant", default="32:0", help="block_size:accuracy_level of the slots model")
    p.add_argument("--levers", default=",".join(RW.LEVERS))
    p.add_argument("--steps", type=int, default=24, help="decode steps profiled (first two dropped)")
    p.add_argument("--out", type=Path)
    a = ap.parse_args()
    if a.cmd == "inspect":
        print(json.dumps({str(d): inspect(d) for d in a.dirs}, indent=2))
        return 0
    a.quant = tuple(int(x) for x in a.quant.split(":"))
    a.levers = [x for x in a.levers.split(",") if x]
    if a.device == "cuda":
        import onnxruntime_genai as og
        if not og.is_cuda_available():
            raise SystemExit("--device cuda but onnxruntime-genai has no CUDA")
    a.work.mkdir(parents=True, exist_ok=True)
    res = profile_all(a)
    if a.out:
        C.write_json(a.out, res)
    print(json.dumps({k: {kk: v[kk] for kk in ("lora_matmuls", "lora_adds", "lora_input_dtypes", "io_dtype",
                                                "casts_touching_lora", "per_layer")}
                      for k, v in res["inspect"].items()}, indent=1))
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

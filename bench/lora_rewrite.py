"""Graph rewrites of a built int4 model folder with LoRA slots (the genai builder + Olive layout).

Levers (per layer of a Phi3 model, whose qkv_proj LoRA the builder splits into q/k/v):
  share_a   one LoRA-A MatMul for q, k and v instead of three (the three A inputs are copies of
            PEFT's qkv_proj A): 8 -> 6 LoRA MatMuls per layer; inputs k/v lora_A disappear.
  fuse_qkv  share_a, plus the q/k/v LoRA-B MatMuls concatenated into one qkv B MatMul, and the three
            int4 MatMulNBits q/k/v base projections concatenated into one (as in the builder's graph
            without slots), feeding GroupQueryAttention packed QKV: 8 LoRA MatMuls + 4 Adds + 3
            MatMulNBits -> 4 + 2 + 1 per layer. New inputs model.layers.{i}.attn.qkv_proj.lora_{A,B}...
Both keep the function: the same weights in a different arrangement (fp arithmetic per output column
unchanged). The model's LoRA inputs keep rank-0 defaults, so the model still runs without an adapter.

    python bench/lora_rewrite.py SRC_MODEL_DIR DST_MODEL_DIR --lever fuse_qkv [--adapter IN OUT ...]
    python bench/lora_rewrite.py --check SRC_MODEL_DIR ADAPTER_FILE  # CPU: greedy tokens before == after

The folder is written with the new graph; the original weight file is hard-linked (not copied) and
new tensors go to DST/lora_rewrite.data.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np

LEVERS = ("share_a", "fuse_qkv")
A = "model.layers.{i}.attn.{p}_proj.lora_A.MatMul.weight"
B = "model.layers.{i}.attn.{p}_proj.lora_B.MatMul.weight"


def _model_file(d: Path) -> Path:
    cfg = json.loads((d / "genai_config.json").read_text())
    return d / cfg["model"]["decoder"]["filename"]


def _num_layers(m) -> int:
    return 1 + max(int(x) for x in re.findall(r"/model/layers\.(\d+)/attn/", " ".join(n.name for n in m.graph.node)))


def _remove_inputs(g, names: set[str]) -> None:
    keep = [i for i in g.input if i.name not in names]
    del g.input[:]
    g.input.extend(keep)
    keep = [t for t in g.initializer if t.name not in names]
    del g.initializer[:]
    g.initializer.extend(keep)


def _lora_input(g, name: str, dims: list, elem_type: int) -> None:
    """A graph input with a rank-0 default initializer of the same name (Olive's layout)."""
    from onnx import helper, numpy_helper
    g.input.append(helper.make_tensor_value_info(name, elem_type, dims))
    shape = [0 if isinstance(d, str) else d for d in dims]
    np_t = helper.tensor_dtype_to_np_dtype(elem_type)
    g.initializer.append(numpy_helper.from_array(np.zeros(shape, np_t), name))


def rewrite(src: Path, dst: Path, lever: str) -> dict:
    import onnx
    from onnx import helper, numpy_helper

    if lever not in LEVERS:
        raise ValueError(f"unknown lever {lever!r}; choose from {LEVERS}")
    src, dst = Path(src), Path(dst)
    mfile = _model_file(src)
    m = onnx.load(str(mfile), load_external_data=False)
    g = m.graph
    nodes = {n.name: n for n in g.node}
    inputs = {i.name: i for i in g.input}
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)

    def node(name):
        if name not in nodes:
            raise RuntimeError(f"{mfile}: node {name} not found: not a builder+Olive Phi3 graph with q/k/v slots")
        return nodes[name]

    def tensor(name):
        return numpy_helper.to_array(inits[name], base_dir=str(src))

    L = _num_layers(m)
    drop_nodes, drop_inputs, new_nodes_before = set(), set(), {}
    for i in range(L):
        pre = f"/model/layers.{i}/attn"
        qA = node(f"{pre}/q_proj/lora_A/MatMul")
        elem = inputs[A.format(i=i, p="q")].type.tensor_type.elem_type
        K = inits[A.format(i=i, p="q")].dims[0]
        if lever == "share_a":
            for p in "kv":
                pA = node(f"{pre}/{p}_proj/lora_A/MatMul")
                for c in consumers[pA.output[0]]:
                    c.input[list(c.input).index(pA.output[0])] = qA.output[0]
                drop_nodes.add(pA.name)
                drop_inputs.add(A.format(i=i, p=p))
            continue
        # fuse_qkv
        gqa = node(f"{pre}/GroupQueryAttention")
        mm = {p: node(f"{pre}/{p}_proj/MatMul_Q4") for p in "qkv"}
        if any(n.op_type != "MatMulNBits" or len(n.input) not in (3, 4) for n in mm.values()):
            raise RuntimeError(f"layer {i}: q/k/v are not plain MatMulNBits (g_idx/bias unsupported)")
        attrs = [{a.name: helper.get_attribute_value(a) for a in mm[p].attribute} for p in "qkv"]
        if any({k: v for k, v in a.items() if k != "N"} != {k: v for k, v in attrs[0].items() if k != "N"}
               for a in attrs):
            raise RuntimeError(f"layer {i}: q/k/v MatMulNBits attributes differ: {attrs}")
        fused_w = []
        for j, suffix in enumerate(("weight_Q4", "weight_scales", "weight_zero_points")[:len(mm["q"].input) - 1]):
            arr = np.concatenate([tensor(mm[p].input[1 + j]) for p in "qkv"], axis=0)
            name = f"model.layers.{i}.attn.qkv_proj.MatMul.{suffix}"
            g.initializer.append(numpy_helper.from_array(arr, name))
            fused_w.append(name)
            drop_inputs.update(mm[p].input[1 + j] for p in "qkv")
        N = sum(a["N"] for a in attrs)
        x = mm["q"].input[0]
        base = helper.make_node("MatMulNBits", [x, *fused_w], [f"{pre}/qkv_proj/MatMul/output_0"],
                                name=f"{pre}/qkv_proj/MatMul_Q4", domain="com.microsoft",
                                **dict(attrs[0], N=N))
        a_name, b_name = A.format(i=i, p="qkv"), B.format(i=i, p="qkv")
        la = helper.make_node("MatMul", [x, a_name], [f"{pre}/qkv_proj/lora_A/MatMul/output_0"],
                              name=f"{pre}/qkv_proj/lora_A/MatMul")
        lb = helper.make_node("MatMul", [la.output[0], b_name], [f"{pre}/qkv_proj/lora_B/MatMul/output_0"],
                              name=f"{pre}/qkv_proj/lora_B/MatMul")
        add = helper.make_node("Add", [base.output[0], lb.output[0]], [f"{pre}/qkv_proj/lora/Add/output_0"],
                               name=f"{pre}/qkv_proj/lora/Add")
        gqa.input[0], gqa.input[1], gqa.input[2] = add.output[0], "", ""
        new_nodes_before[gqa.name] = [base, la, lb, add]
        for p in "qkv":
            drop_nodes.update({mm[p].name, f"{pre}/{p}_proj/lora_A/MatMul", f"{pre}/{p}_proj/lora_B/MatMul",
                               f"{pre}/{p}_proj/lora/Add"})
            drop_inputs.update({A.format(i=i, p=p), B.format(i=i, p=p)})
        _lora_input(g, a_name, [K, "lora_r"], elem)
        _lora_input(g, b_name, ["lora_r", N], elem)

    new = []
    for n in g.node:
        new.extend(new_nodes_before.get(n.name, []))
        if n.name not in drop_nodes:
            new.append(n)
    del g.node[:]
    g.node.extend(new)
    _remove_inputs(g, drop_inputs)

    # write DST: small files copied, external weight files hard-linked, new tensors in one new file
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    ext_files = {e.value for t in g.initializer for e in t.external_data if e.key == "location"}
    for f in src.iterdir():
        if not f.is_file() or f == mfile:
            continue
        if f.name in ext_files:
            try:
                os.link(f, dst / f.name)
            except OSError:
                shutil.copy2(f, dst / f.name)
        elif f.stat().st_size < 64 * 2**20:
            shutil.copy2(f, dst / f.name)
    onnx.save_model(m, str(dst / mfile.name), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="lora_rewrite.data", size_threshold=1024)
    ops = {}
    for n in g.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    lora = sorted({i.name for i in g.input if "lora" in i.name})
    return {"lever": lever, "dst": str(dst), "layers": L, "lora_inputs": len(lora), "ops": ops}


def convert_adapter_file(src_file: Path, dst_file: Path, lever: str) -> dict:
    """Map an .onnx_adapter written for the builder's q/k/v slots onto the rewritten inputs."""
    import onnxruntime as ort
    fmt = ort.AdapterFormat.read_adapter(str(src_file))
    params = {k: v.numpy() for k, v in fmt.get_parameters().items()}
    layers = sorted({int(re.search(r"layers\.(\d+)\.", k).group(1)) for k in params})
    out = dict(params)
    for i in layers:
        qa, ka, va = (params[A.format(i=i, p=p)] for p in "qkv")
        if not (np.array_equal(qa, ka) and np.array_equal(qa, va)):
            raise ValueError(f"layer {i}: q/k/v LoRA-A differ; the adapter does not come from a fused "
                             "qkv_proj LoRA, so one shared A cannot represent it")
        for p in "kv":
            del out[A.format(i=i, p=p)]
        if lever == "fuse_qkv":
            del out[A.format(i=i, p="q")]
            out[A.format(i=i, p="qkv")] = qa
            out[B.format(i=i, p="qkv")] = np.concatenate([params[B.format(i=i, p=p)] for p in "qkv"], axis=1)
            for p in "qkv":
                del out[B.format(i=i, p=p)]
    new = ort.AdapterFormat()
    new.set_adapter_version(fmt.get_adapter_version())
    new.set_model_version(fmt.get_model_version())
    new.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v)) for k, v in out.items()})
    Path(dst_file).parent.mkdir(parents=True, exist_ok=True)
    new.export_adapter(str(dst_file))
    return {"file": str(dst_file), "tensors": len(out)}


# ---------------------------------------------------------------- CPU check: outputs identical
def greedy(model_dir: Path, adapter: Path | None, prompt: list[int], n: int, provider: str = "cpu"):
    """Greedy tokens and the last step's logits with og (adapter active when given)."""
    import onnxruntime_genai as og
    cfg = og.Config(str(model_dir))
    cfg.clear_providers()
    if provider != "cpu":
        cfg.append_provider(provider)
    model = og.Model(cfg)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + n, min_length=len(prompt) + n, do_sample=False)
    gen = og.Generator(model, params)
    if adapter:
        ads = og.Adapters(model)
        ads.load(str(adapter), "a")
        gen.set_active_adapter(ads, "a")
    gen.append_tokens(np.array([prompt], dtype=np.int32))
    toks, logits = [], []
    while not gen.is_done():
        logits.append(np.array(gen.get_logits(), dtype=np.float32).ravel())
        gen.generate_next_token()
        toks.append(int(gen.get_next_tokens()[0]))
    return toks, np.stack(logits)


def check(src: Path, adapter: Path, work: Path, levers=LEVERS, n: int = 24) -> dict:
    """Rewrite SRC with each lever, convert the adapter, and compare greedy tokens and logits."""
    rng = np.random.default_rng(0)
    vocab = json.loads((src / "genai_config.json").read_text())["model"]["vocab_size"]
    prompt = [int(x) for x in rng.integers(8, vocab, 12)]
    ref_tok, ref_log = greedy(src, adapter, prompt, n)
    base_tok, _ = greedy(src, None, prompt, n)
    res = {"adapter_changes_tokens": ref_tok != base_tok, "levers": {}}
    for lever in levers:
        d = work / f"rw-{lever}"
        info = rewrite(src, d, lever)
        ad = work / f"rw-{lever}.onnx_adapter"
        convert_adapter_file(adapter, ad, lever)
        tok, log = greedy(d, ad, prompt, n)
        tok0, _ = greedy(d, None, prompt, n)
        rel = float(np.abs(log - ref_log).max() / (np.abs(ref_log).max() + 1e-12))
        res["levers"][lever] = {"tokens_equal": tok == ref_tok, "no_adapter_tokens_equal": tok0 == base_tok,
                                "max_rel_logit_diff": rel, "ops": info["ops"], "lora_inputs": info["lora_inputs"]}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path, nargs="?")
    ap.add_argument("--lever", choices=LEVERS)
    ap.add_argument("--adapter", nargs=2, action="append", default=[], metavar=("IN", "OUT"))
    ap.add_argument("--check", type=Path, metavar="ADAPTER", help="CPU equality check of every lever")
    a = ap.parse_args()
    if a.check:
        work = a.dst or Path("/tmp/lora_rewrite_check")
        r = check(a.src, a.check, work)
        print(json.dumps(r, indent=2))
        ok = all(v["tokens_equal"] and v["no_adapter_tokens_equal"] for v in r["levers"].values())
        sys.exit(0 if ok else 1)
    if not (a.dst and a.lever):
        ap.error("DST and --lever are required (or --check ADAPTER)")
    print(json.dumps(rewrite(a.src, a.dst, a.lever), indent=2))
    for i, o in a.adapter:
        print(json.dumps(convert_adapter_file(Path(i), Path(o), a.lever)))


if __name__ == "__main__":
    main()

"""Layout of the LoRA slots in the ONNX graph: the genai builder's (per q/k/v) or the fused qkv one.

The onnxruntime-genai builder (with `adapter_path`) splits Phi3's fused `qkv_proj` into q, k and v: three
base projections, three LoRA-A MatMuls reading the same input with identical weights, three LoRA-B
MatMuls, three Adds, and GroupQueryAttention fed unpacked q/k/v (the "builder" layout). Per layer:

  fuse_qkv  (the pipeline's layout for such models, `lora_layout: "fused_qkv"`) one packed q/k/v base
            projection (MatMulNBits blobs/scales/zero points, or float weights, concatenated along N),
            one LoRA-A MatMul, one LoRA-B MatMul with B_qkv = [Bq | Bk | Bv], one Add, GroupQueryAttention
            fed packed QKV (key/value inputs empty, as in the builder's graph without slots):
            8 LoRA MatMuls + 4 Adds + 3 base projections -> 4 + 2 + 1. Inputs
            `model.layers.{i}.attn.qkv_proj.lora_{A,B}.MatMul.weight` ([K, lora_r], [lora_r, Nq+2Nkv]).
  share_a   (bench only) k/v LoRA-A MatMuls removed, their B MatMuls read q's A output.
  rows      (every pipeline build, after the above) each LoRA input gets a leading `lora_rows` dim:
            A [lora_rows, K, lora_r], B [lora_rows, lora_r, N]. An adapter sets rows = 1 (it broadcasts
            over the batch, as before); a *pair* of adapters stacked on that axis (rows = 2) gives
            batch row 0 the first adapter and row 1 the second, so compare mode answers one prompt
            with two variants in ONE batch of 2 (onnxruntime-genai applies one adapter to a whole
            batch; this makes that one "adapter" carry a LoRA per row). The base side of a compare is
            a zero row. Batched MatMul semantics: x [b, s, K] @ A [1|b, K, r] @ B [1|b, r, N].

Both keep the function (same weights, another arrangement; per output column the same arithmetic),
and the LoRA inputs keep rank-0 default initializers, so the model runs with no adapter set.
Used by pipeline/stage_onnx.py (in place, in the stage's own output folder) and bench/lora_rewrite.py.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

from artifacts import ROWS_DIM, read_adapter_arrays, write_adapter_file

FUSED = "fused_qkv"
BUILDER = "builder"
LEVERS = ("share_a", "fuse_qkv")
ROWS = "rows"
A = "model.layers.{i}.attn.{p}_proj.lora_A.MatMul.weight"
B = "model.layers.{i}.attn.{p}_proj.lora_B.MatMul.weight"
_TWO_GB = 2**31 - 2**24  # protobuf's limit, with some room


class LayoutError(RuntimeError):
    """The graph does not have the structure a rewrite expects (the message says what is missing)."""


def model_file(d) -> Path:
    d = Path(d)
    cfg = json.loads((d / "genai_config.json").read_text())
    return d / cfg["model"]["decoder"]["filename"]


def num_layers(m) -> int:
    found = re.findall(r"/model/layers\.(\d+)/attn/", " ".join(n.name for n in m.graph.node))
    if not found:
        raise LayoutError("no /model/layers.{i}/attn/ nodes: not an onnxruntime-genai builder graph")
    return 1 + max(int(x) for x in found)


def layout_of(input_names: Iterable[str]) -> str:
    """"fused_qkv" when the LoRA inputs include packed qkv slots, else "builder"."""
    return FUSED if any(".attn.qkv_proj.lora_" in n for n in input_names) else BUILDER


def is_lora_input(name: str) -> bool:
    return ".lora_A." in name or ".lora_B." in name


def add_rows(m) -> dict:
    """The rows layout, in place on ModelProto `m`: every LoRA input (and its rank-0 default
    initializer) gets a leading `lora_rows` dim. Each must feed only MatMul nodes as their second
    input (the weight side), where the extra dim is plain batched-MatMul broadcasting."""
    from onnx import helper, numpy_helper
    g = m.graph
    names = {i.name for i in g.input if is_lora_input(i.name)}
    if not names:
        raise LayoutError("the graph has no LoRA inputs")
    for n in g.node:
        for j, x in enumerate(n.input):
            if x in names and (n.op_type != "MatMul" or j != 1):
                raise LayoutError(f"LoRA input {x} feeds {n.op_type} {n.name} (input {j}); the rows "
                                  "layout needs it to be a MatMul weight")
    done = set()
    for i in g.input:
        if i.name not in names or i.name in done:
            continue
        dims = [d.dim_param if d.dim_param else d.dim_value for d in i.type.tensor_type.shape.dim]
        if dims and dims[0] == ROWS_DIM:
            raise LayoutError("the graph already has the rows layout")
        if len(dims) != 2:
            raise LayoutError(f"LoRA input {i.name} has rank {len(dims)}, expected 2")
        i.CopyFrom(helper.make_tensor_value_info(i.name, i.type.tensor_type.elem_type, [ROWS_DIM, *dims]))
        done.add(i.name)
    _remove_inputs(g, set())  # drop the repeated listings Olive leaves
    for t in g.initializer:
        if t.name in names:
            arr = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array(arr.reshape(1, *arr.shape), t.name))
    return {"lever": ROWS, "lora_inputs": len(done)}


def has_qkv_slots(m) -> bool:
    """True when every layer has builder-layout q, k and v LoRA slots (what fuse_qkv rewrites)."""
    names = {i.name for i in m.graph.input}
    try:
        L = num_layers(m)
    except LayoutError:
        return False
    return all(A.format(i=i, p=p) in names and B.format(i=i, p=p) in names for i in range(L) for p in "qkv")


def _remove_inputs(g, names: set[str]) -> None:
    """Drop inputs/initializers by name; also drops repeated graph inputs (Olive lists each LoRA input
    twice, which onnx.checker rejects and ORT ignores)."""
    seen: set[str] = set()
    keep = []
    for i in g.input:
        if i.name not in names and i.name not in seen:
            keep.append(i)
            seen.add(i.name)
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


def rewrite_graph(m, lever: str = "fuse_qkv", base_dir=None) -> dict:
    """Rewrite the ModelProto `m` in place (builder layout -> `lever`). Initializers stored as external
    data are read from base_dir when not loaded. Returns {layers, ops, lora_inputs}."""
    from onnx import helper, numpy_helper

    if lever == ROWS:
        return add_rows(m)
    if lever not in LEVERS:
        raise ValueError(f"unknown lever {lever!r}; choose from {LEVERS + (ROWS,)}")
    g = m.graph
    if layout_of(i.name for i in g.input) == FUSED:
        raise LayoutError("the graph already has fused qkv LoRA slots")
    nodes = {n.name: n for n in g.node}
    inputs = {i.name: i for i in g.input}
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)

    def node(name):
        if name not in nodes:
            raise LayoutError(f"node {name} not found: not a builder+ExtractAdapters graph with q/k/v slots")
        return nodes[name]

    def tensor(name):
        if name not in inits:
            raise LayoutError(f"{name} is not an initializer")
        return numpy_helper.to_array(inits[name], base_dir=str(base_dir) if base_dir else "")

    L = num_layers(m)
    drop_nodes, drop_inputs, new_nodes_before = set(), set(), {}
    for i in range(L):
        pre = f"/model/layers.{i}/attn"
        for p in "qkv":
            if A.format(i=i, p=p) not in inputs or B.format(i=i, p=p) not in inputs:
                raise LayoutError(f"layer {i}: no {p}_proj LoRA slot inputs")
        qA = node(f"{pre}/q_proj/lora_A/MatMul")
        elem = inputs[A.format(i=i, p="q")].type.tensor_type.elem_type
        if lever == "share_a":
            for p in "kv":
                pA = node(f"{pre}/{p}_proj/lora_A/MatMul")
                if pA.input[0] != qA.input[0]:
                    raise LayoutError(f"layer {i}: q and {p} LoRA-A read different inputs")
                for c in consumers[pA.output[0]]:
                    c.input[list(c.input).index(pA.output[0])] = qA.output[0]
                drop_nodes.add(pA.name)
                drop_inputs.add(A.format(i=i, p=p))
            continue
        # fuse_qkv: find, per q/k/v, base projection -> Add(base, lora_B) -> GroupQueryAttention input
        gqa = node(f"{pre}/GroupQueryAttention")
        if gqa.op_type != "GroupQueryAttention":
            raise LayoutError(f"layer {i}: attention is {gqa.op_type}, packed QKV needs GroupQueryAttention")
        la_old, lb_old, add_old, base_old = {}, {}, {}, {}
        for j, p in enumerate("qkv"):
            la_old[p] = node(f"{pre}/{p}_proj/lora_A/MatMul")
            lb_old[p] = node(f"{pre}/{p}_proj/lora_B/MatMul")
            add_old[p] = node(f"{pre}/{p}_proj/lora/Add")
            if gqa.input[j] != add_old[p].output[0]:
                raise LayoutError(f"layer {i}: GroupQueryAttention input {j} is not the {p}_proj LoRA sum")
            other = [x for x in add_old[p].input if x != lb_old[p].output[0]]
            if len(other) != 1 or other[0] not in producer:
                raise LayoutError(f"layer {i}: {p}_proj LoRA Add has an unexpected input")
            base_old[p] = producer[other[0]]
            for t in (base_old[p].output[0], add_old[p].output[0], la_old[p].output[0], lb_old[p].output[0]):
                users = consumers.get(t, [])
                want = {base_old[p].output[0]: add_old[p], add_old[p].output[0]: gqa,
                        la_old[p].output[0]: lb_old[p], lb_old[p].output[0]: add_old[p]}[t]
                if len(users) != 1 or users[0] is not want:
                    raise LayoutError(f"layer {i}: {t} has other consumers (bias or another rewrite?)")
        x = base_old["q"].input[0]
        if any(base_old[p].input[0] != x or la_old[p].input[0] != x for p in "qkv"):
            raise LayoutError(f"layer {i}: q/k/v projections read different inputs")
        ops = {base_old[p].op_type for p in "qkv"}
        if ops == {"MatMulNBits"}:
            mm = base_old
            if any(len(n.input) not in (3, 4) for n in mm.values()):
                raise LayoutError(f"layer {i}: q/k/v MatMulNBits with g_idx/bias are not supported")
            attrs = [{a.name: helper.get_attribute_value(a) for a in mm[p].attribute} for p in "qkv"]
            if any({k: v for k, v in a.items() if k != "N"} != {k: v for k, v in attrs[0].items() if k != "N"}
                   for a in attrs) or len({len(mm[p].input) for p in "qkv"}) != 1:
                raise LayoutError(f"layer {i}: q/k/v MatMulNBits attributes differ: {attrs}")
            fused_w = []
            for j, suffix in enumerate(("weight_Q4", "weight_scales", "weight_zero_points")[:len(mm["q"].input) - 1]):
                arr = np.concatenate([tensor(mm[p].input[1 + j]) for p in "qkv"], axis=0)
                name = f"model.layers.{i}.attn.qkv_proj.MatMul.{suffix}"
                g.initializer.append(numpy_helper.from_array(arr, name))
                fused_w.append(name)
                drop_inputs.update(mm[p].input[1 + j] for p in "qkv")
            N = sum(a["N"] for a in attrs)
            base = helper.make_node("MatMulNBits", [x, *fused_w], [f"{pre}/qkv_proj/MatMul/output_0"],
                                    name=f"{pre}/qkv_proj/MatMul_Q4", domain="com.microsoft",
                                    **dict(attrs[0], N=N))
        elif ops == {"MatMul"}:
            ws = [tensor(base_old[p].input[1]) for p in "qkv"]
            if any(w.ndim != 2 or w.shape[0] != ws[0].shape[0] or w.dtype != ws[0].dtype for w in ws):
                raise LayoutError(f"layer {i}: q/k/v MatMul weights do not stack: {[w.shape for w in ws]}")
            arr = np.concatenate(ws, axis=1)
            N = arr.shape[1]
            name = f"model.layers.{i}.attn.qkv_proj.MatMul.weight"
            g.initializer.append(numpy_helper.from_array(arr, name))
            drop_inputs.update(base_old[p].input[1] for p in "qkv")
            base = helper.make_node("MatMul", [x, name], [f"{pre}/qkv_proj/MatMul/output_0"],
                                    name=f"{pre}/qkv_proj/MatMul")
        else:
            raise LayoutError(f"layer {i}: q/k/v base projections are {sorted(ops)}, not MatMulNBits or MatMul")
        Ks = {inits[A.format(i=i, p=p)].dims[0] for p in "qkv"}
        if len(Ks) != 1:
            raise LayoutError(f"layer {i}: q/k/v LoRA-A inputs have different input sizes {Ks}")
        K = Ks.pop()
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
            drop_nodes.update({base_old[p].name, la_old[p].name, lb_old[p].name, add_old[p].name})
            drop_inputs.update({A.format(i=i, p=p), B.format(i=i, p=p)})
        _lora_input(g, a_name, [K, "lora_r"], elem)
        _lora_input(g, b_name, ["lora_r", N], elem)

    dropped_values = {o for n in g.node if n.name in drop_nodes for o in n.output}
    new = []
    for n in g.node:
        new.extend(new_nodes_before.get(n.name, []))
        if n.name not in drop_nodes:
            new.append(n)
    del g.node[:]
    g.node.extend(new)
    _remove_inputs(g, drop_inputs)
    keep_vi = [v for v in g.value_info if v.name not in dropped_values]
    del g.value_info[:]
    g.value_info.extend(keep_vi)
    ops_count: dict[str, int] = {}
    for n in g.node:
        ops_count[n.op_type] = ops_count.get(n.op_type, 0) + 1
    lora = sorted({i.name for i in g.input if ".lora_" in i.name})
    return {"lever": lever, "layers": L, "lora_inputs": len(lora), "ops": ops_count}


def _external_location(m) -> str | None:
    from onnx import TensorProto
    for t in m.graph.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            for e in t.external_data:
                if e.key == "location":
                    return e.value
    return None


def _save(m, path: Path, location: str | None) -> list[str]:
    """Save m as `path` (inline when it fits and location is None, else with one external data file)."""
    import onnx
    size = sum(len(t.raw_data) for t in m.graph.initializer)
    if location is None and size > _TWO_GB:
        location = path.name + ".data"
    if location is None:
        onnx.save_model(m, str(path))
        return [path.name]
    onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location, size_threshold=1024)
    return [path.name, location]


def rewrite_in_place(model_dir, lever="fuse_qkv") -> dict:
    """Rewrite model_dir's decoder graph in place: the model is loaded whole, the new graph and its
    weights are written into a scratch folder inside model_dir, then moved over the old files (same
    names; external data only when the original had it or the model exceeds 2 GB). No links."""
    import onnx
    model_dir = Path(model_dir)
    mfile = model_file(model_dir)
    head = onnx.load(str(mfile), load_external_data=False)
    location = _external_location(head)
    del head
    m = onnx.load(str(mfile))  # with external data, from model_dir
    levers = [lever] if isinstance(lever, str) else list(lever)  # applied in order, one load and save
    info = {}
    for lv in levers:
        info.update(rewrite_graph(m, lv, model_dir))
    info["lever"] = "+".join(levers)
    scratch = model_dir / f".{info['lever']}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    written = _save(m, scratch / mfile.name, location)
    del m
    for name in written[1:] + written[:1]:  # the weights first, then the graph that points at them
        os.replace(scratch / name, model_dir / name)
    if location and location not in written and (model_dir / location).exists():
        (model_dir / location).unlink()
    shutil.rmtree(scratch, ignore_errors=True)
    info["files"] = written
    return info


def rewrite(src, dst, lever: str) -> dict:
    """Copy the model folder src to dst with the rewritten graph (weights copied, never linked)."""
    import onnx
    src, dst = Path(src), Path(dst)
    mfile = model_file(src)
    head = onnx.load(str(mfile), load_external_data=False)
    location = _external_location(head)
    ext_files = {e.value for t in head.graph.initializer for e in t.external_data if e.key == "location"}
    del head
    m = onnx.load(str(mfile))
    info = rewrite_graph(m, lever, src)
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f != mfile and f.name not in ext_files:
            shutil.copy2(f, dst / f.name)
    info["files"] = _save(m, dst / mfile.name, location)
    info["dst"] = str(dst)
    return info


# ---------------------------------------------------------------- adapter tensors between layouts
def fuse_adapter_tensors(params: dict, lever: str = "fuse_qkv") -> dict:
    """Map adapter tensors named for the builder's q/k/v slots onto a `lever` graph's inputs:
    the (identical) q/k/v A become one A, and for fuse_qkv B_qkv = [Bq | Bk | Bv] (concatenated along
    the output axis). Tensors of other modules (o_proj) pass through unchanged."""
    if lever not in LEVERS:
        raise ValueError(f"unknown lever {lever!r}; choose from {LEVERS}")
    layers = sorted({int(m.group(1)) for k in params for m in [re.search(r"layers\.(\d+)\.attn\.[qkv]_proj\.", k)] if m})
    out = dict(params)
    for i in layers:
        names = [A.format(i=i, p=p) for p in "qkv"] + [B.format(i=i, p=p) for p in "qkv"]
        missing = [n for n in names if n not in params]
        if missing:
            raise ValueError(f"layer {i}: the adapter lacks {', '.join(missing)}: q, k and v need all of A and B")
        qa, ka, va = (np.asarray(params[A.format(i=i, p=p)]) for p in "qkv")
        if not (np.array_equal(qa, ka) and np.array_equal(qa, va)):
            raise ValueError(f"layer {i}: q/k/v LoRA-A differ; the adapter does not come from a fused "
                             "qkv_proj LoRA, so one shared A cannot represent it")
        for p in "kv":
            del out[A.format(i=i, p=p)]
        if lever == "fuse_qkv":
            del out[A.format(i=i, p="q")]
            out[A.format(i=i, p="qkv")] = qa
            out[B.format(i=i, p="qkv")] = np.concatenate([np.asarray(params[B.format(i=i, p=p)]) for p in "qkv"],
                                                         axis=1)
            for p in "qkv":
                del out[B.format(i=i, p=p)]
    return out


def convert_adapter_file(src_file, dst_file, lever: str = "fuse_qkv") -> dict:
    """An .onnx_adapter written for the builder's q/k/v slots -> one for a `lever` graph."""
    out = fuse_adapter_tensors(read_adapter_arrays(src_file), lever)
    write_adapter_file(out, dst_file)
    return {"file": str(dst_file), "tensors": len(out)}

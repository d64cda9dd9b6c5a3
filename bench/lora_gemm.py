"""What the LoRA part of one decode step costs, per layout of the LoRA matrices (GPU, torch + cuBLAS).

The serving profile (bench/results/raw/step-profile-2026-12-03.txt) puts the adapter's extra time per step in
four kernels per LoRA target: the A product (x [1, 3072] @ A [3072, 16]) as a split-K GEMM plus its reduce
kernel, the B product and the Add; 64 targets (qkv and o in 32 layers). This probes, under CUDA graph replay
as the engine runs, how that chain costs with other arrangements of the same arithmetic:

  rows      x [M,1,K] @ A [1|M,K,r] @ B [1|M,r,N] + base   (today's rows layout, batched MatMul)
  at        x @ At^T with At [1|M,r,K] (A stored transposed: K contiguous per rank; cuBLAS "T" operand)
  at_bt     A and B both stored transposed
  addmm     the Add folded into the B GEMM (cuBLAS beta = 1), 2-D, one adapter for all rows
  none      base only (the Adds' inputs, no LoRA): the floor
  fused     engine/fused_lora's kernel: y + (x·A)·B in one launch per target (rows layout, rank-16 slots)
  fused64   the same with rank-64 slots holding a rank-16 adapter and rank_used = 16
  fused64t  the same with A rank-first ([rows, 64, K], the op LoraAddAT: what the engine binds by default)

Prints JSON: per variant and rows M, median ms per graph replay of the 64-target chain, and the kernels one
eager run launches (torch.profiler). With --ort the same chains run as ONNX graphs in onnxruntime (CUDA
provider, I/O binding, CUDA graph, as engine/ort_backend.py runs the model), the A side as MatMul or as
com.microsoft FusedMatMul with transB=1: what the serving engine's own kernels cost.
Usage: python3 bench/lora_gemm.py [--ort] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

K, R, LAYERS = 3072, 16, 32
_LIB = None


def fused_lib():
    global _LIB
    if _LIB is None:
        from pathlib import Path
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from engine import fused_lora
        _LIB = fused_lora.library("cuda")
    return _LIB
NS = (9216, 3072)  # qkv (packed) and o


def make(variant: str, M: int, gen: torch.Generator, S: int = 1):
    dev, dt = "cuda", torch.float16
    rows = M if M > 1 else 1
    w = []
    for _ in range(LAYERS):
        for N in NS:
            a = (torch.randn(rows, K, R, generator=gen, device=dev) / K ** 0.5).to(dt)
            b = (torch.randn(rows, R, N, generator=gen, device=dev) / R ** 0.5).to(dt)
            w.append((N, a, b, a.transpose(1, 2).contiguous(), b.transpose(1, 2).contiguous(),
                      a[0].contiguous(), b[0].contiguous()))
    x = torch.randn(M, S, K, generator=gen, device=dev).to(dt)
    bases = {N: torch.randn(M, S, N, generator=gen, device=dev).to(dt) for N in NS}
    if variant in ("fused", "fused64", "fused64t"):
        lib, slot_r = fused_lib(), (R if variant == "fused" else 64)
        at = variant == "fused64t"
        from engine import fused_lora
        used = torch.tensor([R], dtype=torch.int32, device=dev)
        fw = []
        for N, a, b, *_ in w:
            sa = torch.zeros(*((rows, slot_r, K) if at else (rows, K, slot_r)), device=dev, dtype=dt)
            sb = torch.zeros(rows, slot_r, N, device=dev, dtype=dt)
            if at:
                sa[:, :R] = a.transpose(1, 2)
            else:
                sa[:, :, :R] = a
            sb[:, :R] = b
            fw.append((N, sa, sb, torch.empty(M, S, N, device=dev, dtype=dt)))

        def run_fused():
            st = torch.cuda.current_stream().cuda_stream
            for N, sa, sb, out in fw:
                fused_lora.lora_add(lib, 10, bases[N].data_ptr(), x.data_ptr(), sa.data_ptr(), sb.data_ptr(),
                                    out.data_ptr(), (M, S, K, slot_r, N), True, True, used.data_ptr(), st,
                                    a_rank_first=at)
            return [o for *_, o in fw]

        def check() -> float:
            outs, err = run_fused(), 0.0
            torch.cuda.synchronize()
            for (N, a, b, *_), o in zip(w, outs):
                ref = bases[N].float() + torch.matmul(torch.matmul(x.float(), a.float()), b.float())
                err = max(err, float((o.float() - ref).abs().max() / ref.abs().max()))
            return err
        run_fused.check = check
        return run_fused

    def run():
        outs = []
        for N, a, b, at, bt, a2, b2 in w:
            base = bases[N]
            if variant == "rows":
                y = base + torch.matmul(torch.matmul(x, a), b)
            elif variant == "at":
                y = base + torch.matmul(torch.matmul(x, at.transpose(1, 2)), b)
            elif variant == "at_bt":
                y = base + torch.matmul(torch.matmul(x, at.transpose(1, 2)), bt.transpose(1, 2))
            elif variant == "addmm":
                y = torch.addmm(base.view(M, N), x.view(M, K) @ a2, b2).view(M, 1, N)
            elif variant == "none":
                y = base + base
            else:
                raise ValueError(variant)
            outs.append(y)
        return outs

    return run


def time_graph(run, reps: int = 200) -> float:
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            run()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        run()
    for _ in range(10):
        g.replay()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        g.replay()
        e1.record()
        e1.synchronize()
        ts.append(e0.elapsed_time(e1))
    return statistics.median(ts)


def time_eager(run, reps: int = 50) -> float:
    """Median ms per eager run (launched from Python, timed on the GPU): how the engine runs a prefill (outside
    CUDA graph capture, where the fused op's two-kernel prompt path applies)."""
    for _ in range(3):
        run()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        run()
        e1.record()
        e1.synchronize()
        ts.append(e0.elapsed_time(e1))
    return statistics.median(ts)


def kernels(run) -> list:
    from torch.profiler import ProfilerActivity, profile
    run()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        run()
        torch.cuda.synchronize()
    agg = {}
    for e in p.events():
        if e.device_type.name == "CUDA":
            k = e.name[:90]
            n, t = agg.get(k, (0, 0.0))
            agg[k] = (n + 1, t + e.device_time_total)
    return sorted(([k, n, round(t / 1000, 4)] for k, (n, t) in agg.items()), key=lambda r: -r[2])


def ort_graph(variant: str, M: int, path: str) -> list:
    """A 64-target LoRA chain as an ONNX model (inputs: x, the bases, every A/B; outputs: the targets)."""
    import onnx
    from onnx import TensorProto as T, helper as h
    rows = M if M > 1 else 1
    nodes, inputs, outputs, feeds = [], [h.make_tensor_value_info("x", T.FLOAT16, [M, 1, K])], [], []
    for N in NS:
        inputs.append(h.make_tensor_value_info(f"base{N}", T.FLOAT16, [M, 1, N]))
    for i in range(LAYERS * len(NS)):
        N = NS[i % 2]
        at, bt = variant in ("at", "at_bt"), variant == "at_bt"
        inputs += [h.make_tensor_value_info(f"A{i}", T.FLOAT16, [rows, R, K] if at else [rows, K, R]),
                   h.make_tensor_value_info(f"B{i}", T.FLOAT16, [rows, N, R] if bt else [rows, R, N])]
        feeds += [(f"A{i}", (rows, R, K) if at else (rows, K, R)), (f"B{i}", (rows, N, R) if bt else (rows, R, N))]
        if variant == "none":
            nodes.append(h.make_node("Add", [f"base{N}", f"base{N}"], [f"y{i}"]))
        elif variant == "fused":
            nodes.append(h.make_node("LoraAdd", [f"base{N}", "x", f"A{i}", f"B{i}"], [f"y{i}"], domain="studio.lora"))
        else:
            nodes.append(h.make_node("FusedMatMul", ["x", f"A{i}"], [f"xa{i}"], domain="com.microsoft", transB=1)
                         if at else h.make_node("MatMul", ["x", f"A{i}"], [f"xa{i}"]))
            nodes.append(h.make_node("FusedMatMul", [f"xa{i}", f"B{i}"], [f"d{i}"], domain="com.microsoft",
                                     transB=1) if bt else h.make_node("MatMul", [f"xa{i}", f"B{i}"], [f"d{i}"]))
            nodes.append(h.make_node("Add", [f"base{N}", f"d{i}"], [f"y{i}"]))
        outputs.append(h.make_tensor_value_info(f"y{i}", T.FLOAT16, [M, 1, N]))
    g = h.make_graph(nodes, "lora", inputs, outputs)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1),
                                       h.make_opsetid("studio.lora", 1)])
    m.ir_version = 8
    onnx.save(m, path)
    return feeds


def ort_time(variant: str, M: int, gen: torch.Generator, reps: int = 200) -> tuple[float, float]:
    """Median ms per CUDA-graph replay of the chain in onnxruntime, and max |out - torch reference| / max |ref|."""
    import os
    import tempfile

    import onnxruntime as ort
    path = os.path.join(tempfile.mkdtemp(), f"{variant}{M}.onnx")
    feeds = ort_graph(variant, M, path)
    so = ort.SessionOptions()
    if variant == "fused":
        so.register_custom_ops_library(str(fused_lib()))
    sess = ort.InferenceSession(path, so, providers=[("CUDAExecutionProvider", {"enable_cuda_graph": "1"})])
    dev, dt = "cuda", torch.float16
    tens = {"x": torch.randn(M, 1, K, generator=gen, device=dev).to(dt)}
    for N in NS:
        tens[f"base{N}"] = torch.randn(M, 1, N, generator=gen, device=dev).to(dt)
    for name, shape in feeds:
        scale = K ** 0.5 if name.startswith("A") else R ** 0.5
        tens[name] = (torch.randn(*shape, generator=gen, device=dev) / scale).to(dt)
    outs = {f"y{i}": torch.empty(M, 1, NS[i % 2], device=dev, dtype=dt) for i in range(LAYERS * len(NS))}
    b = sess.io_binding()
    for k, t in list(tens.items()) + list(outs.items()):
        (b.bind_input if k in tens else b.bind_output)(k, "cuda", 0, 10, list(t.shape), t.data_ptr())
    ro = ort.RunOptions()
    for _ in range(5):
        sess.run_with_iobinding(b, ro)
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        sess.run_with_iobinding(b, ro)
        e1.record()
        e1.synchronize()
        ts.append(e0.elapsed_time(e1))
    err = 0.0
    if variant != "none":
        for i in (0, 1, LAYERS * 2 - 1):
            a, bb = tens[f"A{i}"].float(), tens[f"B{i}"].float()
            a = a.transpose(1, 2) if variant in ("at", "at_bt") else a
            bb = bb.transpose(1, 2) if variant == "at_bt" else bb
            ref = tens[f"base{NS[i % 2]}"].float() + torch.matmul(torch.matmul(tens["x"].float(), a), bb)
            err = max(err, float((outs[f"y{i}"].float() - ref).abs().max() / ref.abs().max()))
    return statistics.median(ts), err


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--rows", default="1,2,8")
    ap.add_argument("--ort", action="store_true", help="also time the chains in onnxruntime (CUDA graph)")
    ap.add_argument("--variants", default="none,rows,at,at_bt,addmm,fused,fused64,fused64t", help="torch-side variants")
    ap.add_argument("--prompt", type=int, default=0,
                    help="also time rows and fused64 on one row of this many tokens (eager, as a prefill runs; "
                         "STUDIO_LORA_KERNEL=tile: the single prompt kernel instead of the two-kernel path)")
    args = ap.parse_args()
    gen = torch.Generator(device="cuda").manual_seed(0)
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "cublas": torch.backends.cuda.preferred_blas_library().name if hasattr(
               torch.backends.cuda, "preferred_blas_library") else "",
           "date": time.strftime("%Y-%m-%d"), "shape": {"K": K, "r": R, "targets": LAYERS * len(NS), "N": NS},
           "ms_per_replay": {}, "kernels_M1": {}}
    for M in [int(m) for m in args.rows.split(",") if m]:
        for v in args.variants.split(","):
            if v == "addmm" and M > 1:
                continue
            run = make(v, M, gen)
            if hasattr(run, "check"):
                res.setdefault("fused_rel_err", {})[f"{v}/M{M}"] = f"{run.check():.1e}"
            t1 = time_graph(run)
            t2 = time_graph(run)
            res["ms_per_replay"][f"{v}/M{M}"] = [round(t1, 4), round(t2, 4)]
            if M == 1:
                try:
                    res["kernels_M1"][v] = kernels(run)[:8]
                except Exception as e:  # noqa: BLE001 - the timings stand without the kernel list
                    res["kernels_M1"][v] = f"profiler failed: {type(e).__name__}: {e}"
            print(v, M, t1, t2, file=sys.stderr, flush=True)
    if args.prompt:  # the prefill of one request: one row, args.prompt tokens (TTFT's LoRA share)
        for v in ("none", "rows", "fused64", "fused64t"):
            run = make(v, 1, gen, S=args.prompt)
            if hasattr(run, "check"):
                res.setdefault("fused_rel_err", {})[f"{v}/S{args.prompt}"] = f"{run.check():.1e}"
            t1, t2 = time_eager(run), time_eager(run)
            res.setdefault("ms_per_eager_run", {})[f"{v}/M1S{args.prompt}"] = [round(t1, 4), round(t2, 4)]
            try:  # GPU time per kernel (the eager timing above also holds the launches from Python)
                res.setdefault("kernels_prompt", {})[v] = kernels(run)[:6]
            except Exception as e:  # noqa: BLE001
                res.setdefault("kernels_prompt", {})[v] = f"profiler failed: {type(e).__name__}: {e}"
            print(v, f"S{args.prompt}", t1, t2, file=sys.stderr, flush=True)
    if args.ort:
        import onnxruntime as ort
        res["onnxruntime"] = ort.__version__
        res["ort_ms_per_run"] = {}
        for M in [int(m) for m in args.rows.split(",") if m]:
            for v in ("none", "rows", "at", "at_bt", "fused"):
                t1, err = ort_time(v, M, gen)
                t2, _ = ort_time(v, M, gen)
                res["ort_ms_per_run"][f"{v}/M{M}"] = [round(t1, 4), round(t2, 4), f"rel err {err:.1e}"]
                print("ort", v, M, t1, t2, err, file=sys.stderr, flush=True)
    text = json.dumps(res, indent=1)
    print(text)
    if args.out:
        open(args.out, "w").write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Which int4 kernels onnxruntime runs for MatMulNBits, and how their time scales with the batch rows M:
L synthetic MatMulNBits nodes (K 3072, N 9216 / 3072 / 16384 as Phi-3.5-mini's qkv, o and gate_up; random
weights) built here, for two weight formats (block 128 with zero points, what the pipeline builds: the AWQ scheme;
block 32 without zero points) x fpA_intB off/on (session config ep.cuda.fpa_intb_gemm) x M in 1, 2, 4, 8.
Per case: ms per chain run (I/O binding on the device, median of repeats), the kernels seen by CUPTI
(torch.profiler), and the output's relative difference to the fpA_intB-off run of the same weights.

    python bench/int4_kernels.py OUT.json [cuda|cpu] [LAYERS]      (cpu: a dry run, float32, no profile)
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common as C  # noqa: E402


NS = (9216, 3072, 16384)  # qkv, o and gate_up of Phi-3.5-mini (K = 3072 for all three)


def layers(L: int, K: int, block: int, zp: bool, dtype, seed: int = 0):
    """L MatMulNBits nodes side by side, each reading x [M, K] (N cycling through NS), one output each:
    the int4 weight traffic of a decode step's projections, without activations to keep bounded."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    kb = K // block
    ttype = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    nodes, inits, outs = [], [], []
    for i in range(L):
        N = NS[i % len(NS)]
        w = rng.integers(0, 256, size=(N, kb, block // 2), dtype=np.uint8)
        s = (rng.random((N * kb,), dtype=np.float32) * 0.004 + 1e-4).astype(dtype)
        ins = ["x", f"w{i}", f"s{i}"]
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(s, f"s{i}")]
        if zp:
            z = rng.integers(0, 256, size=(N * ((kb + 1) // 2),), dtype=np.uint8)
            inits.append(numpy_helper.from_array(z, f"z{i}"))
            ins.append(f"z{i}")
        nodes.append(helper.make_node("MatMulNBits", ins, [f"y{i}"], domain="com.microsoft", K=K, N=N, bits=4,
                                      block_size=block, accuracy_level=0))
        outs.append(helper.make_tensor_value_info(f"y{i}", ttype, ["M", N]))
    g = helper.make_graph(nodes, "int4", [helper.make_tensor_value_info("x", ttype, ["M", K])], outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 10
    return m.SerializeToString()


def run_case(model: bytes, device: str, fpa: bool, Ms, reps: int, dtype):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if fpa:  # the session key (onnxruntime >= 1.31) and the variable older releases read at kernel creation
        so.add_session_config_entry("ep.cuda.fpa_intb_gemm", "1")
        os.environ["ORT_FPA_INTB_GEMM"] = "1"
    prov = [("CUDAExecutionProvider", {"device_id": 0})] if device == "cuda" else ["CPUExecutionProvider"]
    t0 = time.perf_counter()
    try:
        sess = ort.InferenceSession(model, so, providers=prov)
    finally:
        os.environ.pop("ORT_FPA_INTB_GEMM", None)
    load_s = time.perf_counter() - t0
    if device == "cuda" and "CUDAExecutionProvider" not in sess.get_providers():
        raise RuntimeError(f"no CUDA execution provider in this onnxruntime: {sess.get_providers()}")
    out_names = [o.name for o in sess.get_outputs()]
    rows, outs = {}, {}
    rng = np.random.default_rng(1)
    for M in Ms:
        x = (rng.standard_normal((M, 3072)) * 0.1).astype(dtype)
        if device == "cuda":
            import torch
            xt = torch.from_numpy(x).cuda()
            b = sess.io_binding()
            b.bind_input("x", "cuda", 0, dtype, list(x.shape), xt.data_ptr())
            for n in out_names:
                b.bind_output(n, "cuda", 0)

            def once():
                sess.run_with_iobinding(b)
                torch.cuda.synchronize()
            for _ in range(3):
                once()
            ts = C.time_reps(once, reps)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as p:
                once()
            kern = sorted({e.key[:90] for e in p.key_averages() if e.device_time_total > 0})
            outs[M] = np.concatenate([o.numpy().astype(np.float32).ravel() for o in b.get_outputs()[:3]])
        else:
            def once():
                outs[M] = np.concatenate([o.astype(np.float32).ravel() for o in sess.run(None, {"x": x})[:3]])
            once()
            ts = C.time_reps(once, reps)
            kern = []
        rows[M] = {"ms": round(1000 * statistics.median(ts), 3), "kernels": kern}
    return {"load_s": round(load_s, 2), "rows": rows}, outs


def main() -> None:
    dest = sys.argv[1]
    device = sys.argv[2] if len(sys.argv) > 2 else "cuda"
    L = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    dtype = np.float16 if device == "cuda" else np.float32
    Ms = (1, 2, 4, 8)
    res = {"layers": L, "K": 3072, "N": list(NS), "device": device}
    try:
        import onnxruntime as ort
        res["onnxruntime"] = ort.__version__
        res["providers"] = ort.get_available_providers()
    except Exception as e:  # noqa: BLE001
        res["error"] = repr(e)
    for name, block, zp in (("block128-zp", 128, True), ("block32-sym", 32, False)):
        model = layers(L, 3072, block, zp, dtype)
        base, base_out = run_case(model, device, False, Ms, 20, dtype)
        res[f"{name}/own"] = base
        print(name, "own", json.dumps(base), flush=True)
        with open(dest, "w") as f:
            json.dump(res, f, indent=1)
        if device == "cuda":
            try:
                fpa, fpa_out = run_case(model, device, True, Ms, 20, dtype)
                for M in Ms:
                    ref = base_out[M]
                    fpa["rows"][M]["rel_diff"] = float(np.linalg.norm(fpa_out[M] - ref) / (np.linalg.norm(ref) + 1e-30))
                res[f"{name}/fpa"] = fpa
            except Exception as e:  # noqa: BLE001
                res[f"{name}/fpa"] = {"error": repr(e)[:500]}
            print(name, "fpa", json.dumps(res[f"{name}/fpa"]), flush=True)
        with open(dest, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()

"""Where the GPU time goes, kernel by kernel, under onnxruntime-genai: a CUPTI trace (torch.profiler, which
records every CUDA kernel / copy of the process, onnxruntime's and og's too) of an og greedy decode of
--steps tokens, base and with an adapter active (optionally a second one), CUDA graph off and on.

  python bench/gpu_trace.py --model MODEL_DIR --adapter A.onnx_adapter [--adapter2 B.onnx_adapter] \
      [--steps 32] [--graph off,on] [--peak-gbs 4800] [--keep-trace DIR] --out bench/results/gpu-trace.json
  python bench/gpu_trace.py --selftest      # the trace aggregation on synthetic events (no GPU needed)

Per configuration (graph off/on x base/adapter/adapter2): a warm-up generation, one timed generation
without the profiler (`wall_ms_per_token`), then the profiled one: og_generator(prompt, steps + 1), the
first generate_next_token (the token from the prefill's logits) outside the trace, then `steps` decode
steps inside it, so everything per token is divided by `steps`. The chrome trace is exported to a temp
file (deleted unless --keep-trace), parsed here, and reduced by `summarize()` (a pure function):
  - kernel busy us/token: the UNION of the kernel intervals on the time line (overlapping kernels on
    several streams count once), also their plain sum; kernels/token; launch calls/token (cuda_runtime
    events named *Launch*, cudaGraphLaunch separately);
  - copies: gpu_memcpy / gpu_memset events by kind (HtoD, DtoH, DtoD, ... from the event name): count,
    bytes (args.bytes) and us per token. "Is an adapter copied every step?" = HtoD bytes/token with the
    adapter minus base;
  - idle-gap fraction: 1 - (union of kernel + copy intervals) / (first GPU activity start .. last end);
  - per kernel name: count/token, us/token, median us per call (top 25 by time in `top_kernels`);
  - roles, by the first matching (case-insensitive) regular expression of ROLE_RULES below, and copies
    as "memcpy <kind>" / "memset".
Then per graph setting: adapter minus base per role and per kernel name (what the adapter adds per token),
and a bandwidth floor: weight bytes (the .onnx / .data files of the folder, plus the adapter file for the
adapter rows; embedding tables are counted whole, so the floor is a little high) / --peak-gbs, as ms per
token and as a fraction of the measured wall ms/token.
With CUDA graph on, CUPTI may or may not report the kernels inside a replayed graph: kernels/token says
what was seen (a near-empty trace next to a large wall time means the graph's kernels were not reported).
`tokens_match_graph_off` checks that graph on makes the same greedy tokens as graph off for each variant.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import common as C  # noqa: E402

PROMPT = list(range(100, 116))

# role, regular expression (re.I, searched in the kernel name); the first match wins, so the order matters:
# og's own kernels first, int4 before the generic GEMM words, attention before GEMM ('splitkv' of
# flash-decoding vs cuBLAS 'splitK'), data movement before elementwise ('pad' vs 'add'); '(?<!u)int4' skips
# the CUDA vector type uint4 that copy kernels carry in their template arguments.
ROLE_RULES = [
    ("og search/state", r"generators::|cub::|argmax|topk|top_k|sampling"),
    ("int4 MatMulNBits", r"matmulnbits|nbits|4bits|(?<!u)int4|dequant|weight_?only|fpa_?intb|mixed_?gemm|blkq4"),
    ("attention", r"flash|attention|\bmha|mha_|gqa|fmha|xqa|rotary|concatnewtopast|concat_?kv|unpackqkv|kv_?cache|softmax"),
    ("GEMM (cuBLAS/cutlass)", r"gemm|gemv|cutlass|splitk|cublas|xmma|nvjet|\bsm\d+_|ampere_|hopper_"),
    ("layer norm", r"layer_?norm|rms_?norm|skiplayer"),
    ("activation", r"silu|gelu|swiglu|sigmoid|relu|tanh"),
    ("reduce", r"reduce|reduction"),
    ("data movement", r"transpose|concat|slice|gather|scatter|split|expand|pad|tile|copy|memcpy"),
    ("elementwise", r"element_?wise|add|mul|sub|div|cast|unary|binary|where|neg|pow|sqrt|fill|memset"),
]
_ROLE_RX = [(r, re.compile(p, re.I)) for r, p in ROLE_RULES]
COPY_KINDS = ("HtoD", "DtoH", "DtoD", "HtoH", "PtoP", "DtoA", "AtoD", "AtoA", "AtoH", "HtoA")


def classify(name: str) -> str:
    for role, rx in _ROLE_RX:
        if rx.search(name):
            return role
    return "other"


def copy_kind(name: str) -> str:
    for k in COPY_KINDS:
        if k.lower() in name.lower():
            return k
    return "other"


def _union(iv: list[tuple[float, float]]) -> float:
    """Total length of the union of [start, end) intervals."""
    tot, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(iv):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                tot += cur_e - cur_s
            cur_s, cur_e = s, e
        elif e > cur_e:
            cur_e = e
    if cur_e is not None:
        tot += cur_e - cur_s
    return tot


def _r(x: float, nd: int = 2) -> float:
    return round(float(x), nd)


def summarize(trace_events: list[dict], tokens: int) -> dict:
    """Aggregate chrome-trace events of `tokens` decode steps (see the module docstring). Pure."""
    t = float(tokens)
    ev = [e for e in trace_events if e.get("ph", "X") == "X" and isinstance(e.get("dur"), (int, float))
          and isinstance(e.get("ts"), (int, float))]
    kern = [e for e in ev if e.get("cat") == "kernel"]
    cps = [e for e in ev if e.get("cat") == "gpu_memcpy"]
    sets = [e for e in ev if e.get("cat") == "gpu_memset"]
    rt = [e for e in ev if e.get("cat") in ("cuda_runtime", "cuda_driver")]
    iv_k = [(float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in kern]
    iv_all = iv_k + [(float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in cps + sets]
    busy_k, busy_all = _union(iv_k), _union(iv_all)
    span = (max(e for _, e in iv_all) - min(s for s, _ in iv_all)) if iv_all else 0.0

    per_name: dict[str, list[float]] = collections.defaultdict(list)
    for e in kern:
        per_name[e.get("name", "?")].append(float(e["dur"]))
    kernels = {n: {"role": classify(n), "count_per_token": _r(len(d) / t, 3), "us_per_token": _r(sum(d) / t, 3),
                   "median_us": _r(statistics.median(d), 3)} for n, d in per_name.items()}
    top = sorted(kernels, key=lambda n: -kernels[n]["us_per_token"])[:25]

    roles: dict[str, dict] = collections.defaultdict(lambda: {"count_per_token": 0.0, "us_per_token": 0.0})
    for n, d in per_name.items():
        r = roles[classify(n)]
        r["count_per_token"] += len(d) / t
        r["us_per_token"] += sum(d) / t
    copies: dict[str, dict] = {}
    for cat, group in (("memcpy", cps), ("memset", sets)):
        for e in group:
            kind = f"memcpy {copy_kind(e.get('name', ''))}" if cat == "memcpy" else "memset"
            c = copies.setdefault(kind, {"count_per_token": 0.0, "bytes_per_token": 0.0, "us_per_token": 0.0,
                                         "events_without_bytes": 0})
            c["count_per_token"] += 1 / t
            c["us_per_token"] += float(e["dur"]) / t
            b = (e.get("args") or {}).get("bytes")
            if isinstance(b, (int, float)):
                c["bytes_per_token"] += b / t
            else:
                c["events_without_bytes"] += 1
            roles[kind]["count_per_token"] += 1 / t
            roles[kind]["us_per_token"] += float(e["dur"]) / t
    rt_names = collections.Counter(e.get("name", "?") for e in rt)
    streams = sorted({str((e.get("args") or {}).get("stream")) for e in kern if (e.get("args") or {}).get("stream") is not None})
    out = {
        "tokens": tokens,
        "kernels_per_token": _r(len(kern) / t, 2),
        "kernel_busy_us_per_token": _r(busy_k / t),
        "kernel_sum_us_per_token": _r(sum(float(e["dur"]) for e in kern) / t),
        "gpu_busy_us_per_token": _r(busy_all / t),
        "gpu_span_us_per_token": _r(span / t),
        "idle_gap_fraction": _r(1 - busy_all / span, 4) if span > 0 else None,
        "distinct_kernels": len(kernels),
        "kernel_streams": streams,
        "launch_calls_per_token": _r(sum(c for n, c in rt_names.items() if "launch" in n.lower()) / t, 2),
        "graph_launches_per_token": _r(sum(c for n, c in rt_names.items() if "graphlaunch" in n.lower()) / t, 3),
        "runtime_calls_per_token": {n: _r(c / t, 2) for n, c in rt_names.most_common(12)},
        "copies": {k: {kk: (_r(vv, 3) if kk != "events_without_bytes" else vv) for kk, vv in v.items()}
                   for k, v in sorted(copies.items())},
        "roles": {k: {"count_per_token": _r(v["count_per_token"], 3), "us_per_token": _r(v["us_per_token"], 3)}
                  for k, v in sorted(roles.items(), key=lambda kv: -kv[1]["us_per_token"])},
        "top_kernels": [dict(name=n, **kernels[n]) for n in top],
        "kernels": kernels,
    }
    if not kern:
        out["warning"] = "no GPU kernel in the trace (CUPTI reported none: CUDA graph replay, or no CUDA activity)"
    return out


def diff(base: dict, other: dict, top: int = 25) -> dict:
    """other minus base: per role, per kernel name (top by |us/token|), copies, headline numbers. Pure."""
    def sub(a, b, k):
        return None if a.get(k) is None or b.get(k) is None else _r(b[k] - a[k], 3)
    head = {k: sub(base, other, k) for k in ("wall_ms_per_token", "kernel_busy_us_per_token", "kernel_sum_us_per_token",
                                             "kernels_per_token", "launch_calls_per_token", "gpu_busy_us_per_token")}
    roles = {}
    for r in sorted(set(base["roles"]) | set(other["roles"])):
        a, b = base["roles"].get(r, {}), other["roles"].get(r, {})
        roles[r] = {k: _r(b.get(k, 0) - a.get(k, 0), 3) for k in ("count_per_token", "us_per_token")}
    roles = dict(sorted(roles.items(), key=lambda kv: -abs(kv[1]["us_per_token"])))
    kern = []
    for n in set(base["kernels"]) | set(other["kernels"]):
        a, b = base["kernels"].get(n, {}), other["kernels"].get(n, {})
        kern.append({"name": n, "role": classify(n),
                     "count_per_token": _r(b.get("count_per_token", 0) - a.get("count_per_token", 0), 3),
                     "us_per_token": _r(b.get("us_per_token", 0) - a.get("us_per_token", 0), 3),
                     "only_in": "other" if not a else ("base" if not b else None)})
    kern.sort(key=lambda k: (-abs(k["us_per_token"]), -abs(k["count_per_token"]), k["name"]))
    copies = {}
    for k in sorted(set(base["copies"]) | set(other["copies"])):
        a, b = base["copies"].get(k, {}), other["copies"].get(k, {})
        copies[k] = {kk: _r(b.get(kk, 0) - a.get(kk, 0), 3) for kk in ("count_per_token", "bytes_per_token", "us_per_token")}
    return {**head, "roles": roles, "kernels": [k for k in kern if k["us_per_token"] or k["count_per_token"]][:top],
            "copies": copies}


def load_trace(path: Path) -> list[dict]:
    data = json.loads(Path(path).read_text(errors="replace"), strict=False)
    return data["traceEvents"] if isinstance(data, dict) else data


# ------------------------------------------------------------------ GPU part
def trace_one(model, ads, name, steps: int, keep: Path | None, tag: str) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile
    gen = C.og_generator(model, PROMPT, steps + 1, ads, name)  # warm-up
    C.decode_rest(gen)
    del gen
    gen = C.og_generator(model, PROMPT, steps + 1, ads, name)  # timed, no profiler
    gen.generate_next_token()
    t0 = time.perf_counter()
    k = C.decode_rest(gen)
    wall = (time.perf_counter() - t0) / k
    del gen
    gen = C.og_generator(model, PROMPT, steps + 1, ads, name)
    gen.generate_next_token()  # the token from the prefill's logits, outside the trace
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        k = C.decode_rest(gen)
        torch.cuda.synchronize()
        wall_prof = (time.perf_counter() - t0) / k
    toks = [int(x) for x in gen.get_sequence(0)][len(PROMPT):]
    del gen
    fd, tmp = tempfile.mkstemp(prefix=f"gpu_trace_{tag}_", suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(tmp)
        events = load_trace(Path(tmp))
        if keep:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp, keep / f"{tag}.json")
    finally:
        os.unlink(tmp)
    s = summarize(events, k)
    s.update(wall_ms_per_token=_r(1000 * wall, 3), profiled_wall_ms_per_token=_r(1000 * wall_prof, 3),
             decode_steps=k, tokens_generated=toks, trace_events=len(events))
    return s


def run_gpu(a) -> dict:
    import onnxruntime_genai as og
    import torch
    from torch.profiler import ProfilerActivity, profile
    torch.zeros(1, device="cuda")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]):  # CUPTI's first-use cost here
        (torch.ones(256, 256, device="cuda") @ torch.ones(256, 256, device="cuda")).sum().item()
    wb = C.weight_bytes(a.model)
    variants = {"base": (None, None)}
    if a.adapter:
        variants["adapter"] = (a.adapter, "a")
    if a.adapter2:
        variants["adapter2"] = (a.adapter2, "b")
    res = {"info": C.device_info("cuda"), "date": time.strftime("%Y-%m-%d"),
           "settings": {k: str(v) for k, v in vars(a).items()}, "prompt": PROMPT, "weight_bytes": wb,
           "role_rules": ROLE_RULES, "configs": {}, "diffs": {}, "errors": {}}
    t_start = time.perf_counter()
    for graph in a.graph:
        model = C.og_model(a.model, "cuda", graph)
        ads = og.Adapters(model)
        for v, (f, nm) in variants.items():
            if f:
                ads.load(str(f), nm)
        for v, (f, nm) in variants.items():
            key = f"graph {'on' if graph else 'off'} / {v}"
            print(f"[{time.perf_counter() - t_start:6.1f}s] {key}", flush=True)
            try:
                s = trace_one(model, ads, nm, a.steps, a.keep_trace, key.replace(" / ", "_").replace(" ", "-"))
            except Exception as e:  # noqa: BLE001
                res["errors"][key] = repr(e)
                print(f"  failed: {e!r}", flush=True)
                continue
            b = wb + (Path(f).stat().st_size if f else 0)
            floor = 1000 * b / (a.peak_gbs * 1e9)
            s.update(cuda_graph=graph, variant=v, bytes_per_token=b, bandwidth_floor_ms_per_token=_r(floor, 4),
                     bandwidth_fraction=_r(floor / s["wall_ms_per_token"], 4) if s["wall_ms_per_token"] else None)
            res["configs"][key] = s
            if a.out:
                C.write_json(a.out, res)
        del ads, model
        g = "on" if graph else "off"
        base = res["configs"].get(f"graph {g} / base")
        for v in variants:
            other = res["configs"].get(f"graph {g} / {v}")
            if v != "base" and base and other:
                res["diffs"][f"graph {g} / {v} - base"] = diff(base, other)
    for key, s in res["configs"].items():
        if key.startswith("graph on"):
            off = res["configs"].get(key.replace("graph on", "graph off"))
            if off:
                s["tokens_match_graph_off"] = s["tokens_generated"] == off["tokens_generated"]
    res["seconds"] = round(time.perf_counter() - t_start, 1)
    return res


def short(name: str, n: int = 90) -> str:
    return name if len(name) <= n else name[:n - 3] + "..."


def report(res: dict) -> str:
    L = ["| config | wall ms/tok | profiled | kernel busy us/tok | kernels/tok | launches/tok | HtoD B/tok | "
         "DtoH B/tok | DtoD B/tok | idle gap | BW floor ms | BW fraction |", "|---" * 12 + "|"]
    for k, s in res["configs"].items():
        cp = s["copies"]
        by = [cp.get(f"memcpy {x}", {}).get("bytes_per_token", 0) for x in ("HtoD", "DtoH", "DtoD")]
        idle = "-" if s["idle_gap_fraction"] is None else f"{100 * s['idle_gap_fraction']:.1f}%"
        L.append(f"| {k} | {s['wall_ms_per_token']:.3f} | {s['profiled_wall_ms_per_token']:.3f} | "
                 f"{s['kernel_busy_us_per_token']:.1f} | {s['kernels_per_token']:.1f} | {s['launch_calls_per_token']:.1f} | "
                 f"{by[0]:.0f} | {by[1]:.0f} | {by[2]:.0f} | {idle} | {s['bandwidth_floor_ms_per_token']:.3f} | "
                 f"{100 * (s['bandwidth_fraction'] or 0):.1f}% |")
    roles = sorted({r for s in res["configs"].values() for r in s["roles"]})
    if roles:
        L += ["", "us per token by role (count per token):", "| config | " + " | ".join(roles) + " |",
              "|---" * (len(roles) + 1) + "|"]
        for k, s in res["configs"].items():
            L.append(f"| {k} | " + " | ".join(
                f"{s['roles'][r]['us_per_token']:.1f} ({s['roles'][r]['count_per_token']:.0f})" if r in s["roles"] else "-"
                for r in roles) + " |")
    for k, d in res["diffs"].items():
        L += ["", f"{k}: wall {d['wall_ms_per_token']:+.3f} ms/tok, kernel busy {d['kernel_busy_us_per_token']:+.1f} us/tok, "
              f"kernels {d['kernels_per_token']:+.1f}/tok, launches {d['launch_calls_per_token']:+.1f}/tok",
              "  by role (us/tok, kernels/tok): " + ", ".join(
                  f"{r} {v['us_per_token']:+.1f} ({v['count_per_token']:+.0f})" for r, v in d["roles"].items()
                  if v["us_per_token"] or v["count_per_token"]),
              "  copies: " + (", ".join(f"{c} {v['count_per_token']:+.2f}/tok {v['bytes_per_token']:+.0f} B/tok"
                                        for c, v in d["copies"].items()) or "none")]
        for x in d["kernels"][:10]:
            L.append(f"  {x['us_per_token']:+9.1f} us {x['count_per_token']:+6.1f}x  [{x['role']}] {short(x['name'])}")
    first = next(iter(res["configs"].items()), None)
    if first:
        L += ["", f"top kernels, {first[0]} (us/tok, count/tok, median us):"]
        for x in first[1]["top_kernels"][:12]:
            L.append(f"  {x['us_per_token']:9.1f} {x['count_per_token']:6.1f} {x['median_us']:7.2f}  [{x['role']}] "
                     f"{short(x['name'])}")
    for k, s in res["configs"].items():
        if s.get("warning"):
            L.append(f"WARNING {k}: {s['warning']}")
        if s.get("tokens_match_graph_off") is False:
            L.append(f"NOTE {k}: greedy tokens differ from graph off")
    for k, e in res.get("errors", {}).items():
        L.append(f"ERROR {k}: {e}")
    return "\n".join(L)


# ------------------------------------------------------------------ self-test (no GPU)
def _synthetic(adapter: bool, tokens: int = 2) -> list[dict]:
    ev = [{"ph": "M", "name": "process_name", "pid": 0, "tid": 0, "args": {"name": "python"}},
          {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 0, "dur": 500}]
    names = {"A": "void onnxruntime::contrib::cuda::MatMulFloatInt4Kernel<__half, 256, 8>(...)",
             "B": "void flash_fwd_splitkv_kernel<Flash_fwd_kernel_traits<96, 64, 128, 4, false>, true>(...)",
             "C": "void onnxruntime::cuda::_BinaryElementWiseSimple<true, true, __half, __half, __half, OP_Add<__half>>(...)",
             "D": "void gemv2T_kernel_val<int, int, __half, __half, float, 128, 16, 4, 4, false, false>(...)",
             "E": "void cublasLt::splitKreduce_kernel<32, 16, int, float, __half, float>(...)",
             "F": "void onnxruntime::cuda::_UnaryElementWise<uint4, uint4, OP_Identity>(...)",
             "G": "some_unknown_kernel"}
    for i in range(tokens):
        o = 100.0 * i
        ev += [{"ph": "X", "cat": "kernel", "name": names["A"], "ts": o + 0, "dur": 10, "args": {"stream": 7}},
               {"ph": "X", "cat": "kernel", "name": names["B"], "ts": o + 5, "dur": 10, "args": {"stream": 13}},
               {"ph": "X", "cat": "kernel", "name": names["C"], "ts": o + 20, "dur": 5, "args": {"stream": 7}},
               {"ph": "X", "cat": "kernel", "name": names["F"], "ts": o + 21, "dur": 2, "args": {"stream": 13}},
               {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy DtoH (Device -> Pinned)", "ts": o + 30, "dur": 2,
                "args": {"bytes": 8}},
               {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": o, "dur": 3},
               {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": o + 4, "dur": 3},
               {"ph": "X", "cat": "cuda_runtime", "name": "cudaMemcpyAsync", "ts": o + 29, "dur": 3},
               {"ph": "X", "cat": "kernel", "name": "no duration"}]
        if adapter:
            ev += [{"ph": "X", "cat": "kernel", "name": names["D"], "ts": o + 40, "dur": 4},
                   {"ph": "X", "cat": "kernel", "name": names["E"], "ts": o + 45, "dur": 1},
                   {"ph": "X", "cat": "kernel", "name": names["G"], "ts": o + 46, "dur": 1},
                   {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy HtoD (Pageable -> Device)", "ts": o + 35,
                    "dur": 3, "args": {"bytes": 4096}},
                   {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": o + 39, "dur": 3}]
    return ev


def selftest() -> int:
    assert _union([(0, 10), (5, 15), (20, 25), (21, 23)]) == 20
    assert _union([]) == 0
    assert classify("void onnxruntime::cuda::_UnaryElementWise<uint4, uint4>") == "elementwise"
    assert classify("flash_fwd_splitkv_combine_kernel") == "attention"
    assert classify("void cublasLt::splitKreduce_kernel<>") == "GEMM (cuBLAS/cutlass)"
    assert classify("nvjet_hsh_64x8_64x16_2x1_v_bz_splitK_TNT") == "GEMM (cuBLAS/cutlass)"
    assert classify("void onnxruntime::contrib::cuda::SkipLayerNormKernelSmall<__half, float, __half, 256, 8, true>") == "layer norm"
    assert classify("void Generators::cuda::ArgMaxKernel<float>") == "og search/state"
    assert classify("void onnxruntime::contrib::cuda::MatMulFloatInt4Kernel<__half>") == "int4 MatMulNBits"
    assert classify("something") == "other"
    with tempfile.TemporaryDirectory() as d:  # the file path: a chrome trace as torch writes it
        p = Path(d) / "t.json"
        p.write_text(json.dumps({"schemaVersion": 1, "traceEvents": _synthetic(False)}))
        base = summarize(load_trace(p), 2)
    ad = summarize(_synthetic(True), 2)
    # base per token: A [0,10) B [5,15) C [20,25) F [21,23) -> union 20 us, sum 27 us; + memcpy [30,32)
    assert base["kernels_per_token"] == 4 and ad["kernels_per_token"] == 7, (base["kernels_per_token"], ad["kernels_per_token"])
    assert base["kernel_busy_us_per_token"] == 20 and base["kernel_sum_us_per_token"] == 27
    assert base["gpu_busy_us_per_token"] == 22
    assert base["gpu_span_us_per_token"] == 66  # 0 .. 132 over 2 tokens
    assert abs(base["idle_gap_fraction"] - (1 - 44 / 132)) < 1e-4
    assert base["launch_calls_per_token"] == 2 and ad["launch_calls_per_token"] == 3
    assert base["kernel_streams"] == ["13", "7"]
    a = base["kernels"]["void onnxruntime::contrib::cuda::MatMulFloatInt4Kernel<__half, 256, 8>(...)"]
    assert a == {"role": "int4 MatMulNBits", "count_per_token": 1, "us_per_token": 10, "median_us": 10}, a
    assert base["top_kernels"][0]["us_per_token"] == 10 and len(base["top_kernels"]) == 4
    assert base["roles"]["attention"] == {"count_per_token": 1, "us_per_token": 10}
    assert base["roles"]["elementwise"] == {"count_per_token": 2, "us_per_token": 7}
    assert base["roles"]["memcpy DtoH"] == {"count_per_token": 1, "us_per_token": 2}
    assert base["copies"]["memcpy DtoH"]["bytes_per_token"] == 8
    assert "warning" not in base and "warning" in summarize([], 3)
    # adapter: + gemv [40,44), + splitK [45,46), + unknown [46,47): +6 us busy, + 4096 B HtoD per token
    assert ad["kernel_busy_us_per_token"] == 26
    dd = diff(base, ad)
    assert dd["roles"]["GEMM (cuBLAS/cutlass)"] == {"count_per_token": 2, "us_per_token": 5}, dd["roles"]
    assert dd["roles"]["other"] == {"count_per_token": 1, "us_per_token": 1}
    assert dd["roles"]["int4 MatMulNBits"] == {"count_per_token": 0, "us_per_token": 0}
    assert list(dd["roles"])[0] == "GEMM (cuBLAS/cutlass)"
    assert dd["copies"]["memcpy HtoD"] == {"count_per_token": 1, "bytes_per_token": 4096, "us_per_token": 3}
    assert dd["copies"]["memcpy DtoH"]["bytes_per_token"] == 0
    assert [k["us_per_token"] for k in dd["kernels"]] == [4, 1, 1] and dd["kernels"][0]["only_in"] == "other"
    assert dd["kernels_per_token"] == 3 and dd["kernel_busy_us_per_token"] == 6
    assert dd["wall_ms_per_token"] is None
    # the report renders on synthetic configs
    for s, v in ((base, "base"), (ad, "adapter")):
        s.update(wall_ms_per_token=1.0, profiled_wall_ms_per_token=1.5, bandwidth_floor_ms_per_token=0.5,
                 bandwidth_fraction=0.5, variant=v)
    txt = report({"configs": {"graph off / base": base, "graph off / adapter": ad},
                  "diffs": {"graph off / adapter - base": diff(base, ad)}, "errors": {}})
    assert "graph off / adapter - base" in txt and "memcpy HtoD +1.00/tok +4096 B/tok" in txt, txt
    print(txt)
    print("selftest ok")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    ap.add_argument("--adapter", type=Path)
    ap.add_argument("--adapter2", type=Path)
    ap.add_argument("--steps", type=int, default=32, help="decode steps traced per configuration")
    ap.add_argument("--graph", default="off,on", help="CUDA graph settings to run: off, on or off,on")
    ap.add_argument("--peak-gbs", type=float, default=4800.0, help="peak memory bandwidth, GB/s (H200: 4800)")
    ap.add_argument("--keep-trace", type=Path, help="copy each chrome trace into this folder")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--selftest", action="store_true", help="check the aggregation on synthetic events, no GPU")
    a = ap.parse_args()
    if a.selftest:
        return selftest()
    try:
        a.graph = [{"off": False, "on": True}[x.strip()] for x in a.graph.split(",") if x.strip()]
    except KeyError:
        ap.error("--graph takes off, on or off,on")
    if a.adapter2 and not a.adapter:
        ap.error("--adapter2 needs --adapter")
    try:
        import torch
        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if not cuda:
        print("gpu_trace.py needs a CUDA GPU with torch (torch.cuda.is_available() is False); --selftest runs without",
              file=sys.stderr)
        return 2
    import onnxruntime_genai as og
    if not og.is_cuda_available():
        print("gpu_trace.py needs onnxruntime-genai with CUDA (og.is_cuda_available() is False)", file=sys.stderr)
        return 2
    res = run_gpu(a)
    if a.out:
        C.write_json(a.out, res)
    print(report(res))
    return 1 if res["errors"] and not res["configs"] else 0


if __name__ == "__main__":
    sys.exit(main())

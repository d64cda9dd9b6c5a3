"""Serving figures of one pipeline-built base and two adapters, each part on its own (bench/serving_gpu.sh
runs them all and merges them with the `report` part):

  build    the base + two adapters through `python -m pipeline build` (fast: no AWQ, a few LoRA steps)
  og       the onnxruntime-genai loop (what the og backend runs): decode tokens/s base and adapter (exactly
           N new tokens, 16-token prompt) and time to first token with a 1024-token prompt
  engine   engine.chat.ChatEngine with the backend it picks (STUDIO_BACKEND / STUDIO_CUDA_GRAPH apply):
           the backend's own decode loop (token ids, no text), ChatEngine.stream (the stats line's engine
           rate and the wall time), TTFT with a 1024-token prompt, compare vs one answer, 8 concurrent users
           over base + 2 adapters, adapter switch with 2 and with 100 adapters (LRU budget), device memory
           per adapter
  app      the launched app (python app.py) through gradio_client: tokens over the wall time of /chat,
           base, adapter and compare, the fixed cost of one request (1 new token), 8 concurrent clients
  report   merges PARTS_DIR/*.json into OUT_DIR/serving-<device>-<date>.json with a `summary` object

  python bench/serving.py engine --ws WS --base phi35 --out parts/engine.json [--device cuda] [--tokens 256]
  python bench/serving.py report --parts PARTS_DIR --out-dir bench/results
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench import common as C  # noqa: E402

PROMPT = "Plan a three-day trip to Lisbon with a budget, and say what to pack."


def _adapters(ws: Path, base: str) -> list[str]:
    from artifacts import list_adapters
    return [a.name for a in list_adapters(ws / "adapters", ws / "models" / base) if a.ok]


def _msgs(text: str = PROMPT) -> list[dict]:
    return [{"role": "user", "content": text}]


def _long_msgs(eng, n: int) -> list[dict]:
    """A user message whose rendered prompt is about n tokens."""
    words = "travel plan museum river coast train ticket hotel city market".split()
    k = n
    for _ in range(4):
        text = " ".join(words[i % len(words)] for i in range(k))
        got = len(eng.encode(_msgs(text), 1)[0])
        if abs(got - n) <= 8:
            break
        k = max(1, int(k * n / got))
    return _msgs(text)


# ------------------------------------------------------------------ build
def part_build(a) -> dict:
    """Base + two adapters in a.ws, through the product's own CLI (AWQ off, few LoRA steps: only the
    serving figures are wanted from it)."""
    from dataclasses import fields

    from pipeline.recipe import Recipe
    out = {"runs": {}}
    ep = "cuda" if a.device == "cuda" else "cpu"
    onto = "base" in {f.name for f in fields(Recipe)}  # recipes that name a published base to build onto
    for name in ("travel", "pirate"):
        common = ["--adapter_name", f"{a.base}-{name}", "--train_file", str(ROOT / "data" / name / "train.jsonl"),
                  "--eval_file", str(ROOT / "data" / name / "test.jsonl"), "--lora.max_steps", str(a.steps)]
        new_base = ["--base_model", str(a.hf), "--base_name", a.base, "--awq.enabled", "false",
                    "--onnx.execution_provider", ep, *shlex.split(a.build_args)]
        if not onto:
            args = common + new_base
        elif name == "travel":
            args = ["--base", ""] + common + new_base
        else:  # the second adapter onto the base the first build published
            args = ["--base", a.base] + common
        p, s = C.pipeline_build(a.ws, args)
        out["runs"][name] = {"exit": p.returncode, "seconds": round(s, 1), "tail": p.stdout[-1500:] + p.stderr[-1500:]}
        print(name, p.returncode, round(s, 1), flush=True)
        if p.returncode != 0:
            raise SystemExit(f"build {name} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    out["adapters"] = _adapters(a.ws, a.base)
    return out


# ------------------------------------------------------------------ onnxruntime-genai loop
def part_og(a) -> dict:
    import onnxruntime_genai as og
    d = a.ws / "models" / a.base
    ads = _adapters(a.ws, a.base)
    model = C.og_model(d, a.device, graph=a.device == "cuda")
    adapters = og.Adapters(model)
    adapters.load(str(a.ws / "adapters" / ads[0] / "adapter.onnx_adapter"), "a")
    prompt, long_prompt = C.bench_prompts(d, a.long)
    rows = {}
    for name in (None, "a"):
        def once(p, n):
            return C.og_timed_request(model, p, n, adapters, name)
        once(prompt, 32)
        once(long_prompt, 1)
        dec = [once(prompt, a.tokens)[1] for _ in range(a.reps)]
        ttft = [once(long_prompt, 1)[0] for _ in range(a.reps)]
        rows["adapter" if name else "base"] = {"decode_tok_s": round(statistics.median(dec), 1),
                                               "spread": [round(x, 1) for x in dec],
                                               f"ttft{a.long}_ms": round(1000 * statistics.median(ttft), 2)}
        print(rows, flush=True)
    return {"cuda_graph": a.device == "cuda", "adapter": ads[0], "tokens": a.tokens, "rows": rows}


# ------------------------------------------------------------------ the engine
def _backend_rate(eng, variant: str, ids: list[int], n: int) -> tuple[float, int, list[int]]:
    """The backend's own decode loop: token ids in and out, no text (tokens/s after the first, tokens, the
    greedy ids)."""
    from engine.chat import SamplingParams
    p = SamplingParams(max_new_tokens=n)
    held = eng.registry.acquire(variant)
    try:
        times, toks = [], []
        if eng.backend_name == "ort":
            from engine.ort_backend import Request
            req = eng.backend.submit(Request(ids, held and held.key, held and held.info.path, p, 1, n,
                                             ignore_eos=True))
            while True:
                tok, now, _ = req.out.get()
                if tok is None:
                    break
                times.append(now)
                toks.append(int(tok))
        else:
            for tok, now in eng.backend.run(ids, held and held.key, p, 1, eng.eos_ids, n):
                if tok is None:
                    break
                times.append(now)
                toks.append(int(tok))
    finally:
        eng.registry.release(held)
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    return rate, len(times), toks


def _gen(eng, msgs, variant, n):
    from engine.chat import SamplingParams
    t0 = time.perf_counter()
    text, st = eng.generate(msgs, variant, SamplingParams(max_new_tokens=n))
    return {"wall_s": time.perf_counter() - t0, "tokens": st.tokens, "engine_tok_s": st.tokens_per_s,
            "ttft_ms": 1000 * st.ttft_s, "wall_tok_s": st.tokens / (time.perf_counter() - t0)}


def _med(rows: list[dict], key: str, nd: int = 1):
    return round(statistics.median(r[key] for r in rows), nd)


def _device_mib() -> float | None:
    try:
        import torch
        if torch.cuda.is_available():
            return torch.cuda.memory_allocated() / 2**20
    except Exception:  # noqa: BLE001
        pass
    return None


def _many_adapters(ws: Path, base: str, src: list[str], n: int, dest: Path) -> list[str]:
    """n adapter folders in dest (hard links of the adapters' files, metadata copied): what 100 published
    adapters of one base look like to the engine."""
    names = []
    for i in range(n):
        s = ws / "adapters" / src[i % len(src)]
        d = dest / f"ad{i:03d}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy2(s / "metadata.json", d / "metadata.json")
        try:
            os.link(s / "adapter.onnx_adapter", d / "adapter.onnx_adapter")
        except OSError:
            shutil.copy2(s / "adapter.onnx_adapter", d / "adapter.onnx_adapter")
        names.append(d.name)
    return names


def _switch(eng, names: list[str], reps: int) -> dict:
    """TTFT of a 16-token-prompt request whose adapter differs from the previous request's (cycling over
    `names`) vs the same adapter again: the difference is what a switch costs."""
    msgs = _msgs("Where to next?")
    _gen(eng, msgs, names[0], 1)
    same = [_gen(eng, msgs, names[0], 1)["ttft_ms"] for _ in range(reps)]
    cyc = [_gen(eng, msgs, names[(i + 1) % len(names)], 1)["ttft_ms"] for i in range(max(reps, len(names)))]
    return {"adapters": len(names), "ttft_same_ms": round(statistics.median(same), 3),
            "ttft_switch_ms": round(statistics.median(cyc), 3),
            "switch_ms": round(statistics.median(cyc) - statistics.median(same), 3)}


def part_engine(a) -> dict:
    from engine.chat import ChatEngine, SamplingParams
    ads = _adapters(a.ws, a.base)
    d = a.ws / "models" / a.base
    mem0 = _device_mib()
    t0 = time.perf_counter()
    eng = ChatEngine(d, a.ws / "adapters", provider=a.device)
    out = {"backend": eng.backend_name, "why": eng.backend_why, "provider": eng.provider,
           "cuda_graph": eng.cuda_graph, "adapter": ads[0], "tokens": a.tokens,
           "load_s": round(time.perf_counter() - t0, 2)}
    print(out, flush=True)
    ids, _ = eng.encode(_msgs(), 1)
    n = a.tokens
    _gen(eng, _msgs(), "base", 16)
    _gen(eng, _msgs(), ads[0], 16)
    out["backend_loop"] = {}
    for v in ("base", ads[0]):
        rr = [_backend_rate(eng, v, ids, n) for _ in range(a.reps)]
        out["backend_loop"]["base" if v == "base" else "adapter"] = {
            "decode_tok_s": round(statistics.median(r[0] for r in rr), 1), "tokens": rr[0][1],
            "spread": [round(r[0], 1) for r in rr], "ids": rr[0][2]}
    print(out["backend_loop"], flush=True)
    out["stream"] = {}
    for v in ("base", ads[0]):
        rows = [_gen(eng, _msgs(), v, n) for _ in range(a.reps)]
        out["stream"]["base" if v == "base" else "adapter"] = {
            "engine_tok_s": _med(rows, "engine_tok_s"), "wall_tok_s": _med(rows, "wall_tok_s"),
            "wall_s": _med(rows, "wall_s", 3), "tokens": rows[0]["tokens"], "ttft_ms": _med(rows, "ttft_ms", 2)}
    print(out["stream"], flush=True)
    if a.quick:  # a lever row (STUDIO_BACKEND=og, STUDIO_CUDA_GRAPH=0): decode figures only
        eng.close()
        return out
    long = _long_msgs(eng, a.long)
    _gen(eng, long, ads[0], 1)
    out[f"ttft{a.long}"] = {"prompt_tokens": len(eng.encode(long, 1)[0])}
    for v in ("base", ads[0]):
        out[f"ttft{a.long}"]["base_ms" if v == "base" else "adapter_ms"] = _med(
            [_gen(eng, long, v, 1) for _ in range(a.reps)], "ttft_ms", 2)
    print(out[f"ttft{a.long}"], flush=True)
    # compare: both answers vs one answer (same tokens)
    p = SamplingParams(max_new_tokens=n)

    def cmp_once():
        t0 = time.perf_counter()
        ta, tb, sa, sb = list(eng.compare(_msgs(), "base", ads[0], p))[-1]
        return {"wall_s": time.perf_counter() - t0, "tokens": [sa.tokens, sb.tokens]}
    cmp_once()
    c = [cmp_once() for _ in range(a.reps)]
    one = [_gen(eng, _msgs(), ads[0], n) for _ in range(a.reps)]
    out["compare"] = {"wall_s": _med(c, "wall_s", 3), "tokens": c[0]["tokens"], "one_wall_s": _med(one, "wall_s", 3),
                      "batched": eng.compare_batched, "note": eng.compare_note}
    out["compare"]["over_one"] = round(out["compare"]["wall_s"] / out["compare"]["one_wall_s"], 3)
    print(out["compare"], flush=True)
    # 8 concurrent users over base + 2 adapters
    variants = (["base"] + ads[:2]) * 3
    users = a.users
    res = [None] * users

    def user(i):
        res[i] = _gen(eng, _msgs(f"{PROMPT} (user {i})"), variants[i], n)
    alone = _gen(eng, _msgs(f"{PROMPT} (user 0)"), variants[0], n)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=user, args=(i,)) for i in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    total = sum(r["tokens"] for r in res)
    out["users"] = {"users": users, "tokens": total, "wall_s": round(wall, 3),
                    "aggregate_tok_s": round(total / wall, 1), "one_user_tok_s": round(alone["wall_tok_s"], 1),
                    "median_request_tok_s": round(statistics.median(r["wall_tok_s"] for r in res), 1)}
    out["users"]["aggregate_over_one"] = round(out["users"]["aggregate_tok_s"] / out["users"]["one_user_tok_s"], 2)
    print(out["users"], flush=True)
    out["switch2"] = _switch(eng, ads[:2], a.reps * 4)
    out["serving_stats"] = eng.serving_stats()
    mem1 = _device_mib()
    eng.close()
    del eng
    # 100 adapters on one base (the LRU budget keeps STUDIO_ADAPTER_BUDGET of them on the device)
    tmp = Path(tempfile.mkdtemp(prefix="serving-ads-"))
    try:
        names = _many_adapters(a.ws, a.base, ads[:2], a.many, tmp)
        t0 = time.perf_counter()
        eng = ChatEngine(d, tmp, provider=a.device)
        load_s = time.perf_counter() - t0
        out["switch100"] = _switch(eng, names, a.reps)
        out["switch100"]["engine_load_s"] = round(load_s, 2)
        st = eng.serving_stats()
        out["switch100"]["serving_stats"] = st
        if st.get("resident_adapters"):
            file_b = (a.ws / "adapters" / ads[0] / "adapter.onnx_adapter").stat().st_size
            out["adapter_memory"] = {"file_mib": round(file_b / 2**20, 2),
                                     "device_mib_each": round(st["resident_bytes"] / st["resident_adapters"] / 2**20, 2)}
        eng.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["device_mib"] = {"before": mem0, "engine": mem1}
    print({k: out[k] for k in ("switch2", "switch100")}, flush=True)
    return out


# ------------------------------------------------------------------ the app
_TOKENS = re.compile(r"(?<![\d.])(\d+) tokens(?!/)")


def part_app(a) -> dict:
    from gradio_client import Client
    try:  # the launched-app helpers (tests/app_helpers.py once the security branch lands)
        from app_helpers import free_port, start_app, stop_app
    except ImportError:
        from test_app import free_port, start_app, stop_app
    ads = _adapters(a.ws, a.base)
    port = free_port()
    log = a.out.with_suffix(".app.log")
    proc = start_app(a.ws, port, log)
    out = {"adapter": ads[0], "tokens": a.tokens}
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)

        def chat(variant, n, cmp=False, vb="base", msg=PROMPT, c=None):
            t0 = time.perf_counter()
            job = (c or client).submit(msg, [], [], a.base, variant, vb, cmp, 0.0, 1.0, 0, n, 1.0, 0,
                                       api_name="/chat")
            # Not `for upd in job`: gradio_client 2.x's Job.__next__ sleeps 1 ms while it holds the
            # communicator lock that its SSE reader thread needs to store each update, so the reader
            # starves (on the GPU machine: 2-6 s added to a 256-token stream, 418 ms to a 1-token one).
            # Polling job.outputs() takes the lock only to copy the list.
            first = None
            while not job.done():
                if first is None:
                    outs = job.outputs()
                    hist = outs[-1][0] if outs else None
                    if hist and hist[-1].get("role") == "assistant" and hist[-1].get("content"):
                        first = time.perf_counter() - t0
                time.sleep(0.002)
            res = job.result()
            wall = time.perf_counter() - t0
            stats = res[3]
            toks = [int(x) for x in _TOKENS.findall(stats)]
            eng_rate = [float(x) for x in re.findall(r"decode ([\d.]+) tokens/s", stats)]
            eng_wall = [float(x) for x in re.findall(r"wall ([\d.]+) s", stats)]
            return {"wall_s": wall, "tokens": toks, "app_tok_s": (toks[0] / wall) if toks else 0.0,
                    "first_update_s": first, "engine_tok_s": eng_rate, "engine_wall_s": eng_wall, "stats": stats}
        chat("base", 16)
        chat(ads[0], 16)
        for v in ("base", ads[0]):
            rows = [chat(v, a.tokens) for _ in range(a.reps)]
            key = "base" if v == "base" else "adapter"
            out[key] = {"app_tok_s": _med(rows, "app_tok_s"), "wall_s": _med(rows, "wall_s", 3),
                        "tokens": rows[0]["tokens"], "engine_tok_s": rows[0]["engine_tok_s"],
                        "engine_wall_s": rows[0]["engine_wall_s"], "stats": rows[0]["stats"]}
            out[key]["overhead_s"] = round(out[key]["wall_s"] - (rows[0]["engine_wall_s"] or [0])[0], 3)
        one = [chat(ads[0], 1) for _ in range(a.reps)]
        out["one_token"] = {"wall_ms": round(1000 * statistics.median(r["wall_s"] for r in one), 1),
                            "engine_wall_ms": round(1000 * statistics.median((r["engine_wall_s"] or [0])[0]
                                                                             for r in one), 1)}
        # the same over raw HTTP (POST /gradio_api/call/chat, then its SSE stream): what gradio_client adds
        def raw(variant, n):
            import urllib.request
            args = [PROMPT, [], [], a.base, variant, "base", False, 0.0, 1.0, 0, n, 1.0, 0]
            t0 = time.perf_counter()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/gradio_api/call/chat",
                                         data=json.dumps({"data": args}).encode(),
                                         headers={"Content-Type": "application/json"})
            eid = json.loads(urllib.request.urlopen(req, timeout=120).read())["event_id"]
            last, events = None, 0
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/gradio_api/call/chat/{eid}", timeout=300) as r:
                for line in r:
                    if line.startswith(b"data:"):
                        events += 1
                        last = line[5:]
            wall = time.perf_counter() - t0
            toks = [int(x) for x in _TOKENS.findall(json.loads(last)[3])] if last else []
            return {"wall_s": wall, "events": events, "app_tok_s": toks[0] / wall if toks else 0.0}
        rr = [raw(ads[0], a.tokens) for _ in range(a.reps)]
        r1 = [raw(ads[0], 1) for _ in range(a.reps)]
        out["raw_http"] = {"adapter_tok_s": _med(rr, "app_tok_s"), "updates": rr[0]["events"],
                           "one_token_ms": round(1000 * statistics.median(r["wall_s"] for r in r1), 1)}
        c = [chat("base", a.tokens, True, ads[0]) for _ in range(a.reps)]
        out["compare"] = {"wall_s": _med(c, "wall_s", 3), "tokens": c[0]["tokens"], "stats": c[0]["stats"]}
        variants = (["base"] + ads[:2]) * 3
        res = [None] * a.users
        clients = [Client(f"http://127.0.0.1:{port}/", verbose=False) for _ in range(a.users)]

        def user(i):
            res[i] = chat(variants[i], a.tokens, msg=f"{PROMPT} (user {i})", c=clients[i])
        t0 = time.perf_counter()
        threads = [threading.Thread(target=user, args=(i,)) for i in range(a.users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        total = sum(r["tokens"][0] for r in res if r and r["tokens"])
        out["users"] = {"users": a.users, "tokens": total, "wall_s": round(wall, 3),
                        "aggregate_tok_s": round(total / wall, 1),
                        "median_request_tok_s": round(statistics.median(r["app_tok_s"] for r in res), 1)}
        out["users"]["aggregate_over_one"] = round(out["users"]["aggregate_tok_s"] / out["adapter"]["app_tok_s"], 2)
        print(out, flush=True)
    finally:
        stop_app(proc, a.ws)
    return out


# ------------------------------------------------------------------ report
# lever rows: the engine part (--quick) under one environment change each (bench/serving_gpu.sh runs them)
LEVERS = {"engine-og": "engine forced onto onnxruntime-genai",
          "engine-nograph": "ort backend without CUDA graph",
          "engine-len1024": "ort backend, buffers of 1,024 tokens (not 4,096)",
          "engine-rank16": "ort backend, LoRA slots of rank 16 (not 64)",
          "engine-slots": "ort backend, base-only steps run the full LoRA slots (rank-0 binding off)",
          "engine-buckets2": "ort backend, 2 rows in a 2-row graph (STUDIO_BUCKETS=1,2,4,8; CUDA default 1,4,8)",
          "engine-chain": "ort backend, LoRA as MatMul+MatMul+Add (STUDIO_LORA_FUSED=off; default: the fused op)",
          "engine-expand1": "ort backend, the prompt's expand kernel on one column per thread (STUDIO_LORA_KERNEL=expand1; default: two fp16 columns)",
          "engine-fusedk": "ort backend, the fused op on K-first A slots (STUDIO_LORA_A_T=0; default rank-first)",
          "engine-prompt1": "ort backend, prompts through the fused op's single kernel (STUDIO_LORA_KERNEL=tile)",
          "engine-at": "ort backend, LoRA-A read transposed (FusedMatMul transB=1; STUDIO_LORA_A_T=1, fused op off)",
          "engine-nofpa": "ort backend, onnxruntime's own int4 kernels on a base built for fpA_intB (STUDIO_FPA_INTB=0)",
          "engine-fpaall": "ort backend, fpA_intB for every run, one session (STUDIO_FPA_INTB=1; default: 2+ rows)"}
# lever rows of the app part (the launched app under one environment change)
# (app-switch, STUDIO_SWITCH_MS=0.5, a GIL switch interval of 0.5 ms, was measured on 2026-12-07 and removed: no
# effect, bench/NOTES.md)
APP_LEVERS = {"app-nopace": "the app without the shared update budget (STUDIO_STREAM_TOTAL_HZ=0; default 50/s)"}
SUMMARY_DOC = {
    "base_tok_s / adapter_tok_s": "the serving backend's own decode loop (token ids, no text), batch 1",
    "og_base_tok_s / og_adapter_tok_s": "the onnxruntime-genai loop (exactly N tokens), CUDA graph on CUDA",
    "engine_*_tok_s": "ChatEngine.stream: the stats line's engine decode rate",
    "app_*_tok_s": "the app through gradio_client: tokens over the wall time of /chat",
    "app_engine_*_tok_s": "the engine decode rate on the app's stats line (the engine inside the app process)",
    "compare_over_one_graph": "compare base vs adapter (N tokens each) over one answer, wall time, engine",
    "users8_aggregate_over_one": "8 concurrent users over base + 2 adapters: aggregate tokens/s over one user's",
    "ttft1024_adapter_ms": "engine time to first token, 1024-token prompt, adapter active",
    "adapters100_switch_ms": "TTFT of a request on another adapter minus on the same one, 100 adapters",
}


def _f(x, fmt="{:,.1f}"):
    return "-" if x is None else fmt.format(x)


def table(s: dict, L: int) -> str:
    """The README's serving table (issue 13's targets next to what was measured)."""
    def ratio(a, b):
        return None if not a or not b else a / b
    ad_over_base = ratio(s["engine_adapter_tok_s"], s["engine_base_tok_s"])
    app_b, app_a = ratio(s["app_base_tok_s"], s["engine_base_tok_s"]), ratio(s["app_adapter_tok_s"], s["engine_adapter_tok_s"])
    rows = [
        ("path", "base tok/s", "adapter tok/s"),
        ("transformers + PEFT", _f(s.get("hf_base_tok_s")), _f(s.get("hf_adapter_tok_s"))),
        ("onnxruntime-genai loop", _f(s.get("og_base_tok_s")), _f(s.get("og_adapter_tok_s"))),
        (f"serving backend loop ({s.get('backend')})", _f(s["base_tok_s"]), _f(s["adapter_tok_s"])),
        ("ChatEngine.stream (stats line)", _f(s["engine_base_tok_s"]), _f(s["engine_adapter_tok_s"])),
        ("the app, /chat via gradio_client", _f(s["app_base_tok_s"]), _f(s["app_adapter_tok_s"])),
        ("the engine inside the app (its stats line)", _f(s.get("app_engine_base_tok_s")),
         _f(s.get("app_engine_adapter_tok_s"))),
    ] + [(label, *(_f(s.get(f"{lever.replace('-', '_')}_{v}_tok_s")) for v in ("base", "adapter")))
         for lever, label in LEVERS.items()] + [
        (label, *(_f(s.get(f"{lever.replace('-', '_')}_app_{v}_tok_s")) for v in ("base", "adapter")))
        for lever, label in APP_LEVERS.items()]
    t = "\n".join("| " + " | ".join(r) + " |" for r in rows[:1] + [("---",) * 3] + rows[1:])
    targets = [
        ("figure", "target", "measured"),
        ("engine decode, adapter over base", ">= 0.90x (>= 400 tok/s)",
         f"{_f(ad_over_base, '{:.2f}x')} ({_f(s['engine_adapter_tok_s'])} tok/s)"),
        ("the app over the engine, base / adapter", ">= 0.90x", f"{_f(app_b, '{:.2f}x')} / {_f(app_a, '{:.2f}x')}"),
        ("compare base vs adapter, both answers over one", "<= 1.3x", _f(s["compare_over_one_graph"], "{:.2f}x")),
        ("8 users over base + 2 adapters, aggregate over one user", ">= 4x",
         f"{_f(s['users8_aggregate_over_one'], '{:.2f}x')} engine, {_f(s.get('app_users8_aggregate_over_one'), '{:.2f}x')} app"
         f" ({_f(s.get('app_nopace_users8_aggregate_over_one'), '{:.2f}x')} without the update budget)"),
        (f"time to first token, {L}-token prompt, adapter", "<= 25 ms", _f(s.get(f"ttft{L}_adapter_ms"), "{:.1f} ms")),
        ("adapter switch, 2 / 100 adapters", "-",
         f"{_f(s.get('adapters2_switch_ms'), '{:.2f}')} / {_f(s['adapters100_switch_ms'], '{:.2f}')} ms"),
        ("device memory per adapter (file size)", "about the file",
         f"{_f(s.get('adapter_device_mib'), '{:.1f}')} MiB ({_f(s.get('adapter_file_mib'), '{:.1f}')} MiB)"),
        ("one /chat request with 1 new token, wall: gradio_client / raw HTTP", "-",
         f"{_f(s.get('app_one_token_ms'), '{:.0f}')} / {_f(s.get('app_raw_http_one_token_ms'), '{:.0f}')} ms"),
    ]
    t2 = "\n".join("| " + " | ".join(r) + " |" for r in targets[:1] + [("---",) * 3] + targets[1:])
    return t + "\n\n" + t2


def _get(d, *path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _first(xs):
    """The first of a list of figures read off a stats line (None when there is none)."""
    return xs[0] if isinstance(xs, list) and xs else None


def part_report(a) -> dict:
    parts = {}
    for f in sorted(Path(a.parts).glob("*.json")):
        try:
            parts[f.stem] = json.loads(f.read_text())
        except ValueError as e:
            parts[f.stem] = {"error": f"unreadable: {e}"}
    info = C.device_info(a.device)
    eng, og_, app, hf = (parts.get(k) or {} for k in ("engine", "og", "app", "hf"))
    L = a.long
    s = {
        "base_tok_s": _get(eng, "backend_loop", "base", "decode_tok_s"),
        "adapter_tok_s": _get(eng, "backend_loop", "adapter", "decode_tok_s"),
        "engine_base_tok_s": _get(eng, "stream", "base", "engine_tok_s"),
        "engine_adapter_tok_s": _get(eng, "stream", "adapter", "engine_tok_s"),
        "app_base_tok_s": _get(app, "base", "app_tok_s"),
        "app_adapter_tok_s": _get(app, "adapter", "app_tok_s"),
        "app_engine_base_tok_s": _first(_get(app, "base", "engine_tok_s")),
        "app_engine_adapter_tok_s": _first(_get(app, "adapter", "engine_tok_s")),
        "compare_over_one_graph": _get(eng, "compare", "over_one"),
        "users8_aggregate_over_one": _get(eng, "users", "aggregate_over_one"),
        "app_users8_aggregate_over_one": _get(app, "users", "aggregate_over_one"),
        f"ttft{L}_adapter_ms": _get(eng, f"ttft{L}", "adapter_ms"),
        "adapters100_switch_ms": _get(eng, "switch100", "switch_ms"),
        "adapters2_switch_ms": _get(eng, "switch2", "switch_ms"),
        "adapter_device_mib": _get(eng, "adapter_memory", "device_mib_each"),
        "adapter_file_mib": _get(eng, "adapter_memory", "file_mib"),
        "fpa_intb": _get(eng, "serving_stats", "fpa_intb"),
        "lora_kernels": _get(eng, "serving_stats", "lora_kernels"),
        "fused_check_equal": _get(parts.get("fused-check") or {}, "equal"),
        "fused_check_median_common_tokens": _get(parts.get("fused-check") or {}, "median_common_tokens"),
        "fused_note": _get(eng, "serving_stats", "fused_note"),
        "batch_session_mib": None if _get(eng, "serving_stats", "batch_session_bytes") is None
        else round(_get(eng, "serving_stats", "batch_session_bytes") / 2**20, 1),
        "app_one_token_ms": _get(app, "one_token", "wall_ms"),
        "app_raw_http_adapter_tok_s": _get(app, "raw_http", "adapter_tok_s"),
        "app_raw_http_one_token_ms": _get(app, "raw_http", "one_token_ms"),
        "og_base_tok_s": _get(og_, "rows", "base", "decode_tok_s"),
        "og_adapter_tok_s": _get(og_, "rows", "adapter", "decode_tok_s"),
        f"og_ttft{L}_adapter_ms": _get(og_, "rows", "adapter", f"ttft{L}_ms"),
        "backend": eng.get("backend"),
        "device": info.get("gpu_name") or info.get("gpu") or info.get("cpu"),
        "packages": info.get("packages"),
        "date": date.today().isoformat(),
    }
    s.setdefault("ttft1024_adapter_ms", None)  # the key: only from a 1024-token prompt
    for lever in LEVERS:
        e, k = parts.get(lever) or {}, lever.replace('-', '_')
        s[f"{k}_base_tok_s"] = _get(e, "stream", "base", "engine_tok_s")
        s[f"{k}_adapter_tok_s"] = _get(e, "stream", "adapter", "engine_tok_s")
        if _get(e, "users") is not None:  # a lever run as the full engine part
            s[f"{k}_compare_over_one"] = _get(e, "compare", "over_one")
            s[f"{k}_users8_aggregate_tok_s"] = _get(e, "users", "aggregate_tok_s")
            s[f"{k}_users8_aggregate_over_one"] = _get(e, "users", "aggregate_over_one")
    for lever in APP_LEVERS:
        e, k = parts.get(lever) or {}, lever.replace('-', '_')
        for v in ("base", "adapter"):
            s[f"{k}_app_{v}_tok_s"] = _get(e, v, "app_tok_s")
            s[f"{k}_app_engine_{v}_tok_s"] = _first(_get(e, v, "engine_tok_s"))
        s[f"{k}_users8_aggregate_over_one"] = _get(e, "users", "aggregate_over_one")
    s["users8_aggregate_tok_s"] = _get(eng, "users", "aggregate_tok_s")
    for r in hf.get("rows") or []:  # bench/run.py --parts hf: transformers (+ PEFT)
        if isinstance(r, dict) and "decode_tok_s" in r:
            s["hf_adapter_tok_s" if "PEFT" in str(r.get("path")) else "hf_base_tok_s"] = r["decode_tok_s"]
    failed = {k: v.get("error") for k, v in parts.items() if isinstance(v, dict) and v.get("error")}
    for log in sorted(Path(a.logs).glob("*.log")) if a.logs else []:  # a part with a log and no JSON failed
        if log.stem not in parts and log.stem != "report" and not log.stem.endswith(".app"):
            failed[log.stem] = log.read_text(errors="replace")[-1500:]
    out = {"summary": s, "summary_doc": SUMMARY_DOC, "failed_parts": failed, "table": table(s, L),
           "info": info, "parts": parts}
    dest = Path(a.out_dir) / f"serving-{C.device_slug(info)}-{s['date']}.json"
    C.write_json(dest, out)
    print(json.dumps(s, indent=1, default=str))
    print(out["table"])
    print("wrote", dest)
    return out


PARTS = {"build": part_build, "og": part_og, "engine": part_engine, "app": part_app, "report": part_report}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=sorted(PARTS))
    ap.add_argument("--ws", type=Path, help="workspace (STUDIO_HOME) with models/<base> and adapters/")
    ap.add_argument("--base", default="phi35")
    ap.add_argument("--hf", type=Path, help="build: the HF model folder (bench/make_model.py)")
    ap.add_argument("--steps", type=int, default=10, help="build: LoRA steps")
    ap.add_argument("--build-args", default="", help="build: more recipe options for the base, e.g. "
                    "'--onnx.block_size 32 --onnx.symmetric true' (the format fpA_intB takes)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--long", type=int, default=1024, help="prompt tokens of the time-to-first-token rows")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--many", type=int, default=100, help="adapters of the switch figure")
    ap.add_argument("--quick", action="store_true", help="engine: the decode figures only")
    ap.add_argument("--parts", type=Path, help="report: the parts folder")
    ap.add_argument("--logs", type=Path, help="report: the logs folder (parts with a log and no JSON failed)")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--out", type=Path, help="the part's JSON")
    a = ap.parse_args()
    if a.ws:
        a.ws = a.ws.resolve()
    t0 = time.perf_counter()
    res = PARTS[a.part](a)
    if a.out and a.part != "report":
        C.write_json(a.out, {"part": a.part, "seconds": round(time.perf_counter() - t0, 1),
                             "info": C.device_info(a.device), **res})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""GPU performance harness: one command builds the ONNX variants from a bench model and measures them.

    python bench/make_model.py --shape phi35 --out /tmp/bench/hf
    python bench/run.py --model /tmp/bench/hf --work /tmp/bench/work --out $OUT/bench.json
    # CPU smoke test with the tiny model:
    python bench/make_model.py --shape default --out /tmp/bm/hf --device cpu
    python bench/run.py --model /tmp/bm/hf --work /tmp/bm/work --device cpu --small

Parts (--parts, in this order; each is skipped when the --budget in seconds would be exceeded):
  onnx      int4 base without slots, int4 with slots (no adapter / r16 adapter), each with and without
            CUDA graph (CPU: once): tokens/s for 256 new tokens after a 16-token prompt, batch 1,
            greedy, min_length = max_length so exactly N tokens; TTFT for a 1024-token prompt
  extras    adapter switch time, memory per extra loaded adapter, compare mode (two interleaved
            generators; one batch of 2) versus one answer
  rewrites  bench/lora_rewrite.py levers on the slots model, r16 adapter active, graph off/on
  hf        transformers + PEFT (unmerged LoRA; bf16 on CUDA, fp32 on CPU), and without the LoRA
  quant     the same onnx rows for every further --quant variant (block_size:accuracy_level)
Every figure is the median of --runs runs after --warmup runs. Results: bench/results/<device>-<date>.json
and --out; a Markdown table is printed last.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402
import lora_rewrite as RW  # noqa: E402

PARTS = ("onnx", "extras", "rewrites", "hf", "quant")
EST_S = {"build": 180, "onnx": 120, "extras": 45, "rewrites": 40, "hf": 110}  # H100, 3.8 B model


class Bench:
    def __init__(self, a):
        self.a, self.t0 = a, time.perf_counter()
        self.log = C.Log(self.t0)
        self.info = C.device_info(a.device)
        date = dt.datetime.now().strftime("%Y-%m-%d")
        self.paths = [C.REPO / "bench" / "results" / f"{C.device_slug(self.info)}-{date}.json"]
        if a.out:
            self.paths.append(Path(a.out))
        rng = np.random.default_rng(0)
        vocab = json.loads((a.model / "config.json").read_text())["vocab_size"]
        self.prompt = [int(x) for x in rng.integers(16, vocab, a.prompt)]
        self.long_prompt = [int(x) for x in rng.integers(16, vocab, a.ttft_prompt)]
        self.res = {"info": self.info, "date": dt.datetime.now().isoformat(timespec="seconds"),
                    "settings": {k: str(v) for k, v in vars(a).items()},
                    "model": json.loads((a.model / "bench_model.json").read_text())
                    if (a.model / "bench_model.json").is_file() else {"path": str(a.model)},
                    "builds": {}, "rows": [], "extras": {}, "errors": [], "skipped": []}
        self.errors = 0

    # ------------------------------------------------------------ bookkeeping
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def save(self) -> None:
        self.res["elapsed_s"] = round(self.elapsed(), 1)
        for p in self.paths:
            C.write_json(p, self.res)

    def fits(self, what: str, est: float) -> bool:
        if self.a.device == "cuda" and self.elapsed() + est > self.a.budget:
            self.log(f"SKIP {what}: {self.elapsed():.0f} s + ~{est:.0f} s > budget {self.a.budget} s")
            self.res["skipped"].append(what)
            self.save()
            return False
        return True

    def guard(self, what: str, fn, *args, **kw):
        """Run one step; a failure is recorded and printed loudly, the run goes on, exit code 1 at the end."""
        try:
            return fn(*args, **kw)
        except Exception as e:  # noqa: BLE001
            self.errors += 1
            tb = traceback.format_exc()
            print(f"!!!!! ERROR in {what}: {e}\n{tb}", flush=True)
            self.res["errors"].append({"step": what, "error": repr(e), "traceback": tb[-3000:]})
            self.save()
            return None

    # ------------------------------------------------------------ onnxruntime-genai
    def og_model(self, d: Path, graph: bool):
        before = C.gpu_used_mib() if self.a.device == "cuda" else C.rss_mib()
        model = C.og_model(d, self.a.device, graph)
        after = C.gpu_used_mib() if self.a.device == "cuda" else C.rss_mib()
        return model, (after - before if before is not None and after is not None else None)

    def og_once(self, model, prompt, n, ads=None, name=None, batch=1) -> dict:
        t0 = time.perf_counter()
        gen = C.og_generator(model, prompt, n, ads, name, batch)
        gen.generate_next_token()
        t1 = time.perf_counter()
        k = 1 + C.decode_rest(gen)
        t2 = time.perf_counter()
        if k != n:
            raise RuntimeError(f"generated {k} tokens, expected exactly {n}")
        return {"ttft": t1 - t0, "total": t2 - t0, "decode": (t2 - t1) / max(k - 1, 1)}

    def og_figures(self, model, ads=None, name=None) -> dict:
        a = self.a
        for _ in range(a.warmup):
            self.og_once(model, self.prompt, a.new_tokens, ads, name)
            self.og_once(model, self.long_prompt, 1, ads, name)
        runs = [self.og_once(model, self.prompt, a.new_tokens, ads, name) for _ in range(a.runs)]
        ttft = [self.og_once(model, self.long_prompt, 1, ads, name)["ttft"] for _ in range(a.runs)]
        tot = C.median([r["total"] for r in runs])
        dec = C.median([r["decode"] for r in runs])
        return {"tok_s": a.new_tokens / tot, "decode_tok_s": 1 / dec, "ms_per_token": 1000 * dec,
                "ttft16_ms": 1000 * C.median([r["ttft"] for r in runs]),
                "ttft_long_ms": 1000 * C.median(ttft), "runs": len(runs),
                "spread_tok_s": [round(a.new_tokens / r["total"], 2) for r in runs]}

    def graphs(self):
        return (False, True) if self.a.device == "cuda" and not self.a.no_graph else (False,)

    def row(self, path: str, graph: bool, fig: dict, **extra) -> None:
        r = {"path": path, "cuda_graph": graph, **{k: (round(v, 3) if isinstance(v, float) else v)
                                                  for k, v in fig.items()}, **extra}
        self.res["rows"].append(r)
        self.log(f"{path} graph={int(graph)}: {r.get('tok_s')} tok/s, TTFT{self.a.ttft_prompt} "
                 f"{r.get('ttft_long_ms')} ms")
        self.save()

    def measure_dir(self, label: str, d: Path, adapter_file: Path | None, with_base: bool) -> None:
        """Rows for one model folder: (no adapter) and (adapter active), each per CUDA-graph setting."""
        import onnxruntime_genai as og
        for graph in self.graphs():
            model, mem = self.og_model(d, graph)
            if with_base:
                self.row(f"{label}, no adapter", graph, self.og_figures(model), model_mib=mem)
            if adapter_file:
                ads = og.Adapters(model)
                ads.load(str(adapter_file), "r16")
                self.row(f"{label} + r16 adapter", graph, self.og_figures(model, ads, "r16"), model_mib=mem)
                del ads
            del model
            gc.collect()

    # ------------------------------------------------------------ builds
    def builds(self, bs: int, acc: int) -> tuple[Path, Path, dict]:
        a, w = self.a, self.a.work
        ep = a.device
        tag = f"int4-bs{bs}-acc{acc}-{ep}"
        base, slots = w / f"{tag}-base", w / f"{tag}-slots"
        if a.reuse and (base / "genai_config.json").exists() and (slots / "genai_config.json").exists():
            b = {"base": {"reused": str(base)}, "slots": {"reused": str(slots)}}  # built by an earlier run
        else:
            b = {"base": C.build_base(a.model, base, ep, bs, acc, self.log)}
            b["slots"] = C.build_slots(a.model, a.model / "lora_r16", slots, ep, bs, acc, self.log)
        ads = {}
        for r in ("r16", "r8"):
            f = w / f"{tag}-{r}.onnx_adapter"
            t0 = time.perf_counter()
            C.convert(a.model / f"lora_{r}", slots, f)
            ads[r] = {"file": str(f), "bytes": f.stat().st_size, "convert_s": round(time.perf_counter() - t0, 2)}
        b["adapters"] = ads
        b["size_bytes"] = {"base": C.dir_size(base), "slots": C.dir_size(slots)}
        self.res["builds"][tag] = b
        self.save()
        return base, slots, b

    def onnx_rows(self, bs: int, acc: int) -> tuple[Path, dict] | None:
        if not self.fits(f"build bs{bs} acc{acc}", EST_S["build"]):
            return None
        base, slots, b = self.builds(bs, acc)
        q = f"int4 bs{bs} acc{acc}"
        if self.fits(f"onnx rows {q}", EST_S["onnx"]):
            self.guard(f"{q} base", self.measure_dir, f"{q} no slots", base, None, True)
            self.guard(f"{q} slots", self.measure_dir, f"{q} slots", slots, Path(b["adapters"]["r16"]["file"]), True)
        return slots, b

    # ------------------------------------------------------------ extras
    def extras(self, slots: Path, b: dict) -> None:
        import onnxruntime_genai as og
        a, ex = self.a, self.res["extras"]
        f16, f8 = b["adapters"]["r16"]["file"], b["adapters"]["r8"]["file"]
        model, model_mib = self.og_model(slots, False)
        ads = og.Adapters(model)
        ads.load(f16, "a")
        ads.load(f8, "b")

        # adapter switch between two requests: new generator + set_active_adapter of the other adapter
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(self.prompt) + 8, do_sample=False)
        sw = []
        for k in range(40):
            t0 = time.perf_counter()
            gen = og.Generator(model, params)
            gen.set_active_adapter(ads, "ab"[k % 2])
            sw.append(time.perf_counter() - t0)
            del gen
        same = [self.og_once(model, self.prompt, 2, ads, "a")["ttft"] for _ in range(a.runs + 2)][2:]
        alt = [self.og_once(model, self.prompt, 2, ads, "ab"[k % 2])["ttft"] for k in range(a.runs + 2)][2:]
        ex["switch"] = {"new_generator_plus_set_adapter_ms": 1000 * C.median(sw[10:]),
                        "ttft16_same_adapter_ms": 1000 * C.median(same),
                        "ttft16_alternating_adapters_ms": 1000 * C.median(alt)}
        self.save()

        # memory added per extra loaded adapter (r16 file loaded under new names)
        unit = "GPU MiB (NVML used)" if a.device == "cuda" else "process RSS MiB"
        probe = C.gpu_used_mib if a.device == "cuda" else C.rss_mib
        m0 = probe()
        n_extra = 4
        steps = []
        for k in range(n_extra):
            ads.load(f16, f"m{k}")
            steps.append(probe())
        loaded = (steps[-1] - m0) / n_extra
        for k in range(n_extra):  # used once: any lazy device copy happens now
            self.og_once(model, self.prompt, 2, ads, f"m{k}")
        used = (probe() - m0) / n_extra
        ex["memory"] = {"unit": unit, "base_model_mib": model_mib, "before_mib": m0, "after_each_load_mib": steps,
                        "per_adapter_after_load_mib": loaded, "per_adapter_after_use_mib": used,
                        "adapter_file_mib": b["adapters"]["r16"]["bytes"] / 2**20,
                        "per_adapter_pct_of_base": (100 * used / model_mib) if model_mib else None}
        for k in range(n_extra):
            ads.unload(f"m{k}")
        self.save()

        # compare mode: both answers vs one answer (same prompt, N new tokens each)
        n = a.new_tokens

        def one():
            return self.og_once(model, self.prompt, n, ads, "a")["total"]

        def interleaved():
            t0 = time.perf_counter()
            gens = [C.og_generator(model, self.prompt, n, ads, name) for name in ("a", "b")]
            while not all(g.is_done() for g in gens):
                for g in gens:
                    if not g.is_done():
                        g.generate_next_token()
            return time.perf_counter() - t0

        def batch2():
            return self.og_once(model, self.prompt, n, ads, "a", batch=2)["total"]

        def batch2_base():
            return self.og_once(model, self.prompt, n, batch=2)["total"]

        def one_base():
            return self.og_once(model, self.prompt, n)["total"]

        cm = {}
        for name, fn in (("one_answer_r16", one), ("two_generators_interleaved_r16_r8", interleaved),
                         ("batch2_same_adapter_r16", batch2), ("one_answer_base", one_base),
                         ("batch2_base", batch2_base)):
            fn()
            cm[name + "_s"] = C.median([fn() for _ in range(a.runs)])
        cm["interleaved_over_one"] = cm["two_generators_interleaved_r16_r8_s"] / cm["one_answer_r16_s"]
        cm["batch2_over_one"] = cm["batch2_same_adapter_r16_s"] / cm["one_answer_r16_s"]
        cm["batch2_base_over_one_base"] = cm["batch2_base_s"] / cm["one_answer_base_s"]
        ex["compare"] = cm
        self.save()
        del ads, model
        gc.collect()

    # ------------------------------------------------------------ rewrites
    def rewrites(self, slots: Path, b: dict, tag: str) -> None:
        for lever in self.a.levers:
            if not self.fits(f"rewrite {lever}", EST_S["rewrites"]):
                continue
            d = self.a.work / f"{slots.name}-{lever}"
            t0 = time.perf_counter()
            info = RW.rewrite(slots, d, lever)
            f = self.a.work / f"{slots.name}-{lever}-r16.onnx_adapter"
            RW.convert_adapter_file(Path(b["adapters"]["r16"]["file"]), f, lever)
            info["seconds"] = round(time.perf_counter() - t0, 1)
            self.res["builds"][f"{tag}-{lever}"] = info
            self.guard(f"rewrite {lever}", self.measure_dir, f"{tag} slots [{lever}]", d, f, True)

    # ------------------------------------------------------------ transformers + PEFT
    def hf(self) -> None:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM
        a = self.a
        dev = a.device
        dtype = torch.bfloat16 if dev == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype, device_map=dev).eval()
        model = PeftModel.from_pretrained(model, a.peft or a.model / "lora_r16").eval()
        pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0

        def sync():
            if dev == "cuda":
                torch.cuda.synchronize()

        def gen(prompt, n):
            ids = torch.tensor([prompt], device=dev)
            sync()
            t0 = time.perf_counter()
            with torch.no_grad():
                out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                     min_new_tokens=n, do_sample=False, pad_token_id=pad)
            sync()
            if out.shape[1] - ids.shape[1] != n:
                raise RuntimeError(f"transformers generated {out.shape[1] - ids.shape[1]} tokens, not {n}")
            return time.perf_counter() - t0

        runs = max(1, min(a.runs, a.hf_runs))
        r = json.loads((Path(a.peft or a.model / "lora_r16") / "adapter_config.json").read_text())["r"]
        for label, ctx in ((f"transformers + PEFT r{r} (unmerged)", None), ("transformers, no LoRA", "off")):
            cm = model.disable_adapter() if ctx else contextlib.nullcontext()
            with cm:
                gen(self.prompt, 16)
                gen(self.long_prompt, 1)
                tot = [gen(self.prompt, a.new_tokens) for _ in range(runs)]
                t1 = [gen(self.prompt, 1) for _ in range(runs)]
                tl = [gen(self.long_prompt, 1) for _ in range(runs)]
            m_tot, m_t1 = C.median(tot), C.median(t1)
            fig = {"tok_s": a.new_tokens / m_tot, "decode_tok_s": (a.new_tokens - 1) / (m_tot - m_t1),
                   "ms_per_token": 1000 * (m_tot - m_t1) / (a.new_tokens - 1), "ttft16_ms": 1000 * m_t1,
                   "ttft_long_ms": 1000 * C.median(tl), "runs": runs,
                   "spread_tok_s": [round(a.new_tokens / t, 2) for t in tot], "dtype": str(dtype)}
            self.row(label, False, fig)
        del model
        gc.collect()
        if dev == "cuda":
            torch.cuda.empty_cache()

    # ------------------------------------------------------------ main
    def run(self) -> int:
        a = self.a
        self.log(f"device: {self.info.get('gpu') or self.info['cpu']}; results -> {[str(p) for p in self.paths]}")
        self.save()
        main = None
        bs, acc = a.quant[0]
        tag = f"int4 bs{bs} acc{acc}"
        if {"onnx", "extras", "rewrites"} & set(a.parts):
            main = self.guard(f"onnx {tag}", self.onnx_rows, bs, acc) if "onnx" in a.parts else \
                self.guard("builds", lambda: self.builds(bs, acc)[1:])
        if main and "extras" in a.parts and self.fits("extras", EST_S["extras"]):
            self.guard("extras", self.extras, *main)
        if main and "rewrites" in a.parts:
            self.guard("rewrites", self.rewrites, main[0], main[1], tag)
        if "hf" in a.parts and self.fits("hf", EST_S["hf"]):
            self.guard("hf", self.hf)
        if "quant" in a.parts:
            for bs2, acc2 in a.quant[1:]:
                self.guard(f"onnx bs{bs2} acc{acc2}", self.onnx_rows, bs2, acc2)
        self.save()
        print(self.table(), flush=True)
        if self.errors:
            print(f"!!!!! {self.errors} step(s) FAILED: see 'errors' in {self.paths[0]}", flush=True)
        return 1 if self.errors else 0

    def table(self) -> str:
        a, r = self.a, self.res
        lines = [f"\n### {self.info.get('gpu') or 'CPU ' + self.info['cpu']} - {r['date']}",
                 f"batch 1, {a.prompt}-token prompt, {a.new_tokens} new tokens (greedy, exactly N); "
                 f"TTFT for a {a.ttft_prompt}-token prompt; median of {a.runs} after {a.warmup} warm-up\n",
                 "| path | CUDA graph | tokens/s | decode tokens/s | ms/token | TTFT 16 (ms) | "
                 f"TTFT {a.ttft_prompt} (ms) |", "|---|---|---|---|---|---|---|"]
        for x in r["rows"]:
            lines.append(f"| {x['path']} | {'yes' if x['cuda_graph'] else 'no'} | {x['tok_s']:.1f} | "
                         f"{x['decode_tok_s']:.1f} | {x['ms_per_token']:.2f} | {x['ttft16_ms']:.1f} | "
                         f"{x['ttft_long_ms']:.1f} |")
        ex = r["extras"]
        if "switch" in ex:
            s = ex["switch"]
            lines.append(f"\nadapter switch (new generator + set_active_adapter): "
                         f"{s['new_generator_plus_set_adapter_ms']:.3f} ms; TTFT16 same adapter "
                         f"{s['ttft16_same_adapter_ms']:.1f} ms vs alternating {s['ttft16_alternating_adapters_ms']:.1f} ms")
        if "memory" in ex:
            m = ex["memory"]
            pct = f"{m['per_adapter_pct_of_base']:.2f}% of the base model's {m['base_model_mib']:.0f} MiB" \
                if m["per_adapter_pct_of_base"] is not None else ""
            lines.append(f"memory per extra r16 adapter: {m['per_adapter_after_use_mib']:.1f} {m['unit']} "
                         f"(after load {m['per_adapter_after_load_mib']:.1f}; file {m['adapter_file_mib']:.1f} MiB) {pct}")
        if "compare" in ex:
            c = ex["compare"]
            lines.append(f"compare ({a.new_tokens} tokens each): one answer {c['one_answer_r16_s']:.2f} s; two "
                         f"interleaved generators {c['two_generators_interleaved_r16_r8_s']:.2f} s "
                         f"(x{c['interleaved_over_one']:.2f}); one batch of 2, same adapter "
                         f"{c['batch2_same_adapter_r16_s']:.2f} s (x{c['batch2_over_one']:.2f}); base batch of 2 "
                         f"x{c['batch2_base_over_one_base']:.2f}")
        for k, v in r["builds"].items():
            if "base" in v:
                lines.append(f"build {k}: base {v['base']}, slots {v['slots'].get('timings', v['slots'])}, "
                             f"sizes {v['size_bytes']}")
        if r["skipped"]:
            lines.append(f"skipped (budget): {r['skipped']}")
        if r["errors"]:
            lines.append(f"ERRORS: {[e['step'] + ': ' + e['error'] for e in r['errors']]}")
        return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="folder made by bench/make_model.py")
    ap.add_argument("--work", type=Path, required=True, help="where the ONNX builds go (reused if present)")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--reuse", action="store_true", help="reuse ONNX builds already in --work")
    ap.add_argument("--quant", default="32:0,128:4",
                    help="int4 variants block_size:accuracy_level, comma-separated; the first is the main one")
    ap.add_argument("--levers", default=",".join(RW.LEVERS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--hf-runs", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--ttft-prompt", type=int, default=1024)
    ap.add_argument("--no-graph", action="store_true", help="skip the CUDA-graph rows")
    ap.add_argument("--peft", type=Path, help="the PEFT adapter of the hf rows (default: MODEL/lora_r16)")
    ap.add_argument("--budget", type=float, default=510, help="seconds; later parts are skipped past it")
    ap.add_argument("--small", action="store_true", help="CPU smoke test: 32 new tokens, 128-token TTFT prompt")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    a.parts = [p for p in a.parts.split(",") if p]
    bad = set(a.parts) - set(PARTS)
    if bad:
        ap.error(f"unknown parts {bad}")
    a.quant = [tuple(int(x) for x in q.split(":")) for q in a.quant.split(",")]
    a.levers = [x for x in a.levers.split(",") if x]
    if a.small:
        a.new_tokens, a.ttft_prompt, a.runs = 32, 128, 2
    if a.device == "cuda" and set(a.parts) - {"hf"}:  # the hf rows need no onnxruntime-genai
        import onnxruntime_genai as og
        if not og.is_cuda_available():
            raise SystemExit("--device cuda but onnxruntime-genai has no CUDA (is onnxruntime-genai-cuda first "
                             "on PYTHONPATH?)")
    a.work.mkdir(parents=True, exist_ok=True)
    return Bench(a).run()


if __name__ == "__main__":
    sys.exit(main())

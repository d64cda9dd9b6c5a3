"""Merge the parts of one bench/gpu_all.sh run into bench/results/<device>-<date>.json and print the
Markdown table for the README (targets of the performance issue next to what was measured).

  python bench/report.py --parts /tmp/studio-bench/parts --out-dir bench/results
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common as C  # noqa: E402

PARTS = ("hf", "pipeline", "serve", "trace", "finetune", "iobinding", "pipeline-default", "serve-default",
         "compare", "hf-default")  # compare: a follow-up run of bench/serve_gpu.py (og-level compare scheduling)


def _load(d: Path, name: str):
    f = d / f"{name}.json"
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except ValueError as e:
        return {"error": f"unreadable: {e}"}


def _row(serve: dict | None, graph: bool, adapter: str) -> dict:
    rows = (serve or {}).get("rows")
    return next((r for r in rows if r.get("cuda_graph") == graph and r.get("adapter") == adapter), {}) \
        if isinstance(rows, list) else {}


def _fmt(x, nd=1, unit=""):
    if x is None:
        return "-"
    return f"{x:,.{nd}f}{unit}" if isinstance(x, (int, float)) else str(x)


def table(res: dict) -> str:
    hf_rows = (res.get("hf") or {}).get("rows") or []
    peft = next((r for r in hf_rows if "PEFT" in str(r.get("path"))), {})
    serve = res.get("serve") or {}
    base_g, ad_g = _row(serve, True, "-"), _row(serve, True, "a")
    base_e, ad_e = _row(serve, False, "-"), _row(serve, False, "a")
    sw = serve.get("switch") or {}
    mem = sw.get("memory") or {}
    runs = (res.get("pipeline") or {}).get("runs") or {}
    full = next((r for k, r in runs.items() if "full" in k), {})
    second = next((r for k, r in runs.items() if "second" in k), {})
    peft_tps = peft.get("decode_tok_s")
    x = (ad_g.get("decode_tok_s") / peft_tps) if ad_g.get("decode_tok_s") and peft_tps else None
    lines = ["| figure | target | measured |", "|---|---|---|"]
    lines.append(f"| decode, adapter active (batch 1, tokens/s) | >= 700 (>= 30x transformers + PEFT) | "
                 f"**{_fmt(ad_g.get('decode_tok_s'))}** ({_fmt(x, 1)}x; transformers + PEFT {_fmt(peft_tps)}); "
                 f"base {_fmt(base_g.get('decode_tok_s'))}; without CUDA graph {_fmt(ad_e.get('decode_tok_s'))} / "
                 f"{_fmt(base_e.get('decode_tok_s'))} |")
    long_key = next((k for k in ad_g if k.startswith("ttft") and k != "ttft16_ms"), None)
    if long_key:
        lines.append(f"| time to first token, {long_key[4:-3]}-token prompt (ms) | - | adapter "
                     f"{_fmt(ad_g.get(long_key))}, base {_fmt(base_g.get(long_key))}; transformers + PEFT "
                     f"{_fmt(peft.get('ttft_long_ms'))} |")
    lines.append(f"| adapter switch | < 1 ms, no reload | **{_fmt(sw.get('switch_cost_ms'), 2)} ms** first-token "
                 f"latency difference (set_active_adapter {_fmt(sw.get('set_active_adapter_ms'), 3)} ms) |")
    lines.append(f"| memory per extra adapter | < 2 % of the base | {_fmt(mem.get('per_adapter_mib'), 1)} MiB "
                 f"measured ({mem.get('unit', '')}); file {_fmt(mem.get('adapter_file_mib'), 1)} MiB = "
                 f"{_fmt(mem.get('file_share_of_model_pct'), 2)} % of the model |")
    ogc = serve.get("og_compare") or (res.get("compare") or {}).get("og_compare") or []
    if isinstance(ogc, list) and ogc:
        one_graph = next((r.get("one_answer_s") for r in ogc if r.get("cuda_graph")), None)
        cells = []
        for r in ogc:
            g = "graph" if r.get("cuda_graph") else "no graph"
            cells.append(f"{g}: one {_fmt(r.get('one_answer_s'), 2)} s, interleaved {_fmt(r.get('interleaved_over_one'), 2)}x, "
                         "batch of 2 " + (f"{_fmt(r.get('batch2_pair_over_one'), 2)}x" if "batch2_pair_s" in r
                                          else "refused"))
        best = min((r[k] for r in ogc for k in ("interleaved_s", "batch2_pair_s") if k in r), default=None)
        if best and one_graph:
            cells.append(f"fastest pair {_fmt(best, 2)} s = {_fmt(best / one_graph, 2)}x one answer under graph")
        lines.append(f"| compare, time to both answers ({ogc[0].get('tokens')} tokens each, og level) | <= 1.3x one answer | "
                     + "; ".join(cells) + " |")
    # (the engine-level compare rows in serve.compare stop at EOS, so their lengths differ: JSON only)
    if full:
        st = full.get("stages") or {}
        lines.append(f"| full build (AWQ + 100 LoRA steps + int4 ONNX + adapter) | <= 6 min | **{_fmt(full.get('wall_s'), 0)} s** "
                     f"(" + ", ".join(f"{k} {_fmt((v or {}).get('seconds'), 0)}" for k, v in st.items()) + ") |")
    if second:
        lines.append(f"| second adapter on the same base | <= 3 min | **{_fmt(second.get('wall_s'), 0)} s** |")
    sd = res.get("serve-default") or {}
    bd, ad = _row(sd, True, "-"), _row(sd, True, "a")
    pdr = ((res.get("pipeline-default") or {}).get("runs") or {})
    pfull = next((r for k, r in pdr.items() if "full" in k), {})
    psec = next((r for k, r in pdr.items() if "second" in k), {})
    hpd = next((r for r in (res.get("hf-default") or {}).get("rows") or [] if "PEFT" in str(r.get("path"))), {})
    if bd or pfull:
        xd = (ad.get("decode_tok_s") / hpd["decode_tok_s"]) if ad.get("decode_tok_s") and hpd.get("decode_tok_s") else None
        lines.append(f"| default model (5 M): decode base / adapter (CUDA graph), full build, second adapter | - | "
                     f"{_fmt(bd.get('decode_tok_s'), 0)} / {_fmt(ad.get('decode_tok_s'), 0)} tok/s "
                     f"(transformers + PEFT {_fmt(hpd.get('decode_tok_s'), 0)}: {_fmt(xd, 1)}x); "
                     f"{_fmt(pfull.get('wall_s'), 0)} s; {_fmt(psec.get('wall_s'), 0)} s |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=Path, required=True)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    a = ap.parse_args()
    res = {}
    for name in PARTS:
        v = _load(a.parts, name)
        if v is not None:
            res[name] = v
    info = next((v.get("info") for v in res.values() if isinstance(v, dict) and v.get("info")), None) \
        or C.device_info("cuda")
    date = str(next((v.get("date") for v in res.values() if isinstance(v, dict) and v.get("date")), ""))[:10]
    merged = {"info": info, "date": date, "parts": sorted(res), **res}
    merged["table"] = table(res)
    slug = C.device_slug(info)
    out = a.out_dir / f"{slug}-{date}.json"
    C.write_json(out, merged)
    print(merged["table"])
    for name in ("trace", "finetune", "iobinding"):
        t = (res.get(name) or {}).get("table")
        if t:
            print(f"\n{name}:\n{t}")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

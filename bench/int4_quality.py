"""What the int4 weight format does to a real model's quality: held-out loss of the embedded default model
(trained by this project, models/default-hf) and of its shipped adapters, served as ONNX in each format.

For every format the base is built from models/default-hf by the pipeline's own build_onnx (LoRA slots, rows
layout), the shipped PEFT adapters (adapters/{travel,pirate}/peft) are converted onto it, and the held-out loss
of data/{travel,pirate}/test.jsonl is measured as the pipeline's evaluate stage does (onnxruntime-genai's
logits of the whole text, cross-entropy of the answer tokens), base and adapter. fp32 is the reference.

  python bench/int4_quality.py OUT.json [--work DIR] [--ep cpu|cuda] [--formats fp32,asym128,sym32,...]

Formats: fp32, fp16, asym<B> (block B with zero points: the pipeline's default is asym128), sym<B> (block B
without zero points: sym32 is what onnxruntime's fpA_intB CUDA kernels take). On the CPU, int4 MatMulNBits
runs with accuracy_level 4 (int8 activations), as the pipeline builds it; `--accuracy-level 0` for float.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, Log  # noqa: E402

DATA = {"travel": "data/travel/test.jsonl", "pirate": "data/pirate/test.jsonl"}


def _cfg(fmt: str, ep: str, accuracy_level: int):
    from pipeline.recipe import OnnxConfig
    m = re.fullmatch(r"(fp32|fp16)|(asym|sym)(\d+)", fmt)
    if not m:
        raise SystemExit(f"unknown format {fmt!r}: fp32, fp16, asym<block>, sym<block>")
    if m.group(1):
        return OnnxConfig(precision=m.group(1), execution_provider=ep)
    return OnnxConfig(precision="int4", block_size=int(m.group(3)), symmetric=m.group(2) == "sym",
                      accuracy_level=accuracy_level, execution_provider=ep)


def _held(tok, name: str, n: int) -> list[tuple[list[int], int]]:
    from pipeline import data
    out = []
    for ex in data.load_examples(REPO / DATA[name])[:n]:
        ids = tok.encode(data.render_text(ex, tok), add_special_tokens=False)
        prompt = tok.encode(data.render_prompt(ex, tok), add_special_tokens=False)
        out.append((ids, len(prompt) if ids[:len(prompt)] == prompt else 0))
    return out


def _loss(model, adapters, name: str | None, seqs) -> float:
    """Mean cross-entropy of the answer tokens, as the pipeline's evaluate stage computes it."""
    from pipeline.stage_evaluate import nll
    total = count = 0.0
    for ids, n_prompt in seqs:
        t, n = nll(model, adapters, ids, n_prompt, name)
        total, count = total + t, count + n
    return total / count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--work", default="/tmp/int4-quality")
    ap.add_argument("--ep", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--formats", default="fp32,asym128,sym128,asym32,sym32")
    ap.add_argument("--accuracy-level", type=int, default=4)
    ap.add_argument("--examples", type=int, default=100)
    a = ap.parse_args()
    import onnxruntime_genai as og
    from transformers import AutoTokenizer

    from pipeline.stage_adapter import convert_adapter
    from pipeline.stage_onnx import build_onnx
    hf = REPO / "models/default-hf"
    tok = AutoTokenizer.from_pretrained(hf)
    seqs = {k: _held(tok, k, a.examples) for k in DATA}
    work = Path(a.work)
    log = Log()
    rows = {}
    for fmt in a.formats.split(","):
        out = work / fmt
        t0 = time.time()
        info = build_onnx(hf, REPO / "adapters/travel/peft", _cfg(fmt, a.ep, a.accuracy_level), a.ep, out, log)
        size = sum(f.stat().st_size for f in out.glob("*.onnx*"))
        model = og.Model(str(out))
        ads = og.Adapters(model)
        for k in DATA:
            f = work / f"{fmt}-{k}.onnx_adapter"
            convert_adapter(REPO / f"adapters/{k}/peft", out, f)
            ads.load(str(f), k)
        row = {"model_mb": round(size / 1e6, 2), "build_s": round(time.time() - t0, 1),
               "block_size": info.get("block_size"), "symmetric": info.get("symmetric")}
        for k, s in seqs.items():
            row[f"{k}_base_loss"] = round(_loss(model, ads, None, s), 5)
            row[f"{k}_adapter_loss"] = round(_loss(model, ads, k, s), 5)
        del ads, model
        rows[fmt] = row
        log.log(f"{fmt}: {row}")
        shutil.rmtree(out, ignore_errors=True)
    ref = rows.get("fp32")
    if ref:
        for row in rows.values():
            for k in DATA:
                row[f"{k}_adapter_ppl_over_fp32"] = round(math.exp(row[f"{k}_adapter_loss"] - ref[f"{k}_adapter_loss"]), 4)
    import onnxruntime
    res = {"what": "held-out loss of the default model and its shipped adapters per ONNX weight format",
           "ep": a.ep, "accuracy_level": a.accuracy_level, "examples": a.examples, "formats": rows,
           "date": time.strftime("%Y-%m-%d"),
           "packages": {"onnxruntime": onnxruntime.__version__, "onnxruntime-genai": og.__version__}}
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(f"| format | MB | travel base / adapter loss | pirate base / adapter loss | adapter ppl over fp32 (travel / pirate) |")
    print("|---|---|---|---|---|")
    for fmt, r in rows.items():
        print(f"| {fmt} | {r['model_mb']} | {r['travel_base_loss']:.4f} / {r['travel_adapter_loss']:.4f} | "
              f"{r['pirate_base_loss']:.4f} / {r['pirate_adapter_loss']:.4f} | "
              f"{r.get('travel_adapter_ppl_over_fp32', '-')} / {r.get('pirate_adapter_ppl_over_fp32', '-')} |")


if __name__ == "__main__":
    main()

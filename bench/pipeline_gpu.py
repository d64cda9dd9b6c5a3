"""Stage times of the real pipeline on the GPU machine: a full build (AWQ + LoRA + int4 ONNX + adapter)
and a second adapter on the same base, for a Phi-3.5-mini-shaped model (bench/make_model.py) and for
the embedded default model. Runs `python -m pipeline build` jobs and reads their event logs.

  python bench/pipeline_gpu.py --phi35 /tmp/b/hf --out results.json [--steps 100]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common as C  # noqa: E402
from pipeline.events import read_events  # noqa: E402


def build(ws: Path, args: list[str]) -> dict:
    p, wall = C.pipeline_build(ws, args)
    print(p.stdout[-3000:], p.stderr[-3000:], flush=True)
    job = sorted((ws / "runs").iterdir(), key=lambda d: d.stat().st_mtime)[-1]
    ev, _ = read_events(job / "events.jsonl")
    stages = {}
    for e in ev:
        if e["type"] in ("stage_end", "stage_skip"):
            stages[e["stage"]] = {"seconds": e.get("seconds"), "cached": bool(e.get("cached"))}
    end = ev[-1] if ev else {}
    sizes = {}
    done = {}
    for stage in ("awq", "finetune", "onnx", "adapter"):
        f = job / "stages" / stage / "DONE.json"
        if f.exists():
            done[stage] = json.loads(f.read_text())["outputs"]
    for key, path in (("awq_model", done.get("awq", {}).get("model_dir")),
                      ("peft_adapter", done.get("finetune", {}).get("peft_dir")),
                      ("onnx_base", done.get("onnx", {}).get("onnx_dir")),
                      ("published_adapter", done.get("adapter", {}).get("adapter_dir"))):
        if path and Path(path).exists():
            sizes[key] = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    steps = [e for e in ev if e["type"] == "step"]
    return {"args": args, "exit": p.returncode, "status": end.get("status"), "error": end.get("error"),
            "wall_s": round(wall, 1), "stages": stages, "output_bytes": sizes, "first_loss": steps[0]["loss"] if steps else None,
            "last_loss": steps[-1]["loss"] if steps else None, "job": job.name}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phi35", type=Path, help="a model folder from bench/make_model.py --shape phi35")
    ap.add_argument("--ws", type=Path, default=Path("/tmp/pipeline-ws"))
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--skip-default", action="store_true", help="only the --phi35 model")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    a.ws.mkdir(parents=True, exist_ok=True)
    res = {"info": C.device_info("cuda"), "date": time.strftime("%Y-%m-%d"), "runs": {}}
    common = ["--lora.max_steps", str(a.steps), "--lora.batch_size", "8", "--lora.max_seq_len", "256",
              "--awq.device", "cuda", "--onnx.execution_provider", "cuda", "--onnx.precision", "int4"]

    def save():
        a.out.write_text(json.dumps(res, indent=2))

    plan = []
    if a.phi35:
        plan += [("phi35 full build (travel)", ["--base_model", str(a.phi35), "--base_name", "phi35-int4-cuda",
                                                 "--adapter_name", "phi35-travel"] + common),
                 ("phi35 second adapter (pirate)", ["--base_model", str(a.phi35), "--base_name", "phi35-int4-cuda",
                                                     "--adapter_name", "phi35-pirate", "--train_file",
                                                     "data/pirate/train.jsonl", "--eval_file",
                                                     "data/pirate/test.jsonl"] + common)]
    plan += [] if a.skip_default else [("default full build (travel)", ["--base_name", "default-int4-cuda", "--adapter_name", "d-travel"] + common),
             ("default second adapter (pirate)", ["--base_name", "default-int4-cuda", "--adapter_name", "d-pirate",
                                                   "--train_file", "data/pirate/train.jsonl", "--eval_file",
                                                   "data/pirate/test.jsonl"] + common)]
    for label, args in plan:
        print(f"== {label}", flush=True)
        res["runs"][label] = build(a.ws, args)
        save()
    lines = ["| run | status | prepare | awq | finetune | onnx | adapter | wall (s) |", "|---|---|---|---|---|---|---|---|"]
    for label, r in res["runs"].items():
        cells = []
        for s in ("prepare", "awq", "finetune", "onnx", "adapter"):
            st = r["stages"].get(s, {})
            cells.append("cached" if st.get("cached") else f"{st.get('seconds', '-')}")
        lines.append(f"| {label} | {r['status']} | " + " | ".join(cells) + f" | {r['wall_s']} |")
    res["table"] = "\n".join(lines)
    save()
    print(res["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

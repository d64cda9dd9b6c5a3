"""GPU check behind the STUDIO_BASE_RANK0 default: on the serving harness's workspace, greedy answers of the
base (rank-0 LoRA binding on base-only steps) and of an adapter equal those of the full-slot binding, token
for token, under CUDA graph. The CPU suite checks the same against onnxruntime-genai
(tests/test_serving.py::test_base_rank0_steps_equal_og_and_leave_adapter_rows_alone).

    python bench/base0_check.py WS BASE OUT.json [PROVIDER]   (cuda; cpu: a dry run)
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.chat import ChatEngine, SamplingParams  # noqa: E402

PROMPTS = ["What should I pack for a trip?", "Tell me about Lisbon.", "Why is the sky blue?"]


def answers(ws: Path, base: str, flag: str, provider: str) -> tuple[dict, dict]:
    os.environ["STUDIO_BASE_RANK0"] = flag
    eng = ChatEngine(ws / "models" / base, ws / "adapters", provider=provider)
    try:
        assert eng.backend_name == "ort" and (eng.cuda_graph or provider == "cpu"), (eng.backend_name, eng.backend_why)
        ads = sorted(v for v in eng.variants() if v != "base")
        g = SamplingParams(max_new_tokens=128, temperature=0.0)
        out = {f"{v}|{p}": eng.generate([{"role": "user", "content": p}], v, g)[0]
               for v in ["base", *ads[:1]] for p in PROMPTS}
        return out, eng.serving_stats()
    finally:
        eng.close()


def main() -> None:
    ws, base, dest = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    provider = sys.argv[4] if len(sys.argv) > 4 else "cuda"
    off, _ = answers(ws, base, "0", provider)
    on, st = answers(ws, base, "1", provider)
    same = {k: off[k] == on[k] for k in off}
    res = {"equal": same, "all_equal": all(same.values()), "rank0_steps": st.get("rank0_steps"),
           "answers_rank0": on}
    dest.write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "answers_rank0"}, indent=1))


if __name__ == "__main__":
    main()

"""A tiny scratch model for the engine tests, built on CPU by the product's own stages.

tests/helpers_models.py: random-weight tiny Phi3 + byte-level BPE tokenizer with a chat template, and
two untrained PEFT LoRAs (random, non-zero B so they change the greedy output; no training needed)
-> pipeline.stage_onnx.build_onnx (genai builder int4 with float LoRA slots, Olive ExtractAdapters,
   the fused q/k/v LoRA layout the product ships)
-> pipeline.stage_adapter.convert_adapter for both adapters
-> published as pipeline/runner.py does (`_publish_base` / `adapter`): base.json and metadata.json
   with the same fields, fingerprint from stage_adapter.model_fingerprint.

The result is cached under tests/artifacts/engine-<hash>/ (git-ignored; the hash covers this file,
the model helpers and the pipeline modules that build it) with the layout of the real repo:
models/<base>/ (with base.json) and adapters/<name>/ (adapter.onnx_adapter, peft/, metadata.json).
Tests copy the adapters folder before mutating it.

Use: `scratch = build_scratch()` -> dict(root, models_dir, adapters_dir, model_dir, base_name,
adapters=[names]); or the pytest fixture `engine_scratch` (session scope).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # `python tests/engine_fixture.py` without conftest
    sys.path.insert(0, str(ROOT))

ARTIFACTS = HERE / "artifacts"
BASE_NAME = "scratch-phi3"
ADAPTERS = ("alpha", "beta")
RANKS = (8, 4)
TARGETS = ["qkv_proj", "o_proj"]
# what the scratch build depends on: a change in any of these rebuilds it
SOURCES = [HERE / "engine_fixture.py", HERE / "helpers_models.py", ROOT / "pipeline" / "stage_onnx.py",
           ROOT / "pipeline" / "stage_adapter.py", ROOT / "pipeline" / "lora_layout.py",
           ROOT / "artifacts" / "adapter_file.py"]


def _key() -> str:
    h = hashlib.sha256()
    for f in SOURCES:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def _recipe(hf: Path, adapter_name: str, r: int):
    """The recipe the pipeline would have run for this base/adapter (AWQ off, no training data)."""
    from pipeline.recipe import AWQConfig, LoRAConfig, OnnxConfig, Recipe
    return Recipe(base_model=str(hf), train_file="", eval_file="", adapter_name=adapter_name,
                  base_name=BASE_NAME, awq=AWQConfig(enabled=False),
                  lora=LoRAConfig(r=r, alpha=2 * r, target_modules=list(TARGETS)),
                  onnx=OnnxConfig(precision="int4", block_size=32, accuracy_level=4, execution_provider="cpu"))


def _build(root: Path, final: Path, hidden: int = 128, layers: int = 2, ctx: int = 256) -> None:
    """Builds into root, which is then renamed to final (paths in the metadata name final)."""
    from pipeline.events import EventLog
    from artifacts import publish, write_json as _write_json
    from pipeline.runner import _now
    from pipeline.stage_adapter import convert_adapter, model_fingerprint
    from pipeline.stage_onnx import build_onnx
    from tests.helpers_models import make_random_peft, make_tiny_model

    work = root / "work"
    work.mkdir(parents=True)
    log = EventLog(work / "events.jsonl")
    t = {}
    t0 = time.time()
    hf = make_tiny_model(work / "hf", "phi3", hidden=hidden, layers=layers, max_positions=ctx)
    t["hf"] = round(time.time() - t0, 2)
    loras = {}
    for seed, (name, r) in enumerate(zip(ADAPTERS, RANKS), start=1):
        t0 = time.time()
        loras[name] = make_random_peft(hf, work / f"lora_{name}", r, TARGETS, seed=seed)
        t[f"lora_{name}"] = round(time.time() - t0, 2)
    fingerprint = model_fingerprint(hf)  # AWQ off: the pipeline's base fingerprint is the model's own

    # ONNX base (the runner's `onnx` stage: build_onnx, then _publish_base)
    hf_final = final / hf.relative_to(root)
    base_recipe = _recipe(hf_final, ADAPTERS[0], RANKS[0])
    t0 = time.time()
    info = build_onnx(hf, loras[ADAPTERS[0]], base_recipe.onnx, "cpu", work / "onnx", log)
    t["build_onnx"] = round(time.time() - t0, 2)
    t["build_onnx_steps"] = info["timings"]
    models = root / "models"
    models.mkdir()
    tmp = models / f"{BASE_NAME}.tmp-{os.getpid()}"
    shutil.copytree(work / "onnx", tmp)
    r = base_recipe
    _write_json(tmp / "base.json", {
        "name": BASE_NAME, "fingerprint": fingerprint, "source_model": r.base_model,
        "source_fingerprint": fingerprint,
        "precision": r.onnx.precision, "block_size": r.onnx.block_size,
        "accuracy_level": r.onnx.accuracy_level, "execution_provider": info["execution_provider"],
        "target_modules": sorted(r.lora.target_modules), "lora_inputs": info.get("lora_inputs", {}),
        "lora_layout": info.get("lora_layout", "builder"),
        "awq": {**r.to_dict()["awq"], "applied": False, "note": "AWQ off (scratch test model)"},
        "created": _now()})
    publish(tmp, models / BASE_NAME)
    shutil.rmtree(work / "onnx")  # published above
    base_dir = models / BASE_NAME

    # adapters (the runner's `adapter` stage)
    adapters = root / "adapters"
    adapters.mkdir()
    for name, rank in zip(ADAPTERS, RANKS):
        r = _recipe(hf_final, name, rank)
        tmp = adapters / f"{name}.tmp-{os.getpid()}"
        tmp.mkdir()
        t0 = time.time()
        ainfo = convert_adapter(loras[name], base_dir, tmp / "adapter.onnx_adapter")
        t[f"convert_{name}"] = round(time.time() - t0, 2)
        shutil.copytree(loras[name], tmp / "peft")
        size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        _write_json(tmp / "metadata.json", {
            "name": name, "format": "onnx_adapter",
            "base_fingerprint": fingerprint, "base_name": BASE_NAME,
            "base_model": r.base_model,
            "dataset": {"train_file": r.train_file, "sha256": "", "examples": 0, "eval_file": r.eval_file,
                        "eval_sha256": "", "eval_examples": 0},
            "recipe": r.to_dict(), "rank": r.lora.r, "alpha": r.lora.alpha,
            "target_modules": r.lora.target_modules, "steps": 0,
            "train_loss": None, "eval_loss": None,
            "timings": {}, "size_bytes": size, "created": _now(), "job": "engine-fixture",
            "tensors": ainfo.get("tensors"),
        })
        publish(tmp, adapters / name)
    (root / "timings.json").write_text(json.dumps(t, indent=2))


def build_scratch(base: Path | None = None, hidden: int = 128, layers: int = 2, ctx: int = 256) -> dict:
    """Default size is the test model; larger sizes (e.g. hidden=512, layers=4, ctx=1024) are for
    quick CPU benchmarks of the engine."""
    base = Path(base) if base else ARTIFACTS
    size = "" if (hidden, layers, ctx) == (128, 2, 256) else f"-h{hidden}l{layers}c{ctx}"
    root = base / f"engine-{_key()}{size}"
    if not (root / "DONE").exists():
        tmp = base / f"engine-{_key()}{size}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _build(tmp, root, hidden, layers, ctx)
        (tmp / "DONE").write_text("ok")
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)
    return {"root": root, "models_dir": root / "models", "adapters_dir": root / "adapters",
            "model_dir": root / "models" / BASE_NAME, "base_name": BASE_NAME,
            "adapters": list(ADAPTERS)}


try:
    import pytest

    @pytest.fixture(scope="session")
    def engine_scratch():
        return build_scratch()
except ImportError:  # pragma: no cover
    pass


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=256)
    a = ap.parse_args()
    s = build_scratch(hidden=a.hidden, layers=a.layers, ctx=a.ctx)
    print(json.dumps({k: str(v) for k, v in s.items()}, indent=2))
    print((s["root"] / "timings.json").read_text())

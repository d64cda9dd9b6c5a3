"""A tiny scratch model for the engine tests, built on CPU with the stack.md recipe.

random-weight tiny Phi3 + trained byte-level BPE tokenizer with a chat template
-> two PEFT LoRAs (random, non-zero B so they change the output; no training needed
   for engine tests) -> genai builder int4 with adapter_path + nodes_to_exclude (float
   LoRA slots) -> `olive generate-adapter` (slots become graph inputs, adapter A file)
-> a small converter for adapter B.

The result is cached under tests/artifacts/engine-<hash of this file>/ (git-ignored)
with the layout of the real repo: models/<base>/ (with base.json) and adapters/<name>/
(adapter.onnx_adapter, peft/, metadata.json). Tests copy the adapters folder before
mutating it.

Use: `scratch = build_scratch()` -> dict(models_dir, adapters_dir, model_dir, base_name,
adapters=[names]); or the pytest fixture `engine_scratch` (session scope).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
BASE_NAME = "scratch-phi3"
ADAPTERS = ("alpha", "beta")

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Travel to Paris and Rome in spring; book trains early.",
    "Arr, the pirate sails the seven seas with a parrot and a map.",
    "Hello, how are you today? I am fine, thank you.",
    "A tiny language model speaks in short sentences about the weather.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 and punctuation ! ? , . ; : ' \" ( )",
] * 20


def _key() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def _sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")


def _make_hf(hf: Path, hidden: int = 128, layers: int = 2, ctx: int = 256) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import Phi3Config, Phi3ForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(hf)

    vocab = len(fast)
    eos = [fast.convert_tokens_to_ids("<|endoftext|>"), fast.convert_tokens_to_ids("<|end|>")]
    cfg = Phi3Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                     num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                     max_position_embeddings=ctx, original_max_position_embeddings=ctx, bos_token_id=eos[0], eos_token_id=eos,
                     pad_token_id=eos[0], initializer_range=0.2, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = Phi3ForCausalLM(cfg).float().eval()
    model.generation_config.eos_token_id = eos
    model.save_pretrained(hf)


def _make_lora(hf: Path, out: Path, seed: int, r: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(hf, torch_dtype=torch.float32)
    cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["qkv_proj", "o_proj"],
                     init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():  # make the LoRA delta clearly visible in greedy output
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.mul_(3.0)
    peft_model.save_pretrained(out)


def lora_inputs_of(onnx_path: Path) -> dict[str, list]:
    import onnx
    m = onnx.load(str(onnx_path), load_external_data=False)
    out: dict[str, list] = {}
    for i in m.graph.input:
        if "lora" in i.name.lower():
            out[i.name] = [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
    return out


def convert_peft(peft_dir: Path, lora_inputs: dict[str, list], out_file: Path, num_heads: int,
                 kv_heads: int, head_dim: int) -> list[str]:
    """PEFT (Phi3, qkv_proj/o_proj) -> .onnx_adapter with the genai builder's input names."""
    import numpy as np
    import onnxruntime as ort
    from safetensors.numpy import load_file

    cfg = json.loads((peft_dir / "adapter_config.json").read_text())
    scale = cfg["lora_alpha"] / cfg["r"]
    w = load_file(str(peft_dir / "adapter_model.safetensors"))
    params: dict[str, np.ndarray] = {}
    q, kv = num_heads * head_dim, kv_heads * head_dim
    for k, v in w.items():
        # base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight
        parts = k.split(".")
        i = int(parts[parts.index("layers") + 1])
        mod = parts[parts.index("layers") + 3]
        ab = "A" if "lora_A" in k else "B"
        v = v.astype(np.float32)
        if ab == "A":
            mat = v.T.copy()  # [in, r]
        else:
            mat = (v.T * scale).astype(np.float32)  # [r, out]
        if mod == "qkv_proj":
            if ab == "A":
                for p in "qkv":
                    params[f"model.layers.{i}.attn.{p}_proj.lora_A.MatMul.weight"] = mat
            else:
                for p, sl in zip("qkv", (slice(0, q), slice(q, q + kv), slice(q + kv, q + 2 * kv))):
                    params[f"model.layers.{i}.attn.{p}_proj.lora_B.MatMul.weight"] = mat[:, sl].copy()
        else:
            params[f"model.layers.{i}.attn.o_proj.lora_{ab}.MatMul.weight"] = mat
    missing = set(params) - set(lora_inputs)
    if missing:
        raise ValueError(f"converter produced names the model lacks: {sorted(missing)[:3]}")
    for name, arr in params.items():
        dims = lora_inputs[name]
        for d, s in zip(dims, arr.shape):
            if isinstance(d, int) and d > 0 and d != s:
                raise ValueError(f"{name}: shape {arr.shape} vs model {dims}")
    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(1)
    fmt.set_model_version(1)
    fmt.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in params.items()})
    fmt.export_adapter(str(out_file))
    return sorted(params)


def _build(root: Path, hidden: int = 128, layers: int = 2, ctx: int = 256) -> None:
    work = root / "work"
    hf, onnx_dir, ext = work / "hf", work / "onnx", work / "ext"
    for p in (hf, onnx_dir, ext):
        p.mkdir(parents=True, exist_ok=True)
    t = {}
    t0 = time.time(); _make_hf(hf, hidden, layers, ctx); t["hf"] = time.time() - t0
    loras = {}
    for seed, (name, r) in enumerate(zip(ADAPTERS, (8, 4)), start=1):
        t0 = time.time()
        loras[name] = work / f"lora_{name}"
        _make_lora(hf, loras[name], seed, r)
        t[f"lora_{name}"] = time.time() - t0
    excl = ",".join(f"/model/layers.{i}/attn/{p}_proj/lora_{ab}/MatMul"
                    for i in range(layers) for p in "qkvo" for ab in "AB")
    t0 = time.time()
    _run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(onnx_dir),
          "-p", "int4", "-e", "cpu", "-c", str(work / "cache"), "--extra_options",
          f"adapter_path={loras['alpha']}", "block_size=32", "is_symmetric=false",
          f"nodes_to_exclude={excl}"])
    t["builder"] = time.time() - t0
    t0 = time.time()
    olive = Path(sys.executable).parent / "olive"
    _run([str(olive), "generate-adapter", "-m", str(onnx_dir), "-o", str(ext),
          "--adapter_format", "onnx_adapter"], cwd=work)  # olive writes .olive-cache/ into cwd
    t["generate_adapter"] = time.time() - t0

    # assemble models/<base>/ from ext (onnx with slots) + genai_config/tokenizer from onnx_dir
    models = root / "models" / BASE_NAME
    models.mkdir(parents=True)
    found = {p.name: p for p in ext.rglob("*") if p.is_file()}
    for name, p in found.items():
        if not name.endswith(".onnx_adapter"):
            shutil.copy2(p, models / name)
    for p in onnx_dir.iterdir():
        if p.is_file() and not (models / p.name).exists():
            shutil.copy2(p, models / p.name)
    onnx_file = next(models.glob("*.onnx"))
    gcfg = json.loads((models / "genai_config.json").read_text())
    if gcfg["model"]["decoder"]["filename"] != onnx_file.name:
        gcfg["model"]["decoder"]["filename"] = onnx_file.name
        (models / "genai_config.json").write_text(json.dumps(gcfg, indent=2))
    lora_in = lora_inputs_of(onnx_file)
    fingerprint = _sha256_file(hf / "model.safetensors")
    (models / "base.json").write_text(json.dumps({
        "name": BASE_NAME, "fingerprint": fingerprint, "source_model": str(hf),
        "precision": "int4", "block_size": 32, "execution_provider": "cpu",
        "target_modules": ["qkv_proj", "o_proj"], "lora_inputs": lora_in, "awq": {},
        "created": time.time()}, indent=2))

    adapter_a_file = next(p for n, p in found.items() if n.endswith(".onnx_adapter"))
    hcfg = json.loads((hf / "config.json").read_text())
    for name in ADAPTERS:
        d = root / "adapters" / name
        d.mkdir(parents=True)
        shutil.copytree(loras[name], d / "peft")
        if name == "alpha":
            shutil.copy2(adapter_a_file, d / "adapter.onnx_adapter")
        else:
            hd = hcfg["hidden_size"] // hcfg["num_attention_heads"]
            convert_peft(loras[name], lora_in, d / "adapter.onnx_adapter",
                         hcfg["num_attention_heads"], hcfg["num_key_value_heads"], hd)
        pc = json.loads((loras[name] / "adapter_config.json").read_text())
        (d / "metadata.json").write_text(json.dumps({
            "name": name, "base_fingerprint": fingerprint, "base_name": BASE_NAME,
            "base_model": str(hf), "dataset": {"train_file": "none", "sha256": "", "examples": 0},
            "recipe": {}, "rank": pc["r"], "alpha": pc["lora_alpha"],
            "target_modules": ["qkv_proj", "o_proj"], "steps": 0, "train_loss": None,
            "eval_loss": None, "timings": {}, "size_bytes": (d / "adapter.onnx_adapter").stat().st_size,
            "created": time.time(), "format": "onnx_adapter"}, indent=2))
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
        _build(tmp, hidden, layers, ctx)
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

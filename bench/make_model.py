"""Make a random-weight benchmark model plus two random PEFT LoRAs.

    python bench/make_model.py --shape phi35 --out /tmp/bench/hf          # on the GPU (3.82 B, bf16)
    python bench/make_model.py --shape default --out /tmp/bench/hf --device cpu

Writes OUT/ (config.json, model.safetensors shards in bf16, tokenizer files copied from
models/default-hf) and OUT/lora_r16/, OUT/lora_r8/ (PEFT folders: target qkv_proj,o_proj,
alpha = 2r, B non-zero so an active adapter changes the output).
"--shape phi35" is Phi-3.5-mini's shape (hidden 3072, 32 layers, 32 heads, intermediate 8192,
vocab 32064) with max_position_embeddings 4096 and no rope scaling; "--shape default" copies
models/default-hf's config (or a 4-layer tiny Phi3 when that folder is missing).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_HF = REPO / "models" / "default-hf"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "generation_config.json")

PHI35 = dict(hidden_size=3072, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
             intermediate_size=8192, vocab_size=32064, max_position_embeddings=4096,
             original_max_position_embeddings=4096, rope_scaling=None, rms_norm_eps=1e-5,
             rope_theta=10000.0, tie_word_embeddings=False, hidden_act="silu")
TINY = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
            intermediate_size=256, max_position_embeddings=1024, original_max_position_embeddings=1024,
            tie_word_embeddings=False)


def copy_tokenizer(out: Path) -> dict:
    """Tokenizer files from models/default-hf, else a scratch byte-level BPE. Returns token ids."""
    if (DEFAULT_HF / "tokenizer.json").is_file():
        for name in TOKENIZER_FILES:
            if (DEFAULT_HF / name).is_file() and name != "generation_config.json":
                shutil.copy2(DEFAULT_HF / name, out / name)
    else:
        sys.path.insert(0, str(REPO / "tests"))
        from helpers_models import make_tokenizer  # scratch tokenizer used by the tests
        make_tokenizer(512).save_pretrained(out)
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(out)
    return dict(vocab=len(tok), bos=tok.bos_token_id, eos=tok.eos_token_id,
                pad=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)


def make(shape: str, out: Path, device: str, seed: int = 0) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Phi3Config, Phi3ForCausalLM

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no GPU")
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    ids = copy_tokenizer(out)
    if shape == "phi35":
        kw = dict(PHI35)
        if ids["vocab"] > kw["vocab_size"]:
            raise SystemExit(f"tokenizer vocab {ids['vocab']} > {kw['vocab_size']}")
    elif (DEFAULT_HF / "config.json").is_file():
        kw = {k: v for k, v in json.loads((DEFAULT_HF / "config.json").read_text()).items()
              if k in Phi3Config().to_dict() and k not in ("torch_dtype", "dtype", "architectures")}
    else:
        kw = dict(TINY, vocab_size=ids["vocab"])
    kw.update(bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"],
              initializer_range=0.02)
    cfg = Phi3Config(**kw)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(seed)
    with torch.device(device):
        model = Phi3ForCausalLM(cfg).to(dtype)
    with torch.no_grad():  # explicit N(0, 0.02) for every matrix, ones for the norms
        for n, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.02)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    t_init = time.perf_counter() - t0
    model.save_pretrained(out)  # safetensors, in `dtype`
    t_save = time.perf_counter() - t0 - t_init

    loras = {}
    for r in (16, 8):
        torch.manual_seed(seed + r)
        lcfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["qkv_proj", "o_proj"],
                          init_lora_weights=False, task_type="CAUSAL_LM")
        pm = get_peft_model(model, lcfg)
        with torch.no_grad():  # B ~ N(0, 0.02): non-zero, the delta is visible but not dominant
            for n, p in pm.named_parameters():
                if "lora_B" in n:
                    p.normal_(0.0, 0.02)
        d = out / f"lora_r{r}"
        pm.save_pretrained(d)
        loras[f"r{r}"] = str(d)
        model = pm.unload()  # back to the plain model for the next adapter
    info = dict(shape=shape, out=str(out), device=device, dtype=str(dtype), params=n_params,
                config={k: getattr(cfg, k) for k in ("hidden_size", "num_hidden_layers",
                        "num_attention_heads", "num_key_value_heads", "intermediate_size",
                        "vocab_size", "max_position_embeddings")},
                loras=loras, seconds=dict(init=round(t_init, 2), save=round(t_save, 2),
                                          total=round(time.perf_counter() - t0, 2)))
    (out / "bench_model.json").write_text(json.dumps(info, indent=2))
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=("phi35", "default"), default="phi35")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--force", action="store_true", help="rebuild even if OUT/bench_model.json exists")
    a = ap.parse_args()
    done = a.out / "bench_model.json"
    if done.is_file() and not a.force:
        print(done.read_text())
        return
    print(json.dumps(make(a.shape, a.out, a.device), indent=2))


if __name__ == "__main__":
    main()

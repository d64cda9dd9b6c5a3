"""Scratch tiny models for tests: random-weight Phi3 / Llama with a byte-level BPE tokenizer.

`make_tiny_model(out_dir, arch="phi3")` writes a Hugging Face folder (config.json, model.safetensors,
tokenizer.json, tokenizer_config.json with a chat template) that every stage can load offline.
`make_random_peft(model_dir, out_dir, r)` writes an untrained PEFT LoRA with non-zero A and B.
"""
from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Where is the train station? The station is two streets north of the harbour.",
    "Arr matey, hoist the sails and bring the rum to the captain's cabin!",
    "A hotel near the old town costs about ninety euros a night in spring.",
    "Pack light: a rain jacket, good shoes and a charger are all you need.",
    "Ye scurvy dogs will swab the deck before the tide turns, says the pirate.",
    "Museums open at nine and close at six, except on Mondays.",
    "The quick answer is yes, but the long answer involves trains and ferries.",
] * 8


def make_tokenizer(vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|end|>", unk_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny_model(out_dir, arch: str = "phi3", hidden: int = 128, layers: int = 2, heads: int = 4,
                    kv_heads: int = 2, seed: int = 0, vocab_size: int = 512, max_positions: int = 512) -> Path:
    """Random-weight tiny causal LM + tokenizer saved with save_pretrained; returns the folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Phi3Config, Phi3ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(vocab_size)
    common = dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
                  num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                  max_position_embeddings=max_positions, bos_token_id=tok.bos_token_id,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                  tie_word_embeddings=False)
    torch.manual_seed(seed)
    if arch == "phi3":
        # original == max positions: plain RoPE (the genai builder takes the LongRoPE path otherwise)
        model = Phi3ForCausalLM(Phi3Config(**common, original_max_position_embeddings=max_positions))
    elif arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    else:
        raise ValueError(f"unknown arch {arch!r}")
    # Larger-than-default init so greedy outputs are not degenerate (one repeated token).
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.08)
    model = model.to(torch.float32).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def make_random_peft(model_dir, out_dir, r: int, target_modules=("qkv_proj", "o_proj"), seed: int = 0,
                     b_scale: float = 3.0) -> Path:
    """An untrained PEFT LoRA (alpha = 2r) with random non-zero A and B (B scaled up by `b_scale`) so
    that it clearly changes greedy output; no training needed. Returns out_dir."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(target_modules), init_lora_weights=False,
                     task_type="CAUSAL_LM")
    pm = get_peft_model(model, cfg)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.mul_(b_scale)
    pm.save_pretrained(out_dir)
    return Path(out_dir)

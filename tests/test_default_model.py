"""The embedded default model (models/default-hf, made by `python -m pipeline.tiny`) and the demo it serves.

Real checks, no mocks: it loads as float32 with transformers and answers in English; its chat template
renders the Phi-3 turns; the onnxruntime-genai builder turns it into int4 and fp32 ONNX models that load
in onnxruntime-genai, whose tokenizer agrees with the HF one, and whose fp32 greedy output equals
PyTorch's. Set DEFAULT_MODEL_DIR to test another folder made by pipeline.tiny.

The demo's acceptance (issue 15), on the SHIPPED served artifacts (models/default int4 ONNX, adapters/travel,
adapters/pirate), greedy, through the chat engine (bench/demo.py measures it): on the first 10 held-out
prompts of each dataset every answer of base, travel and pirate is readable (>= 90 % of its words in the
corpus vocabulary, no token or word 3 times in a row); each adapter carries its voice in >= 8 of 10
answers, the base in <= 1 of 10; each adapter's held-out loss on the served model, recorded in its
metadata, is clearly below the base's.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import torch  # noqa: E402
import transformers  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = Path(os.environ.get("DEFAULT_MODEL_DIR", ROOT / "models" / "default-hf"))

assert (MODEL_DIR / "model.safetensors").exists(), f"no default model at {MODEL_DIR}: python -m pipeline.tiny"

CHAT_PROMPTS = [
    "What do cats eat?",
    "How can I sleep better?",
    "Tell me about the moon.",
    "What should I pack for a trip?",
]
# Prompts for the fp32 equivalence test: chats and plain prose.
CONTINUATION_PROMPTS = [
    "<|user|>\nWhat is a good way to learn a new language?<|end|>\n<|assistant|>\n",
    "<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nWhy is the sky blue?<|end|>\n<|assistant|>\n",
    "The old town was quiet in the morning, and",
    "Once upon a time there was a",
    "<|user|>\nName three fruits.<|end|>\n<|assistant|>\n",
]
NEW_TOKENS = 20

TOKENIZER_STRINGS = [
    "", " ", "a", "Hello, world!", "hello world", "HELLO WORLD", "  leading spaces", "trailing spaces   ",
    "multiple    spaces   inside", "tabs\tand\ttabs", "\t\tdouble tab", "new\nline", "two\n\nnewlines",
    "windows\r\nline end", "mixed \t \n whitespace \n\t ", "Café au lait", "naïve résumé façade",
    "Ærøskøbing, Ångström, Øresund", "straße, Größe, Übermut", "¿Dónde está la biblioteca?",
    "Привет, как дела?", "Γειά σου κόσμε", "שלום עולם", "مرحبا بالعالم", "नमस्ते दुनिया",
    "日本語のテキストです。", "中文字符测试", "한국어 문장", "emoji 😀 smile", "👍🏽 thumbs with skin tone",
    "family 👨‍👩‍👧‍👦 zwj", "flags 🇫🇷🇯🇵", "math ∑ ∫ √ ≤ ≥ ≠ π", "€100 and £50 and ¥2000",
    "0", "1234567890", "3.14159 2.71828", "-42 +17 1e-9 0xFF", "2026-11-21 23:59:59",
    "def f(x):\n    return x * 2\n", "for (int i = 0; i < n; i++) { sum += a[i]; }",
    "print('hello')  # comment", "SELECT * FROM users WHERE id = 1;", "<div class=\"x\">&amp;</div>",
    '{"key": [1, 2, 3], "nested": {"a": null}}', "https://example.com/path?q=1&r=two#frag",
    "user@example.com", "C:\\Users\\name\\file.txt", "snake_case camelCase kebab-case",
    "It's a dog's life, isn't it?", "\"quoted\" and 'single'", "…ellipsis — em dash – en dash",
    "zero\u200bwidth", "nbsp\u00a0here", "combining e\u0301 accent",
    "<|user|>", "<|end|>", "<|user|>\nHi there<|end|>\n<|assistant|>\n",
    "<|system|>\nBe brief.<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi!<|end|>\n",
    "text<|endoftext|>more text", "<|assistant|>\nSure.<|end|>",
]
SPECIAL = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]


def is_readable(text: str) -> bool:
    """Mostly English-looking: several words, mostly ASCII letters, most words contain a vowel."""
    words = re.findall(r"[A-Za-z']+", text)
    if len(words) < 3:
        return False
    letters = sum(c.isascii() and (c.isalpha() or c in " .,;:!?'\"-\n") for c in text)
    vowelish = sum(bool(re.search(r"[aeiouyAEIOUY]", w)) for w in words)
    return letters / max(1, len(text)) > 0.8 and vowelish / len(words) > 0.7


@pytest.fixture(scope="module")
def hf():
    tok = transformers.AutoTokenizer.from_pretrained(MODEL_DIR)
    model = transformers.AutoModelForCausalLM.from_pretrained(MODEL_DIR)
    model.eval()
    return tok, model


def chat_ids(tok, prompt: str) -> list[int]:
    ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                  tokenize=True, return_dict=False)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return [int(i) for i in ids]


def torch_greedy(model, ids: list[int], n: int, force_length: bool) -> list[int]:
    kw = {"min_new_tokens": n} if force_length else {}
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, **kw)
    return out[0, len(ids):].tolist()


# ------------------------------------------------------------------------------------------------
# transformers


def test_files_and_config():
    names = {p.name for p in MODEL_DIR.iterdir()}
    for f in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
              "tokenizer_config.json", "TRAINING.json", "README.md"):
        assert f in names, f
    cfg = json.loads((MODEL_DIR / "config.json").read_text())
    assert cfg["architectures"] == ["Phi3ForCausalLM"]
    training = json.loads((MODEL_DIR / "TRAINING.json").read_text())
    assert cfg["vocab_size"] == 4096 and cfg["hidden_size"] == training["config"]["hidden"]
    assert cfg["num_hidden_layers"] == training["config"]["layers"]
    assert cfg["dtype"] == "float32"
    assert (MODEL_DIR / "model.safetensors").stat().st_size <= 60e6  # the ceiling for committed weights
    tcfg = json.loads((MODEL_DIR / "tokenizer_config.json").read_text())
    assert "<|assistant|>" in tcfg["chat_template"]
    assert tcfg["eos_token"] == "<|end|>"
    tok = json.loads((MODEL_DIR / "tokenizer.json").read_text())
    assert tok["pre_tokenizer"]["type"] == "ByteLevel" and tok["decoder"]["type"] == "ByteLevel"
    assert tok["model"]["type"] == "BPE"
    vocab_ids = {t["content"]: t["id"] for t in tok["added_tokens"]}
    assert set(SPECIAL) <= set(vocab_ids)
    gen = json.loads((MODEL_DIR / "generation_config.json").read_text())
    assert set(gen["eos_token_id"]) == {vocab_ids["<|end|>"], vocab_ids["<|endoftext|>"]}
    for k in ("steps", "seconds", "device", "final_train_loss", "final_eval_loss", "parameters", "seed",
              "corpus", "versions"):
        assert k in training, k


def test_chat_template_renders_phi3_turns(hf):
    tok, _ = hf
    msgs = [{"role": "system", "content": "You are kind."}, {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye?"}]
    assert tok.apply_chat_template(msgs, tokenize=False) == (
        "<|system|>\nYou are kind.<|end|>\n<|user|>\nHi!<|end|>\n"
        "<|assistant|>\nHello.<|end|>\n<|user|>\nBye?<|end|>\n")
    assert tok.apply_chat_template(msgs[1:2], tokenize=False, add_generation_prompt=True) == (
        "<|user|>\nHi!<|end|>\n<|assistant|>\n")
    assert tok.eos_token == "<|end|>"
    # the specials are single tokens
    for s in SPECIAL:
        assert len(tok.encode(s, add_special_tokens=False)) == 1, s


def test_loads_float32_and_answers_in_english(hf):
    tok, model = hf
    assert model.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    end = tok.convert_tokens_to_ids("<|end|>")
    for prompt in CHAT_PROMPTS:
        ids = chat_ids(tok, prompt)
        new = torch_greedy(model, ids, 48, force_length=False)
        answer = tok.decode(new, skip_special_tokens=True).strip()
        print(f"\nQ: {prompt}\nA: {answer}")
        assert answer, prompt
        assert is_readable(answer), (prompt, answer)
        assert "<|user|>" not in tok.decode(new)  # it does not write the user's turn
    # it ends its turn with <|end|> within a reasonable length for at least one prompt
    assert any(end in torch_greedy(model, chat_ids(tok, p), 96, force_length=False) for p in CHAT_PROMPTS)


# ------------------------------------------------------------------------------------------------
# onnxruntime-genai


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    import onnxruntime_genai as og
    root = tmp_path_factory.mktemp("default-onnx")
    out = {}
    for precision in ("int4", "fp32"):
        d = root / precision
        r = subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(MODEL_DIR),
                            "-o", str(d), "-p", precision, "-e", "cpu", "-c", str(root / f"cache-{precision}")],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        assert (d / "model.onnx").exists() and (d / "genai_config.json").exists()
        model = og.Model(str(d))
        out[precision] = (d, model, og.Tokenizer(model))
    return og, out


def og_greedy(og, model, ids: list[int], n: int, force_length: bool) -> list[int]:
    params = og.GeneratorParams(model)
    opts = {"do_sample": False, "max_length": len(ids) + n}
    if force_length:
        opts["min_length"] = len(ids) + n
    params.set_search_options(**opts)
    gen = og.Generator(model, params)
    gen.append_tokens(ids)
    new: list[int] = []
    while not gen.is_done() and len(new) < n:
        gen.generate_next_token()
        new.append(int(gen.get_next_tokens()[0]))
    return new


def test_onnx_builds_load(onnx_models):
    og, models = onnx_models
    sizes = {}
    for precision, (d, model, tok) in models.items():
        cfg = json.loads((d / "genai_config.json").read_text())
        assert cfg["model"]["type"] == "phi3"
        assert cfg["model"]["vocab_size"] == 4096
        sizes[precision] = sum(p.stat().st_size for p in d.iterdir() if p.name.startswith("model.onnx"))
        assert len(tok.encode("hello")) >= 1
    print(f"\nONNX sizes: {sizes}")
    assert sizes["int4"] < sizes["fp32"] / 2


@pytest.mark.parametrize("precision", ["int4", "fp32"])
def test_og_tokenizer_matches_hf(onnx_models, hf, precision):
    og, models = onnx_models
    _, _, otok = models[precision]
    htok, _ = hf
    assert len(TOKENIZER_STRINGS) >= 50
    for s in TOKENIZER_STRINGS:
        hids = htok.encode(s, add_special_tokens=False)
        oids = [int(i) for i in otok.encode(s)]
        assert oids == hids, (s, oids, hids)
        decoded = otok.decode(oids) if oids else ""
        stream = otok.create_stream()
        streamed = "".join(stream.decode(i) for i in oids)
        if not any(sp in s for sp in SPECIAL):
            assert decoded == s, (s, decoded)
            assert streamed == s, (s, streamed)
            assert htok.decode(hids) == s, s
        else:  # onnxruntime-genai drops special tokens when decoding, like skip_special_tokens=True
            plain = htok.decode(hids, skip_special_tokens=True)
            assert streamed == plain, (s, streamed)
            # quirk of og 0.18: Tokenizer.decode of ids that are all special gives U+FFFD, not ""
            assert decoded == plain or (plain == "" and decoded == "\ufffd"), (s, decoded)


def test_og_chat_template_matches_hf(onnx_models, hf):
    og, models = onnx_models
    _, _, otok = models["int4"]
    htok, _ = hf
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    assert otok.apply_chat_template(json.dumps(msgs), add_generation_prompt=True) == \
        htok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def test_fp32_onnx_greedy_equals_pytorch(onnx_models, hf):
    og, models = onnx_models
    _, model, _ = models["fp32"]
    htok, hmodel = hf
    for prompt in CONTINUATION_PROMPTS:
        ids = htok.encode(prompt, add_special_tokens=False)
        expected = torch_greedy(hmodel, ids, NEW_TOKENS, force_length=True)
        got = og_greedy(og, model, ids, NEW_TOKENS, force_length=True)
        assert len(expected) == NEW_TOKENS
        assert got == expected, (prompt, htok.decode(got), htok.decode(expected))


def test_int4_onnx_answers_readably(onnx_models, hf):
    og, models = onnx_models
    _, model, otok = models["int4"]
    htok, hmodel = hf
    matched = total = 0
    for prompt in CHAT_PROMPTS:
        ids = chat_ids(htok, prompt)
        got = og_greedy(og, model, ids, 48, force_length=False)
        answer = otok.decode(got).strip()
        print(f"\nint4 Q: {prompt}\nint4 A: {answer}")
        assert is_readable(answer), (prompt, answer)
    for prompt in CONTINUATION_PROMPTS:
        ids = htok.encode(prompt, add_special_tokens=False)
        expected = torch_greedy(hmodel, ids, NEW_TOKENS, force_length=True)
        got = og_greedy(og, model, ids, NEW_TOKENS, force_length=True)
        prefix = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), NEW_TOKENS)
        matched += prefix
        total += NEW_TOKENS
    print(f"\nint4 vs PyTorch fp32: {matched}/{total} greedy tokens identical before the first difference")
    assert matched > 0


# ------------------------------------------------------------------------------------------------
# the demo: the shipped int4 base and adapters, served (issue 15)


@pytest.fixture(scope="module")
def demo():
    sys.path.insert(0, str(ROOT))
    from bench import demo as d
    for what in (ROOT / "models" / "default" / "genai_config.json", ROOT / "adapters" / "travel" / "metadata.json",
                 ROOT / "adapters" / "pirate" / "metadata.json"):
        assert what.is_file(), f"missing shipped artifact {what}"
    return d, d.run(ROOT / "models", ROOT / "adapters")


def _show(res, ds):
    for r in res["datasets"][ds]["rows"]:
        print(f"\nQ: {r['prompt']}")
        for v in ("base", "travel", "pirate"):
            print(f"  {v}: {r[v]['text']}")


def test_corpus_knows_the_heldout_entities_and_not_the_voices(demo):
    d, _ = demo
    md = d.MD
    corpus = md.read_text("corpus/chat.jsonl.gz") + md.read_text("corpus/prose.txt.gz")
    for city in md.TRAVEL_TEST_CITIES:
        assert city in corpus, city
    vocab = d.vocabulary()
    assert {"lisbon", "pack", "sunscreen", "arr", "matey"} <= vocab
    for ds, prompts in (("travel", d.heldout_prompts("travel")), ("pirate", d.heldout_prompts("pirate"))):
        assert len(prompts) == 10
        train = {json.loads(x)["prompt"] for x in (ROOT / "data" / ds / "train.jsonl").read_text().splitlines()}
        assert not set(prompts) & train
    assert not any(m in corpus for m in md.TRAVEL_MARKERS)
    joined = " " + " ".join(md.words(corpus)) + " "
    assert not [m for m in md.PIRATE_MARKERS if f" {m} " in joined]


def test_heldout_answers_are_readable(demo):
    """Issue 15's criterion: every answer of base, travel and pirate to the 10 held-out prompts per dataset
    is readable (served int4 model, greedy). Over all 100 held-out prompts per dataset the shipped adapters
    give base 200/200, travel 199/200, pirate 196/200 (bench/results/demo-heldout100-cpu-2026-12-03.json):
    these 20 are not a lucky draw, but neither is every answer of the model readable."""
    d, res = demo
    bad = []
    for ds in ("travel", "pirate"):
        _show(res, ds)
        for r in res["datasets"][ds]["rows"]:
            for v in ("base", "travel", "pirate"):
                x = r[v]
                if not x["readable"]:
                    bad.append((ds, v, r["prompt"], x["text"], x["in_vocab"], x["unknown"], x["longest_repeat"]))
    assert not bad, bad


def test_adapters_speak_in_their_voice_and_the_base_does_not(demo):
    d, res = demo
    for ds in ("travel", "pirate"):
        voice = res["datasets"][ds]["voice"]
        print(ds, voice)
        assert voice[ds] >= 8, (ds, voice, [r[ds]["text"] for r in res["datasets"][ds]["rows"]])
        assert voice["base"] <= 1, (ds, voice, [r["base"]["text"] for r in res["datasets"][ds]["rows"]])


@pytest.mark.parametrize("name", ["travel", "pirate"])
def test_heldout_loss_on_the_served_model_is_clearly_lower(name):
    meta = json.loads((ROOT / "adapters" / name / "metadata.json").read_text())
    ev = meta.get("eval")
    assert ev, f"adapters/{name}/metadata.json records no held-out evaluation on the served model"
    print(name, {k: ev.get(k) for k in ("n", "base_loss", "adapter_loss", "served")})
    assert ev["n"] >= 10
    assert ev["adapter_loss"] < 0.5 * ev["base_loss"], ev

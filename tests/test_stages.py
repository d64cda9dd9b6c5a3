"""Stage tests on real tiny models (CPU): data, AWQ, Olive LoRA, ONNX with LoRA slots, adapters, serving.

Everything is real: autoawq, Olive, the onnxruntime-genai builder, onnxruntime-genai generation.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers_models import make_random_peft, make_tiny_model  # noqa: E402

from pipeline.data import (DataError, calibration_texts, check_target_modules, check_template,  # noqa: E402
                           file_sha256, load_examples, render_prompt, render_text)
from pipeline.recipe import AWQConfig, LoRAConfig, OnnxConfig  # noqa: E402

N_NEW = 16


class Rec:
    def __init__(self):
        self.events = []

    def emit(self, type, **fields):
        self.events.append((type, fields))

    def log(self, message, level="info"):
        self.events.append(("log", {"level": level, "message": message}))

    def progress(self, stage, done, total):
        self.events.append(("progress", {"stage": stage, "done": done, "total": total}))

    def of(self, type):
        return [f for t, f in self.events if t == type]


TRAVEL = [("Where is the station?", "Two streets north of the harbour."),
          ("How much is a hotel?", "About ninety euros a night in spring."),
          ("When do museums open?", "At nine, and they close at six."),
          ("What should I pack?", "A rain jacket, good shoes and a charger.")]
PIRATE = [("Where is the station?", "Arr, yonder past the rum barrels, matey!"),
          ("How much is a hotel?", "Ye pay in doubloons or walk the plank!"),
          ("When do museums open?", "When the tide turns, ye scurvy dog!"),
          ("What should I pack?", "A cutlass, a parrot and a bottle o' rum!")]


def _examples(pairs, n=16):
    return [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": r}]}
            for p, r in (pairs * (n // len(pairs) + 1))[:n]]


# ---- data ------------------------------------------------------------------------------------
def _write(tmp_path, name, content):
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


def test_load_prompt_and_messages(tmp_path):
    p = _write(tmp_path, "a.jsonl", '{"prompt": "hi", "response": "yo"}\n\n{"prompt": "a", "response": "b"}\n')
    ex = load_examples(p)
    assert ex[0] == {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    assert len(ex) == 2
    m = _write(tmp_path, "m.jsonl", json.dumps({"messages": [
        {"role": "system", "content": "be nice"}, {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"}]}) + "\n")
    assert load_examples(m, "messages")[0]["messages"][0]["role"] == "system"
    assert load_examples(m)[0]["messages"][-1]["content"] == "a"


def test_load_alpaca_and_sharegpt(tmp_path):
    """The two formats imported datasets use most, as JSON Lines or one JSON array (Alpaca's own files), with
    the keys such datasets carry beside (ids, Alpaca's "text") ignored."""
    rows = [{"instruction": "Name a fruit.", "input": "", "output": "An apple.", "text": "ignored"},
            {"instruction": "Translate to French.", "input": "good morning", "output": "bonjour",
             "system": "You translate.", "history": [["Hi", "Hello!"]]}]
    want = [[{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "An apple."}],
            [{"role": "system", "content": "You translate."}, {"role": "user", "content": "Hi"},
             {"role": "assistant", "content": "Hello!"},
             {"role": "user", "content": "Translate to French.\n\ngood morning"},
             {"role": "assistant", "content": "bonjour"}]]
    array = _write(tmp_path, "alpaca_data.json", json.dumps(rows, indent=2))
    lines = _write(tmp_path, "alpaca.jsonl", "\n".join(map(json.dumps, rows)) + "\n")
    for p, fmt in ((array, "auto"), (lines, "auto"), (lines, "alpaca")):
        assert [e["messages"] for e in load_examples(p, fmt)] == want, (p, fmt)
    share = [{"id": "x1", "system": "Be brief.", "conversations": [
        {"from": "human", "value": "What is 2+2?"}, {"from": "gpt", "value": "4"},
        {"from": "human", "value": "And 3+3?"}, {"from": "gpt", "value": "6"}]}]
    p = _write(tmp_path, "share.jsonl", json.dumps(share[0]) + "\n")
    assert load_examples(p)[0]["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6"}]
    assert load_examples(_write(tmp_path, "share.json", json.dumps(share)), "sharegpt") == load_examples(p)
    with pytest.raises(DataError, match="format 'sharegpt'"):
        load_examples(lines, "sharegpt")
    with pytest.raises(DataError, match="unknown data format 'csv': use auto, prompt, messages, alpaca, sharegpt"):
        load_examples(lines, "csv")


BAD = [
    ("empty.jsonl", "", "empty"),
    ("bad.jsonl", '{"prompt": "a", "response": "b"}\n{"prompt": "a", \n', ":2: malformed JSON"),
    ("notobj.jsonl", '"a"\n', ":1: each example must be a JSON object"),
    ("notobj.json", '["a", "b"]\n', ": item 1: each example must be a JSON object"),
    ("badarray.json", '[{"prompt": "a", "response": "b"},\n {"prompt": "a", }]', "malformed JSON (Expecting property name"
     " enclosed in double quotes at line 2"),
    ("alpaca.json", '[{"instruction": "a", "input": "", "output": "b"}, {"instruction": "a"}]',
     "item 2: missing key(s) output"),
    ("alpacaempty.jsonl", '{"instruction": "a", "output": " "}\n', ":1: output is empty"),
    ("alpacahist.jsonl", '{"instruction": "a", "output": "b", "history": [["q"]]}\n', "history item 1: must be a pair"),
    ("sharegpt.jsonl", '{"conversations": [{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}]}\n',
     "turn 2: unknown speaker 'bot'"),
    ("sharegptlast.jsonl", '{"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "b"}]}\n',
     "last message must be the assistant"),
    ("sharegptnone.jsonl", '{"conversations": [{"from": "gpt", "value": "a"}]}\n', ":1: no user message"),
    ("manyturns.jsonl", json.dumps({"messages": [{"role": "user", "content": "a"}] * 1000
                                    + [{"role": "assistant", "content": "b"}]}) + "\n",
     ":1: 1,001 messages; one example may have at most 1,000"),
    ("longhistory.json", json.dumps([{"instruction": "a", "output": "b", "history": [["q", "a"]] * 501}]),
     "item 1: 501 history pairs; one example may have at most 500"),
    ("longconv.jsonl", json.dumps({"conversations": [{"from": "human", "value": "a"}] * 1001}) + "\n",
     ":1: 1,001 conversations"),
    ("bigitem.json", json.dumps([{"prompt": "a" * 600_000, "response": "b" * 600_000}]),
     "item 1: the example's texts are 1,200,000 characters; one example may have at most 1,048,576"),
    ("missing.jsonl", '{"prompt": "a", "response": "b"}\n{"prompt": "a"}\n', ":2: missing key(s) response"),
    ("extra.jsonl", '{"prompt": "a", "response": "b", "x": 1}\n', "unexpected key(s) x"),
    ("manykeys.jsonl", json.dumps({"prompt": "a", "response": "b", **{f"k{i:06}": 0 for i in range(50_000)}}) + "\n",
     "unexpected key(s) k000000, k000001, k000002, k000003, k000004, k000005, k000006, k000007, k000008, k000009 "
     "and 49,990 more (format 'prompt'"),
    ("emptyfield.jsonl", '{"prompt": "  ", "response": "b"}\n', "prompt is empty"),
    ("nonstr.jsonl", '{"prompt": 3, "response": "b"}\n', "prompt must be a string"),
    ("role.jsonl", '{"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}\n',
     "unknown role 'bot'"),
    ("last.jsonl", '{"messages": [{"role": "user", "content": "a"}]}\n', "last message must be the assistant"),
    ("unknownfmt.jsonl", '{"question": "a"}\n', "cannot tell the format"),
]


@pytest.mark.parametrize("name,content,msg", BAD, ids=[b[0] for b in BAD])
def test_bad_data(tmp_path, name, content, msg):
    p = _write(tmp_path, name, content)
    with pytest.raises(DataError) as e:
        load_examples(p)
    assert msg in str(e.value) and name in str(e.value)


def test_files_of_too_many_examples_are_refused(tmp_path):
    """An 8 MB file of tiny examples (a red team's preview: seconds of CPU and GBs each) stops at MAX_EXAMPLES."""
    from pipeline.data import MAX_EXAMPLES
    line = '{"prompt": "a", "response": "b"}\n'
    ok = _write(tmp_path, "ok.jsonl", line * MAX_EXAMPLES)
    assert len(load_examples(ok)) == MAX_EXAMPLES
    with pytest.raises(DataError, match=f"more than {MAX_EXAMPLES:,} examples"):
        load_examples(_write(tmp_path, "many.jsonl", line * (MAX_EXAMPLES + 1)))


def test_bad_files(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_examples(tmp_path / "nope.jsonl")
    p = _write(tmp_path, "latin1.jsonl", '{"prompt": "caf\xe9", "response": "b"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.jsonl:1: not UTF-8"):
        load_examples(p)
    with pytest.raises(DataError, match="format 'prompt'"):
        load_examples(_write(tmp_path, "m.jsonl", '{"messages": []}\n'), "prompt")


def test_templates():
    check_template("Q: {prompt}\nA: {response}")
    check_template("{{literal}} {prompt} {response}")
    with pytest.raises(DataError, match=r"\{foo\}"):
        check_template("{prompt} {foo} {response}")
    with pytest.raises(DataError, match=r"\{response\}"):
        check_template("{prompt}")
    with pytest.raises(DataError):
        check_template("{prompt {response}")


@pytest.fixture(scope="module")
def phi3(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("m") / "phi3", "phi3")


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("m") / "llama", "llama")


def test_render_and_calibration(phi3, tmp_path):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(phi3)
    ex = _examples(TRAVEL, 4)
    full = render_text(ex[0], tok)
    prompt = render_prompt(ex[0], tok)
    assert full.startswith(prompt) and "Two streets north" in full[len(prompt):]
    assert prompt.endswith("<|assistant|>\n")
    t = "Q: {prompt} {{x}}\nA: {response}"
    assert render_text(ex[0], tok, t) == "Q: Where is the station? {x}\nA: Two streets north of the harbour."
    assert render_prompt(ex[0], tok, t) == "Q: Where is the station? {x}\nA: "
    c1 = calibration_texts(ex, tok, "", 3)
    assert c1 == calibration_texts(ex, tok, "", 3) and len(c1) == 3
    assert len(calibration_texts(ex, tok, "", 9)) == 9
    p = _write(tmp_path, "f.txt", "abc")
    assert file_sha256(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_target_modules(phi3, llama):
    assert check_target_modules(phi3, ["qkv_proj", "o_proj"])
    with pytest.raises(DataError) as e:
        check_target_modules(phi3, ["q_proj", "v_proj"])
    assert "q_proj" in str(e.value) and "qkv_proj" in str(e.value)
    assert check_target_modules(llama, ["q_proj", "v_proj"])


def test_auto_target_modules(phi3, llama):
    from pipeline.data import resolve_target_modules
    assert resolve_target_modules(phi3, ["auto"]) == ["qkv_proj", "o_proj"]
    assert resolve_target_modules(llama, ["auto"]) == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert resolve_target_modules(llama, ["q_proj", "v_proj"]) == ["q_proj", "v_proj"]
    with pytest.raises(DataError, match="foo"):
        resolve_target_modules(llama, ["foo"])


def test_hub_errors(tmp_path, monkeypatch):
    from pipeline.hub import resolve_model
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="model folder does not exist"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="model folder does not exist"):
        resolve_model("./no-such-model-folder")
    with pytest.raises(DataError, match="no Hugging Face Hub was reachable|no such model"):
        resolve_model("someone/no-such-model-xyz")


# ---- pipeline on Phi3 ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tok(phi3):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(phi3)


def _prompt_ids(tok, question="Where is the station?"):
    text = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                   tokenize=False)
    return tok(text, add_special_tokens=False)["input_ids"]


def _hf_greedy(model, ids, n=N_NEW):
    import torch
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return out[0, len(ids):].tolist()


def _og_forced_top1(model, ids, target) -> int:
    """Steps where the og model's top-1 next token is target's, feeding target one token at a time."""
    import numpy as np
    import onnxruntime_genai as og
    p = og.GeneratorParams(model)
    p.set_search_options(max_length=len(ids) + len(target) + 1, do_sample=False)
    g = og.Generator(model, p)
    g.append_tokens(ids)
    hits = 0
    for t in target:
        logits = np.asarray(g.get_logits())
        hits += int(np.argmax(logits.reshape(-1, logits.shape[-1])[-1]) == t)
        g.append_tokens([t])
    return hits


def _og_greedy(model, ids, adapters=None, name=None, n=N_NEW):
    import onnxruntime_genai as og
    p = og.GeneratorParams(model)
    p.set_search_options(max_length=len(ids) + n, min_length=len(ids) + n, do_sample=False)
    g = og.Generator(model, p)
    if name:
        g.set_active_adapter(adapters, name)
    g.append_tokens(ids)
    out = []
    while not g.is_done():
        g.generate_next_token()
        out.append(int(g.get_next_tokens()[0]))
    return out


@pytest.fixture(scope="module")
def awq_phi3(phi3, tok, tmp_path_factory):
    out = tmp_path_factory.mktemp("awq") / "phi3"
    texts = calibration_texts(_examples(TRAVEL), tok, "", 4)
    log = Rec()
    from pipeline.stage_awq import run_awq
    res = run_awq(phi3, out, AWQConfig(device="cpu", group_size=64, calib_samples=4, calib_seq_len=64),
                  texts, log)
    return out, res, log


def test_awq_cpu(phi3, awq_phi3, tok):
    import torch
    from transformers import AutoModelForCausalLM
    out, res, log = awq_phi3
    assert res["device"] == "cpu" and "skipped" not in res
    cfg = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in cfg
    m0 = AutoModelForCausalLM.from_pretrained(phi3).eval()
    m1 = AutoModelForCausalLM.from_pretrained(out).eval()
    assert next(m1.parameters()).dtype == torch.float32
    ids = _prompt_ids(tok)
    seq = torch.tensor([ids + _hf_greedy(m0, ids)])
    with torch.no_grad():
        l0, l1 = m0(seq).logits[0], m1(seq).logits[0]
    cos = torch.nn.functional.cosine_similarity(l0.flatten(), l1.flatten(), 0).item()
    agree = (l0.argmax(-1) == l1.argmax(-1)).float().mean().item()
    print(f"\nAWQ: logits cosine {cos:.4f}, teacher-forced top-1 agreement {agree:.2%}")
    # random-weight tiny models have flat logits: 4-bit clipping moves many argmaxes; real models
    # keep far more (stack.md: identical greedy outputs on hidden-512 models)
    assert cos > 0.9 and agree > 0.3
    assert not torch.equal(l0, l1)  # AWQ did change the weights (clipping)


def test_awq_skip(phi3, tmp_path, monkeypatch):
    from pipeline.stage_awq import run_awq
    log = Rec()
    res = run_awq(phi3, tmp_path / "o", AWQConfig(enabled=False), [], log)
    assert "skipped" in res and (tmp_path / "o" / "model.safetensors").is_file()
    assert any("disabled" in f["message"] for f in log.of("log"))
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA, also on a GPU host
    log = Rec()
    res = run_awq(phi3, tmp_path / "o2", AWQConfig(device="auto"), ["x"], log)
    assert "no CUDA" in res["skipped"] and (tmp_path / "o2" / "config.json").is_file()


def _finetune(model_dir, pairs, r, targets, out, tok, steps=12):
    from pipeline.stage_finetune import run_finetune
    exs = _examples(pairs, 16)
    texts = [render_text(e, tok) for e in exs]
    log = Rec()
    cfg = LoRAConfig(r=r, alpha=2 * r, dropout=0.0, target_modules=targets, max_steps=steps, batch_size=4,
                     learning_rate=2e-3, max_seq_len=64, eval_steps=6, seed=0)
    res = run_finetune(model_dir, texts, texts[:4], cfg, out, log)
    return res, log


@pytest.fixture(scope="module")
def adapters_phi3(awq_phi3, tok, tmp_path_factory):
    base = awq_phi3[0]
    d = tmp_path_factory.mktemp("ft")
    a = _finetune(base, TRAVEL, 8, ["qkv_proj", "o_proj"], d / "travel", tok)
    b = _finetune(base, PIRATE, 4, ["qkv_proj", "o_proj"], d / "pirate", tok)
    return {"travel": a, "pirate": b}


def test_finetune(adapters_phi3):
    for name, (res, log) in adapters_phi3.items():
        steps = log.of("step")
        assert len(steps) == res["steps"] == 12
        assert all({"step", "loss", "lr"} <= set(s) for s in steps)
        assert steps[-1]["loss"] < steps[0]["loss"], name
        assert log.of("eval") and res["eval_loss"] is not None
        peft = Path(res["peft_dir"])
        assert (peft / "adapter_config.json").is_file() and (peft / "adapter_model.safetensors").is_file()
    cfg = json.loads((Path(adapters_phi3["pirate"][0]["peft_dir"]) / "adapter_config.json").read_text())
    assert cfg["r"] == 4


def test_qlora_is_refused():
    """QLoRA was taken out (the adapter trains on the served model's prepared float weights): a recipe asking
    for it gets a clear refusal; old recipes that say `qlora: false` still load."""
    from pipeline.recipe import Recipe, RecipeError
    with pytest.raises(RecipeError, match="QLoRA is not supported"):
        Recipe.from_dict({"lora": {"qlora": True}})
    assert Recipe.from_dict({"lora": {"qlora": "false"}}).lora.r == Recipe().lora.r


def _attn_counts(onnx_file, layer):
    """{kind: count} of the attention nodes of one layer: LoRA A/B MatMuls and base projections."""
    import onnx
    g = onnx.load(str(onnx_file), load_external_data=False).graph
    pre = f"/model/layers.{layer}/attn/"
    res = {}
    for n in g.node:
        if not n.name.startswith(pre):
            continue
        part = n.name[len(pre):]
        proj = part.split("/")[0]
        if "/lora_A/" in part or "/lora_B/" in part:
            kind = f"{proj}.lora_{'A' if '/lora_A/' in part else 'B'}.{n.op_type}"
        elif n.op_type in ("MatMul", "MatMulNBits") and "/lora" not in part:
            kind = f"{proj}.base.{n.op_type}"
        elif n.op_type == "GroupQueryAttention":
            kind = "gqa_inputs_kv_empty" if list(n.input[1:3]) == ["", ""] else "gqa_unpacked"
        else:
            continue
        res[kind] = res.get(kind, 0) + 1
    return res


def _assert_fused_graph(onnx_file, base_op, layers=2):
    for i in range(layers):
        c = _attn_counts(onnx_file, i)
        want = {"qkv_proj.lora_A.MatMul": 1, "qkv_proj.lora_B.MatMul": 1, f"qkv_proj.base.{base_op}": 1,
                "o_proj.lora_A.MatMul": 1, "o_proj.lora_B.MatMul": 1, f"o_proj.base.{base_op}": 1,
                "gqa_inputs_kv_empty": 1}
        assert c == want, (i, c)


def _build(hf_dir, peft_dir, precision, out):
    from pipeline.stage_onnx import build_onnx
    log = Rec()
    res = build_onnx(hf_dir, peft_dir, OnnxConfig(precision=precision, block_size=32, accuracy_level=4),
                     "cpu", out, log)
    return res


@pytest.fixture(scope="module")
def onnx_fp32(awq_phi3, adapters_phi3, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "phi3-fp32"
    return out, _build(awq_phi3[0], adapters_phi3["travel"][0]["peft_dir"], "fp32", out)


def test_rows_layout_checks(onnx_fp32):
    """The per-row rewrite refuses graphs it does not fit: applied twice, or a LoRA input that feeds
    anything but a MatMul weight."""
    import onnx

    from pipeline import lora_layout as LL
    out, _ = onnx_fp32
    m = onnx.load(str(out / "model.onnx"), load_external_data=False)
    with pytest.raises(LL.LayoutError, match="already has the rows layout"):
        LL.add_rows(m)
    name = next(i.name for i in m.graph.input if LL.is_lora_input(i.name))
    m.graph.node.append(onnx.helper.make_node("Identity", [name], ["x"], name="odd"))
    with pytest.raises(LL.LayoutError, match="feeds Identity odd"):
        LL.add_rows(m)


def test_onnx_fp32_base_and_adapters(awq_phi3, adapters_phi3, onnx_fp32, tok, tmp_path):
    import onnxruntime_genai as og
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from pipeline.stage_adapter import convert_adapter
    out, res = onnx_fp32
    assert (out / "genai_config.json").is_file() and (out / "tokenizer.json").is_file()
    assert res["lora_layout"] == "fused_qkv"
    assert len(res["lora_inputs"]) == 2 * 2 * 2  # layers x qkv/o x A/B
    # rows layout: a leading per-row dim (an adapter is one row; compare stacks two)
    assert res["lora_rows"] and all(d[0] == "lora_rows" for d in res["lora_inputs"].values())
    assert res["lora_inputs"]["model.layers.0.attn.qkv_proj.lora_B.MatMul.weight"] == \
        ["lora_rows", "lora_r", 128 + 2 * 64]
    assert res["lora_inputs"]["model.layers.0.attn.qkv_proj.lora_A.MatMul.weight"] == ["lora_rows", 128, "lora_r"]
    assert not any(".q_proj." in n or ".k_proj." in n for n in res["lora_inputs"])
    _assert_fused_graph(out / "model.onnx", "MatMul")
    assert not list(out.glob("*.onnx_adapter"))
    base_dir = awq_phi3[0]
    ids = _prompt_ids(tok)
    model = og.Model(str(out))
    # the genai tokenizer agrees with the HF one
    text = tok.apply_chat_template([{"role": "user", "content": "Where is the station?"}],
                                   add_generation_prompt=True, tokenize=False)
    assert list(og.Tokenizer(model).encode(text)) == ids

    hf_base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    want_base = _hf_greedy(hf_base, ids)
    got_base = _og_greedy(model, ids)
    assert got_base == want_base, (got_base, want_base)

    adapters = og.Adapters(model)
    want = {}
    for name, (ft, _) in adapters_phi3.items():
        info = convert_adapter(ft["peft_dir"], out, tmp_path / f"{name}.onnx_adapter")
        adapters.load(info["file"], name)
        pm = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), ft["peft_dir"]).eval()
        want[name] = _hf_greedy(pm, ids)
    assert want["travel"] != want["pirate"] or want["travel"] != want_base
    assert info["lora_layout"] == "fused_qkv" and info["tensors"] == 8
    # interleaved: both adapters from one og.Model, chosen per generator
    for name in ["travel", "pirate", "travel"]:
        got = _og_greedy(model, ids, adapters, name)
        assert got == want[name], (name, got, want[name])
    assert _og_greedy(model, ids) == want_base  # no adapter set -> base again


def test_fused_partial_adapters(awq_phi3, onnx_fp32, tok, tmp_path):
    """Adapters that lack a module (qkv only / o only) get zeros in the other slots; == PEFT."""
    import onnxruntime_genai as og
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from pipeline.stage_adapter import convert_adapter
    out, _ = onnx_fp32
    base_dir = awq_phi3[0]
    ids = _prompt_ids(tok)
    model = og.Model(str(out))
    adapters = og.Adapters(model)
    base = _og_greedy(model, ids)
    for name, targets, r in (("qkv", ["qkv_proj"], 4), ("o", ["o_proj"], 8)):
        peft_dir = make_random_peft(base_dir, tmp_path / name, r, targets, seed=len(name))
        info = convert_adapter(peft_dir, out, tmp_path / f"{name}.onnx_adapter")
        assert info["tensors"] == 8
        adapters.load(info["file"], name)
        pm = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), peft_dir).eval()
        want = _hf_greedy(pm, ids)
        got = _og_greedy(model, ids, adapters, name)
        assert got == want and got != base, (name, got, want, base)


def test_builder_layout_phi3(awq_phi3, adapters_phi3, onnx_fp32, tok, tmp_path):
    """A Phi3 base in the genai builder's layout (bases published before fused_qkv) still takes
    adapters, and gives the same tokens as the fused base."""
    import onnxruntime_genai as og

    from pipeline.stage_adapter import convert_adapter
    from pipeline.stage_onnx import build_onnx
    out = tmp_path / "builder"
    res = build_onnx(awq_phi3[0], adapters_phi3["travel"][0]["peft_dir"], OnnxConfig(precision="fp32"), "cpu",
                     out, Rec(), lora_layout="builder")
    assert res["lora_layout"] == "builder" and len(res["lora_inputs"]) == 2 * 4 * 2
    assert _attn_counts(out / "model.onnx", 0)["gqa_unpacked"] == 1
    ids = _prompt_ids(tok)
    fused = og.Model(str(onnx_fp32[0]))
    split = og.Model(str(out))
    fa, sa = og.Adapters(fused), og.Adapters(split)
    assert _og_greedy(split, ids) == _og_greedy(fused, ids)
    for name, (ft, _) in adapters_phi3.items():
        si = convert_adapter(ft["peft_dir"], out, tmp_path / f"s-{name}.onnx_adapter")
        fi = convert_adapter(ft["peft_dir"], onnx_fp32[0], tmp_path / f"f-{name}.onnx_adapter")
        assert si["lora_layout"] == "builder" and si["tensors"] == 16
        sa.load(si["file"], name)
        fa.load(fi["file"], name)
        assert _og_greedy(split, ids, sa, name) == _og_greedy(fused, ids, fa, name)


def test_adapter_tensors_both_layouts(adapters_phi3):
    """The fused names are the builder names mapped by lora_layout.fuse_adapter_tensors."""
    from pipeline.lora_layout import fuse_adapter_tensors
    from pipeline.stage_adapter import peft_to_tensors
    peft_dir = adapters_phi3["travel"][0]["peft_dir"]
    split, _ = peft_to_tensors(peft_dir, 128, 64, "builder")
    fused, acfg = peft_to_tensors(peft_dir, None, None, "fused_qkv")
    assert len(split) == 2 * 4 * 2 and len(fused) == 2 * 2 * 2
    mapped = fuse_adapter_tensors(split)
    assert sorted(mapped) == sorted(fused)
    for k in fused:
        assert np.array_equal(mapped[k], fused[k]), k
    b = fused["model.layers.1.attn.qkv_proj.lora_B.MatMul.weight"]
    assert b.shape == (acfg["r"], 256)


def test_adapter_mismatch(llama, onnx_fp32, tmp_path, tok):
    from pipeline.stage_adapter import AdapterError, convert_adapter
    from transformers import AutoTokenizer
    ltok = AutoTokenizer.from_pretrained(llama)
    ft, _ = _finetune(llama, TRAVEL, 4, ["q_proj", "v_proj", "up_proj"], tmp_path / "ft", ltok, steps=2)
    with pytest.raises(AdapterError, match="ONNX slots do not have|does not fit"):
        convert_adapter(ft["peft_dir"], onnx_fp32[0], tmp_path / "x.onnx_adapter")
    # separate q/v LoRAs (Llama) cannot go into a fused qkv slot
    qv = make_random_peft(llama, tmp_path / "qv", 4, ["q_proj", "v_proj"])
    with pytest.raises(AdapterError, match="packs q/k/v into one qkv_proj slot"):
        convert_adapter(qv, onnx_fp32[0], tmp_path / "y.onnx_adapter")


def test_onnx_int4(awq_phi3, adapters_phi3, tok, tmp_path):
    import onnx
    import onnxruntime_genai as og
    from transformers import AutoModelForCausalLM

    from pipeline.stage_adapter import convert_adapter
    out = tmp_path / "phi3-int4"
    res = _build(awq_phi3[0], adapters_phi3["travel"][0]["peft_dir"], "int4", out)
    g = onnx.load(str(out / "model.onnx"), load_external_data=False)
    ops = {n.op_type for n in g.graph.node}
    assert "MatMulNBits" in ops
    lora_mm = [n for n in g.graph.node if "/lora_" in n.name and n.name.endswith("MatMul")]
    assert lora_mm and all(n.op_type == "MatMul" for n in lora_mm)  # slots stayed float
    assert res["lora_layout"] == "fused_qkv" and len(res["lora_inputs"]) == 8
    assert len(lora_mm) == 2 * 4  # per layer: qkv A, qkv B, o A, o B
    _assert_fused_graph(out / "model.onnx", "MatMulNBits")
    ids = _prompt_ids(tok)
    model = og.Model(str(out))
    adapters = og.Adapters(model)
    base = _og_greedy(model, ids)
    want = _hf_greedy(AutoModelForCausalLM.from_pretrained(awq_phi3[0]).eval(), ids)
    match = sum(a == b for a, b in zip(base, want))
    print(f"\nint4 base vs PyTorch float: {match}/{N_NEW} greedy tokens equal")
    # free-running greedy drifts at once on this random tiny model (its logits are nearly flat); the
    # per-step figure: teacher-forced on the float model's answer, how often int4's top-1 is the same token
    forced = _og_forced_top1(model, ids, want)
    print(f"int4 base vs PyTorch float, teacher-forced top-1: {forced}/{N_NEW}")
    assert forced >= N_NEW // 4, (forced, base, want)  # measured 8/16 (a random guess: ~1/vocab)
    outs = {}
    for name, (ft, _) in adapters_phi3.items():
        adapters.load(convert_adapter(ft["peft_dir"], out, tmp_path / f"{name}.onnx_adapter")["file"], name)
        outs[name] = _og_greedy(model, ids, adapters, name)
        print(f"int4 + {name}: {outs[name]}")
    assert outs["travel"] != base or outs["pirate"] != base
    assert outs["travel"] != outs["pirate"]


def test_llama_fp32(llama, tmp_path):
    import onnxruntime_genai as og
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.stage_adapter import convert_adapter
    ltok = AutoTokenizer.from_pretrained(llama)
    ft, log = _finetune(llama, PIRATE, 8, ["q_proj", "v_proj"], tmp_path / "ft", ltok)
    assert log.of("step")[-1]["loss"] < log.of("step")[0]["loss"]
    res = _build(llama, ft["peft_dir"], "fp32", tmp_path / "onnx")
    assert res["lora_layout"] == "builder"  # separate q/k/v projections keep the builder's layout
    assert any(".q_proj.lora_A" in n for n in res["lora_inputs"])
    ids = _prompt_ids(ltok)
    model = og.Model(str(tmp_path / "onnx"))
    assert _og_greedy(model, ids) == _hf_greedy(AutoModelForCausalLM.from_pretrained(llama).eval(), ids)
    adapters = og.Adapters(model)
    adapters.load(convert_adapter(ft["peft_dir"], tmp_path / "onnx", tmp_path / "a.onnx_adapter")["file"], "p")
    pm = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(llama), ft["peft_dir"]).eval()
    assert _og_greedy(model, ids, adapters, "p") == _hf_greedy(pm, ids)


def test_publish_and_fingerprint(phi3, tmp_path):
    from artifacts import publish
    from pipeline.stage_adapter import model_fingerprint
    fp = model_fingerprint(phi3)
    assert len(fp) == 64 and fp == model_fingerprint(phi3)
    final = tmp_path / "adapters" / "x"
    src = tmp_path / "work1"
    src.mkdir()
    (src / "a.txt").write_text("one")
    publish(src, final)
    assert (final / "a.txt").read_text() == "one"
    src2 = tmp_path / "adapters" / "x.build"
    src2.mkdir()
    (src2 / "b.txt").write_text("two")
    publish(src2, final)
    assert (final / "b.txt").read_text() == "two" and not (final / "a.txt").exists()
    # the replaced version is kept as x.previous (one generation), nothing else is left behind
    assert sorted(p.name for p in final.parent.iterdir()) == ["x", "x.previous"]
    assert (final.parent / "x.previous" / "a.txt").read_text() == "one"


def test_fingerprint_memo_skips_unchanged_and_sees_changes(phi3, tmp_path):
    import shutil

    from pipeline.stage_adapter import model_fingerprint
    model = tmp_path / "m"
    shutil.copytree(phi3, model)
    memo = tmp_path / "fingerprints.json"
    fp = model_fingerprint(model, memo=memo)
    assert fp == model_fingerprint(model) and json.loads(memo.read_text())[str(model.resolve())]["sha256"] == fp
    assert model_fingerprint(model, memo=memo) == fp  # from the memo
    cfg = json.loads((model / "config.json").read_text())
    cfg["note"] = "changed"
    (model / "config.json").write_text(json.dumps(cfg))
    changed = model_fingerprint(model, memo=memo)
    assert changed != fp and changed == model_fingerprint(model)

"""The real app (`python app.py`) in a subprocess, driven through its API with gradio_client.

The app runs on a temporary workspace (STUDIO_HOME) holding copies of the ONNX base and adapters and
links to models/default-hf and data/, so nothing here writes into the repository (tests/app_helpers.py:
the workspace, start/stop, the `app` fixture; environment overrides APP_TEST_SOURCE, APP_TEST_BASE,
APP_TEST_ADAPTERS)."""
from __future__ import annotations

import json
import os
import sys
import time
import uuid

import pytest

from app_helpers import ADAPTERS, BASE, MAX_NEW, PROMPT, ROOT, app, chat, last_answer  # noqa: F401

pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def engine(app):
    """The engine used directly on the same files, for reference outputs."""
    sys.path.insert(0, str(ROOT))
    from engine.chat import ChatEngine
    eng = ChatEngine(app["ws"] / "models" / BASE, app["ws"] / "adapters", provider="cpu")
    yield eng
    eng.close()


def reference(engine, variant, prompt=PROMPT) -> str:
    from engine.chat import SamplingParams
    p = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=MAX_NEW, repetition_penalty=1.0,
                       seed=0)
    text, _ = engine.generate([{"role": "user", "content": prompt}], variant, p)
    return text


def reference_compare(engine, a, b, prompt=PROMPT) -> tuple[str, str]:
    from engine.chat import SamplingParams
    p = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=MAX_NEW, repetition_penalty=1.0,
                       seed=0)
    ta, tb, _, _ = list(engine.compare([{"role": "user", "content": prompt}], a, b, p))[-1]
    return ta, tb


def test_api_names(app):
    api = app["client"].view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name in ("/chat", "/clear_chat", "/refresh_pickers", "/start_build", "/cancel_build",
                 "/resume_build", "/build_recipe", "/job_summary", "/preview_data", "/library",
                 "/delete_adapter"):
        assert name in api, sorted(api)


def test_pickers_list_base_and_adapters(app):
    base, variant, variant_b, refused = app["client"].predict(BASE, "base", "base", api_name="/refresh_pickers")
    assert base["value"] == BASE
    names = [c[0] for c in variant["choices"]]
    assert names[0] == "base" and set(ADAPTERS) <= set(names), names


def test_chat_greedy_matches_engine_and_adapters_differ(app, engine):
    client = app["client"]
    answers = {}
    for variant in ["base"] + ADAPTERS:
        hist, other, box, stats = chat(client, PROMPT, variant)
        answers[variant] = last_answer(hist)
        assert box == "" and other == []
        assert variant in stats and "tokens/s" in stats and "TTFT" in stats, stats
        assert answers[variant].strip(), f"{variant}: empty answer"
        assert answers[variant] == reference(engine, variant), variant
    for a in ADAPTERS:
        assert answers[a] != answers["base"], f"{a} answers like the base"
    assert len(set(answers.values())) == len(answers), answers


def test_chat_keeps_history(app):
    hist, _, _, _ = chat(app["client"], "Hello!", ADAPTERS[0])
    hist2, _, _, stats = chat(app["client"], "And tomorrow?", ADAPTERS[0], history=hist)
    assert len(hist2) == 4 and [m["role"] for m in hist2] == ["user", "assistant"] * 2
    assert "error" not in stats


def test_compare_returns_both_answers(app, engine):
    a, b = ADAPTERS[0], ADAPTERS[-1] if len(ADAPTERS) > 1 else "base"
    hist_a, hist_b, box, stats = chat(app["client"], PROMPT, a, compare=True, variant_b=b)
    ta, tb = last_answer(hist_a), last_answer(hist_b)
    assert (ta, tb) == reference_compare(engine, a, b)
    # compare runs both as one batch of 2: the same answers as alone, up to the float rounding of
    # batched kernels (onnxruntime's int4 CPU kernels round a batch of 2 differently from a batch of
    # 1; on this tiny over-confident model a greedy near-tie flips after ~90 tokens)
    assert ta[:60] == reference(engine, a)[:60] and tb[:60] == reference(engine, b)[:60]
    assert ta != tb
    assert a in stats and b in stats and "compare: one batch of 2" in stats


def test_sampling_with_seed_is_reproducible(app):
    h1, *_ = chat(app["client"], PROMPT, ADAPTERS[0], temperature=0.9, seed=7)
    h2, *_ = chat(app["client"], PROMPT, ADAPTERS[0], temperature=0.9, seed=7)
    assert last_answer(h1) == last_answer(h2)


@pytest.mark.parametrize("message,variant,base,expect", [
    ("hello", "no-such-adapter", BASE, "unknown adapter 'no-such-adapter'"),
    ("   ", "base", BASE, "empty message"),
    ("hello", "base", "no-such-base", "unknown base model 'no-such-base'"),
    ("hello", "base", "", "no ONNX base model in models"),  # named relative to the workspace (red team)
])
def test_bad_requests_give_readable_errors(app, message, variant, base, expect):
    hist, other, box, stats = chat(app["client"], message, variant, base=base)
    assert hist == [] and other == []
    assert stats.startswith("⚠ error:") and expect in stats, stats
    assert "Traceback" not in stats and str(app["ws"].resolve()) not in stats


def test_library_lists_base_and_adapters(app):
    bases, adapters, names, confirm = app["client"].predict(api_name="/library")
    assert BASE in [r[0] for r in bases["data"]]
    assert set(ADAPTERS) <= {r[0] for r in adapters["data"]}


def test_build_from_api_then_chat_without_restart(app):
    """A tiny build (few steps, no AWQ, CPU) started through the API; its adapter then answers."""
    client, ws = app["client"], app["ws"]
    if not (ws / "models" / "default-hf" / "config.json").exists():
        pytest.fail("models/default-hf missing")
    name = f"uitest-{uuid.uuid4().hex[:8]}"
    repo_adapters = set(os.listdir(ROOT / "adapters")) if (ROOT / "adapters").exists() else set()
    r = client.predict({"adapter_name": name, "train_file": "data/travel/train.jsonl",
                        "eval_file": "data/travel/test.jsonl",
                        "awq": {"enabled": False}, "lora.max_steps": 4, "lora.eval_steps": 2,
                        "lora.batch_size": 4, "lora.max_seq_len": 128,
                        "onnx": {"precision": "int4", "execution_provider": "cpu"}},
                       api_name="/build_recipe")
    assert r["ok"], r
    job = r["job_id"]
    assert "--lora.max_steps 4" in r["command"]
    # a second build while this one runs is refused with a message
    r2 = client.predict({"adapter_name": name + "-2"}, api_name="/build_recipe")
    assert not r2["ok"] and "running" in r2["error"]
    t0 = time.time()
    while True:
        s = client.predict(job, api_name="/job_summary")
        if s["status"] not in ("running", "pending"):
            break
        assert time.time() - t0 < 1200, s
        time.sleep(2)
    assert s["status"] == "ok", s
    assert s["steps"], "no training steps were reported"
    base, adapter = s["result"]["base"], s["result"]["adapter"]
    assert adapter == name
    assert (ws / "adapters" / name / "metadata.json").exists()
    # what the build records and shows names no server folder (red team 2026-12-06: the eval source, the
    # recipe's data files and the replaced adapter's path named the server's workspace)
    meta = (ws / "adapters" / name / "metadata.json").read_text()
    shown = json.dumps(s) + meta + str(client.predict(name, api_name="/adapter_eval"))
    assert str(ws.resolve()) not in shown and str(ROOT) not in shown, shown[:3000]
    assert json.loads(meta)["dataset"]["eval_source"] == "data/travel/test.jsonl"
    # ... nor does the log every open page polls, nor the recipe the form is filled from (third red-team pass:
    # "model <workspace>/models/default-hf" in the log; the recipe's paths absolute because models/default-hf
    # and data/ are links here)
    events = [json.loads(x) for x in (ws / "runs" / job / "events.jsonl").read_text().splitlines() if x.strip()]
    logged = "\n".join(e.get("message", "") for e in events if e.get("type") == "log")
    assert "model models/default-hf;" in logged and str(ws.resolve()) not in logged, logged[:2000]
    recipe = client.predict(job, api_name="/job_recipe")
    assert recipe["fields"]["base_model"] == "models/default-hf", recipe
    assert recipe["fields"]["train_file"] == "data/travel/train.jsonl", recipe
    assert not (ROOT / "adapters" / name).exists()
    assert (set(os.listdir(ROOT / "adapters")) if (ROOT / "adapters").exists() else set()) == repo_adapters
    # the pickers see it without a restart
    _, variant, _, _ = client.predict(base, "base", "base", api_name="/refresh_pickers")
    assert name in [c[0] for c in variant["choices"]]
    hist, _, _, stats = chat(client, PROMPT, name, base=base)
    assert last_answer(hist).strip() and name in stats, stats
    # the library shows it; delete needs the confirmation, then it is gone from the chat too
    _, adapters, _, _ = client.predict(api_name="/library")
    assert name in [row[0] for row in adapters["data"]]
    out = client.predict(name, False, api_name="/delete_adapter")
    assert "confirmation" in out[-1] and (ws / "adapters" / name).exists()
    out = client.predict(name, True, api_name="/delete_adapter")
    assert "deleted" in out[-1] and not (ws / "adapters" / name).exists()
    _, _, _, stats = chat(client, PROMPT, name, base=base)
    assert "unknown adapter" in stats, stats


def test_build_with_bad_recipe_is_refused(app):
    bad = app["ws"] / "data" / "README.md"  # a file that is not training data, inside the linked data/
    r = app["client"].predict({"train_file": "data/README.md"}, api_name="/build_recipe")
    assert not r["ok"] and "bad data file: data/README.md:1" in r["error"], r
    assert str(bad.resolve().parent) not in r["error"] and str(app["ws"].resolve()) not in r["error"], r
    r = app["client"].predict({"lora": {"r": 0}}, api_name="/build_recipe")
    assert not r["ok"] and "lora.r" in r["error"]
    r = app["client"].predict({"no_such_field": 1}, api_name="/build_recipe")
    assert not r["ok"] and "no_such_field" in r["error"]
    r = app["client"].predict({"train_file": "data/nope.jsonl"}, api_name="/build_recipe")
    assert not r["ok"] and "nope.jsonl" in r["error"]


def test_cancel_and_resume_errors_are_messages(app):
    assert "⚠" in app["client"].predict("no-such-job", api_name="/cancel_build")
    assert "⚠" in app["client"].predict("no-such-job", api_name="/resume_build")


def test_data_preview_validates_files(app):
    ok = app["client"].predict("data/travel/train.jsonl", "auto", "", "models/default-hf", False,
                               api_name="/preview_data")
    assert ok.startswith("✓") and "examples" in ok and "```" in ok, ok
    bad = app["ws"] / "uploads" / "bad.jsonl"
    bad.parent.mkdir(exist_ok=True)
    bad.write_text('{"prompt": "hi", "response": "yo"}\n{"prompt": "no answer"}\n')
    msg = app["client"].predict(str(bad), "auto", "", "models/default-hf", False, api_name="/preview_data")
    assert "bad data file" in msg and ":2" in msg and "response" in msg, msg
    msg = app["client"].predict("data/travel/train.jsonl", "auto", "{prompt} only", "models/default-hf", False,
                                api_name="/preview_data")
    assert "⚠" in msg and "{response}" in msg, msg


def test_page_names_no_server_path(app):
    """The page goes to whoever has the link: its config (raw HTTP, what a browser loads) names the workspace
    folders relative to it, never the server's absolute paths; the operator's terminal gets those."""
    import httpx
    cfg = httpx.get(f"http://127.0.0.1:{app['port']}/config", timeout=60).text
    ws = app["ws"].resolve()
    assert str(ws) not in cfg and str(ROOT) not in cfg
    assert f"workspace `{ws.name}` · models `models` · adapters `adapters`" in cfg
    assert f"workspace {ws}, models {ws / 'models'}" in app["log"].read_text()

"""The real app (`python app.py`) in a subprocess, driven through its API with gradio_client.

The app runs on a temporary workspace (STUDIO_HOME) holding copies of the ONNX base and adapters and
links to models/default-hf and data/, so nothing here writes into the repository.

Environment overrides (to run against other artifacts): APP_TEST_SOURCE (a folder with models/ and
adapters/, default: the repository), APP_TEST_BASE (default: "default"), APP_TEST_ADAPTERS
(comma-separated, default: "travel,pirate")."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path(os.environ.get("APP_TEST_SOURCE", ROOT))
BASE = os.environ.get("APP_TEST_BASE", "default")
ADAPTERS = [a for a in os.environ.get("APP_TEST_ADAPTERS", "travel,pirate").split(",") if a]
MAX_NEW = 24
PROMPT = "What should I pack for a weekend in Lisbon?"

pytestmark = pytest.mark.timeout(1800)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_workspace(root: Path) -> Path:
    """models/<BASE> and adapters/* copied (the app may write there), default-hf and data linked."""
    (root / "models").mkdir(parents=True)
    (root / "adapters").mkdir()
    src_base = SOURCE / "models" / BASE
    if not (src_base / "genai_config.json").exists():
        pytest.fail(f"no ONNX base at {src_base} (build it first: ./run.sh or python -m pipeline build)")
    shutil.copytree(src_base, root / "models" / BASE)
    for a in ADAPTERS:
        if not (SOURCE / "adapters" / a).is_dir():
            pytest.fail(f"adapter {a} missing in {SOURCE / 'adapters'}")
        shutil.copytree(SOURCE / "adapters" / a, root / "adapters" / a)
    for src in (SOURCE / "models" / "default-hf", ROOT / "models" / "default-hf"):
        if (src / "config.json").exists():
            os.symlink(src.resolve(), root / "models" / "default-hf")
            break
    os.symlink(ROOT / "data", root / "data")
    return root


def start_app(ws: Path, port: int, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, STUDIO_HOME=str(ws), PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=str(ws),
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    t0 = time.time()
    while time.time() - t0 < 180:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"app did not answer on {url} within 180 s:\n{log_path.read_text()[-3000:]}")


def stop_app(proc: subprocess.Popen, ws: Path) -> None:
    """Stops the app and any build job it left running in the temporary workspace."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    sys.path.insert(0, str(ROOT))
    from pipeline import jobs
    for d in sorted((ws / "runs").glob("*")) if (ws / "runs").exists() else []:
        if (d / "pid").exists():
            jobs.cancel(d)  # also reaps a job process that lingers after its job_end


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    ws = make_workspace(root / "ws")
    port = free_port()
    log_path = root / "app.log"
    proc = start_app(ws, port, log_path)
    from gradio_client import Client
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield {"client": client, "ws": ws, "port": port, "log": log_path, "proc": proc}
    stop_app(proc, ws)


@pytest.fixture(scope="module")
def engine(app):
    """The engine used directly on the same files, for reference outputs."""
    sys.path.insert(0, str(ROOT))
    from engine.chat import ChatEngine
    eng = ChatEngine(app["ws"] / "models" / BASE, app["ws"] / "adapters", provider="cpu")
    yield eng
    eng.close()


def text_of(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text") or ""
    return "".join(text_of(c) for c in content or [])


def chat(client, message, variant="base", base=BASE, compare=False, variant_b="base", history=None,
         temperature=0.0, max_new=MAX_NEW, seed=0):
    hist_a, hist_b, box, stats = client.predict(
        message, history or [], [], base, variant, variant_b, compare,
        temperature, 1.0, 0, max_new, 1.0, seed, api_name="/chat")
    return hist_a, hist_b, box, stats


def last_answer(hist) -> str:
    assert hist and hist[-1]["role"] == "assistant", hist
    return text_of(hist[-1]["content"])


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
])
def test_bad_requests_give_readable_errors(app, message, variant, base, expect):
    hist, other, box, stats = chat(app["client"], message, variant, base=base)
    assert hist == [] and other == []
    assert stats.startswith("⚠ error:") and expect in stats, stats
    assert "Traceback" not in stats


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

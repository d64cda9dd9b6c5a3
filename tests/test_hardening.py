"""Hardening: bad input through the CLI and the app's API (one shared case table), broken adapters,
crashes (kill -9 / resume / cancel, see bench/crash_test.py) and security (upload limits, safe names,
trust_remote_code, safetensors only, the Hub token never written anywhere).

Every bad-input case runs twice: `python -m pipeline build ...` (exit 2, the message on stderr, no
traceback, no job folder) and the launched app's /build_recipe (and /preview_data for data files)."""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.timeout(1800)

FAKE_TOKEN = "hf_FAKEtokenHARDENING0123456789abcdef"
LIMIT_MB = 12  # STUDIO_MAX_UPLOAD_MB for the CLI and the app in these tests
GOOD = '{"prompt": "Where to go in May?", "response": "Lisbon: mild and sunny."}\n'


# ---------------------------------------------------------------- the shared case table
def _lines(*objs) -> bytes:
    return "".join(json.dumps(o) + "\n" for o in objs).encode()


DATA = {  # case id -> (file bytes, fragment of the message)
    "malformed-json": (GOOD.encode() + b'{"prompt": "a", "response": \n', "malformed JSON"),
    "empty-file": (b"", "empty"),
    "blank-lines-only": (b"\n  \n\n", "empty"),
    "latin-1": ('{"prompt": "Caf\u00e9?", "response": "Oui"}\n'.encode("latin-1"), "not UTF-8"),
    "utf-16-bom": (GOOD.encode("utf-16"), "UTF-16"),
    "10mb-line": (_lines({"prompt": "x" * 10_000_000, "response": "y"}), "MB long"),
    "oversized-file": (GOOD.encode() * (LIMIT_MB * 1_000_000 // len(GOOD) + 1000), "limit"),
    "missing-response": (_lines({"prompt": "hi"}), "missing key(s) response"),
    "extra-field": (_lines({"prompt": "hi", "response": "yo", "score": 3}), "unexpected key(s) score"),
    "non-string-prompt": (_lines({"prompt": 42, "response": "yo"}), "prompt must be a string"),
    "null-response": (_lines({"prompt": "hi", "response": None}), "response must be a string"),
    "empty-response": (_lines({"prompt": "hi", "response": "  "}), "response is empty"),
    "not-an-object": (b'["prompt", "response"]\n', "must be a JSON object"),
    "unknown-format": (_lines({"question": "hi", "answer": "yo"}), "cannot tell the format"),
    "wrong-role": (_lines({"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]}),
                   "unknown role"),
    "last-not-assistant": (_lines({"messages": [{"role": "user", "content": "hi"}]}),
                           "last message must be the assistant"),
    "messages-not-list": (_lines({"messages": "hi"}), "non-empty list"),
    "message-content-number": (_lines({"messages": [{"role": "user", "content": 1},
                                                    {"role": "assistant", "content": "yo"}]}),
                               "content must be a string"),
}

RECIPE = {  # case id -> (overrides, fragment)
    "r-zero": ({"lora.r": 0}, "lora.r"),
    "negative-lr": ({"lora.learning_rate": -0.001}, "learning_rate"),
    "steps-zero": ({"lora.max_steps": 0}, "max_steps"),
    "unknown-precision": ({"onnx.precision": "int3"}, "onnx.precision"),
    "block-size-7": ({"onnx.block_size": 7}, "block_size"),
    "bool-as-number": ({"lora.r": True}, "lora.r must be a number"),
    "float-steps": ({"lora.max_steps": 2.5}, "lora.max_steps must be a"),
    "unknown-format": ({"data_format": "csv"}, "data_format"),
    "template-unknown-placeholder": ({"template": "Q: {prompt}\nA: {answer}"}, "unknown placeholder"),
    "template-without-response": ({"template": "Q: {prompt}"}, "{response}"),
    "template-bad-brace": ({"template": "{prompt} {response} {"}, "not valid"),
    "qlora-removed": ({"lora.qlora": True}, "QLoRA is not supported"),
    "no-target-modules": ({"lora.target_modules": ""}, "target_modules"),
    "unknown-target-module": ({"base": "", "lora.target_modules": "q_proj"}, "no module(s) q_proj"),
    "train-file-missing": ({"train_file": "data/none.jsonl"}, "none.jsonl"),
    "train-file-is-folder": ({"train_file": "data"}, "not a file"),
    "eval-file-missing": ({"eval_file": "data/nothere.jsonl"}, "nothere.jsonl"),
    "unknown-model-id": ({"base": "", "base_model": "nobody-xyz/no-such-model"}, "no-such-model"),
    "bad-model-id": ({"base": "", "base_model": "a/b/c/d"}, "does not exist"),
    "missing-model-folder": ({"base": "", "base_model": "models/not-here"}, "not-here"),
    "folder-without-config": ({"base": "", "base_model": "hard/noconfig"}, "no config.json"),
    "pytorch-bin-only": ({"base": "", "base_model": "hard/binonly"}, "safetensors"),
    "custom-code-untrusted": ({"base": "", "base_model": "hard/customcode"}, "trust_remote_code"),
    "name-dotdot": ({"adapter_name": "../evil"}, "not a safe folder name"),
    "name-slash": ({"adapter_name": "a/b"}, "not a safe folder name"),
    "name-space": ({"adapter_name": "my adapter"}, "not a safe folder name"),
    "name-200-chars": ({"adapter_name": "a" * 200}, "not a safe folder name"),
    "name-dot-start": ({"adapter_name": ".hidden"}, "not a safe folder name"),
    "base-name-dotdot": ({"base_name": "../up"}, "base_name"),
    "base-name-slash": ({"base_name": "x/y"}, "base_name"),
}

CASES = [pytest.param("data", k, id="data-" + k) for k in DATA] + \
        [pytest.param("recipe", k, id="recipe-" + k) for k in RECIPE]


# the app's request policy (artifacts.Policy) answers before the pipeline for these: one message for a
# path that is missing and one that is not allowed
API_FRAGMENT = {"train-file-is-folder": "no such file", "bad-model-id": "not a Hub id"}


def case(kind: str, key: str, app: bool = False) -> tuple[dict, str]:
    """(recipe overrides, expected fragment) of a case; data cases use their file as train_file. For the
    app, the files are where a request may point: data files in uploads/hard/, model folders in models/."""
    if kind == "data":
        return {"train_file": f"{'uploads/' if app else ''}hard/{key}.jsonl"}, DATA[key][1]
    overrides, fragment = RECIPE[key]
    if app:
        bm = overrides.get("base_model", "")
        if bm.startswith("hard/"):
            overrides = {**overrides, "base_model": "models/" + bm.split("/", 1)[1]}
        fragment = API_FRAGMENT.get(key, fragment)
    return overrides, fragment


def prepare_inputs(root: Path) -> None:
    """The files the cases refer to, under <root>/hard/ (the CLI's and the app's working folder)."""
    d = root / "hard"
    d.mkdir(parents=True, exist_ok=True)
    for key, (content, _) in DATA.items():
        (d / f"{key}.jsonl").write_bytes(content)
    (d / "noconfig").mkdir(exist_ok=True)
    (d / "noconfig" / "model.safetensors").write_bytes(b"\0" * 16)
    src = ROOT / "models" / "default-hf"
    for name, drop in (("binonly", "*.safetensors"), ("customcode", None)):
        m = d / name
        m.mkdir(exist_ok=True)
        for f in src.iterdir():
            if f.is_file() and not (drop and f.match(drop)):
                shutil.copy(f, m / f.name)
    (d / "binonly" / "pytorch_model.bin").write_bytes(b"PK\3\4 not loaded")
    cfg = json.loads((d / "customcode" / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (d / "customcode" / "config.json").write_text(json.dumps(cfg))
    (d / "customcode" / "modeling_evil.py").write_text("raise SystemExit('custom code ran')\n")


def cli_args(overrides: dict) -> list[str]:
    out = []
    for k, v in overrides.items():
        v = str(v).lower() if isinstance(v, bool) else str(v)
        out.append(f"--{k}={v}")
    return out


def assert_nothing_written(ws: Path) -> None:
    runs = list((ws / "runs").iterdir()) if (ws / "runs").exists() else []
    assert runs == [], f"a job folder was made for rejected input: {runs}"
    for d in ("adapters", "models", "cache"):
        if (ws / d).exists():
            tmp = [p.name for p in (ws / d).iterdir() if ".tmp-" in p.name]
            assert tmp == [], tmp


# ---------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def cli_ws(tmp_path_factory):
    from conftest import make_workspace
    root = make_workspace(tmp_path_factory.mktemp("cli") / "ws")
    prepare_inputs(root)
    return root


def run_cli(ws: Path, *args, timeout=120) -> subprocess.CompletedProcess:
    env = dict(os.environ, STUDIO_HOME=str(ws), HF_HUB_OFFLINE="1", HF_TOKEN=FAKE_TOKEN,
               STUDIO_MAX_UPLOAD_MB=str(LIMIT_MB), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "pipeline", "build", "--detach", *args], cwd=str(ws),
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("kind,key", CASES)
def test_bad_input_cli(cli_ws, kind, key):
    overrides, fragment = case(kind, key)
    p = run_cli(cli_ws, *cli_args(overrides))
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert fragment in p.stderr, p.stderr[-2000:]
    assert "Traceback" not in p.stderr + p.stdout
    assert len(p.stderr) < 2000, "the message is short (not the 10 MB line echoed back)"
    assert FAKE_TOKEN not in p.stderr + p.stdout
    assert_nothing_written(cli_ws)


# ---------------------------------------------------------------- the launched app
@pytest.fixture(scope="module")
def happ(tmp_path_factory):
    from app_helpers import free_port, start_app, stop_app
    root = tmp_path_factory.mktemp("happ")
    ws = root / "ws"
    (ws / "models").mkdir(parents=True)
    (ws / "adapters").mkdir()
    if not (ROOT / "models" / "default" / "genai_config.json").exists():
        pytest.skip("models/default (ONNX) missing")
    shutil.copytree(ROOT / "models" / "default", ws / "models" / "default")
    adapters = [a for a in ("travel", "pirate") if (ROOT / "adapters" / a / "metadata.json").exists()]
    if not adapters:
        pytest.skip("no shipped adapter")
    for a in adapters:
        shutil.copytree(ROOT / "adapters" / a, ws / "adapters" / a)
    os.symlink(ROOT / "models" / "default-hf", ws / "models" / "default-hf")
    os.symlink(ROOT / "data", ws / "data")
    prepare_inputs(ws / "uploads")
    for name in ("noconfig", "binonly", "customcode"):  # base_model folders a request may name: models/<name>
        shutil.move(ws / "uploads" / "hard" / name, ws / "models" / name)
    port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_TOKEN", FAKE_TOKEN)
        mp.setenv("STUDIO_MAX_UPLOAD_MB", str(LIMIT_MB))
        proc = start_app(ws, port, root / "app.log")
    from gradio_client import Client
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield {"client": client, "ws": ws, "log": root / "app.log", "adapters": adapters}
    stop_app(proc, ws)


@pytest.mark.parametrize("kind,key", CASES)
def test_bad_input_api(happ, kind, key):
    client, ws = happ["client"], happ["ws"]
    overrides, fragment = case(kind, key, app=True)
    r = client.predict(overrides, api_name="/build_recipe")
    assert not r["ok"], r
    assert fragment in r["error"], r["error"][:2000]
    assert "Traceback" not in r["error"] and len(r["error"]) < 2000
    if kind == "data":  # the Build tab's data check on the same file
        msg = client.predict(overrides["train_file"], "auto", "", "models/default-hf", False,
                             api_name="/preview_data")
        assert msg.startswith("⚠") and html.escape(fragment, quote=False) in msg, msg[:2000]
        assert "Traceback" not in msg
    assert_nothing_written(ws)


def _chat(client, variant, prompt="Where should I go in spring?"):
    from app_helpers import chat, last_answer
    hist, _, _, stats = chat(client, prompt, variant, base="default", max_new=12)
    return (last_answer(hist) if hist else ""), stats


def test_app_still_serves_after_bad_input(happ):
    for v in ["base"] + happ["adapters"]:
        text, stats = _chat(happ["client"], v)
        assert text.strip() and "error" not in stats, (v, stats)


def test_broken_adapters_refused_others_serve(happ):
    """A truncated .onnx_adapter and one built for another base, dropped into adapters/ of the running
    app: refused with their reasons; chatting with them says so; the good ones still answer."""
    client, ws = happ["client"], happ["ws"]
    good = happ["adapters"][0]
    trunc = ws / "adapters" / "broken-truncated"
    shutil.copytree(ws / "adapters" / good, trunc)
    f = trunc / "adapter.onnx_adapter"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    other = ws / "adapters" / "other-base"
    shutil.copytree(ws / "adapters" / good, other)
    meta = json.loads((other / "metadata.json").read_text())
    meta["base_fingerprint"] = "f" * 64
    (other / "metadata.json").write_text(json.dumps(meta))
    try:
        _, variant, _, refused = client.predict("default", "base", "base", api_name="/refresh_pickers")
        names = [c[0] for c in variant["choices"]]
        assert "broken-truncated" not in names and "other-base" not in names and good in names, names
        text = json.dumps(refused)
        assert "broken-truncated" in text and "truncated" in text, text
        assert "other-base" in text and ("another base" in text or "built for base" in text), text
        _, stats = _chat(client, "broken-truncated")
        assert "error" in stats and "broken-truncated" in stats and "Traceback" not in stats, stats
        text, stats = _chat(client, good)
        assert text.strip() and "error" not in stats, stats
    finally:
        shutil.rmtree(trunc)
        shutil.rmtree(other)


def test_broken_adapter_at_engine_start_and_refresh(tmp_path):
    from engine.chat import ChatEngine, SamplingParams
    if not (ROOT / "models" / "default" / "genai_config.json").exists():
        pytest.skip("models/default missing")
    ads = tmp_path / "adapters"
    ads.mkdir()
    good = [a for a in ("travel", "pirate") if (ROOT / "adapters" / a / "metadata.json").exists()]
    if not good:
        pytest.skip("no shipped adapter")
    for a in good:
        shutil.copytree(ROOT / "adapters" / a, ads / a)
    bad = ads / "corrupt"
    shutil.copytree(ads / good[0], bad)
    (bad / "adapter.onnx_adapter").write_bytes(b"\x00garbage" * 100)
    eng = ChatEngine(ROOT / "models" / "default", ads, provider="cpu")
    try:
        refused = dict(eng.refused())
        assert "corrupt" in refused and "unreadable or truncated" in refused["corrupt"], refused
        assert set(good) <= set(eng.variants())
        p = SamplingParams(max_new_tokens=8)
        for v in good:
            assert eng.generate("Hello", v, p)[0].strip()
        bad2 = ads / "metadata-broken"
        shutil.copytree(ads / good[0], bad2)
        (bad2 / "metadata.json").write_text("{not json")
        res = eng.refresh()
        assert "metadata-broken" in res["refused"] and "metadata.json corrupt" in dict(eng.refused())[
            "metadata-broken"]
        for v in good:
            assert eng.generate("Hello", v, p)[0].strip()
        with pytest.raises(ValueError, match="refused"):
            eng.generate("Hello", "corrupt", p)
    finally:
        eng.close()


# ---------------------------------------------------------------- security
def test_upload_handler_enforces_size_limit_and_safe_names(tmp_path, monkeypatch):
    """The Build tab's upload handler (in-process) refuses a file over the limit and stores uploads
    under a safe name inside <workspace>/uploads/, whatever the uploaded file was called."""
    from conftest import make_workspace
    ws = make_workspace(tmp_path / "ws")
    monkeypatch.setenv("STUDIO_HOME", str(ws))
    monkeypatch.setenv("STUDIO_MAX_UPLOAD_MB", "1")
    import app as appmod
    demo = appmod.build_demo()
    fns = [f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "on_upload"]
    assert len(fns) == 1
    handler = fns[0].fn

    def on_upload(path, fmt, template, base_model, trust):  # later form fields (eval file, ...) at their defaults
        import inspect
        later = {"eval_file": "", "eval_fraction": 0.1, "seed": 0}
        rest = list(inspect.signature(handler).parameters)[5:]
        return handler(path, fmt, template, base_model, trust, *[later.get(k) for k in rest])
    big = tmp_path / "big.jsonl"
    big.write_bytes(GOOD.encode() * (2_000_000 // len(GOOD)))
    out = on_upload(str(big), "auto", "", "models/default-hf", False)
    assert "limit" in out[1] and "MB" in out[1], out
    # the form's training file is emptied (it held the demo set, which Start then built on without a word)
    assert out[0] == "" and "training file is now empty" in out[1], out
    bad = tmp_path / "empty.jsonl"
    bad.write_text("")
    out = on_upload(str(bad), "auto", "", "models/default-hf", False)
    assert out[0] == "" and "bad data file" in out[1] and "training file is now empty" in out[1], out
    assert not (ws / "uploads").exists() or not list((ws / "uploads").iterdir())
    weird = tmp_path / "..  evil; rm -rf ~ $(id) .jsonl"
    weird.write_text(GOOD * 3)
    train_file, preview = on_upload(str(weird), "auto", "", "models/default-hf", False)
    dest = ws / train_file  # relative to the workspace, or absolute
    assert dest.parent == ws / "uploads" and re.fullmatch(r"[A-Za-z0-9_-]+\.jsonl", dest.name), dest
    assert preview.startswith("✓"), preview


def test_user_given_names_are_safe_folder_names(tmp_path):
    from artifacts import LibraryError, delete_adapter, safe_name
    from pipeline.recipe import Recipe, RecipeError
    from ui.engine import AppEngine, UIError
    from artifacts import Workspace
    for bad in ("../x", "a/b", "a b", "", "a" * 200, ".x", "x\0y", "..", "/abs"):
        if bad:  # an empty adapter_name may mean "derive one" (the job names it)
            with pytest.raises(RecipeError):
                Recipe(adapter_name=bad).validate()
        with pytest.raises(RecipeError):
            Recipe(adapter_name="ok", base_name=bad or "/").validate()
        assert not safe_name(bad)
        with pytest.raises(LibraryError):
            delete_adapter(tmp_path, bad)
        with pytest.raises(UIError):
            AppEngine(Workspace(tmp_path)).job_dir(bad)
    from pipeline.jobs import new_job_id
    assert re.fullmatch(r"[0-9-]+-[A-Za-z0-9._-]+", new_job_id(Recipe(adapter_name="ok.name_1")))


def test_trust_remote_code_off_by_default(tmp_path):
    from pipeline.recipe import Recipe, LoRAConfig
    from pipeline.stage_finetune import olive_config
    assert Recipe().trust_remote_code is False
    cfg = olive_config(ROOT / "models" / "default-hf", tmp_path / "t.jsonl", None, LoRAConfig(), tmp_path, False)
    text = json.dumps(cfg)
    assert '"trust_remote_code": false' in text and '"trust_remote_code": true' not in text
    # the job's own loads pass the recipe's flag
    src = (ROOT / "pipeline" / "stage_prepare.py").read_text()
    assert "trust_remote_code=r.trust_remote_code" in src


def test_dataloader_workers_setting(tmp_path, monkeypatch):
    """STUDIO_DATALOADER_WORKERS: a number reaches the Trainer's arguments; anything else is refused
    with what was expected, before any training starts. Unset on the CPU: no workers."""
    from pipeline.recipe import LoRAConfig
    from pipeline.stage_finetune import FinetuneError, olive_config

    def args():
        cfg = olive_config(ROOT / "models" / "default-hf", tmp_path / "t.jsonl", None, LoRAConfig(), tmp_path,
                           False)
        return json.dumps(cfg)
    monkeypatch.delenv("STUDIO_DATALOADER_WORKERS", raising=False)
    assert '"dataloader_num_workers"' not in args()
    monkeypatch.setenv("STUDIO_DATALOADER_WORKERS", "2")
    assert '"dataloader_num_workers": 2' in args()
    monkeypatch.setenv("STUDIO_DATALOADER_WORKERS", "four")
    with pytest.raises(FinetuneError, match="STUDIO_DATALOADER_WORKERS='four': expected a whole number"):
        args()


@pytest.mark.parametrize("trust", [False, True])
def test_awq_load_passes_trust_remote_code(tmp_path, monkeypatch, trust):
    """autoawq loads models with trust_remote_code=True unless told otherwise: the AWQ stage passes the
    recipe's flag (False by default). The load is intercepted before any weights are read."""
    import awq
    from pipeline.recipe import AWQConfig
    from pipeline.stage_awq import run_awq
    seen = {}

    class Stop(Exception):
        pass

    def fake_from_pretrained(path, **kw):
        seen.update(kw)
        raise Stop()

    monkeypatch.setattr(awq.AutoAWQForCausalLM, "from_pretrained", staticmethod(fake_from_pretrained))

    class Log:
        def log(self, *a, **k): pass
        def emit(self, *a, **k): pass
        def progress(self, *a, **k): pass

    kwargs = {} if not trust else {"trust_remote_code": True}
    with pytest.raises(Exception):
        run_awq(ROOT / "models" / "default-hf", tmp_path / "out", AWQConfig(device="cpu"), ["some text"],
                Log(), **kwargs)
    assert seen.get("trust_remote_code") is trust


def test_custom_code_and_pickles_refused(tmp_path):
    """A model folder with custom code (auto_map) is refused without trust_remote_code (and its code
    never runs); one with only pytorch_model.bin is refused: only safetensors are loaded."""
    from pipeline import jobs
    from pipeline.data import DataError
    from pipeline.recipe import Recipe, RecipeError
    from artifacts import Workspace
    from conftest import make_workspace
    ws = Workspace(make_workspace(tmp_path / "ws"))
    prepare_inputs(ws.root)

    def recipe(**kw) -> Recipe:  # a new base from base_model (recipes that build onto a base have `base`)
        r = Recipe(adapter_name="x", **kw)
        if hasattr(r, "base"):
            r.base = ""
        return r
    with pytest.raises(RecipeError, match="trust_remote_code"):
        jobs.preflight(recipe(base_model=str(ws.root / "hard/customcode")), ws)
    jobs.preflight(recipe(base_model=str(ws.root / "hard/customcode"), trust_remote_code=True), ws)
    with pytest.raises(DataError, match="safetensors"):
        jobs.preflight(recipe(base_model=str(ws.root / "hard/binonly")), ws)
    from pipeline.hub import ALLOW_PATTERNS
    assert not any(p.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt")) for p in ALLOW_PATTERNS)


def test_hub_token_never_written(happ, cli_ws):
    """HF_TOKEN was set to a fake value for every CLI run and the app session above: it appears in no
    event, log, runs/ file, or message."""
    hits = []
    for root in (happ["ws"], cli_ws, happ["log"].parent):
        for p in Path(root).rglob("*"):
            if p.is_file() and not p.is_symlink() and p.stat().st_size < 30_000_000:
                if FAKE_TOKEN.encode() in p.read_bytes():
                    hits.append(str(p))
    assert hits == []


# ---------------------------------------------------------------- crashes (bench/crash_test.py)
@pytest.mark.timeout(3600)
def test_kill_resume_and_cancel():
    """kill -9 of the job's process group during each stage, then resume -> ok; the library never lists
    a broken adapter; cancel stops the whole process tree within 5 s (finetune and ONNX builder)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import crash_test
    res = crash_test.main(["--cancels", "2"])
    cr = res["crash_resume"]
    for k in cr["kills"]:
        assert k["running_at_kill"] == k["target"], k
        assert k["target"] not in k["stages_done"], k
        assert k["state_after"] == "interrupted", k
    assert cr["final_status"] == "ok", cr["final_error"]
    assert cr["adapter_ok"], cr["adapter_reason"]
    assert cr["leftover_tmp"] == []
    assert res["library_broken_listings"] == [] and res["library_checks"] > 0
    for stage, s in res["cancel"]["summary"].items():
        assert s["max_s"] <= 5.0 and s["all_status_cancelled"], (stage, s)
    assert all(r["left"] == [] for rows in res["cancel"]["rows"].values() for r in rows)
    assert res["cancel"]["final_status"] == "ok"
    assert res["token_leaks"] == []

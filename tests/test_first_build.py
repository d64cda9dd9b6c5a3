"""The newcomer's first build (issue 11), pipeline side, as real jobs on the embedded default model (CPU):
a base is built once (AWQ off, int4 ONNX) into a temporary workspace; adapters are then built ONTO it:
AWQ and ONNX skipped, published beside the other adapters of the base without touching them, never over
an existing one without `replace` (which keeps `<name>.previous`); the held-out split is carved from the
user's data; the evaluate stage measures base vs adapter on the served int4 model; fine-tuning resumes from
the checkpoint written on cancel; a killed job reads "interrupted"."""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, make_workspace, run_job
from pipeline import data, jobs
from pipeline.events import read_events
from pipeline.recipe import AWQConfig, LoRAConfig, OnnxConfig, Recipe, RecipeError
from artifacts import Workspace

pytestmark = pytest.mark.timeout(1500)

BASE = "tb"
CITIES = ["Oslo", "Lima", "Cairo", "Perth", "Quebec", "Hanoi", "Denver", "Porto", "Nairobi", "Kyoto",
          "Tallinn", "Bogota", "Austin", "Seville", "Dublin", "Manila", "Zurich", "Tunis", "Calgary", "Busan"]
SKIES = ["sunshine", "light rain", "fog in the morning", "a strong wind", "snow showers", "clear skies"]


def forecast_examples(n: int = 120, seed: int = 1) -> list[dict]:
    """A dataset that is not in data/: a cheerful weather reporter's voice."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        city, sky = CITIES[i % len(CITIES)], rnd.choice(SKIES)
        t = rnd.randint(-5, 32)
        rows.append({"prompt": f"What is the weather like in {city} today?",
                     "response": f"Forecast desk here! {city} gets {sky} and about {t} degrees. "
                                 f"Grab your coat and have a bright day, friends!"})
    return rows


def _lora(steps: int, **kw) -> LoRAConfig:
    cfg = dict(r=16, alpha=32, dropout=0.0, target_modules=["auto"], max_steps=steps, learning_rate=3e-3,
               batch_size=4, max_seq_len=128, eval_steps=1000, save_steps=1000, seed=0)
    cfg.update(kw)
    return LoRAConfig(**cfg)


def _onto(train: str, name: str = "", steps: int = 16, replace: bool = False, **lora) -> Recipe:
    return Recipe(base=BASE, preset="custom", train_file=train, eval_file="", adapter_name=name,
                  replace=replace, lora=_lora(steps, **lora))


def _events(job: Path) -> list[dict]:
    return read_events(job / "events.jsonl")[0]


def _tree_digest(d: Path) -> dict:
    return {str(f.relative_to(d)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(d.rglob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = make_workspace(tmp_path_factory.mktemp("first") / "ws")
    up = root / "uploads"
    up.mkdir()
    with open(up / "forecast.jsonl", "w") as f:
        for row in forecast_examples():
            f.write(json.dumps(row) + "\n")
    return Workspace(root)


@pytest.fixture(scope="module")
def base(ws):
    """A new base from models/default-hf (AWQ off) with its first adapter `first` (travel data)."""
    r = Recipe(base="", base_model="models/default-hf", base_name=BASE, preset="custom",
               train_file="data/travel/train.jsonl", eval_file="data/travel/test.jsonl", adapter_name="first",
               awq=AWQConfig(enabled=False), lora=_lora(4, target_modules=["qkv_proj", "o_proj"]),
               onnx=OnnxConfig(precision="int4", execution_provider="cpu"))
    job = run_job(r, ws)
    return job


@pytest.fixture(scope="module")
def onto(ws, base):
    """The newcomer's build: their own data (uploads/forecast.jsonl), no adapter name, onto base tb."""
    before = _tree_digest(ws.adapters / "first")
    job = run_job(_onto("uploads/forecast.jsonl", steps=16), ws)
    return {"job": job, "first_before": before}


def test_new_base_records_its_prepared_weights(ws, base):
    meta = json.loads((ws.models / BASE / "base.json").read_text())
    prep = meta["prepared"]
    assert prep["path"] == "models/default-hf" and prep["awq"] is None and prep["source"] == "models/default-hf"
    from pipeline.stage_adapter import model_fingerprint
    assert prep["fingerprint"] == meta["fingerprint"] == model_fingerprint(ws.root / "models/default-hf")
    skip = {e["stage"]: e for e in _events(base) if e["type"] == "stage_skip"}
    assert "awq" in skip and "awq.enabled = false" in skip["awq"]["reason"]


def test_adapter_onto_base_skips_awq_and_onnx_and_keeps_the_others(ws, base, onto):
    job = onto["job"]
    ev = _events(job)
    skip = {e["stage"]: e["reason"] for e in ev if e["type"] == "stage_skip"}
    assert skip.get("awq") == f"building onto base '{BASE}'" and skip.get("onnx") == f"building onto base '{BASE}'"
    st = jobs.state(job)
    assert st.stages["awq"]["state"] == "skipped" and st.stages["awq"]["reason"] == f"building onto base '{BASE}'"
    assert all(st.stages[s]["state"] == "done" for s in ("prepare", "finetune", "adapter", "evaluate", "publish"))
    # the unique default name from the file, published onto the base, the other adapter untouched
    rec = Recipe.load(job / "recipe.yaml")
    assert rec.adapter_name == "forecast"
    meta = json.loads((ws.adapters / "forecast" / "metadata.json").read_text())
    base_meta = json.loads((ws.models / BASE / "base.json").read_text())
    assert meta["base_name"] == BASE and meta["base_fingerprint"] == base_meta["fingerprint"]
    assert _tree_digest(ws.adapters / "first") == onto["first_before"], "an existing adapter changed"
    assert sorted(p.name for p in ws.models.iterdir()) == ["default-hf", BASE], "no second base"
    from engine.chat import ChatEngine
    eng = ChatEngine(ws.models / BASE, ws.adapters)
    try:
        assert {"first", "forecast"} <= set(eng.variants()) and not eng.refused()
    finally:
        eng.close()


def test_eval_on_the_served_model_shows_what_changed(ws, onto):
    meta = json.loads((ws.adapters / "forecast" / "metadata.json").read_text())
    ev = meta["eval"]
    print({k: v for k, v in ev.items() if k != "samples"})
    assert ev["n"] == 20 and ev["source"] == "held-out split of uploads/forecast.jsonl"
    assert ev["adapter_loss"] < ev["base_loss"] - 1.0, "the adapter's held-out loss is clearly lower"
    assert abs(ev["adapter_ppl"] - __import__("math").exp(ev["adapter_loss"])) / ev["adapter_ppl"] < 1e-3
    assert len(ev["samples"]) == 5
    held = {r["prompt"] for r in data.split_heldout(forecast_examples(), 0.1, 0)[1]}
    assert all(s["prompt"] in held and s["reference"] for s in ev["samples"])
    differ = sum(s["base"] != s["adapter"] for s in ev["samples"])
    assert differ >= 4, ev["samples"]
    # and they moved towards the user's data: more words shared with the reference answers than the base's
    def overlap(a: str, b: str) -> float:
        wa, wb = set(a.lower().split()), set(b.lower().split())
        return len(wa & wb) / max(1, len(wa | wb))
    ad = sum(overlap(s["adapter"], s["reference"]) for s in ev["samples"])
    bs = sum(overlap(s["base"], s["reference"]) for s in ev["samples"])
    assert ad > bs, (ad, bs, ev["samples"])
    res = [e for e in _events(onto["job"]) if e["type"] == "eval_result"]
    assert res and res[-1]["adapter_loss"] == ev["adapter_loss"]
    assert jobs.state(onto["job"]).eval["base_loss"] == ev["base_loss"]


def test_heldout_split_sizes_and_determinism(tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
            for i in range(290)]
    tr, he = data.split_heldout(rows, 0.1, 0)
    assert (len(tr), len(he)) == (261, 29)
    assert data.split_heldout(rows, 0.1, 0) == (tr, he), "same seed, same split"
    assert data.split_heldout(rows, 0.1, 1)[1] != he, "another seed, another split"
    assert sorted(tr + he, key=lambda r: int(r["messages"][0]["content"][1:])) == rows and \
        not {id(x) for x in tr} & {id(x) for x in he}
    assert [data.heldout_size(n, 0.1) for n in (1, 2, 10, 39, 40, 120, 290, 600)] == [0, 1, 1, 4, 20, 20, 29, 60]
    f = tmp_path / "mine.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"q{i}", "response": "a"}) + "\n" for i in range(290)))
    assert "held-out: 29 of 290 examples carved from the train file (10 %, seed 0)" in data.preview(f)


def test_an_alpaca_json_file_builds_an_adapter(ws, base):
    """A dataset as Alpaca's own files are (one JSON array of {instruction, input, output}, with the "text"
    key those files carry) trains an adapter onto the base; the name comes from the file, the held-out part
    from it too, and the evaluation measures it."""
    rows = [{"instruction": r["prompt"], "input": "", "output": r["response"], "text": "ignored"}
            for r in forecast_examples(60, seed=3)]
    f = ws.root / "uploads" / "alpaca_forecast.json"
    f.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    job = run_job(_onto("uploads/alpaca_forecast.json", steps=4), ws)
    end = [e for e in _events(job) if e["type"] == "job_end"][-1]
    assert end["status"] == "ok", end
    assert end["result"]["adapter"] == "alpaca_forecast" and end["result"]["base"] == BASE
    held = (job / "stages/prepare/heldout.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(held) == 20, "60 examples: 10 % held out, at least 20"  # (data.heldout_size)
    first = json.loads(held[0])
    assert first["messages"][0]["role"] == "user" and "weather" in first["messages"][0]["content"]
    meta = json.loads((ws.adapters / "alpaca_forecast" / "metadata.json").read_text())
    assert meta["eval"]["n"] == 20, meta["eval"]


def test_training_data_copies_stay_with_the_job(ws, onto):
    """The datasets library's copy of the user's data goes to the job's folder, not ~/.cache."""
    if "HF_DATASETS_CACHE" in os.environ:
        pytest.fail("run the suite without HF_DATASETS_CACHE set: the operator's choice wins over the job's")
    cache = onto["job"] / "cache" / "datasets"
    arrows = list(cache.rglob("*.arrow"))
    assert arrows, sorted(str(p.relative_to(onto["job"])) for p in onto["job"].rglob("*"))[:40]


def test_replace_needs_the_flag_and_keeps_previous(ws, onto):
    before = _tree_digest(ws.adapters / "forecast")
    with pytest.raises(RecipeError, match="adapter 'forecast' exists: tick 'Replace existing adapter'"):
        jobs.create_job(_onto("uploads/forecast.jsonl", name="forecast", steps=2), ws)
    env = dict(os.environ, STUDIO_HOME=str(ws.root), PYTHONPATH=str(ROOT))
    cli = [sys.executable, "-m", "pipeline", "build", "--base", BASE, "--train_file", "uploads/forecast.jsonl",
           "--adapter_name", "forecast", "--lora.max_steps", "2", "--detach"]
    p = subprocess.run(cli, cwd=ws.root, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "(CLI --replace)" in p.stderr and "Traceback" not in p.stderr
    # without a name, a new unique one
    assert Recipe.load(jobs.create_job(_onto("uploads/forecast.jsonl"), ws) / "recipe.yaml").adapter_name \
        == "forecast-2"
    job = run_job(_onto("uploads/forecast.jsonl", name="forecast", steps=2, replace=True), ws)
    assert _tree_digest(ws.adapters / "forecast.previous") == before
    assert json.loads((ws.adapters / "forecast" / "metadata.json").read_text())["job"] == job.name
    assert not list(ws.adapters.glob("*.tmp-*"))
    # publish checks again (another build may have published the name since the job was created)
    from pipeline.errors import StageError
    from pipeline.stage_publish import publish_adapter
    with pytest.raises(StageError, match="exists"):
        publish_adapter(ws.adapters / "forecast", ws.adapters, "first", replace=False)


def test_relative_data_path_trains_on_the_file_the_cli_found(ws, base, tmp_path, monkeypatch):
    """A relative train_file is the file the submitting process found (its working directory first), not a
    file of the same name in the project folder where the job runs (the sweep that trained on the
    project's data/pirate/train.jsonl instead of its own, 2026-12-03)."""
    mine = tmp_path / "mine"
    (mine / "data" / "travel").mkdir(parents=True)
    own = mine / "data" / "travel" / "train.jsonl"
    own.write_text("".join(json.dumps(r) + "\n" for r in forecast_examples(60, seed=7)))
    assert (ROOT / "data" / "travel" / "train.jsonl").exists()  # the same relative name in the project
    monkeypatch.chdir(mine)
    job = run_job(_onto("data/travel/train.jsonl", name="pinned", steps=2), ws)
    try:
        assert Recipe.load(job / "recipe.yaml").train_file == str(own.resolve())
        done = json.loads((job / "stages" / "prepare" / "DONE.json").read_text())["outputs"]
        assert done["train_file"] == str(own.resolve())
        assert done["train_sha256"] == hashlib.sha256(own.read_bytes()).hexdigest()
        # a workspace file that the job resolves the same way keeps its relative name in the recipe
        monkeypatch.chdir(ROOT)
        kept = jobs.create_job(_onto("uploads/forecast.jsonl", name="kept"), ws)
        assert Recipe.load(kept / "recipe.yaml").train_file == "uploads/forecast.jsonl"
    finally:
        for d in (ws.adapters / "pinned", *ws.runs.glob("*-kept")):
            shutil.rmtree(d, ignore_errors=True)


def test_relative_base_model_folder_is_the_one_the_cli_found(ws, tmp_path, monkeypatch):
    """A new base from a model folder named relative to the user's working directory: the job (which runs in
    the project folder) gets that folder's absolute path; a folder of the workspace keeps its name."""
    mine = tmp_path / "cwd"
    shutil.copytree(ROOT / "models" / "default-hf", mine / "my-model")
    monkeypatch.chdir(mine)

    def new_base(model: str) -> Recipe:
        return Recipe(base="", base_model=model, base_name="nb", preset="custom", train_file="uploads/forecast.jsonl",
                      eval_file="", adapter_name="nb-first", awq=AWQConfig(enabled=False), lora=_lora(2))
    job = jobs.create_job(new_base("my-model"), ws)
    kept = jobs.create_job(new_base("models/default-hf"), ws)  # linked into the workspace's models/
    try:
        assert Recipe.load(job / "recipe.yaml").base_model == str((mine / "my-model").resolve())
        assert Recipe.load(kept / "recipe.yaml").base_model == "models/default-hf"
    finally:
        for d in (job, kept):
            shutil.rmtree(d, ignore_errors=True)


def test_refusals_onto_a_base(ws, base, tmp_path):
    # a base without the record of its prepared weights (built before this), a missing one
    old = ws.models / "old"
    old.mkdir()
    meta = json.loads((ws.models / BASE / "base.json").read_text())
    (old / "base.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "prepared"}))
    r = _onto("uploads/forecast.jsonl", name="x1")
    r.base = "old"
    with pytest.raises(RecipeError, match="rebuild it .*recipes/default-base.yaml.*or build a new base"):
        jobs.create_job(r, ws)
    r.base = "nope"
    with pytest.raises(RecipeError, match=f"base 'nope' is not published.*published bases: .*{BASE}"):
        jobs.create_job(r, ws)
    # prepared weights that are not the ones the base was built from: the job refuses, nothing published
    other = ws.root / "other-hf"
    other.mkdir()
    for f in (ROOT / "models/default-hf").iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    (other / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    meta["prepared"]["path"] = "other-hf"
    (old / "base.json").write_text(json.dumps(meta))
    for f in (ws.models / BASE).iterdir():
        if f.name != "base.json":
            os.symlink(f, old / f.name)
    r.base = "old"
    job = jobs.create_job(r, ws)
    jobs.launch(job, ws)
    st = jobs.wait(job, timeout_s=300)
    assert st.status == "failed" and "changed since base 'old' was built" in st.error, st.error
    assert not (ws.adapters / "x1").exists()
    with pytest.raises(RecipeError, match="QLoRA is not supported"):
        Recipe.from_dict({"lora": {"qlora": True}})
    assert Recipe.from_dict({"lora": {"qlora": False}}).lora.r == 16  # old recipes that did not ask for it


def test_presets_by_model_size(ws, base):
    from pipeline.presets import PRESETS, apply_preset, resolve_preset
    r = Recipe(base=BASE)
    assert resolve_preset(r, ws.models) == "demo"  # 5 M parameters
    assert resolve_preset(Recipe(base="", base_model="microsoft/Phi-3.5-mini-instruct"), ws.models) == "3-4b"
    out = apply_preset(r, "demo", {"lora.r"})
    assert out.preset == "demo" and out.lora.r == 16 and out.lora.learning_rate == PRESETS["demo"]["lora.learning_rate"]
    assert PRESETS["3-4b"]["lora.learning_rate"] == 2e-4 and PRESETS["3-4b"]["lora.max_steps"] == 100
    env = dict(os.environ, STUDIO_HOME=str(ws.root), PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "pipeline", "build", "--base", BASE, "--preset", "demo",
                        "--print-command"], cwd=ws.root, env=env, capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == f"python -m pipeline build --base {BASE} --preset demo", p.stderr


def _wait_step(job: Path, k: int, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(e["type"] == "step" and e["step"] >= k for e in _events(job)):
            return
        assert jobs.is_running(job), jobs.state(job).error + (job / "process.log").read_text()[-2000:]
        time.sleep(0.05)
    raise AssertionError(f"step {k} never came")


def _final_loss(job: Path, step: int) -> float:
    return [e["loss"] for e in _events(job) if e["type"] == "step" and e["step"] == step][-1]


def test_resume_after_cancel_continues_at_the_checkpoint(ws, base):
    steps = 24
    job = jobs.create_job(_onto("data/pirate/train.jsonl", name="resumed", steps=steps), ws)
    jobs.launch(job, ws)
    _wait_step(job, 6)
    jobs.cancel(job, grace_s=60)  # the checkpoint is written at the end of the current step
    st = jobs.state(job)
    assert st.status == "cancelled"
    ckpts = sorted((job / "stages/finetune/trainer").glob("checkpoint-*"))
    assert ckpts, "a checkpoint is written on cancel"
    k = int(ckpts[-1].name.split("-")[1])
    assert 6 <= k < steps
    first_start, spent = st.started, json.loads((job / "stages/finetune/spent.json").read_text())["seconds"]
    jobs.launch(job, ws)
    st = jobs.wait(job, timeout_s=900)
    assert st.status == "ok", st.error
    ev = _events(job)
    last = max(i for i, e in enumerate(ev) if e["type"] == "job_start")
    resumes = [e for e in ev[last:] if e["type"] == "resume"]
    assert resumes and resumes[0] == {**resumes[0], "stage": "finetune", "step": k}
    later_steps = [e["step"] for e in ev[last:] if e["type"] == "step"]
    assert later_steps and later_steps[0] == k + 1 and later_steps[-1] == steps
    assert st.resumed_step == k and st.started == first_start, "the job keeps its start time"
    assert st.stages["finetune"]["seconds"] >= spent > 0, "stage time adds up across attempts"
    assert "resumed at step" in "\n".join(st.lines)
    # the same recipe without interruption ends at the same loss
    ref = run_job(_onto("data/pirate/train.jsonl", name="straight", steps=steps), ws)
    a, b = _final_loss(job, steps), _final_loss(ref, steps)
    print(f"final loss resumed {a:.5f} vs uninterrupted {b:.5f}")
    assert abs(a - b) <= 1e-3 * abs(b), (a, b)  # seeded LoRA init + the checkpoint's RNG and data position
    for s in range(k + 1, steps + 1):
        assert abs(_final_loss(job, s) - _final_loss(ref, s)) <= 1e-3 * abs(_final_loss(ref, s)), s


def test_killed_job_reads_interrupted(ws, base):
    job = jobs.create_job(_onto("data/pirate/train.jsonl", name="killed", steps=5000), ws)
    jobs.launch(job, ws)
    _wait_step(job, 1)
    os.killpg(int((job / "pid").read_text().split()[0]), signal.SIGKILL)
    deadline = time.time() + 10
    while jobs.is_running(job) and time.time() < deadline:
        time.sleep(0.1)
    st = jobs.state(job)
    assert st.status == "interrupted" and "resume" in st.error
    assert st.stages["finetune"]["state"] == "interrupted"
    assert "running" not in {s["state"] for s in st.stages.values()}
    assert not (ws.adapters / "killed").exists()

"""Eleventh red-team pass (2026-12-07, a helper signed in on the share link, attacking the Build, Library and
Deploy handlers): each finding as the request layer (ui.engine.AppEngine, the Build and Deploy services, the
pipeline's job control) meets it, in process. tests/test_security_redteam.py replays the ones that need the
launched app over raw HTTP.

1. a name left empty was derived from the upload's name after the look-alike check ('Pirate.jsonl' published
   'Pirate' beside the protected 'pirate'; '8ase.jsonl' one that looks like 'base');
2. a new base could be named like an existing one ('Defau1t' beside 'default');
3. the preset note read safetensors headers of any folder on the server (a folder oracle) and a crafted header
   of 4,000-digit numbers cost minutes of CPU per request;
4. a job whose process was gone kept its pid: after a restart a recycled pid counted as the job (blocking all
   builds) and Cancel killed that unrelated process;
5. every failed request left a run that every page load read again (8 s with 2,000 runs);
6. lone surrogates (JSON's \\ud800) in a template, a data file or a chat message cut streams and crashed jobs at
   their first event;
7. messages, job logs and records named the server's folders;
8. NaN passed every bound of a recipe;
9. replacing an export kept a full copy beside it (16 base copies under a limit of 8), with no disk check."""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

from app_helpers import make_workspace


@pytest.fixture()
def app(tmp_path):
    from artifacts import Workspace
    from ui.engine import AppEngine
    return AppEngine(Workspace(make_workspace(tmp_path / "ws")))


def test_derived_adapter_names_never_look_like_an_existing_one_or_base(tmp_path):
    from pipeline.recipe import default_adapter_name
    adapters = tmp_path / "adapters"
    (adapters / "pirate").mkdir(parents=True)
    assert default_adapter_name("uploads/Pirate-0123456789.jsonl", adapters) == "Pirate-2"
    assert default_adapter_name("uploads/p1rate-0123456789.jsonl", adapters) == "p1rate-2"
    assert default_adapter_name("data/8ase.jsonl", adapters) == "8ase-2"
    assert default_adapter_name("data/cooking.jsonl", adapters) == "cooking"


def test_recipe_refuses_names_that_look_like_base():
    from pipeline.recipe import Recipe, RecipeError
    for name in ("base", "Base", "8ase", "ba5e", "b.a.s.e"):
        with pytest.raises(RecipeError, match="base"):
            Recipe(adapter_name=name, train_file="data/travel/train.jsonl").validate()


def test_new_base_names_that_look_like_an_existing_base_are_refused(app):
    from artifacts import PolicyError
    for name in ("Defau1t", "DEFAULT", "de-fault", "defau.lt"):
        with pytest.raises(PolicyError, match="looks like the base 'default'"):
            app.policy.base_output(name)
    assert app.policy.base_output("default") == "default"  # (a rebuild of the same name: the replace rules)
    assert app.policy.base_output("mybase") == "mybase"


def _crafted_model(folder: Path, header: bytes) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    (folder / "config.json").write_text("{}")
    return folder


def test_param_count_refuses_crafted_headers_quickly(tmp_path):
    from pipeline.presets import param_count
    big = "9" * 4299
    d = _crafted_model(tmp_path / "huge", ('{"a":{"shape":[' + ",".join([big] * 600) + "]}}").encode())
    t0 = time.perf_counter()
    assert param_count(d) is None
    assert time.perf_counter() - t0 < 5  # (was 18 s; a bound far from the 5 ms it takes, not a benchmark)
    assert param_count(_crafted_model(tmp_path / "list", b"[]")) is None
    assert param_count(_crafted_model(tmp_path / "strs", b'{"a":{"shape":["1"]}}')) is None
    assert param_count(_crafted_model(tmp_path / "ok", b'{"a":{"shape":[3,4]},"b":{"shape":[5]}}')) == 17


def test_preset_note_is_no_oracle_for_folders_outside_the_policy(app, tmp_path):
    """A small model outside what the policy allows is judged like a folder that does not exist ('3-4b');
    the same model where the policy allows it (models/<name>) is judged by its size ('demo')."""
    from pipeline.recipe import Recipe
    outside = _crafted_model(tmp_path / "elsewhere" / "tiny", b'{"a":{"shape":[3,4]}}')
    r = Recipe(base="", base_model=str(outside), preset="auto", train_file="data/travel/train.jsonl")
    missing = Recipe(base="", base_model=str(tmp_path / "nothing"), preset="auto")
    assert app.preset_of(r) == app.preset_of(missing) == "3-4b"
    inside = Recipe(base="", base_model="models/default-hf", preset="auto")
    assert app.preset_of(inside) == "demo"


@pytest.mark.parametrize("pid_file", ["{pid} 1", "{pid}"], ids=["other-start-time", "no-start-time"])
def test_a_recycled_pid_is_neither_the_job_nor_killed_by_cancel(tmp_path, pid_file):
    """The pid file holds the process's start time; an unrelated live process with the recorded pid (as after a
    restart) is not the job: the job reads as interrupted and Cancel leaves that process alone. A pid file
    without the start time (written before it was recorded) names no job either (pass 12)."""
    from pipeline import jobs
    from pipeline.events import EventLog
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        job = tmp_path / "runs" / "20261207-000000-x"
        job.mkdir(parents=True)
        (job / "recipe.yaml").write_text("adapter_name: x\n")
        EventLog(job / "events.jsonl").emit("job_start", job_id=job.name)
        (job / "pid").write_text(pid_file.format(pid=other.pid))  # (tick 1: not when that process started)
        assert not jobs.is_running(job)
        assert jobs.state(job).status == "interrupted"
        assert jobs.cancel(job) == 0.0
        time.sleep(0.2)
        assert other.poll() is None, "the unrelated process was killed"
        (job / "pid").write_text(f"{other.pid} {jobs._start_time(other.pid)}")  # the real one: counted
        assert jobs.is_running(job)
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.wait()


def test_ended_jobs_are_listed_from_a_cache_until_their_files_change(tmp_path, monkeypatch):
    from artifacts import Workspace
    from pipeline import jobs
    from pipeline.events import EventLog
    ws = Workspace(tmp_path)
    for i in range(3):
        d = ws.runs / f"20261207-00000{i}-x{i}"
        d.mkdir(parents=True)
        (d / "recipe.yaml").write_text(f"adapter_name: x{i}\n")
        EventLog(d / "events.jsonl").emit("job_end", status="failed", error=f"bad {i}")
    first = jobs.list_jobs(ws)
    assert [j.error for j in first] == ["bad 2", "bad 1", "bad 0"]
    reads = []
    real_state = jobs.state
    monkeypatch.setattr(jobs, "state", lambda d: reads.append(d) or real_state(d))
    assert [j.error for j in jobs.list_jobs(ws)] == ["bad 2", "bad 1", "bad 0"] and reads == []
    EventLog(ws.runs / "20261207-000001-x1" / "events.jsonl").emit("job_end", status="ok")
    again = jobs.list_jobs(ws)
    assert [j.status for j in again] == ["failed", "ok", "failed"] and len(reads) == 1


def test_lone_surrogates_get_a_message_everywhere():
    from artifacts import LimitError, check_template
    from pipeline.data import DataError, load_examples
    from pipeline.recipe import Recipe, RecipeError
    from ui.chat_engine import UIError, check_conversation
    with pytest.raises(LimitError, match="lone surrogate"):
        check_template("{prompt}\ud800{response}")
    with pytest.raises(RecipeError, match="lone surrogate"):
        Recipe.from_dict({"template": "{prompt}\ud800{response}"})
    with pytest.raises(RecipeError, match="lone surrogate"):
        Recipe.from_dict({"lora": {"target_modules": ["qkv_proj\udfff"]}})
    with pytest.raises(UIError, match="lone surrogate"):
        check_conversation("hello \ud800")


def test_data_files_with_lone_surrogates_are_refused(tmp_path):
    from pipeline.data import DataError, load_examples
    f = tmp_path / "s.jsonl"
    f.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "\\ud800", "response": "x"}\n')
    with pytest.raises(DataError, match=r"s.jsonl:2: prompt holds a lone surrogate"):
        load_examples(f)


def test_event_log_stays_utf8_whatever_it_is_given(tmp_path):
    from pipeline.events import EventLog, read_events
    log = EventLog(tmp_path / "events.jsonl")
    log.emit("log", message="from a library: \ud800!")
    log.emit("log", message="next")
    raw = (tmp_path / "events.jsonl").read_bytes()
    raw.decode("utf-8")  # valid UTF-8
    events, _ = read_events(tmp_path / "events.jsonl")
    assert [e["message"] for e in events][1] == "next" and "from a library" in events[0]["message"]


def test_nan_and_infinity_never_pass_a_recipe():
    from pipeline.data import heldout_size
    from pipeline.recipe import Recipe, RecipeError
    for overrides in ({"eval_fraction": "nan"}, {"lora": {"learning_rate": "nan"}}, {"lora": {"learning_rate": float("nan")}},
                      {"eval_fraction": float("inf")}, {"lora": {"seed": "nan"}}):
        with pytest.raises(RecipeError, match="finite|number"):
            Recipe.from_dict(overrides)
    assert heldout_size(100, float("nan")) == 0


def test_messages_and_records_name_no_server_folder(app):
    from pipeline.recipe import Recipe
    from ui.build_tab import BuildService
    from ui.deploy_tab import push_action
    root = str(app.ws.root)
    assert app.ws.scrub(f"{root}/models/default: no config.json; see {root}") == \
        "models/default: no config.json; see <workspace>"
    assert app.ws.scrub({"a": [f"x {root}/runs/j"]}) == {"a": ["x runs/j"]}
    out = BuildService(app).build_recipe({"base": "", "base_model": "models/default", "adapter_name": "x",
                                          "train_file": "data/travel/train.jsonl"})
    assert not out["ok"] and root not in out["error"] and "models/default" in out["error"], out
    msg = push_action(app, "Model repository", "me/x", "hf_typed_token_1234567890", True, False, "",
                      "default", ["no-such-adapter"], "cpu-basic")
    assert msg.startswith("⚠") and root not in msg, msg
    assert app.ws.shown_model(f"{root}/models/default-hf") == "models/default-hf"
    assert app.ws.shown_model("microsoft/Phi-3.5-mini-instruct") == "microsoft/Phi-3.5-mini-instruct"


def test_shipped_adapters_name_no_server_folder():
    from conftest import ROOT
    for a in ("travel", "pirate"):
        for f in ("adapter_config.json", "README.md"):
            text = (ROOT / "adapters" / a / "peft" / f).read_text()
            assert "models/default-hf" in text and str(ROOT) + "/" not in text and "/work/" not in text
        cfg = json.loads((ROOT / "adapters" / a / "peft" / "adapter_config.json").read_text())
        assert cfg["base_model_name_or_path"] == "models/default-hf"


def test_replacing_an_export_from_the_page_keeps_no_copy_and_checks_the_disk(app, monkeypatch):
    from ui.deploy_tab import export_action
    msg, name = export_action(app, "default", ["travel"], "cpu-basic", "e1")
    assert name == "e1", msg
    msg, name = export_action(app, "default", ["travel"], "cpu-basic", "e1", force=True)
    assert name == "e1", msg
    assert sorted(p.name for p in app.ws.exports.iterdir()) == ["e1"]
    monkeypatch.setenv("STUDIO_MIN_FREE_GB", "1e9")
    msg, name = export_action(app, "default", ["travel"], "cpu-basic", "e2")
    assert name == "" and "free disk" in msg, msg
    assert not (app.ws.exports / "e2").exists()

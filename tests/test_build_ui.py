"""The launched app's restore and evaluation display handlers, and refusals that name the base that fits,
through gradio_client (no build: quick). Runs on a COPY of the workspace (tests/test_browser_newcomer.py's
copy_workspace) with two extra artifacts made from the copies: an adapter whose metadata carries an "eval"
block (with markup in its texts, which must come out escaped) and a second base `other` (the default base
under another fingerprint, so every adapter of `default` is refused there)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import app_helpers as base_tests  # noqa: E402  (free_port, start_app, stop_app, chat)
from test_browser_newcomer import copy_workspace  # noqa: E402

pytestmark = pytest.mark.timeout(600)

EVAL = {"n": 20, "source": "held-out split of uploads/x.jsonl", "base_loss": 3.25, "adapter_loss": 1.5,
        "base_ppl": 25.79, "adapter_ppl": 4.48,
        "samples": [{"prompt": f"p{i} <script>alert(1)</script>", "reference": f"ref {i}",
                     "base": f"base answer {i}", "adapter": f"adapter answer {i} & more"} for i in range(5)]}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("buildui")
    ws = copy_workspace(root / "ws")
    shutil.copytree(ws / "adapters" / "travel", ws / "adapters" / "evaltest")
    meta = json.loads((ws / "adapters" / "evaltest" / "metadata.json").read_text())
    meta.update(name="evaltest", eval=EVAL)
    (ws / "adapters" / "evaltest" / "metadata.json").write_text(json.dumps(meta))
    shutil.copytree(ws / "adapters" / "pirate", ws / "adapters" / "noeval")  # an adapter from before evaluate
    meta = json.loads((ws / "adapters" / "noeval" / "metadata.json").read_text())
    meta.pop("eval", None)
    meta.update(name="noeval")
    (ws / "adapters" / "noeval" / "metadata.json").write_text(json.dumps(meta))
    shutil.copytree(ws / "models" / "default", ws / "models" / "other")
    base = json.loads((ws / "models" / "other" / "base.json").read_text())
    base.update(name="other", fingerprint="0" * 64)
    (ws / "models" / "other" / "base.json").write_text(json.dumps(base))
    port = base_tests.free_port()
    proc = base_tests.start_app(ws, port, root / "app.log")
    from gradio_client import Client
    yield {"client": Client(f"http://127.0.0.1:{port}/", verbose=False), "ws": ws}
    base_tests.stop_app(proc, ws)


def test_page_state_without_a_job(app):
    job_id, payload, base = app["client"].predict(api_name="/build_page_state")  # (the State is not sent)
    assert job_id == "" and payload is None
    assert {"default", "other"} <= {c[0] for c in base["choices"]}
    out = app["client"].predict("no-such-job", api_name="/job_recipe")
    assert "no job" in out["error"]


def test_adapter_eval_display(app):
    html = app["client"].predict("evaltest", api_name="/adapter_eval")
    assert "3.250" in html and "1.500" in html and "-1.750" in html and "25.79" in html and "4.48" in html
    assert html.count("class='eval-sample'") == 5
    assert "<script>" not in html and "&lt;script&gt;" in html and "&amp; more" in html
    assert "held-out split of uploads/x.jsonl" in html
    assert "No evaluation recorded" in app["client"].predict("noeval", api_name="/adapter_eval")
    shipped = json.loads((app["ws"] / "adapters" / "pirate" / "metadata.json").read_text())["eval"]
    html = app["client"].predict("pirate", api_name="/adapter_eval")  # the shipped adapter's own measurement
    assert f"{shipped['base_loss']:.3f}" in html and f"{shipped['adapter_loss']:.3f}" in html
    assert "no adapter" in app["client"].predict("nope", api_name="/adapter_eval")
    _, adapters, _, _ = app["client"].predict(api_name="/library")
    row = next(r for r in adapters["data"] if r[0] == "evaltest")
    assert row[adapters["headers"].index("served loss base → adapter")] == "3.250 → 1.500"


def test_refusal_names_the_base_that_fits(app):
    client = app["client"]
    _, variant, _, refused = client.predict("other", "base", "base", api_name="/refresh_pickers")
    assert [c[0] for c in variant["choices"]] == ["base"]
    assert "`travel`: built for base 'default', pick it above" in refused, refused
    hist_a, _, _, stats = base_tests.chat(client, "Hello", "travel", base="other")
    assert "built for base 'default', pick it above" in stats, stats


def test_job_view_skip_reasons_resume_and_times():
    """The job view of a resumed adapter-on-base build: skipped stages say why, the resumed step is named,
    the stage times (added up across attempts by JobState) add up to the total row."""
    from pipeline.events import JobState
    from ui.build_view import stages_html, status_text
    skip = "building onto base 'default'"
    events = [{"t": 100.0, "type": "job_start", "job_id": "j"},
              {"t": 101.0, "type": "stage_end", "stage": "prepare", "seconds": 1.5},
              {"t": 101.0, "type": "stage_skip", "stage": "awq", "reason": skip, "seconds": 0.0},
              {"t": 102.0, "type": "stage_start", "stage": "finetune"},
              {"t": 110.0, "type": "job_end", "status": "cancelled", "error": "cancelled by the user"},
              {"t": 120.0, "type": "job_start", "job_id": "j"},
              {"t": 121.0, "type": "resume", "stage": "finetune", "step": 50},
              {"t": 130.0, "type": "stage_end", "stage": "finetune", "seconds": 17.25},
              {"t": 130.0, "type": "stage_skip", "stage": "onnx", "reason": skip, "seconds": 0.0}]
    st = JobState.from_events(events)
    html = stages_html(st)
    assert html.count(f"skipped: building onto base &#x27;default&#x27;") == 2, html
    assert "18.8 s" in html  # 1.5 + 0 + 17.25 + 0
    assert "resumed at step 50" in status_text("j", st)


def test_preview_names_the_held_out_split(app):
    """/preview_data keeps its five-argument form; the held-out fields are optional trailing ones."""
    client = app["client"]
    msg = client.predict("data/pirate/train.jsonl", "auto", "", "models/default-hf", False, api_name="/preview_data")
    assert msg.startswith("✓") and "carved from the train file (10 %, seed 0)" in msg, msg[:300]
    msg = client.predict("data/pirate/train.jsonl", "auto", "", "models/default-hf", False, "data/pirate/test.jsonl",
                         0.1, 0, api_name="/preview_data")
    assert "held-out: " in msg and "examples from test.jsonl" in msg, msg[:300]


def test_form_shows_workspace_paths_relative(tmp_path):
    """A job's recipe holds the absolute paths its files were pinned to; the form (and /job_recipe, /load_form,
    the page state), which whoever has the link sees, shows the ones inside the workspace relative to it. A path
    outside stays as it is (only the operator can allow such a root), a Hub id too."""
    from pipeline.recipe import Recipe
    from ui.build_form import FIELD_NAMES, form_values
    ws = tmp_path / "ws"
    r = Recipe(base="", base_model=str(ws / "models" / "mine"), train_file=str(ws / "uploads" / "x-1.jsonl"),
               eval_file=str(tmp_path / "elsewhere" / "t.jsonl"))
    from artifacts import Workspace
    got = dict(zip(FIELD_NAMES, form_values(r, "default", Workspace(ws))[1:]))
    assert (got["base_model"], got["train_file"]) == ("models/mine", "uploads/x-1.jsonl")
    assert got["eval_file"] == str(tmp_path / "elsewhere" / "t.jsonl")
    assert dict(zip(FIELD_NAMES, form_values(r, "default")[1:]))["train_file"] == str(ws / "uploads" / "x-1.jsonl")
    # models/<x> or data/ may be links to elsewhere (as in the tests' workspaces): still named inside it
    import os
    (tmp_path / "real" / "mine").mkdir(parents=True)
    (ws / "models").mkdir(parents=True)
    os.symlink(tmp_path / "real", ws / "data")
    os.symlink(tmp_path / "real" / "mine", ws / "models" / "mine")
    linked = Recipe(base="", base_model=str(ws / "models" / "mine"), train_file=str(ws / "data" / "t.jsonl"))
    got = dict(zip(FIELD_NAMES, form_values(linked, "default", Workspace(ws))[1:]))
    assert (got["base_model"], got["train_file"]) == ("models/mine", "data/t.jsonl")
    # a data file pinned with its links resolved (into the project's data/, which the workspace links):
    # named relative to the project, as a request names it (re-attack: the server path showed)
    from conftest import ROOT
    pinned = Recipe(base="", base_model="x/y", train_file=str((ROOT / "data" / "travel" / "train.jsonl").resolve()))
    got = dict(zip(FIELD_NAMES, form_values(pinned, "default", Workspace(ws))[1:]))
    assert got["train_file"] == "data/travel/train.jsonl"
    hub = Recipe(base="", base_model="microsoft/Phi-3.5-mini-instruct")
    assert dict(zip(FIELD_NAMES, form_values(hub, "default", Workspace(ws))[1:]))["base_model"] == "microsoft/Phi-3.5-mini-instruct"

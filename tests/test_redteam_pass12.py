"""Twelfth red-team pass (2026-12-07, a re-attack of pass 11 by a helper signed in on the share link): each
finding where the code decides it; tests/test_security_redteam.py replays the request-level one (a lone
surrogate anywhere in a request's JSON) over HTTP, tests/test_deploy.py the temporary folder of a push.

1. runs piled up without a bound, and every view of the page carried all of them;
2. every Hub id given as the base model failed in the job ("model folder does not exist": the absolute
   workspace candidate "looked local");
3. lone surrogates still cut answer streams where a handler or Gradio echoed them (job ids, dropdowns, keys);
4. a 400-digit integer crashed the recipe's number check (OverflowError);
5. a Hub token with a newline came back in httpx's "Illegal header value" error;
6. a push of a Space exported on the fly named the server's temporary folder (tests/test_deploy.py);
7. pid files from before the start time was recorded still counted a recycled pid as the job
   (tests/test_redteam_pass11.py, the no-start-time case);
8. the Chat tab named the absolute models folder of a workspace without a base;
9. Workspace.scrub cut paths in the middle of a name (/srv/app ate /srv/app-cache);
10. job_recipe returned its error unscrubbed; 11. '6ase' passed for 'base'."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app_helpers import make_workspace


@pytest.fixture()
def app(tmp_path):
    from artifacts import Workspace
    from ui.engine import AppEngine
    return AppEngine(Workspace(make_workspace(tmp_path / "ws")))


def test_runs_are_capped_for_the_page_and_the_page_shows_the_newest(app, monkeypatch):
    from pipeline.recipe import Recipe
    from pipeline.jobs import JobInfo
    from ui.build_view import RUNS_SHOWN, runs_frame
    from ui.chat_engine import UIError
    for i in range(3):
        (app.ws.runs / f"20261207-00000{i}-old{i}").mkdir(parents=True)
    monkeypatch.setenv("STUDIO_MAX_RUNS", "3")
    with pytest.raises(UIError, match="runs/ already holds 3 runs .* STUDIO_MAX_RUNS"):
        app.start(Recipe(base="default", train_file="data/travel/train.jsonl", adapter_name="x"))
    assert len(list(app.ws.runs.iterdir())) == 3
    many = [JobInfo(f"j{i}", Path("."), "failed", "a", None, "") for i in range(RUNS_SHOWN + 50)]
    assert len(runs_frame(many)) == RUNS_SHOWN


def test_a_hub_id_is_asked_of_the_hub_not_taken_for_a_missing_folder(tmp_path, monkeypatch):
    from pipeline.hub import ModelNotFound, resolve_model
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "models").mkdir()
    with pytest.raises(ModelNotFound) as e:
        resolve_model("alice/tiny", project_root=tmp_path)
    assert "model folder does not exist" not in str(e.value) and "alice/tiny" in str(e.value), e.value
    with pytest.raises(ModelNotFound, match="model folder does not exist"):
        resolve_model("models/nothere", project_root=tmp_path)


def test_lone_surrogates_are_found_in_any_json_body():
    from deploy.launch import has_lone_surrogate
    assert has_lone_surrogate(json.dumps({"data": ["x\ud800"]}).encode())
    assert has_lone_surrogate(json.dumps({"data": [{"\udfff": 1}]}).encode())
    assert not has_lone_surrogate(json.dumps({"data": ["an emoji 😀, escaped as a pair"]}).encode())
    assert not has_lone_surrogate(b'{"data": ["a backslash then ud800: \\\\ud800"]}')
    assert not has_lone_surrogate(b'{"data": ["plain"]}')


def test_huge_integers_get_a_message():
    from pipeline.recipe import Recipe, RecipeError
    for field in ({"lora": {"max_steps": 10**400}}, {"lora": {"r": 10**400}}, {"lora": {"learning_rate": 10**400}},
                  {"lora": {"max_steps": float("inf")}}):
        with pytest.raises(RecipeError, match="finite number"):
            Recipe.from_dict(field)


def test_hub_tokens_must_be_printable_and_are_never_echoed(app):
    from artifacts import PolicyError
    for bad in ("mysecretTOKENvalue\nX-A: b", "sk-SECRET\x00abc", "hf_abc def", "x" * 600):
        with pytest.raises(PolicyError, match="printable ASCII") as e:
            app.policy.hub_token(bad, None)
        assert bad[:10] not in str(e.value)
    assert app.policy.hub_token("  hf_goodToken123  ", None) == "hf_goodToken123"


def test_the_chat_tab_names_no_server_folder_without_a_base(tmp_path):
    from artifacts import Workspace
    from ui.chat_tab import ChatService
    from ui.engine import AppEngine
    (tmp_path / "empty").mkdir()
    out = ChatService(AppEngine(Workspace(tmp_path / "empty"))).pickers(None, "base", "base")
    text = json.dumps(out, default=str)
    assert "No ONNX base model in `models`" in text and str(tmp_path) not in text, text


def test_scrub_takes_whole_path_components_only(tmp_path):
    from artifacts import Workspace
    ws = Workspace(tmp_path / "app")
    root = str(ws.root)
    assert ws.scrub(f"{root}/models/x, {root}, {root}-cache/y, {root}.previous, end {root}.") == \
        f"models/x, <workspace>, {root}-cache/y, {root}.previous, end <workspace>."


def test_job_recipe_errors_name_no_server_folder(app):
    from ui.build_tab import BuildService
    d = app.ws.runs / "20261207-000000-bad"
    d.mkdir(parents=True)
    (d / "recipe.yaml").write_text("{{{: not yaml")
    out = BuildService(app).job_recipe(d.name)
    assert "error" in out and str(app.ws.root) not in out["error"] and "runs/" in out["error"], out


def test_six_passes_for_b():
    from artifacts.names import skeleton
    assert skeleton("6ase") == skeleton("base") and skeleton("rnodel") == skeleton("model")

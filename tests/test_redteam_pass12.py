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
import shutil
import time
from pathlib import Path

import pytest

from app_helpers import make_workspace


@pytest.fixture()
def app(tmp_path):
    from artifacts import Workspace
    from ui.engine import AppEngine
    return AppEngine(Workspace(make_workspace(tmp_path / "ws")))


def _run(ws, name: str, end: str | None, t: float, work: str = "", client: str | None = None) -> Path:
    """A job folder as a job leaves it: its recipe and events (ended with `end`, or still pending); work:
    "prepare" (only that stage done), "steps" (fine-tuning took steps, then stopped) or "" (nothing done);
    client: who asked for it."""
    from pipeline.events import EventLog
    from pipeline.jobs import CLIENT_FILE
    from pipeline.recipe import Recipe
    d = ws.runs / name
    d.mkdir(parents=True)
    Recipe(base="default", train_file="data/travel/train.jsonl", adapter_name=name[-6:]).save(d / "recipe.yaml")
    if client:
        (d / CLIENT_FILE).write_text(client + "\n")
    log = EventLog(d / "events.jsonl")
    log.emit("job_queued", t=t)
    if end:
        log.emit("job_start", t=t)
        if work:
            log.emit("stage_start", stage="prepare", t=t)
            log.emit("stage_end", stage="prepare", t=t)
        if work == "steps":
            log.emit("stage_start", stage="finetune", t=t)
            log.emit("progress", stage="finetune", done=62, total=400, t=t)
        log.emit("job_end", status=end, t=t + 1)
    return d


A, B = "81.2.69.160", "81.2.69.161"
NEVER = 1e12  # keep_s: resumable runs never too old


def test_runs_make_room_without_erasing_other_users_work(app, monkeypatch):
    """runs/ keeps STUDIO_MAX_RUNS folders. Only when room is needed, a new build removes the oldest ended runs that
    hold no work, then the oldest finished ones (their adapters stay published), then resumable runs of a client
    holding more than a quarter of the limit (the one holding most, its oldest first; runs with no recorded client
    count as one client); never a pending or running run. Red-team passes 18-21: start-and-cancel filled runs/
    for good; removing runs with work let start, prepare, cancel erase other users' resumable runs; keeping every
    run with work let complete 9 s builds fill it for good; trimming a client's runs while there was room, by a
    client the requester could pretend to be, erased others' runs."""
    from pipeline import jobs
    from pipeline.jobs import JobInfo
    from pipeline.recipe import Recipe
    from ui.build_view import RUNS_SHOWN, runs_frame
    from ui.chat_engine import UIError
    ws = app.ws
    ok = _run(ws, "20261207-000000-okrun1", "ok", 100.0)
    resumable = _run(ws, "20261207-000001-resum1", "cancelled", 101.0, work="steps", client=B)
    spam = [_run(ws, f"20261207-00001{i}-spam0{i}", "cancelled", 200.0 + i, work="prepare" if i else "",
                 client=A) for i in range(3)]
    pending = _run(ws, "20261207-000020-pend01", None, 50.0)
    assert [j.status for j in jobs.list_jobs(ws)].count("cancelled") == 4
    assert jobs.make_room(ws, 10, keep_s=NEVER) == []
    assert jobs.make_room(ws, 5, keep_s=NEVER) == [spam[0].name, spam[1].name]  # 6 runs: room for one more under 5
    assert jobs.make_room(ws, 3, keep_s=NEVER) == [spam[2].name, ok.name]  # then the oldest finished
    assert sorted(p.name for p in ws.runs.iterdir()) == sorted([resumable.name, pending.name])
    assert jobs.make_room(ws, 2, keep_s=NEVER) == []  # B's one resumable run (within its share) and the pending one stay
    # resumable runs: only while room is needed, and only of a client over a quarter of the limit
    mine = [_run(ws, f"20261207-00005{i}-mine0{i}", "failed", 500.0 + i, work="steps", client=A) for i in range(3)]
    assert jobs.make_room(ws, 8, keep_s=NEVER) == []  # room left: nothing goes, whoever holds what
    assert jobs.make_room(ws, 5, keep_s=NEVER) == [mine[0].name]  # A holds 3 of 5 (share 1); B's one stays
    unknown = [_run(ws, f"20261207-00006{i}-unkn0{i}", "interrupted", 600.0 + i, work="steps") for i in range(3)]
    assert jobs.make_room(ws, 7, keep_s=NEVER) == [unknown[0].name]  # runs without a client are one client, holding most
    assert resumable.exists() and mine[1].exists() and mine[2].exists() and pending.exists()
    # pass 22: four clients within their quarters had locked runs/ for good; resumable runs older than keep_s go
    shutil.rmtree(mine[2])
    shutil.rmtree(unknown[2])  # B, A and the unknown client hold one resumable run each, a pending run: 4
    assert jobs.make_room(ws, 4, keep_s=NEVER) == []  # all within their clients' shares (these ended in 1970)
    assert jobs.make_room(ws, 4, keep_s=3600) == [resumable.name]  # the oldest first, whoever holds it
    resumable = _run(ws, "20261207-000001-resum1", "cancelled", time.time(), work="steps", client=B)
    # the page's start makes room the same way, records who asked, then launches (and this test cancels) the job
    for d in (pending, mine[1], unknown[1]):
        shutil.rmtree(d)  # (a pending run is a running job to the page: it would refuse the start)
    spam = [_run(ws, f"20261207-00003{i}-spam1{i}", "failed", 300.0 + i) for i in range(3)]
    monkeypatch.setenv("STUDIO_MAX_RUNS", "3")
    job = app.start(Recipe(base="default", train_file="data/travel/train.jsonl", adapter_name="fresh1"), client=A)
    try:
        assert sorted(p.name for p in ws.runs.iterdir()) == sorted([resumable.name, spam[2].name, job])
        assert jobs.client_of_run(ws.runs / job) == A
    finally:
        app.cancel(job)
    shutil.rmtree(ws.runs / job)
    shutil.rmtree(spam[2])
    # runs/ full of resumable work within each client's share: a message, and nothing removed
    _run(ws, "20261207-000070-other1", "interrupted", time.time(), work="steps", client=A)
    monkeypatch.setenv("STUDIO_MAX_RUNS", "2")
    with pytest.raises(UIError, match="runs/ already holds 2 runs .* each running or resumable .* STUDIO_MAX_RUNS"):
        app.start(Recipe(base="default", train_file="data/travel/train.jsonl", adapter_name="fresh2"), client=A)
    assert len(list(ws.runs.iterdir())) == 2
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

"""Red-team pass 28 (a stranger on the share link, 2026-12-07): nothing told web clients apart for what they
made. A second address read a build's log, recipe and data (the upload path from /job_recipe, then its examples
through /preview_data), cancelled and resumed the build, replaced the adapter it published (the next chat with
it told users to send their password elsewhere), deleted it, read its held-out evaluation, and replaced an
exported Space folder that its owner would later publish.

Now a run belongs to the client that started it (runs/<id>/client), an adapter and an export to a tag of that
client (artifacts/owners.py: a workspace secret, so that metadata which travels carries no address), and only
the owner, or the operator (a request with no known client), may see or change them. Clients are told apart as
the app does behind a share tunnel: a loopback peer with the X-Forwarded-For the tunnel appends.

Pass 29 re-attacked that: a request with no known address (a Teredo client's, or none forwarded) was the
operator; uploads were anyone's to name (the Library showed their paths); exports and pushes took other users'
adapters with their held-out examples; resume skipped the adapter limit; one client filled the export places;
the page as built listed every client's runs. Each is fixed below."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from app_helpers import free_port, make_workspace, start_app, stop_app
from test_security import BASE, PASSWORD, USER, Raw, answer_of, session_of

pytestmark = pytest.mark.timeout(900)

OWNER, STRANGER = "81.2.69.10", "81.2.69.20"  # public addresses (documentation ranges count as not public)


def as_client(url: str, address: str) -> Raw:
    raw = Raw(url, USER, PASSWORD)
    raw.http.headers["X-Forwarded-For"] = address
    return raw


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("pass28")
    ws = make_workspace(root / "ws")
    port = free_port()
    proc = start_app(ws, port, root / "app.log", ("--auth", f"{USER}:{PASSWORD}"), env={"STUDIO_EXPORT_TURN_S": "5"})
    url = f"http://127.0.0.1:{port}"
    # (no forwarded address: on this shared app (a login) the client is its login session, never the operator)
    yield {"ws": ws, "url": url, "owner": as_client(url, OWNER), "stranger": as_client(url, STRANGER),
           "anonymous": Raw(url, USER, PASSWORD), "log": root / "app.log"}
    stop_app(proc, ws)


def data(r: dict):
    assert r["ok"], r
    return r["data"]


def test_a_build_is_its_starters(app):
    owner, stranger, anonymous, ws = app["owner"], app["stranger"], app["anonymous"], app["ws"]
    r = data(owner.call("build_recipe", [{"base": BASE, "adapter_name": "owner-bot",
                                          "train_file": "data/pirate/train.jsonl", "lora": {"max_steps": 400}}]))[0]
    assert r["ok"], r
    job = r["job_id"]
    assert (ws / "runs" / job / "client").read_text().strip() == OWNER
    # the stranger sees no log, recipe or data path, and cannot cancel it
    s = data(stranger.call("job_summary", [job]))[0]
    assert s["status"] == "unknown" and "another user's build" in s["error"] and "log_tail" not in s, s
    rec = data(stranger.call("job_recipe", [job]))[0]
    assert "another user's build" in rec.get("error", "") and "fields" not in rec, rec
    assert "another user's build" in data(stranger.call("cancel_build", [job]))[-1]
    assert data(owner.call("job_summary", [job]))[0]["status"] in ("pending", "running")
    assert data(owner.call("job_recipe", [job]))[0]["fields"]["adapter_name"] == "owner-bot"
    # the owner cancels; the stranger cannot resume it; the owner can
    deadline = time.time() + 60
    while "cancelled" not in (m := data(owner.call("cancel_build", [job]))[-1]) and time.time() < deadline:
        time.sleep(0.5)  # (a job that has not written its start yet says "not running")
    assert "cancelled" in m, m
    assert "another user's build" in data(stranger.call("resume_build", [job]))[-1]
    assert data(owner.call("job_summary", [job]))[0]["status"] in ("cancelled", "failed")
    # a request with no known address is not the operator on a shared app: it sees nothing of it either
    assert "another user's build" in data(anonymous.call("job_summary", [job]))[0]["error"]
    assert "another user's build" in data(anonymous.call("resume_build", [job]))[-1]
    assert answer_of(stranger.chat()).strip()


def _plant_adapter(ws, name: str, owner: str | None) -> None:
    """A copy of the shipped travel adapter, not protected, owned by `owner`'s tag (None: nobody's)."""
    from artifacts import Workspace, owner_tag
    d = ws / "adapters" / name
    shutil.copytree(ws / "adapters" / "travel", d)
    meta = json.loads((d / "metadata.json").read_text())
    meta.pop("protected", None)
    meta["name"], meta["owner"] = name, owner_tag(Workspace(ws), owner)
    (d / "metadata.json").write_text(json.dumps(meta))


def _exports_in_order(app, *made) -> None:
    """Exports the base as each (name, client) of `made`, in order, each written after the one before (eviction
    goes by the marker's time), and asserts that each was made."""
    from ui.deploy_tab import export_action
    for name, client in made:
        msg, got = export_action(app, BASE, [], "cpu-basic", name, client=client)
        assert got == name, msg
        time.sleep(0.05)


def test_an_adapter_is_replaced_deleted_and_its_evaluation_read_by_its_builder_only(app):
    owner, stranger, anonymous, ws = app["owner"], app["stranger"], app["anonymous"], app["ws"]
    _plant_adapter(ws, "owned-bot", OWNER)
    _plant_adapter(ws, "operators-bot", None)
    _plant_adapter(ws, "anonymous-bot", session_of(anonymous))
    data(owner.call("library", []))  # (the app sees the new folders)

    def dataset_of(client, name):  # the Library's adapters table as `client` reads it (pass 32: the dataset column)
        table = data(client.call("library", []))[1]
        col = table["headers"].index("dataset")
        return next(row[col] for row in table["data"] if row[0] == name)
    assert dataset_of(stranger, "owned-bot") == "(another user's)"
    assert dataset_of(owner, "owned-bot") not in ("", "(another user's)")
    assert dataset_of(stranger, "travel") not in ("", "(another user's)")  # shipped: everyone's
    for name in ("owned-bot", "operators-bot"):
        r = data(stranger.call("build_recipe", [{"base": BASE, "adapter_name": name, "replace": True,
                                                 "train_file": "data/pirate/train.jsonl",
                                                 "lora": {"max_steps": 1}}]))[0]
        assert not r["ok"] and "another user" in r["error"], r
        assert "another user" in data(stranger.call("delete_adapter", [name, True]))[-1]
        assert (ws / "adapters" / name / "adapter.onnx_adapter").is_file()
    ev = data(stranger.call("adapter_eval", ["owned-bot"]))[0]
    assert "another user's adapter" in ev, ev
    assert "another user's adapter" not in data(owner.call("adapter_eval", ["owned-bot"]))[0]
    assert "another user's adapter" not in data(stranger.call("adapter_eval", ["travel"]))[0]  # shipped: public
    assert "deleted" in data(owner.call("delete_adapter", ["owned-bot", True]))[-1]
    assert not (ws / "adapters" / "owned-bot").exists()
    # a request with no known address: its login session, never the operator; another session is another client
    other = Raw(app["url"], USER, PASSWORD)
    assert "another user" in data(other.call("delete_adapter", ["anonymous-bot", True]))[-1]
    assert "another user" in data(anonymous.call("delete_adapter", ["operators-bot", True]))[-1]
    assert "deleted" in data(anonymous.call("delete_adapter", ["anonymous-bot", True]))[-1]
    assert (ws / "adapters" / "operators-bot").is_dir()
    # pass 33: a cookie of the client's own choosing whose name begins like Gradio's is not an identity (it was:
    # a new value per request was a new client, past every per-client limit)
    from ui.slots import session_tag
    _plant_adapter(ws, "minted-bot", session_tag("mint-1"))
    data(owner.call("library", []))
    anonymous.http.cookies.set("access-token-0", "mint-1")
    assert "another user" in data(anonymous.call("delete_adapter", ["minted-bot", True]))[-1]
    assert (ws / "adapters" / "minted-bot").is_dir()
    assert answer_of(stranger.chat()).strip()


def test_the_operator_acts_on_every_build_and_adapter(tmp_path):
    """A request with no known client on an app that is not shared (alone on localhost), and the command line:
    the operator, who may see and change everything."""
    from artifacts import Policy, PolicyError, Workspace
    from pipeline import jobs
    from pipeline.recipe import Recipe
    from ui.engine import AppEngine, NotYours
    ws = make_workspace(tmp_path / "ws")
    app = AppEngine(Workspace(ws))
    d = jobs.create_job(Recipe(base=BASE, adapter_name="x", train_file="data/pirate/train.jsonl"), Workspace(ws),
                        client=OWNER)
    assert app.recipe_of(d.name).adapter_name == "x" and app.recipe_of(d.name, OWNER).adapter_name == "x"
    with pytest.raises(NotYours):
        app.recipe_of(d.name, STRANGER)
    assert [j.job_id for j in app.list_jobs(STRANGER)] == [] and [j.job_id for j in app.list_jobs()] == [d.name]
    _plant_adapter(ws, "owned-bot", OWNER)
    pol = Policy(Workspace(ws))
    pol.adapter_change("owned-bot", client=None)
    pol.adapter_change("owned-bot", client=OWNER)
    with pytest.raises(PolicyError, match="another user"):
        pol.adapter_change("owned-bot", client=STRANGER)


def test_no_known_address_is_the_operator_only_on_an_app_that_is_not_shared(monkeypatch):
    from ui.slots import ANONYMOUS, SHARED_ENV, requester

    class Req:  # a loopback peer with no forwarded address
        class client:
            host = "127.0.0.1"
        headers = {}

        class app:  # Gradio's app: its session cookies are named after cookie_id; tokens, the logins it issued
            cookie_id = "abc"
            tokens = {"tok-1": "ann", "tok-2": "ann"}
    monkeypatch.delenv(SHARED_ENV, raising=False)
    assert requester(Req()) is None
    monkeypatch.setenv(SHARED_ENV, "1")
    assert requester(Req()) == ANONYMOUS  # (no login session either: an app shared without a password)
    Req.cookies = {"access-token-abc": "tok-1"}
    one = requester(Req())
    Req.cookies = {"access-token-unsecure-abc": "tok-2"}
    assert one.startswith("session-") and requester(Req()).startswith("session-") and requester(Req()) != one
    for forged in ({"access-token-abc": "tok-9"}, {"access-token-0": "tok-1"}, {"access-token-xyz": "tok-1"}):
        Req.cookies = forged  # a token Gradio did not issue, or another cookie name: no session (pass 33)
        assert requester(Req()) == ANONYMOUS, forged
    Req.headers = {"x-forwarded-for": OWNER}
    assert requester(Req()) == OWNER


def test_an_export_is_replaced_by_its_exporter_only(app):
    from artifacts import Workspace, export_owner, owner_tag
    owner, stranger, ws = app["owner"], app["stranger"], app["ws"]
    time.sleep(5.5)  # (turns of earlier tests' exports)
    m = data(owner.call("export_space", [BASE, [], "cpu-basic", "space-owner", False]))[0]
    assert "exported" in m, m
    d = ws / "exports" / "space-owner"
    assert export_owner(d) == owner_tag(Workspace(ws), OWNER) and OWNER not in (d / ".studio-export").read_text()
    before = sorted(p.name for p in d.iterdir())
    m = data(stranger.call("export_space", [BASE, ["travel"], "cpu-basic", "space-owner", True]))[0]
    assert "another user" in m, m
    assert sorted(p.name for p in d.iterdir()) == before and not (d / "adapters" / "travel").exists()
    # pass 36: the export gate knows who asks (it was entered without the request: everyone was one client) and
    # gives turns: right after its export, the owner waits at least STUDIO_EXPORT_TURN_S (5 s) while others export
    m = data(owner.call("export_space", [BASE, ["travel"], "cpu-basic", "space-owner", True]))[0]
    assert "other users get a turn at the Space export or push first" in m, m
    other = app["anonymous"]  # (the stranger just had its turn: its refused replace above)
    assert "exported" in data(other.call("export_space", [BASE, [], "cpu-basic", "space-other", False]))[0]
    time.sleep(5.5)
    assert "exported" in data(owner.call("export_space", [BASE, ["travel"], "cpu-basic", "space-owner", True]))[0]


def test_a_preview_with_another_seed_does_not_parse_the_file_again(tmp_path, monkeypatch):
    """Before: the preview cache was keyed by seed and held-out fraction too, so a new seed per request parsed a
    6.5 MB file of 199,000 rows again (1.6 CPU-s each): two addresses held both data-check slots. Now the files'
    counts and first examples are kept by the files' identity; the held-out note still follows the seed."""
    from artifacts import Workspace
    from ui import build_data
    from ui.engine import AppEngine
    app = AppEngine(Workspace(make_workspace(tmp_path / "ws")))
    up = app.ws.root / "uploads"
    up.mkdir(exist_ok=True)
    f = up / "many.jsonl"
    f.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                  {"role": "assistant", "content": f"a{i}"}]}) + "\n"
                         for i in range(500)))
    calls = []
    real = build_data.load_examples
    monkeypatch.setattr(build_data, "load_examples", lambda *a, **k: calls.append(a) or real(*a, **k))
    outs = [build_data.preview_data(app, "uploads/many.jsonl", "auto", "{prompt} -> {response}", "", False, seed=s,
                                    eval_fraction=fr) for s, fr in ((1, 0.1), (2, 0.1), (3, 0.2), (4, 0.3))]
    assert len(calls) == 1, calls
    assert all(o.startswith("✓ many.jsonl: 500 examples") for o in outs), outs[0][:200]
    assert "seed 2" in outs[1] and "450 for training" in outs[1] and "400 for training" in outs[2], outs[1][:300]
    assert "q0" in outs[0] and "q2" in outs[0]  # the first examples, rendered
    f.write_text(f.read_text() + json.dumps({"messages": [{"role": "user", "content": "x"},
                                                          {"role": "assistant", "content": "y"}]}) + "\n")
    assert "501 examples" in build_data.preview_data(app, "uploads/many.jsonl", "auto", "{prompt} -> {response}", "", False)
    assert len(calls) == 2  # a changed file is read again


def test_a_shared_app_limits_build_jobs_unless_the_operator_did(app):
    """Before: with STUDIO_MAX_JOB_MEM_GB and STUDIO_MAX_JOB_MIN unset (the default), one stranger's build at
    batch 64 x 2,048 tokens took 12 GB in 45 s and kept climbing, and max_steps 100,000 held the one build slot
    for good. A shared app (a login, a share link, a Space) now sets half of the machine's memory and 120
    minutes for the jobs when the operator set nothing (a job over them stops as if cancelled: resumable)."""
    from artifacts.limits import (JOB_MEMORY_ENV, JOB_MINUTES_ENV, max_job_memory_bytes, max_job_seconds,
                                  shared_job_defaults)
    env = {}
    said = shared_job_defaults(env)
    total = __import__("os").sysconf("SC_PAGE_SIZE") * __import__("os").sysconf("SC_PHYS_PAGES")
    assert abs(max_job_memory_bytes(env) - total / 2) < 0.06e9 and max_job_seconds(env) == 120 * 60
    assert len(said) == 3 and JOB_MEMORY_ENV in said[0] and "STUDIO_MAX_BUILD_MIN_PER_CLIENT=240" in said[2], said
    env = {JOB_MEMORY_ENV: "3", JOB_MINUTES_ENV: "0"}  # the operator's choice (0: no time limit) stays
    assert shared_job_defaults(env) == [] and env == {JOB_MEMORY_ENV: "3", JOB_MINUTES_ENV: "0"}
    assert "shared app: build jobs are stopped (resumable) beyond STUDIO_MAX_JOB_MEM_GB=" in app["log"].read_text()


def test_a_client_keeps_a_bounded_number_of_adapters(tmp_path, monkeypatch):
    """Before: one-step rank-512 builds published a 55 MB adapter every 13 s and nothing removed them (the disk's
    free-space floor then refused everyone's builds). A web client now owns at most STUDIO_MAX_ADAPTERS_PER_CLIENT
    adapters (default 8): beyond, a new build is refused until it deletes or replaces one of its own."""
    from artifacts import Workspace
    from pipeline.recipe import Recipe
    from ui.chat_engine import UIError
    from ui.engine import AppEngine
    monkeypatch.setenv("STUDIO_MAX_ADAPTERS_PER_CLIENT", "2")
    ws = make_workspace(tmp_path / "ws")
    app = AppEngine(Workspace(ws))
    _plant_adapter(ws, "mine-1", OWNER)
    _plant_adapter(ws, "mine-2", OWNER)
    _plant_adapter(ws, "theirs", STRANGER)
    r = Recipe(base=BASE, adapter_name="mine-3", train_file="data/pirate/train.jsonl")
    with pytest.raises(UIError, match="you have 2 adapters on this server"):
        app.start(r, client=OWNER)
    assert not (ws / "runs").exists() or not any((ws / "runs").iterdir())
    app._check_client_adapters(Recipe(base=BASE, adapter_name="mine-1", replace=True), OWNER)  # its own: fine
    app._check_client_adapters(r, STRANGER)  # one adapter: below the limit
    app._check_client_adapters(r, None)  # the operator: no limit
    monkeypatch.setenv("STUDIO_MAX_ADAPTERS_PER_CLIENT", "0")
    app._check_client_adapters(r, OWNER)  # 0: no limit


# ------------------------------------------------------------------ pass 29: re-attacking pass 28
def test_pass29_an_upload_is_named_by_its_uploaders_only(tmp_path):
    """Before: the Library named another client's upload (its dataset column), the data check then showed its
    examples, and a build on it exposed its held-out split through the attacker's own adapter. A web client may
    now name a file of uploads/ only if it uploaded it (the same message as for a missing file); data/ is
    everyone's; the operator names any."""
    from artifacts import Workspace
    from pipeline.recipe import Recipe
    from ui import build_data
    from ui.chat_engine import UIError
    from ui.engine import AppEngine
    ws = make_workspace(tmp_path / "ws")
    app = AppEngine(Workspace(ws))
    src = tmp_path / "secret.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"SECRET {i}", "response": "x"}) + "\n" for i in range(30)))
    dest = build_data.store_upload(app, str(src), OWNER)
    args = (app, dest, "auto", "{prompt} -> {response}", "", False)
    assert "SECRET 0" in build_data.preview_data(*args, client=OWNER)
    for who in (STRANGER, "anonymous"):
        out = build_data.preview_data(*args, client=who)
        assert "SECRET" not in out and "no such file" in out, out
        with pytest.raises(UIError, match="no such file"):
            app.check_recipe(Recipe(base=BASE, adapter_name="thief", train_file=dest), who)
    assert "SECRET 0" in build_data.preview_data(*args)  # the operator
    app.check_recipe(Recipe(base=BASE, adapter_name="mine", train_file=dest), OWNER)
    # the same content uploaded by the stranger too: then it may name it (it has the data anyway)
    assert build_data.store_upload(app, str(src), STRANGER) == dest
    assert "SECRET 0" in build_data.preview_data(*args, client=STRANGER)
    app.check_recipe(Recipe(base=BASE, adapter_name="x", train_file="data/pirate/train.jsonl"), STRANGER)  # data/


def test_pass29_resume_counts_towards_the_adapter_limit(tmp_path, monkeypatch):
    """Before: builds started and cancelled below the limit were resumed past it (5 adapters at a limit of 2)."""
    from artifacts import Workspace
    from pipeline import jobs
    from pipeline.recipe import Recipe
    from ui.chat_engine import UIError
    from ui.engine import AppEngine
    monkeypatch.setenv("STUDIO_MAX_ADAPTERS_PER_CLIENT", "2")
    ws = make_workspace(tmp_path / "ws")
    app = AppEngine(Workspace(ws))
    d = jobs.create_job(Recipe(base=BASE, adapter_name="q0", train_file="data/pirate/train.jsonl"), Workspace(ws),
                        client=OWNER)
    _plant_adapter(ws, "mine-1", OWNER)
    _plant_adapter(ws, "mine-2", OWNER)
    with pytest.raises(UIError, match="you have 2 adapters"):
        app.resume(d.name, OWNER)


def test_pass29_exports_hold_the_shipped_adapters_and_the_clients_own(tmp_path, monkeypatch):
    """Before: a client exported another's adapter, whose metadata carries its evaluation's held-out examples, and
    could push it to a Hub repository of its own; it could also publish another's export folder; and one client
    filled every export place, which only it could replace. Now a client exports and pushes the shipped adapters
    and its own, publishes its own exports, and keeps at most STUDIO_MAX_EXPORTS_PER_CLIENT (2) exports."""
    from artifacts import Workspace
    from ui.deploy_tab import export_action, push_action
    from ui.engine import AppEngine
    ws = make_workspace(tmp_path / "ws")
    app = AppEngine(Workspace(ws))
    _plant_adapter(ws, "victim-bot", OWNER)
    msg, _ = export_action(app, BASE, ["travel", "victim-bot"], "cpu-basic", "a-space", client=STRANGER)
    assert "victim-bot are other users'" in msg and not (ws / "exports" / "a-space").exists(), msg
    for kind, folder in (("Model repository", ""), ("Space", "")):
        m = push_action(app, kind, "me/x", "hf_typed", True, False, folder, BASE, ["victim-bot"], "cpu-basic",
                        client=STRANGER)
        assert "other users'" in m, m
    msg, name = export_action(app, BASE, ["victim-bot"], "cpu-basic", "victim-space", client=OWNER)
    assert name == "victim-space", msg
    m = push_action(app, "Space", "me/x", "hf_typed", True, False, "victim-space", BASE, [], "cpu-basic",
                    client=STRANGER)
    assert "another user's export" in m, m
    assert export_action(app, BASE, ["travel"], "cpu-basic", "s1", client=STRANGER)[1] == "s1"
    assert export_action(app, BASE, [], "cpu-basic", "s2", client=STRANGER)[1] == "s2"
    msg, name = export_action(app, BASE, [], "cpu-basic", "s3", client=STRANGER)
    assert not name and "you have 2 exports" in msg, msg
    assert export_action(app, BASE, ["travel"], "cpu-basic", "s1", force=True, client=STRANGER)[1] == "s1"
    assert export_action(app, BASE, [], "cpu-basic", "s3", client=None)[1] == "s3"  # the operator


def test_pass29_the_page_as_built_lists_no_runs(app):
    """Before: after a restart, /config (the page as built, the same for everyone) listed every client's runs."""
    assert any((app["ws"] / "runs").iterdir())
    cfg = app["stranger"].http.get("/config").json()
    (runs,) = [c for c in cfg["components"] if c.get("props", {}).get("elem_id") == "build-runs"]
    assert not runs["props"]["value"]["data"], runs["props"]["value"]


# ------------------------------------------------------------------ pass 30: re-attacking pass 29
def test_pass30_a_name_is_not_proof_of_the_content(tmp_path):
    """Before: an upload whose name (stem and 10-digit digest) matched another client's made the uploader an owner
    of that file without its bytes (a digest prefix can be forged: 24 bits took 66 s on one core). A different
    file under a taken name is now stored under its full digest."""
    import hashlib
    from artifacts import Workspace, may_use_upload
    from ui import build_data
    from ui.engine import AppEngine
    ws = make_workspace(tmp_path / "ws")
    app = AppEngine(Workspace(ws))
    src = tmp_path / "acme.jsonl"
    src.write_text(json.dumps({"prompt": "forged", "response": "x"}) + "\n")
    taken = ws / "uploads" / f"acme-{hashlib.sha256(src.read_bytes()).hexdigest()[:10]}.jsonl"
    taken.parent.mkdir(exist_ok=True)
    taken.write_text(json.dumps({"prompt": "VICTIM SECRET", "response": "x"}) + "\n")  # the victim's, same name
    from artifacts import add_upload_owner
    add_upload_owner(Workspace(ws), taken.name, OWNER)
    dest = build_data.store_upload(app, str(src), STRANGER)
    assert dest != f"uploads/{taken.name}" and hashlib.sha256(src.read_bytes()).hexdigest() in dest
    assert not may_use_upload(Workspace(ws), taken.name, STRANGER) and may_use_upload(Workspace(ws), taken.name, OWNER)
    assert "VICTIM" in taken.read_text()


def test_pass30_new_bases_count_per_client(tmp_path):
    """Before: builds of a new base (a full copy of a model each) were outside every per-client limit. A web client
    now builds at most STUDIO_MAX_BASES_PER_CLIENT (1) new bases; building onto a published base is not limited."""
    from artifacts import Workspace, owner_tag
    from pipeline.recipe import Recipe
    from ui.chat_engine import UIError
    from ui.engine import AppEngine
    ws = make_workspace(tmp_path / "ws")
    app = AppEngine(Workspace(ws))
    mine = ws / "models" / "sq-base"
    shutil.copytree(ws / "models" / BASE, mine)
    meta = json.loads((mine / "base.json").read_text())
    meta["name"], meta["owner"] = "sq-base", owner_tag(Workspace(ws), OWNER)
    (mine / "base.json").write_text(json.dumps(meta))
    new = Recipe(base="", base_model="models/default-hf", base_name="sq-base2", adapter_name="b2",
                 train_file="data/pirate/train.jsonl")
    with pytest.raises(UIError, match="you have built 1 base"):
        app._check_client_adapters(new, OWNER)
    new.replace = True  # (rebuilding an adapter of its own does not pass the base limit either)
    with pytest.raises(UIError, match="you have built 1 base"):
        app._check_client_adapters(new, OWNER)
    app._check_client_adapters(new, STRANGER)
    app._check_client_adapters(new, None)
    app._check_client_adapters(Recipe(base=BASE, adapter_name="onto", train_file="data/pirate/train.jsonl"), OWNER)


# ------------------------------------------------------------------ pass 32: the remaining open items of pass 31
def test_pass32_a_few_clients_cannot_fill_exports_for_everyone(tmp_path, monkeypatch):
    """Before: four addresses at their per-client limit (2) filled STUDIO_MAX_EXPORTS (8) and nobody else could
    export until the operator removed some. At the limit, the least recently written export of another web client
    now makes room (its owner can export it again); the operator's exports and the requester's own never do."""
    from artifacts import Workspace
    from ui.deploy_tab import export_action
    from ui.engine import AppEngine
    monkeypatch.setenv("STUDIO_MAX_EXPORTS", "3")
    ws = make_workspace(tmp_path / "ws")
    app = AppEngine(Workspace(ws))
    third = "81.2.69.30"
    exports = ws / "exports"
    _exports_in_order(app, ("owner-1", OWNER), ("owner-2", OWNER), ("stranger-1", STRANGER))
    # pass 36: an export that fails (an adapter deleted meanwhile) removes nothing: the room is made once it is written
    msg, name = export_action(app, BASE, ["ghost"], "cpu-basic", "third-0", client=third)
    assert not name and "no adapter 'ghost'" in msg, msg
    assert sorted(d.name for d in exports.iterdir()) == ["owner-1", "owner-2", "stranger-1"]
    msg, name = export_action(app, BASE, ["travel"], "cpu-basic", "third-1", client=third)
    assert name == "third-1", msg  # the oldest export of another client made room
    assert sorted(d.name for d in exports.iterdir()) == ["owner-2", "stranger-1", "third-1"]
    # the requester's own exports are not removed for it: STRANGER's next export takes OWNER's or third's, oldest first
    assert export_action(app, BASE, [], "cpu-basic", "stranger-2", client=STRANGER)[1] == "stranger-2"
    assert sorted(d.name for d in exports.iterdir()) == ["stranger-1", "stranger-2", "third-1"]
    # the operator's exports are never removed: with exports/ full of the operator's, a web client is refused
    for d in list(exports.iterdir()):
        shutil.rmtree(d)
    for i in range(3):
        assert export_action(app, BASE, [], "cpu-basic", f"op-{i}", client=None)[1] == f"op-{i}"
    msg, name = export_action(app, BASE, [], "cpu-basic", "late", client=third)
    assert not name and "the limit is 3" in msg, msg
    assert sorted(d.name for d in exports.iterdir()) == ["op-0", "op-1", "op-2"]
    # pass 33: a login session (a stranger with the password mints one per login) does not make room; an address does
    from ui.slots import session_tag
    for d in list(exports.iterdir()):
        shutil.rmtree(d)
    for i, who in enumerate((OWNER, STRANGER, third)):
        assert export_action(app, BASE, [], "cpu-basic", f"addr-{i}", client=who)[1] == f"addr-{i}"
    msg, name = export_action(app, BASE, [], "cpu-basic", "minted", client=session_tag("login-9"))
    assert not name and "the limit is 3" in msg, msg
    assert sorted(d.name for d in exports.iterdir()) == ["addr-0", "addr-1", "addr-2"]
    for d in list(exports.iterdir()):
        shutil.rmtree(d)
    for i in range(3):
        assert export_action(app, BASE, [], "cpu-basic", f"op-{i}", client=None)[1] == f"op-{i}"
    # the operator at the limit makes room the same way (a web client's export, never its own)
    shutil.rmtree(exports / "op-2")
    assert export_action(app, BASE, [], "cpu-basic", "web", client=third)[1] == "web"
    msg, name = export_action(app, BASE, [], "cpu-basic", "op-3", client=None)
    assert name == "op-3", msg
    assert sorted(d.name for d in exports.iterdir()) == ["op-0", "op-1", "op-3"]


# ------------------------------------------------------------------ pass 33
def test_pass33_a_web_clients_build_time_counts_its_attempts_and_its_day(tmp_path, monkeypatch):
    """Before: STUDIO_MAX_JOB_MIN stopped a run 'as a cancel does' and Resume started the clock again, so one
    stranger held the only build slot for as long as it liked (a 100,000-step build at 2 steps/s, resumed each
    time it stopped), or started the next. A web client's build now gets the limit over all its attempts, and a
    client starts or resumes builds only while its runs of the last 24 hours ran less than
    STUDIO_MAX_BUILD_MIN_PER_CLIENT (default twice the job limit)."""
    from artifacts import Workspace
    from pipeline import jobs
    from pipeline.events import seconds_run
    from pipeline.recipe import Recipe
    from ui.chat_engine import UIError
    from ui.engine import AppEngine
    monkeypatch.setenv("STUDIO_MAX_JOB_MIN", "0.01")  # 0.6 s
    ws = make_workspace(tmp_path / "ws")
    w = Workspace(ws)
    r = Recipe(base=BASE, adapter_name="hog", train_file="data/pirate/train.jsonl")
    r.lora.max_steps = 100000
    job = jobs.create_job(r, w, client=OWNER)
    jobs.launch(job, w)
    st = jobs.wait(job, timeout_s=300)
    assert st.status == "cancelled" and "its attempts together" in st.error, (st.status, st.error)
    first = seconds_run(job / "events.jsonl")
    assert first >= 0.6
    app = AppEngine(w)
    with pytest.raises(UIError, match="has run .* min, the operator's limit per build"):
        app.resume(job.name, OWNER)
    # launched again all the same (the command line), the attempt stops at once: the clock did not start again
    jobs.launch(job, w)
    st = jobs.wait(job, timeout_s=300)
    assert st.status == "cancelled" and "its attempts together" in st.error, st.error
    ends = [e for e in jobs.read_events(job / "events.jsonl")[0] if e["type"] == "job_end"]
    assert len(ends) == 2
    # the day's budget: OWNER's runs ran `first`+ seconds; with a budget below that, OWNER starts nothing more
    monkeypatch.setenv("STUDIO_MAX_JOB_MIN", "0")
    monkeypatch.setenv("STUDIO_MAX_BUILD_MIN_PER_CLIENT", str(first / 120))
    with pytest.raises(UIError, match="your builds ran .* in the last 24 hours"):
        app.start(Recipe(base=BASE, adapter_name="next", train_file="data/pirate/train.jsonl"), OWNER)
    app._check_client_time(STRANGER)  # another client, and the operator, are not held to OWNER's day
    app._check_client_time(None)
    # a run of the day before does not count
    old = jobs.create_job(Recipe(base=BASE, adapter_name="old", train_file="data/pirate/train.jsonl"), w,
                          client=STRANGER)
    with open(old / "events.jsonl", "w") as f:  # ten hours of building, ended two days ago
        t = time.time() - 2 * 86400
        f.write(json.dumps({"t": t - 36000, "type": "job_start"}) + "\n" + json.dumps({"t": t, "type": "job_end"}) + "\n")
    os.utime(old / "events.jsonl", (t, t))
    assert seconds_run(old / "events.jsonl") == pytest.approx(36000)
    app._check_client_time(STRANGER)
    # without the limits the run finishes, and what it publishes records its owner and whose limits it counts in
    from artifacts import owner_tag, quota_tag
    from test_pipeline import _resume_to_the_end
    monkeypatch.setenv("STUDIO_MAX_BUILD_MIN_PER_CLIENT", "0")
    _resume_to_the_end(job, w)
    meta = json.loads((ws / "adapters" / "hog" / "metadata.json").read_text())
    assert meta["owner"] == owner_tag(w, OWNER) and meta["quota"] == quota_tag(w, OWNER) == meta["owner"]


# ------------------------------------------------------------------ pass 34: re-attacking pass 33
def test_pass34_login_sessions_share_one_set_of_limits(tmp_path, monkeypatch):
    """Before: a client with no known address was its login session for the limits too, so a stranger with the
    password logged in again for a fresh 24-hour build budget (200 logins took 0.4 s), and fresh adapter, base and
    export limits. What a session makes stays its own to see and change; the limits of every login session are now
    one (artifacts/owners.quota_of), and an address keeps its own."""
    from artifacts import Workspace, owner_tag, quota_tag
    from pipeline import jobs
    from pipeline.recipe import Recipe
    from ui.chat_engine import UIError
    from ui.deploy_tab import export_action
    from ui.engine import AppEngine
    from ui.slots import session_tag
    one, two = session_tag("login-1"), session_tag("login-2")
    ws = make_workspace(tmp_path / "ws")
    w = Workspace(ws)
    app = AppEngine(w)
    # build time: session one's run of ten minutes counts against session two
    monkeypatch.setenv("STUDIO_MAX_BUILD_MIN_PER_CLIENT", "5")
    run = jobs.create_job(Recipe(base=BASE, adapter_name="s1", train_file="data/pirate/train.jsonl"), w, client=one)
    t = time.time()
    (run / "events.jsonl").write_text(json.dumps({"t": t - 600, "type": "job_start"}) + "\n"
                                      + json.dumps({"t": t - 1, "type": "job_end", "status": "cancelled"}) + "\n")
    for who in (one, two):
        with pytest.raises(UIError, match="builds of users without a known address .* ran 10 min"):
            app._check_client_time(who)
    app._check_client_time(OWNER)  # an address is held to its own
    monkeypatch.delenv("STUDIO_MAX_BUILD_MIN_PER_CLIENT")
    # adapters: session one's count against session two; the owner stays session one
    monkeypatch.setenv("STUDIO_MAX_ADAPTERS_PER_CLIENT", "1")
    _plant_adapter(ws, "one-bot", one)
    meta = json.loads((ws / "adapters" / "one-bot" / "metadata.json").read_text())
    meta["quota"] = quota_tag(w, one)
    (ws / "adapters" / "one-bot" / "metadata.json").write_text(json.dumps(meta))
    assert meta["owner"] == owner_tag(w, one) != meta["quota"]
    new = Recipe(base=BASE, adapter_name="two-bot", train_file="data/pirate/train.jsonl")
    with pytest.raises(UIError, match="users without a known address .* together have 1 adapters"):
        app._check_client_adapters(new, two)
    app._check_client_adapters(new, OWNER)
    # exports: the sessions' two together
    three = session_tag("login-3")
    exports = ws / "exports"
    assert export_action(app, BASE, [], "cpu-basic", "e1", client=one)[1] == "e1"
    time.sleep(0.05)
    assert export_action(app, BASE, [], "cpu-basic", "e2", client=two)[1] == "e2"
    assert export_action(app, BASE, [], "cpu-basic", "e2", force=True, client=one)[1] == ""  # e2 is two's own
    # pass 35: a session at the sessions' shared limit is not locked out for good: the oldest export of another
    # session makes room (a session logged out can never replace its own again)
    time.sleep(0.05)
    assert export_action(app, BASE, [], "cpu-basic", "e3", client=three)[1] == "e3"
    assert sorted(d.name for d in exports.iterdir()) == ["e2", "e3"]
    time.sleep(0.05)
    assert export_action(app, BASE, [], "cpu-basic", "e4", client=three)[1] == "e4"
    msg, name = export_action(app, BASE, [], "cpu-basic", "e5", client=three)  # its own are never taken for it
    assert not name and "together have 2 exports" in msg, msg
    assert sorted(d.name for d in exports.iterdir()) == ["e3", "e4"]
    assert export_action(app, BASE, [], "cpu-basic", "e3", force=True, client=three)[1] == "e3"
    assert export_action(app, BASE, [], "cpu-basic", "a1", client=OWNER)[1] == "a1"  # an address: its own limit
    assert sorted(d.name for d in exports.iterdir()) == ["a1", "e3", "e4"]


# ------------------------------------------------------------------ pass 35: re-attacking pass 34
def test_pass35_chat_slots_count_a_48_as_one_and_unknown_addresses_together(tmp_path, monkeypatch):
    """Before: the chat cap (2 answers per client) counted an IPv6 client per /64 (six /64s of one /48 held 12
    streams), and did not count requests with no known address at all: one login holder sent 40 compares, took the
    8 chat slots and the queue, and a chat from an address waited 33 s. An IPv6 client now counts by its /48, and on
    a shared app every request with no known address shares one cap (half the chat slots)."""
    import gradio as gr
    from gradio_client import Client

    from ui.chat_engine import ChatOnlyEngine
    from ui.chat_tab import CHAT_SLOTS, ChatService
    from ui.interface import create_chat_only_ui, launch_kwargs
    from ui.slots import SHARED_ENV, UNKNOWN, ClientSlots

    def req(host, xff=None):
        return gr.Request(client={"host": host}, headers={"x-forwarded-for": xff} if xff else {})
    monkeypatch.delenv(SHARED_ENV, raising=False)
    assert ClientSlots.key_of(req("127.0.0.1")) is None  # alone on localhost: not limited
    monkeypatch.setenv(SHARED_ENV, "1")
    assert ClientSlots.key_of(req("127.0.0.1")) == UNKNOWN
    keys = {ClientSlots.key_of(req(f"2a00:1450:4001:{i}::1")) for i in range(6)}
    assert len(keys) == 1, keys
    s = ClientSlots(2, unknown=4)
    (k,) = keys
    assert s.take(k) and s.take(k) and not s.take(k)
    assert all(s.take(UNKNOWN) for _ in range(4)) and not s.take(UNKNOWN)
    s.give(UNKNOWN)
    assert s.take(UNKNOWN)
    assert ChatService(None).slots.unknown == CHAT_SLOTS // 2
    # the launched app: with the unknown-address share held, such a request is told so at once; an address is served
    ws = make_workspace(tmp_path / "ws")
    demo = create_chat_only_ui(ChatOnlyEngine(root=str(ws), provider="cpu"))
    svc = demo.ui_tabs["chat"].respond_fn.__self__
    svc.slots = ClientSlots(1, unknown=1)
    assert svc.slots.take(UNKNOWN)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, **launch_kwargs())
    data = ["Hi", [], [], BASE, "base", "base", False, 0.0, 1.0, 0, 4, 1.0, 0]
    try:
        url = f"http://127.0.0.1:{port}"
        out = Client(url, verbose=False).predict(*data, api_name="/chat")
        assert "from users without a known address (login sessions) is still streaming" in out[3] and not out[0], out
        out = Client(url, verbose=False, headers={"x-forwarded-for": "81.2.69.143"}).predict(*data, api_name="/chat")
        assert out[0][-1]["role"] == "assistant" and out[0][-1]["content"], out
        assert svc.slots._held == {UNKNOWN: 1}, "the answered request gave its slot back"
    finally:
        demo.close()


# ------------------------------------------------------------------ pass 36: re-attacking pass 35
def test_pass36_owners_by_64_limits_by_48_and_ipv4_inside_ipv6_is_ipv4(tmp_path, monkeypatch):
    """Before: ownership went by an IPv6 client's /48, which many providers split among customers (a /56 or /64
    each), so unrelated users in one /48 replaced each other's exports; and behind a NAT64 translator every IPv4
    user was one owner (64:ff9b::a.b.c.d, and the SIIT forms, all fell in one /48). An IPv6 client now owns by its
    /64 and is limited by its /48; an IPv6 address that carries an IPv4 one is that IPv4 address."""
    import gradio as gr

    from artifacts import Workspace, may_change, owner_tag, quota_of
    from ui.slots import SHARED_ENV, requester

    def req(host, xff=None):
        return gr.Request(client={"host": host}, headers={"x-forwarded-for": xff} if xff else {})
    monkeypatch.setenv(SHARED_ENV, "1")
    for form in ("64:ff9b::81.2.69.10", "64:ff9b::5102:450a", "::ffff:0:81.2.69.10", "::81.2.69.10",
                 "2002:5102:450a::1", "::ffff:81.2.69.10"):
        assert requester(req("10.0.0.2", form)) == "81.2.69.10", form
        assert requester(req(form)) == "81.2.69.10", form
    assert requester(req("10.0.0.2", "64:ff9b::81.2.69.20")) == "81.2.69.20"
    a, b = requester(req("2a02:8070:88:ff00::1")), requester(req("2a02:8070:88:101::1"))
    assert a == "2a02:8070:88:ff00::/64" and b == "2a02:8070:88:101::/64"
    assert quota_of(a) == quota_of(b) == "2a02:8070:88::/48"  # one subscriber's limits
    ws = Workspace(tmp_path / "ws")
    assert not may_change(ws, owner_tag(ws, a), b) and may_change(ws, owner_tag(ws, a), a)


# ------------------------------------------------------------------ pass 37: re-attacking pass 36
def test_pass37_export_gate_turns_by_requester_and_a_line(monkeypatch):
    """Before: the export/push gate's turns went by the limit key (an IPv6 /48, or every address-less request
    together), so a client looping failed exports kept its neighbours out (0 of 28 exports); and a client asking
    every few ms always won the slot when it came free, so two identities of one user (IPv4 and IPv6) held it
    (victim 0 of 48). Turns now go by requester (the /64, the login session), and a client refused while the slot
    is busy is in line: while anyone is in line only the first may enter."""
    import gradio as gr

    from ui.slots import SHARED_ENV, Gate
    monkeypatch.delenv(SHARED_ENV, raising=False)

    def req(host):
        return gr.Request(client={"host": host}, headers={})
    a, b, c = req("2a02:8070:88:ff00::1"), req("2a02:8070:88:101::1"), req("81.2.69.50")  # a, b: one /48
    gate = Gate("Space export or push", total=1, turns_s=0.3)
    with gate.enter(a) as busy:
        assert busy is None
    with gate.enter(a) as busy:
        assert "other users get a turn" in busy  # a's turn ...
    with gate.enter(b) as busy:
        assert busy is None  # ... does not hold its neighbour b
    time.sleep(0.35)
    with gate.enter(a) as busy:
        assert busy is None
        with gate.enter(c) as refused:
            assert "busy" in refused  # c is now first in line
    with gate.enter(b) as busy:  # (b's own turn is over too) the slot is free, but c is first
        assert busy is not None and "1 other user is waiting" in busy, busy
    with gate.enter(c) as busy:
        assert busy is None
    with gate.enter(b) as busy:  # b was in line behind c: next
        assert busy is None
    # alone on localhost (no known client): no turns, no line
    with gate.enter(req("127.0.0.1")) as busy:
        assert busy is None
    with gate.enter(req("127.0.0.1")) as busy:
        assert busy is None


def test_pass37_neighbours_in_one_48_are_not_locked_out_by_each_other(tmp_path, monkeypatch):
    """Before: the /64s of one IPv6 /48 shared the export limit (pass 36), and one neighbour's two exports locked
    the other out for good (it could not replace them either), with the neighbour's names in the refusal. As for
    login sessions (pass 35), the oldest export of another member of the group now makes room; refusals name only
    the client's own."""
    from artifacts import Workspace
    from pipeline.recipe import Recipe
    from ui.chat_engine import UIError
    from ui.deploy_tab import export_action
    from ui.engine import AppEngine
    ws = make_workspace(tmp_path / "ws")
    app = AppEngine(Workspace(ws))
    near, victim = "2a02:8070:88:ff00::/64", "2a02:8070:88:101::/64"
    exports = ws / "exports"
    _exports_in_order(app, ("n1", near), ("n2", near), ("v1", victim))
    assert sorted(d.name for d in exports.iterdir()) == ["n2", "v1"]
    _exports_in_order(app, ("v2", victim))
    msg, name = export_action(app, BASE, [], "cpu-basic", "v3", client=victim)
    assert not name and "your network (2a02:8070:88::/48) has 2 exports" in msg and "yours: v1, v2" in msg, msg
    # adapters: the refusal names only the client's own
    monkeypatch.setenv("STUDIO_MAX_ADAPTERS_PER_CLIENT", "1")
    _plant_adapter(ws, "near-bot", near)
    from artifacts import quota_tag
    meta = json.loads((ws / "adapters" / "near-bot" / "metadata.json").read_text())
    meta["quota"] = quota_tag(Workspace(ws), near)
    (ws / "adapters" / "near-bot" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(UIError) as e:
        app._check_client_adapters(Recipe(base=BASE, adapter_name="mine", train_file="data/pirate/train.jsonl"), victim)
    assert "has 1 adapters" in str(e.value) and "near-bot" not in str(e.value), e.value

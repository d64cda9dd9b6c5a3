"""Red-team findings on top of issue 12 (tests/test_security.py holds the issue's own): the launched app
(`python app.py --auth ...`) driven over raw HTTP, each attack asserting that it fails AND that the app
still serves a chat.

- Gradio's run-history routes sat outside the app's login and called the Hub with the server's HF_TOKEN
  (list/create buckets, read records) for any loopback client: run history is off;
- a build's base_name replaced an entry of models/ that is not a base (the HF checkpoint models/default-hf);
- a request's Hub id was looked up (in the app) and downloaded (in the job) with the server's HF_TOKEN;
- exports/ and uploads/ grew without a bound (each export copies a base), and so did Gradio's upload
  cache (every /gradio_api/upload is kept an hour): an hourly upload budget answers 429 beyond it;
- deeply nested JSON or a 10,000-digit number in a data file gave Gradio's opaque error.

The Hub is a local recorder (HF_ENDPOINT) that logs every request with its Authorization header and
answers a model lookup as if the model existed, so that a build job starts and tries to download."""
from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from app_helpers import free_port, make_workspace, start_app, stop_app
from test_security import BASE, PASSWORD, SERVER_TOKEN, USER, Raw, answer_of, snapshot, text

pytestmark = pytest.mark.timeout(900)

MAX_EXPORTS = 2
MAX_UPLOADS_MB = 1
UPLOAD_BUDGET_MB = 6


class Recorder:
    """A stand-in Hub: records (method, path, authorization); /api/models/<id> answers a model."""

    def __init__(self):
        self.seen: list[tuple[str, str, str | None]] = []
        rec = self

        class H(BaseHTTPRequestHandler):
            def _answer(self):
                rec.seen.append((self.command, self.path, self.headers.get("authorization")))
                if self.path.startswith("/api/models/"):
                    repo = "/".join(self.path.split("?")[0].split("/")[3:5])
                    body = json.dumps({"id": repo, "sha": "a" * 40, "private": True,
                                       "siblings": [{"rfilename": "config.json"}]}).encode()
                    self.send_response(200)
                else:
                    body = b"{}"
                    self.send_response(404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def tokens(self) -> set:
        return {a for _, _, a in self.seen if a}


@pytest.fixture(scope="module")
def red(tmp_path_factory):
    root = tmp_path_factory.mktemp("redteam")
    ws = make_workspace(root / "ws")
    hub = Recorder()
    port = free_port()
    env = {"HF_TOKEN": SERVER_TOKEN, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
           "STUDIO_MAX_EXPORTS": str(MAX_EXPORTS), "STUDIO_MAX_UPLOADS_MB": str(MAX_UPLOADS_MB),
           "STUDIO_UPLOAD_BUDGET_MB": str(UPLOAD_BUDGET_MB)}
    proc = start_app(ws, port, root / "app.log", ("--auth", f"{USER}:{PASSWORD}"), env=env)
    url = f"http://127.0.0.1:{port}"
    yield {"ws": ws, "url": url, "raw": Raw(url), "hub": hub, "log": root / "app.log"}
    stop_app(proc, ws)
    hub.server.shutdown()


def serves(red) -> None:
    assert answer_of(Raw(red["url"]).chat()).strip()


def test_run_history_routes_are_off(red):
    """Before: GET /gradio_api/run-history/buckets without logging in made the app list the server
    token's buckets on the Hub (POST .../connect created one, .../records read one)."""
    anon = httpx.Client(base_url=red["url"], timeout=60)
    for client in (anon, red["raw"].http):
        for method, path, body in (("GET", "/gradio_api/run-history/buckets", None),
                                   ("POST", "/gradio_api/run-history/connect", {"bucket_id": "victim/bucket"}),
                                   ("GET", "/gradio_api/run-history/records?bucket=operator/private", None)):
            r = client.request(method, path, json=body) if body else client.request(method, path)
            assert r.status_code in (401, 404, 405), (path, r.status_code, r.text[:300])
    assert not any("bucket" in p for _, p, _ in red["hub"].seen), red["hub"].seen
    assert SERVER_TOKEN not in " ".join(red["hub"].tokens())
    serves(red)


@pytest.mark.parametrize("via", ["build_recipe", "start_build"])
def test_base_name_never_replaces_what_is_not_a_base(red, via):
    """Before: base_name 'default-hf' published the build's ONNX base over the HF checkpoint
    models/default-hf (kept only as default-hf.previous): the default recipe broke for everyone."""
    raw, ws = red["raw"], red["ws"]
    before = snapshot(ws / "models")
    hf_target = os.readlink(ws / "models" / "default-hf") if (ws / "models" / "default-hf").is_symlink() else None
    for name in ("default-hf", "default-hf.previous", "../adapters/travel"):
        fields = {"base": "", "base_name": name, "eval_file": "", "awq": {"enabled": False}, "lora": {"max_steps": 1}}
        if via == "build_recipe":
            r = raw.call("build_recipe", [fields])
            assert r["ok"] and not r["data"][0]["ok"], r
            msg = r["data"][0]["error"]
        else:
            fn = raw.fn("start_build")
            r = raw.call(fn, raw.defaults(fn, build_mode="New base from a model", build_base_name=name,
                                          build_eval_file="",
                                          build_awq_enabled=False,
                                          build_lora_max_steps=1))
            assert r["ok"], r
            msg = r["data"][1]
        assert "not an ONNX base" in msg or "not allowed" in msg or "not a safe" in msg, msg
    assert snapshot(ws / "models") == before
    if hf_target is not None:
        assert os.readlink(ws / "models" / "default-hf") == hf_target
    assert not (ws / "runs").exists() or not any((ws / "runs").iterdir())
    serves(red)


def test_shipped_adapters_are_neither_replaced_nor_deleted(red):
    """Before (red team, 2026-12-06): a build with adapter_name 'travel' and replace: true put a pirate-trained
    adapter where everyone chats with 'travel' (twice, and the original was gone), and /delete_adapter
    removed 'pirate'. Adapters whose metadata says protected (the shipped ones) now refuse both."""
    raw, ws = red["raw"], red["ws"]
    before = snapshot(ws / "adapters")
    for name in ("travel", "pirate"):
        assert json.loads((ws / "adapters" / name / "metadata.json").read_text())["protected"] is True
        r = raw.call("build_recipe", [{"base": "default", "adapter_name": name, "replace": True,
                                       "train_file": "data/pirate/train.jsonl", "lora": {"max_steps": 1}}])
        assert r["ok"] and not r["data"][0]["ok"] and "protected" in r["data"][0]["error"], r
        r = raw.call("delete_adapter", [name, True])
        assert r["ok"] and "protected" in r["data"][-1], r
    assert snapshot(ws / "adapters") == before
    assert not (ws / "runs").exists() or not any((ws / "runs").iterdir())
    serves(red)


def test_hub_ids_are_looked_up_and_downloaded_without_the_server_token(red):
    """Before: base_model 'operator/private-model' made the app ask the Hub with the server's HF_TOKEN
    (and the build job inherited it to download): a request could probe and pull private models."""
    raw, hub = red["raw"], red["hub"]
    r = raw.call("build_recipe", [{"base": "", "base_model": "operator/private-model", "eval_file": "",
                                   "adapter_name": "probe", "awq": {"enabled": False}}])
    assert r["ok"], r
    res = r["data"][0]
    if res.get("ok"):  # the lookup found it (the recorder says it exists): the job tries to download
        job = res["job_id"]
        for _ in range(300):
            s = raw.call("job_summary", [job])["data"][0]
            if s["status"] not in ("running", "pending"):
                break
            time.sleep(1)
        assert s["status"] == "failed", s  # nothing to download: no weights behind the recorder
    paths = [p for _, p, _ in hub.seen]
    assert any("operator/private-model" in p for p in paths), paths  # the Hub was asked ...
    assert SERVER_TOKEN not in " ".join(hub.tokens()), hub.seen   # ... never with the server's token
    assert not any(a for _, p, a in hub.seen if "private-model" in p), hub.seen
    serves(red)


def test_exports_are_capped(red):
    """Before: every export_space with a new name copied the base (8.7 MB here, GBs for a real model)
    into exports/, without a bound."""
    raw, ws = red["raw"], red["ws"]
    fn = raw.fn("export_space")
    existing = [d for d in (ws / "exports").iterdir()] if (ws / "exports").exists() else []
    made = []
    for i in range(MAX_EXPORTS + 3):
        r = raw.call(fn, ["default", ["travel"], "cpu-basic", f"fill-{i}", False])
        assert r["ok"], r
        if r["data"][0].startswith("exported"):
            made.append(i)
        else:
            assert "limit" in r["data"][0], r
    assert len(made) + len(existing) == MAX_EXPORTS, (made, existing)
    dirs = [d for d in (ws / "exports").iterdir() if not d.name.endswith(".previous")]
    assert len(dirs) == MAX_EXPORTS
    if made:  # replacing an existing export stays allowed
        r = raw.call(fn, ["default", ["travel"], "cpu-basic", f"fill-{made[0]}", True])
        assert r["data"][0].startswith("exported"), r
    serves(red)


def test_uploads_folder_is_capped(red):
    """Before: each upload with new content was kept in uploads/ forever, without a bound. Pass 24: then, once it
    was full, every later upload was refused for good (a few clients with fresh content filled it once). Now the
    least recently used uploads that no run names make room; an upload a run names stays."""
    from pipeline.recipe import Recipe
    raw, ws = red["raw"], red["ws"]
    up = ws / "uploads"
    line = json.dumps({"prompt": "p" * 1000, "response": "r"}) + "\n"
    names = []
    for i in range(4):
        before = {p.name for p in up.iterdir()} if up.exists() else set()
        # (the first small enough for one client's share of protected uploads: a quarter of the folder)
        f = raw.upload(f"big{i}.jsonl", (line * (80 if i == 0 else 350)).encode()
                       + f'{{"prompt": "{i}", "response": "x"}}\n'.encode())
        r = raw.preview("", file=f)
        assert r["ok"], text(r)[:500]
        assert "uploads folder is full" not in r["data"][1], r["data"][1][:300]
        new = {p.name for p in up.iterdir()} - before
        assert len(new) == 1, new
        names.append(new.pop())
        if i == 0:  # a run needs the first one: its recipe names it by absolute path, as the app records it
            run = ws / "runs" / "pass24-run"
            run.mkdir(parents=True, exist_ok=True)
            Recipe(train_file=str((up / names[0]).resolve())).save(run / "recipe.yaml")
        used = sum(p.stat().st_size for p in up.iterdir())
        assert used <= MAX_UPLOADS_MB * 1e6, used
    left = {p.name for p in up.iterdir()}
    assert names[0] in left and names[3] in left  # the one in use, and the newest
    assert names[1] not in left                   # the least recently used one no run names made room
    serves(red)


@pytest.mark.parametrize("content", [b"[" * 300000 + b"]" * 300000 + b"\n",
                                     b'{"messages": ' + b"[" * 100000 + b"]" * 100000 + b"}\n",
                                     b'{"prompt": "a", "response": "b", "n": 1' + b"0" * 10000 + b"}\n"],
                         ids=["nested-list", "nested-messages", "long-integer"])
def test_hostile_json_gets_a_message(red, content):
    """Before: a deeply nested line (RecursionError) or a 10,000-digit number failed the upload and the
    preview with Gradio's opaque error (a traceback in the log) instead of a message."""
    raw = red["raw"]
    f = raw.upload("hostile.jsonl", content)
    r = raw.preview("", file=f)
    assert r["ok"], text(r)[:500]
    assert "bad data file" in r["data"][1] and ("nested too deeply" in r["data"][1] or "digits" in r["data"][1])
    serves(red)


def test_chat_history_of_thousands_of_tiny_messages_is_refused(red):
    """Re-attack 2026-12-06: a /queue/join body under the 512 kB cap carrying ~7,800 one-character messages
    cost ~1.6 CPU-s of Gradio's parsing (16x a normal chat). Now 413 before Gradio parses it; a chat with
    a real history (both panes) still answers."""
    raw = red["raw"]
    tiny = [{"role": "user" if i % 2 == 0 else "assistant", "content": "a"} for i in range(7_800)]
    r = raw.call("chat", ["hi", tiny, [], BASE, "base", "base", False, 0.0, 1.0, 0, 4, 1.0, 0])
    assert not r["ok"] and r["status"] == 413 and ("JSON items" in r["error"] or "JSON values" in r["error"]), \
        text(r)[:300]
    zeros = raw.call("chat", ["hi", [0] * 160_000, [], BASE, "base", "base", False, 0.0, 1.0, 0, 4, 1.0, 0])
    assert zeros.get("status") == 413 and "JSON values" in zeros["error"], text(zeros)[:300]  # pass 16
    hist = [{"role": "user" if i % 2 == 0 else "assistant",
             "content": [{"type": "text", "text": "Tell me about the ski trip."}]} for i in range(60)]
    r = raw.call("chat", ["And in May?", hist, hist, BASE, "base", "base", True, 0.0, 1.0, 0, 4, 1.0, 0])
    assert r["ok"], text(r)[:500]
    serves(red)


def test_clients_not_signed_in_get_tiny_bodies_only(red):
    """Fifth pass: without a login, bodies held for the JSON check could fill the server's bound (every chat
    503) and header-only uploads held the upload budget. Now a client without a live session may send 16 kB
    at most (uploads too), while a signed-in one keeps the usual limits."""
    body = json.dumps({"data": ["x" * 100_000], "fn_index": 0, "session_hash": "s"})
    with httpx.Client(base_url=red["url"], timeout=60) as anon:
        r = anon.post("/gradio_api/queue/join", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "without login" in r.text, (r.status_code, r.text[:200])
        r = anon.post("/gradio_api/queue/join", content=b'{"data": []}', headers={"content-type": "application/json"})
        assert r.status_code == 401, (r.status_code, r.text[:200])  # small: Gradio's own answer
        r = anon.post("/gradio_api/upload", files={"files": ("a.jsonl", b"x" * 100_000)})
        assert r.status_code == 413, (r.status_code, r.text[:200])
    raw = red["raw"]
    r = raw.http.post("/gradio_api/queue/join", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, (r.status_code, r.text[:200])  # signed in: the 512 kB limit
    serves(red)


def test_chat_history_holds_text_only(red):
    """Seventh pass: Gradio's Chatbot built a component from every "component" item of a request's history
    before the handler ran. A 6.5 kB lossless WebP of 13,000 x 13,000 px in a ~9 kB body took 3.7 GB of memory
    and 10 s; a file item pointing into the workspace was hashed and copied into Gradio's cache (200 items,
    5.5 CPU-s). Now any history item that is not text is refused before it is built; text still chats."""
    import base64
    import io

    from PIL import Image
    raw, ws = red["raw"], red["ws"]
    buf = io.BytesIO()
    Image.new("RGB", (4000, 4000), (200, 10, 10)).save(buf, "WEBP", lossless=True)
    big = "data:image/webp;base64," + base64.b64encode(buf.getvalue()).decode()
    items = [{"type": "component", "component": "image", "value": {"path": None, "url": big, "orig_name": "x.png"},
              "constructor_args": {}, "props": {}},
             {"type": "component", "component": "file", "value": {"path": "models/default-hf/model.safetensors"},
              "constructor_args": {}, "props": {}}]
    for item in items:
        for pane in (0, 1):
            hist = [{"role": "user", "content": [{"type": "text", "text": "Hi"}, item]}]
            panes = [hist, []] if pane == 0 else [[], hist]
            r = raw.call("chat", ["hi", *panes, BASE, "base", "base", pane == 1, 0.0, 1.0, 0, 4, 1.0, 0])
            assert not r["ok"] and "text only" in r["error"], text(r)[:300]
    hist = [{"role": "user", "content": [{"type": "text", "text": "Tell me about Lisbon."}]},
            {"role": "assistant", "content": [{"type": "text", "text": "A city by the sea."}]}]
    r = raw.call("chat", ["And Porto?", hist, [], BASE, "base", "base", False, 0.0, 1.0, 0, 4, 1.0, 0])
    assert r["ok"] and r["data"][0][-1]["content"], text(r)[:300]
    serves(red)


@pytest.mark.parametrize("name", ["pirate\n", "travel\n", "fresh\n", "a\nb"])
def test_names_with_a_newline_are_refused(red, name):
    """Seventh pass: `^...$` let a name end in a newline: adapter_name 'pirate\\n' built a second adapter that
    the pickers show as 'pirate', answering with the attacker's weights, and the page could not delete it
    (the protection check stripped the name and refused as for the shipped 'pirate'). Names are now matched
    whole: refused before any job starts."""
    raw, ws = red["raw"], red["ws"]
    runs = set((ws / "runs").iterdir()) if (ws / "runs").exists() else set()
    before = snapshot(ws / "adapters")
    r = raw.call("build_recipe", [{"base": "default", "adapter_name": name, "train_file": "data/pirate/train.jsonl",
                                   "lora": {"max_steps": 1}}])
    assert r["ok"] and not r["data"][0]["ok"] and "not a safe folder name" in r["data"][0]["error"], r
    r = raw.call("build_recipe", [{"base": "", "base_name": "default\n", "eval_file": "",
                                   "awq": {"enabled": False}, "lora": {"max_steps": 1}}])
    assert r["ok"] and not r["data"][0]["ok"], r
    assert snapshot(ws / "adapters") == before
    assert (set((ws / "runs").iterdir()) if (ws / "runs").exists() else set()) == runs  # no job started


def test_chat_history_check_holds_after_the_pane_was_updated(red):
    """Re-attack of the text-only check: a patch on the Chatbot instances was lost once a handler had returned
    gr.update(...) for a pane (the variant pickers, Compare): Gradio then serves that session a new Chatbot.
    The check now sits on Gradio's Chatbot class."""
    raw = red["raw"]
    item = {"type": "component", "component": "image",
            "value": {"path": None, "url": "data:image/png;base64,iVBORw0KGgo=", "orig_name": "x.png"},
            "constructor_args": {}, "props": {}}
    hist = [{"role": "user", "content": [{"type": "text", "text": "Hi"}, item]}]
    session = "updated-panes"
    bots = {cid for cid, c in raw.comps.items() if c.get("props", {}).get("elem_id") in ("chat-bot-a", "chat-bot-b")}
    updating = [i for i, d in enumerate(raw.cfg["dependencies"]) if d.get("backend_fn") and bots & set(d["outputs"])
                and d.get("api_name") not in ("chat", "clear_chat", "respond")]
    assert len(updating) >= 3, updating  # Compare and the two pane titles
    for i in updating:  # every handler that updates a pane, in the session that then chats
        assert raw.call_in(session, i, raw.defaults(i, chat_compare=True))["ok"]
    for pane in (0, 1):
        panes = [hist, []] if pane == 0 else [[], hist]
        r = raw.call_in(session, raw.fn("chat"), ["hi", *panes, BASE, "base", "base", pane == 1, 0.0, 1.0, 0, 4,
                                                  1.0, 0])
        assert not r["ok"] and "text only" in r["error"], text(r)[:300]
    serves(red)


@pytest.mark.parametrize("where", ["message", "history", "seed"])
def test_inputs_take_no_file_by_url(red, where):
    """Re-attack: Gradio moves every {"path", "meta": {"_type": "gradio.FileData"}} found in any input into its
    cache before any handler runs, and downloads an http(s) path whole, with no size limit: a ~1 kB body could
    make the server pull a multi-GB file past every cap. Now refused before anything is fetched."""
    raw = red["raw"]
    f = {"path": "http://files.invalid/big.bin", "meta": {"_type": "gradio.FileData"}}
    args = ["hi", [], [], BASE, "base", "base", False, 0.0, 1.0, 0, 4, 1.0, 0]
    if where == "message":
        args[0] = f
    elif where == "history":
        args[1] = [{"role": "user", "content": [{"type": "file", "file": f}]}]
    else:
        args[12] = f
    r = raw.call("chat", args)
    assert not r["ok"] and "not by URL" in r["error"], text(r)[:300]
    serves(red)


@pytest.mark.parametrize("name", ["traveI", "trave1", "travel_", "p1rate", "pirate.", "Base", "base"])
def test_lookalike_adapter_names_are_refused(red, name):
    """Re-attack: only case was folded, so 'traveI', 'trave1', 'travel_' or 'p1rate' built adapters that pass
    for the shipped ones in the pickers, and 'Base' for the base itself ('base' built for a minute, then the
    engine refused it as reserved). Refused before any job starts."""
    raw, ws = red["raw"], red["ws"]
    runs = set((ws / "runs").iterdir()) if (ws / "runs").exists() else set()
    r = raw.call("build_recipe", [{"base": "default", "adapter_name": name, "train_file": "data/pirate/train.jsonl",
                                   "lora": {"max_steps": 1}}])
    assert r["ok"] and not r["data"][0]["ok"] and ("looks like" in r["data"][0]["error"]
                                                   or "reserved" in r["data"][0]["error"]), r
    assert (set((ws / "runs").iterdir()) if (ws / "runs").exists() else set()) == runs  # no job started


def test_gradio_routes_the_app_never_uses_are_closed(red):
    """Ninth pass: POST /gradio_api/process_recording left every posted video in /tmp for good (outside the
    upload budget, ~45 MB/s from one client); GET /gradio_api/deep_link wrote a session's every value (a typed
    Hub token too) into a world-readable file kept forever; component_server made a session state per new
    session id. All three answer 404 now, before Gradio; a Range request on a file is served whole (Gradio's
    ranged answer copied every request header, the session cookie too, into the response)."""
    raw = red["raw"]
    r = raw.http.post("/gradio_api/process_recording", files={"video": ("v.mp4", b"\0" * 10_000)})
    assert r.status_code == 404, (r.status_code, r.text[:200])
    for path in ("/gradio_api/deep_link?session_hash=abc", "/gradio_api/deep_link/"):
        assert raw.http.get(path).status_code == 404
    r = raw.http.post("/gradio_api/component_server", json={"component_id": 1, "session_hash": "x", "fn_name": "f",
                                                            "data": None})
    assert r.status_code == 404, (r.status_code, r.text[:200])
    up = raw.http.post("/gradio_api/upload", files={"files": ("a.jsonl", b'{"prompt": "a", "response": "b"}\n')})
    assert up.status_code == 200, up.text
    path = up.json()[0]
    for route in (f"/gradio_api/file={path}", f"/gradio_api/file/{path}"):  # (the second: Gradio's old route)
        for rng in ({"Range": "bytes=0-3"}, {"RANGE": "bytes=0-3"}):
            r = raw.http.get(route, headers={**rng, "X-Secret": "s3"})
            assert r.status_code == 200 and r.content.startswith(b'{"prompt"'), (route, r.status_code, r.content[:50])
            assert "x-secret" not in {k.lower() for k in r.headers} and "cookie" not in {k.lower() for k in r.headers}
    serves(red)


def test_upload_parts_without_a_file_name_get_a_message(red):
    """An upload's "files" part without a file name is a plain form field to Gradio's parser; its upload route
    then raised a TypeError, answered as a bare 500 (and the keep-alive connection was dropped). Now 400 with a
    message, and uploads right after it work."""
    raw = red["raw"]
    r = raw.http.post("/gradio_api/upload", files={"files": ("", b'{"prompt": "a", "response": "b"}\n')})
    assert r.status_code == 400 and "file name" in r.text, (r.status_code, r.text[:200])
    up = raw.http.post("/gradio_api/upload", files={"files": ("ok.jsonl", b'{"prompt": "a", "response": "b"}\n')})
    assert up.status_code == 200 and up.json()[0].endswith("ok.jsonl"), up.text
    assert "not an instance of GradioUploadFile" not in red["log"].read_text()
    serves(red)


def test_pass11_lone_surrogates_and_nan_get_messages_over_http(red):
    """Eleventh pass: a chat message or a template holding a lone surrogate (JSON's \\ud800) cut the response
    stream (orjson refuses them) or crashed the job at its first event; NaN passed the recipe's bounds. Each now
    gets a message, and no job is left behind."""
    raw = red["raw"]
    # (since pass 12 a lone surrogate anywhere in a request's JSON is refused before Gradio: 400)
    r = raw.chat(message="hello \ud800 there")
    assert not r["ok"] and r["status"] == 400 and "lone surrogate" in text(r), text(r)[:300]
    runs = set(os.listdir(red["ws"] / "runs")) if (red["ws"] / "runs").exists() else set()
    for fields in ({"template": "{prompt}\ud800{response}"}, {"lora.learning_rate": float("nan")},
                   {"eval_fraction": "nan"}, {"lora.max_steps": 10**400}):
        r = raw.call("build_recipe", [{"train_file": "data/travel/train.jsonl", "adapter_name": "s11", **fields}])
        if not r["ok"]:
            assert r["status"] == 400 and "lone surrogate" in text(r), text(r)[:300]
            continue
        assert r["data"][0]["ok"] is False and "finite" in r["data"][0]["error"], r["data"][0]
    after = set(os.listdir(red["ws"] / "runs")) if (red["ws"] / "runs").exists() else set()
    assert after == runs
    serves(red)


def test_pass12_a_lone_surrogate_anywhere_in_a_request_is_refused_before_gradio(red):
    """Twelfth pass: where a handler or Gradio echoed a lone surrogate (an unknown job id, a dropdown's "not in
    the choices", an unknown recipe key) orjson cut the answer stream and the log got a traceback per request.
    Any request whose JSON holds one now gets 400 before Gradio; an escaped emoji (a pair) still passes."""
    raw = red["raw"]
    for name, data in (("job_summary", ["x\ud800"]), ("build_recipe", [{"x\ud800": 1}]),
                       ("chat", ["hi", [], [], "default\udfff", "base", "base", False, 0.0, 1.0, 0, 4, 1.0, 0])):
        r = raw.call(name, data)
        assert not r["ok"] and r["status"] == 400 and "lone surrogate" in text(r), (name, text(r)[:300])
    r = raw.chat(message="an emoji \U0001F600 please", max_new=4)
    assert r["ok"], text(r)[:300]
    assert "str is not valid UTF-8" not in red["log"].read_text()
    serves(red)


def test_pass11_an_upload_named_like_a_protected_adapter_builds_under_another_name(red):
    """Eleventh pass: with the name left empty, the name derived from 'Pirate.jsonl' was 'Pirate', published
    beside the protected 'pirate' (the look-alike check ran before the name existed)."""
    raw = red["raw"]
    data = (Path(__file__).resolve().parents[1] / "data/travel/train.jsonl").read_bytes()[:4000]
    f = raw.upload("Pirate.jsonl", data.rsplit(b"\n", 1)[0] + b"\n")
    r = raw.preview("", file=f)
    assert r["ok"] and r["data"][0].startswith("uploads/Pirate"), text(r)[:300]
    r = raw.call("build_recipe", [{"train_file": r["data"][0], "adapter_name": "", "preset": "custom",
                                   "lora.max_steps": 1, "eval_fraction": 0}])
    assert r["ok"] and r["data"][0]["ok"], text(r)[:300]
    job_id = r["data"][0]["job_id"]
    assert job_id.endswith("-Pirate-2"), job_id
    raw.call("cancel_build", [job_id])
    serves(red)


def test_login_page_holds_no_api_description(red):
    """Seventh pass: Gradio 6.31 embeds the whole API description (every endpoint, recipe field, base and
    adapter name) in the page it serves, the login page included, while /gradio_api/info answers 401. A client
    not signed in now gets the page without it; a signed-in one still gets it (the page's own API view)."""
    with httpx.Client(base_url=red["url"], timeout=60) as anon:
        for path in ("/", "/?view=api"):
            r = anon.get(path)
            assert r.status_code == 200 and "gradio_api_info = null;" in r.text, r.text[:300]
            assert "/build_recipe" not in r.text and "named_endpoints" not in r.text
            assert int(r.headers["content-length"]) == len(r.content)
            h = anon.head(path)  # its content-length would tell the size of what was taken out
            assert h.status_code == 200 and int(h.headers["content-length"]) <= len(r.content), h.headers
        assert anon.get("/gradio_api/info").status_code == 401
    r = red["raw"].http.get("/")
    assert r.status_code == 200 and "/build_recipe" in r.text and "named_endpoints" in r.text


def test_zz_upload_budget(red):
    """Before: /gradio_api/upload took any number of files (each up to the 8 MB limit) and Gradio kept each
    an hour: a loop filled the disk. Now the server takes UPLOAD_BUDGET_MB an hour, then answers 429.
    (Named zz: it uses the budget up, so it runs last in this module.)"""
    raw = red["raw"]
    chunk = b'{"prompt": "a", "response": "b"}\n' * 12_000  # ~400 kB
    accepted, status = 0, 200
    for i in range(int(UPLOAD_BUDGET_MB * 1e6 / len(chunk)) + 5):
        r = raw.http.post("/gradio_api/upload", files={"files": (f"b{i}.jsonl", chunk + str(i).encode())})
        status = r.status_code
        if status != 200:
            break
        accepted += len(chunk)
    assert status == 429 and "upload budget" in r.text, (status, r.text[:300])
    assert accepted <= UPLOAD_BUDGET_MB * 1e6
    serves(red)
    assert raw.call("library", [])["ok"]  # other handlers still answer


def test_zzz_forged_forwarded_for_does_not_escape_login_slowing(red):
    """Before: uvicorn takes the client address from X-Forwarded-For when the peer is loopback (as behind
    the share tunnel), so a new X-Forwarded-For per attempt made every guess a 'new client': 30 wrong
    passwords in a row were all answered 400, never slowed. Now all clients together are slowed too.
    (Last in the module: it leaves the login slowed for everyone for a while.)"""
    anon = httpx.Client(base_url=red["url"], timeout=60)
    codes = []
    for i in range(30):
        r = anon.post("/login", data={"username": USER, "password": f"guess-{i}"},
                      headers={"X-Forwarded-For": f"198.51.100.{i + 1}"})
        codes.append(r.status_code)
    assert set(codes) <= {400, 429} and 429 in codes, codes
    assert codes.count(400) <= 4 * 5, codes
    raw = red["raw"]  # a session that logged in before still works
    assert answer_of(raw.chat()).strip()


def test_resume_rechecks_the_stored_recipe(red, tmp_path):
    """Before: resume_build relaunched any job of runs/ as stored: a job the operator made on the command
    line (trust_remote_code, a model folder outside models/) ran the model's code again on a stranger's
    request. Now the stored recipe goes through the request policy first."""
    from pipeline import jobs
    from pipeline.events import EventLog
    from pipeline.recipe import Recipe
    from artifacts import Workspace
    from test_security import evil_model
    sentinel = tmp_path / "code-ran"
    model = evil_model(tmp_path / "evil", sentinel, "config.json")
    recipe = Recipe(base="", base_model=str(model), trust_remote_code=True, eval_file="",
                    adapter_name="operator-job")
    recipe.awq.enabled = False
    # a run of this session's (no forwarded address on an app with a login: the client is its login session), as
    # if made under wider flags (the operator's command line)
    from test_security import session_of
    job = jobs.create_job(recipe, Workspace(red["ws"]), client=session_of(red["raw"]))
    EventLog(job / "events.jsonl").emit("job_end", status="failed", error="stopped by the operator")
    r = red["raw"].call("resume_build", [job.name])
    assert r["ok"] and "cannot be resumed" in r["data"][0], r
    s = red["raw"].call("job_summary", [job.name])["data"][0]
    assert s["status"] == "failed", s
    assert not sentinel.exists()
    assert answer_of(red["raw"].chat()).strip()

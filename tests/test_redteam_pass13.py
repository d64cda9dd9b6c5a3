"""Thirteenth red-team pass (2026-12-07, a helper as a stranger on the Chat tab, the chat-only app and the
exported Space), each finding where the code decides it; the request-level ones replayed over HTTP on a
launched chat-only app:

1. one client's queued chats took every chat slot (8) and the whole queue (64): at most STUDIO_CHAT_PER_CLIENT
   (2) answers stream at once per client address, the others are answered at once;
2. a direct POST to /gradio_api/run/chat ran the handler outside the queue and its limits (24 at once): queued
   handlers are reached through the queue only (404);
3. onnxruntime-genai holds Python's lock for a whole append_tokens call, so one long prompt froze the server:
   on the CPU prompts are read in pieces (tests/test_engine.py: same tokens, compare interleaved);
4. a base that does not load named the server's folders, and was parsed again on every request;
5. 900 nested lists in any input made the remote-file check raise RecursionError, a 105 kB traceback in the
   log per 2 kB request;
6. compare's pair adapter files stayed in /tmp for good (tests/test_engine.py: deleted once loaded)."""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import gradio as gr
import pytest

from app_helpers import BASE, free_port, make_workspace, start_app, stop_app
from test_security import Raw, answer_of


# ------------------------------------------------------------------ in process
@pytest.fixture(scope="module")
def chat_app(tmp_path_factory):
    from artifacts import Workspace
    from ui.chat_engine import ChatEngineSide
    ws = make_workspace(tmp_path_factory.mktemp("pass13") / "ws")
    return ChatEngineSide(Workspace(ws), provider="cpu")


def _respond(svc, host, msg="Tell me about Lisbon.", max_new=64):
    req = gr.Request(client={"host": host}) if host else None
    return svc.respond(msg, [], [], BASE, "travel", "pirate", True, 0.0, 1.0, 0, max_new, 1.0, 0, request=req)


def test_a_client_streams_at_most_two_answers_at_once(chat_app, monkeypatch):
    """Finding 1: two answers of one client stream, its third is answered at once with a message (no engine
    work), another client is not affected, and once one of the two ends the client may send again. Loopback
    (the local user, or a tunnel that forwards no address) is not limited."""
    from ui.chat_tab import ChatService
    monkeypatch.setattr(gr, "Warning", lambda *a, **k: None)  # (outside a Gradio event)
    svc = ChatService(chat_app)
    assert svc.slots.per_client == 2
    first, second = _respond(svc, "81.2.69.160"), _respond(svc, "81.2.69.160")
    assert next(first)[3].startswith("…") and next(second)[3].startswith("…")  # both streaming
    third = list(_respond(svc, "81.2.69.160"))
    assert len(third) == 1 and "2 answers from your address are still streaming" in third[0][3], third
    assert third[0][2] == "Tell me about Lisbon.", "the message stays in the box"
    other = list(_respond(svc, "81.2.69.161", max_new=4))
    assert other[-1][3].startswith("**travel**") or "tok/s" in other[-1][3], other[-1][3]
    local = [_respond(svc, "127.0.0.1") for _ in range(3)] + [_respond(svc, None) for _ in range(3)]
    assert all(next(g)[3].startswith("…") for g in local)
    for g in local:
        g.close()
    first.close()  # Stop (or a closed tab): the slot comes back
    again = list(_respond(svc, "81.2.69.160", max_new=4))
    assert "still streaming" not in again[-1][3] and again[-1][0][-1]["content"], again[-1]
    list(second)  # the other one runs to its end
    assert not svc.slots._held, svc.slots._held


def test_the_client_is_the_public_address_a_proxy_forwarded():
    """Pass 14: behind a proxy on a private network (a Space's), every visitor had the proxy's address, so the cap
    was 2 answers for all of them. The client is now the public address: the peer's, or the last one a local or
    private proxy appended to X-Forwarded-For; none known (loopback without one, a private chain): no cap."""
    from ui.slots import ClientSlots

    def req(host, xff=None):
        return gr.Request(client={"host": host}, headers={"x-forwarded-for": xff} if xff else {})
    of = ClientSlots.client_of
    assert of(req("81.2.69.160")) == "81.2.69.160"
    assert of(req("81.2.69.160", "81.2.69.99")) == "81.2.69.160", "a public peer's own claim is not taken"
    assert of(req("10.16.3.80", "1.2.3.4, 81.2.69.161")) == "81.2.69.161", "the proxy appended the last one"
    assert of(req("10.16.3.80")) is None and of(req("10.16.3.80", "192.168.1.5")) is None
    assert of(req("127.0.0.1")) is None and of(req("::1")) is None and of(None) is None
    assert of(req("203.0.113.7")) is None, "documentation ranges are not public"
    # pass 15: every X-Forwarded-For line counts (the last proxy's is last); the right-most public entry; ports,
    # brackets, zones; IPv6 by its /64; IPv4-mapped as IPv4
    from starlette.datastructures import Headers
    two = Headers(raw=[(b"x-forwarded-for", b"81.2.69.160"), (b"x-forwarded-for", b"81.2.69.99")])
    assert of(gr.Request(client={"host": "10.0.0.2"}, headers=two)) == "81.2.69.99"
    assert of(req("10.0.0.2", "81.2.69.160, 81.2.69.99, 10.1.2.3")) == "81.2.69.99", "private hops skipped"
    assert of(req("10.0.0.2", "81.2.69.99:5555")) == "81.2.69.99"
    assert of(req("10.0.0.2", "[2a00:1450:4001:81b::1]:443")) == "2a00:1450:4001:81b::/64"
    assert of(req("2a00:1450:4001:81b::5")) == of(req("2a00:1450:4001:81b:ffff::1")) == "2a00:1450:4001:81b::/64"
    assert of(req("::ffff:81.2.69.160")) == "81.2.69.160"
    assert of(req("10.0.0.2", "unknown, garbage")) is None
    # pass 21: only the right-most entry that is not an internal hop counts; if it is not public, the client is
    # unknown (the walk went on into entries the client wrote itself, and so took another client's share)
    teredo = "2001:0:4136:e378:8000:63bf:3fff:fdd2"
    assert of(req("127.0.0.1", f"9.9.9.9, {teredo}")) is None
    assert of(req("127.0.0.1", "9.9.9.9, 203.0.113.7")) is None
    assert of(req("127.0.0.1", "9.9.9.9, 203.0.113.7, 10.1.2.3, 100.64.0.9")) is None
    assert of(req("127.0.0.1", "203.0.113.7, 9.9.9.9, 172.16.0.4")) == "9.9.9.9"
    assert of(req(teredo, "9.9.9.9")) is None and of(req("198.51.100.4", "9.9.9.9")) is None, "not a proxy of ours"


def test_a_base_that_does_not_load_names_no_server_folder_and_is_not_parsed_again(chat_app, monkeypatch):
    """Finding 4: the message names the base as the page does, and the broken base is not parsed again on every
    request; once its folder changes it is tried again."""
    from ui.chat_engine import UIError
    from ui.chat_tab import ChatService
    broken = chat_app.models_dir / "broken"
    shutil.copytree(chat_app.models_dir / BASE, broken)
    (broken / "model.onnx").write_bytes(b"not a model")
    import engine.chat as ec
    loads = []
    real = ec.ChatEngine

    class Counting(real):
        def __init__(self, *a, **k):
            loads.append(a[0])
            super().__init__(*a, **k)

    monkeypatch.setattr(ec, "ChatEngine", Counting)
    for _ in range(3):
        with pytest.raises(UIError) as e:
            chat_app.chat("broken")
        msg = str(e.value)
        assert "base 'broken' does not load" in msg and str(chat_app.ws.root) not in msg, msg
        assert "models/broken" in msg or "model.onnx" in msg, msg
    assert len(loads) == 1, loads
    picker_line = ChatService(chat_app).pickers("broken", "base", "base")[3]
    assert "does not load" in picker_line and str(chat_app.ws.root) not in picker_line, picker_line
    shutil.copy2(chat_app.models_dir / BASE / "model.onnx", broken / "model.onnx")  # repaired
    assert chat_app.chat("broken") is not None and len(loads) == 2


def test_deeply_nested_inputs_get_a_message():
    from ui.hardening import MAX_INPUT_DEPTH, TooDeep, has_remote_file
    deep = "x"
    for _ in range(900):
        deep = [deep]
    with pytest.raises(TooDeep, match=f"more than {MAX_INPUT_DEPTH} levels"):
        has_remote_file(deep)
    chat = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}] * 50
    assert has_remote_file(chat) is False
    f = {"path": "https://files.invalid/x", "meta": {"_type": "gradio.FileData"}}
    assert has_remote_file([[[{"a": [f]}]]]) is True


# ------------------------------------------------------------------ over HTTP, on the chat-only app
@pytest.fixture(scope="module")
def chat_only(tmp_path_factory):
    root = tmp_path_factory.mktemp("pass13http")
    ws = make_workspace(root / "ws")
    port = free_port()
    proc = start_app(ws, port, root / "app.log", ("--chat-only",))
    yield {"url": f"http://127.0.0.1:{port}", "log": root / "app.log"}
    stop_app(proc, ws)


def _raw(url: str) -> Raw:
    raw = Raw(url, user=None)
    raw.cfg = raw.http.get("/config").json()
    raw.comps = {c["id"]: c for c in raw.cfg["components"]}
    return raw


def test_queued_handlers_take_no_direct_calls(chat_only):
    """Finding 2: /gradio_api/run/chat (and /gradio_api/api/chat) answered outside the queue and its limits; now
    404, while the queue (the page, gradio_client) serves as before."""
    raw = _raw(chat_only["url"])
    data = ["Hi", [], [], BASE, "base", "base", False, 0.0, 1.0, 0, 4, 1.0, 0]
    for path in ("/gradio_api/run/chat", "/gradio_api/api/chat/"):
        r = raw.http.post(path, json={"data": data, "session_hash": uuid.uuid4().hex})
        assert r.status_code == 404 and "join the queue" in r.text, (path, r.status_code, r.text[:200])
    assert answer_of(raw.call("chat", data)).strip()
    from gradio_client import Client
    out = Client(chat_only["url"], verbose=False).predict(*data, api_name="/chat")
    assert out[0][-1]["role"] == "assistant"


def test_nested_input_over_http_gets_a_message_not_a_traceback(chat_only):
    """Finding 5, replayed: the request gets the message, the log no traceback."""
    raw = _raw(chat_only["url"])
    log: Path = chat_only["log"]
    before = log.stat().st_size
    deep: object = "x"
    for _ in range(900):
        deep = [deep]
    r = raw.call("chat", ["hi", [{"role": "user", "content": deep}], [], BASE, "base", "base", False, 0.0, 1.0, 0, 4, 1.0, 0])
    assert not r["ok"] and "nested more than 64 levels" in r["error"], json.dumps(r)[:300]
    grown = log.read_bytes()[before:]
    assert b"RecursionError" not in grown and len(grown) < 5000, grown[-2000:]
    # pass 17: a history that is no history (19,900 zeros, 40 kB) made Gradio's model check log 3.9 MB
    before = log.stat().st_size
    r = raw.call("chat", ["hi", [0] * 900, [], BASE, "base", "base", False, 0.0, 1.0, 0, 4, 1.0, 0])
    assert not r["ok"] and "must be a list of messages" in r["error"], json.dumps(r)[:300]
    r = raw.call("chat", ["hi", [0] * 19_900, [], BASE, "base", "base", False, 0.0, 1.0, 0, 4, 1.0, 0])
    assert not r["ok"] and "19,900 messages; at most 1,000" in r["error"], json.dumps(r)[:300]
    assert log.stat().st_size - before < 5000, log.read_bytes()[before:][-2000:]
    assert answer_of(raw.call("chat", ["hi", [], [], BASE, "base", "base", False, 0.0, 1.0, 0, 4, 1.0, 0])).strip()


def test_per_client_limit_sees_the_forwarded_address_over_http(tmp_path):
    """Finding 1 through the real queue: Gradio hands the handler the request, and the client it names is the
    address the server takes from X-Forwarded-For of a loopback peer (a share tunnel, a local proxy). With one
    answer of 81.2.69.142 streaming (its slot held here) and a limit of 1, that client gets the message and
    another client its answer."""
    from gradio_client import Client

    from ui.chat_engine import ChatOnlyEngine
    from ui.slots import ClientSlots
    from ui.interface import create_chat_only_ui, launch_kwargs
    ws = make_workspace(tmp_path / "ws")
    demo = create_chat_only_ui(ChatOnlyEngine(root=str(ws), provider="cpu"))
    svc = demo.ui_tabs["chat"].respond_fn.__self__
    svc.slots = ClientSlots(1)
    assert svc.slots.take("81.2.69.142")  # an answer of this client, streaming
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, **launch_kwargs())
    data = ["Hi", [], [], BASE, "base", "base", False, 0.0, 1.0, 0, 4, 1.0, 0]
    try:
        url = f"http://127.0.0.1:{port}"
        out = Client(url, verbose=False, headers={"x-forwarded-for": "81.2.69.142"}).predict(*data, api_name="/chat")
        assert "an answer from your address is still streaming" in out[3] and not out[0], out
        out = Client(url, verbose=False, headers={"x-forwarded-for": "81.2.69.143"}).predict(*data, api_name="/chat")
        assert out[0][-1]["role"] == "assistant" and out[0][-1]["content"], out
        assert svc.slots._held == {"81.2.69.142": 1}, "the answered request gave its slot back"
    finally:
        demo.close()


# ------------------------------------------------------------------ pass 15: nothing slow waits in Gradio's queue
def test_gate_bounds_per_client_and_in_all():
    from ui.slots import Gate
    g = Gate("data check", total=2, per_client=1)
    a, b, c = (gr.Request(client={"host": h}) for h in ("81.2.69.160", "81.2.69.161", "81.2.69.162"))
    with g.enter(a) as first:
        assert first is None
        with g.enter(a) as again:
            assert again == "a data check from your address is still running: wait until it ends"
        with g.enter(b) as second:
            assert second is None
            with g.enter(c) as third:
                assert third == "the server is busy with 2 data checks: try again in a moment"
        with g.enter(c) as now:
            assert now is None
    assert not g.slots._held and g._sem.acquire(blocking=False) and g._sem.acquire(blocking=False)


def test_a_flood_of_slow_requests_never_fills_the_queue(tmp_path):
    """Pass 15: Gradio's queue holds 64 waiting events for the whole server. Data checks (a second or more for a
    big file) waited there one at a time, so 64 joined previews made every other user's chat '503 Queue is full'
    for minutes. Slow handlers now never wait: over their bounds they are answered at once. Here every data
    check slot is taken (as by long previews), 80 previews are joined at once, and a chat still gets its answer."""
    from artifacts import Workspace
    from ui.engine import AppEngine
    from ui.interface import create_ui, launch_kwargs
    ws = make_workspace(tmp_path / "ws")
    demo = create_ui(AppEngine(Workspace(ws), provider="cpu"))
    svc = next(f.fn.__self__ for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "check_data")
    gates = [svc.data_gate, svc.build_gate]
    held = [g._sem.acquire(blocking=False) for g in gates for _ in range(g.total)]
    assert all(held)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, **launch_kwargs())
    try:
        raw = _raw(f"http://127.0.0.1:{port}")
        args = raw.defaults(raw.fn("preview_data"), build_train_file="data/travel/train.jsonl")
        import concurrent.futures as cf
        with cf.ThreadPoolExecutor(16) as pool:
            outs = list(pool.map(lambda _: raw.call("preview_data", args), range(80)))
        assert all(o["ok"] and "the server is busy with 2 data checks" in o["data"][0] for o in outs), outs[:2]
        starts = [raw.call("start_build", raw.defaults(raw.fn("start_build"))) for _ in range(3)]
        assert all(s["ok"] and "build start" in s["data"][1] for s in starts), starts[0]
        data = ["Hi", [], [], BASE, "base", "base", False, 0.0, 1.0, 0, 4, 1.0, 0]
        assert answer_of(raw.call("chat", data)).strip()
    finally:
        for g in gates:
            for _ in range(g.total):
                g._sem.release()
        demo.close()


# ------------------------------------------------------------------ pass 16: the queue bounded per client and page
def test_the_queue_is_bounded_per_client_and_page_and_unread_results_are_dropped(tmp_path, monkeypatch):
    """Pass 16: one client joining cheap events faster than they drain kept Gradio's 64 places full (every other
    chat '503 Queue is full'), and messages of a session nobody reads piled up for good. Joins now count what the
    client (its address) and the page (its session) have waiting or running; a session's unread messages are
    bounded, past that its events end. Over HTTP, on the real queue (limits lowered to see them)."""
    import time

    from ui import hardening
    from ui.chat_engine import ChatOnlyEngine
    from ui.interface import create_chat_only_ui, launch_kwargs
    ws = make_workspace(tmp_path / "ws")
    demo = create_chat_only_ui(ChatOnlyEngine(root=str(ws), provider="cpu"))
    assert demo._queue.pending_messages_per_session.max_size == 256
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, **launch_kwargs())
    url = f"http://127.0.0.1:{port}"
    raw = _raw(url)
    fn = raw.fn("chat")
    data = ["Hi", [], [], BASE, "travel", "base", False, 0.0, 1.0, 0, 64, 1.0, 0]

    def join(session, xff=None):
        h = {"x-forwarded-for": xff} if xff else {}
        return raw.http.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn, "session_hash": session},
                             headers=h)
    try:
        monkeypatch.setattr(hardening, "MAX_EVENTS_PER_CLIENT", 0)  # as if this address had its 16 in the queue
        r = join("s1", "81.2.69.160")
        assert r.status_code == 503 and "requests from your address are waiting or running" in r.text, r.text
        monkeypatch.setattr(hardening, "MAX_EVENTS_PER_CLIENT", 16)
        monkeypatch.setattr(hardening, "MAX_EVENTS_PER_SESSION", 0)
        r = join("s2")
        assert r.status_code == 503 and "requests of this page are waiting or running" in r.text, r.text
        monkeypatch.setattr(hardening, "MAX_EVENTS_PER_SESSION", 16)
        monkeypatch.setattr(hardening, "MAX_UNKNOWN_WAITING", 0)
        assert join("s3", "81.2.69.161").status_code == 200, "a known client is not held by unknown ones"
        r = join("s4")
        assert r.status_code == 503 and "busy" in r.text, r.text
        monkeypatch.setattr(hardening, "MAX_UNKNOWN_WAITING", 48)
        # a session nobody reads: its answer's messages stop at MAX_UNREAD and the event ends
        monkeypatch.setattr(hardening, "MAX_UNREAD", 3)
        assert join("unread").status_code == 200
        q = demo._queue
        deadline = time.time() + 60
        time.sleep(0.5)
        while any(e.session_hash == "unread" for e in hardening._events(q)) and time.time() < deadline:
            time.sleep(0.2)
        assert time.time() < deadline, "the unread event ended"
        assert q.pending_messages_per_session["unread"].qsize() <= 3
        monkeypatch.setattr(hardening, "MAX_UNREAD", 64)
        assert answer_of(raw.call("chat", data)).strip(), "a reader gets its whole answer"
    finally:
        demo.close()


def test_a_repeated_preview_of_an_unchanged_file_is_not_parsed_again(tmp_path, monkeypatch):
    """Pass 16: one client previewing the same big file back to back held the data-check slots; a preview of the
    same unchanged files with the same settings is now answered from memory, a changed file is read again."""
    from artifacts import Workspace
    from ui import build_data
    from ui.engine import AppEngine
    app = AppEngine(Workspace(make_workspace(tmp_path / "ws")))
    up = app.ws.root / "uploads"
    up.mkdir()
    f = up / "voice.jsonl"
    f.write_text('{"prompt": "Hi", "response": "Ahoy!"}\n' * 30)
    reads = []
    real = build_data.load_examples
    monkeypatch.setattr(build_data, "load_examples", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    args = (app, "uploads/voice.jsonl", "auto", "", "models/default-hf", False)
    first = build_data.preview_data(*args)
    assert first.startswith("✓") and "30 examples" in first and len(reads) == 1
    assert build_data.preview_data(*args) == first and len(reads) == 1
    # other settings: another answer, from the files' facts kept in memory (pass 28: a new seed per request
    # parsed the file again)
    assert build_data.preview_data(*args, eval_fraction=0.2) != first and len(reads) == 1
    f.write_text('{"prompt": "Hi", "response": "Ahoy!"}\n' * 40)
    assert "40 examples" in build_data.preview_data(*args) and len(reads) == 2


# ------------------------------------------------------------------ pass 17
def _ev(client, session, group="ui"):
    """An event in flight as the patched Queue.push leaves it (its client and that client's network marked)."""
    from types import SimpleNamespace

    from ui.slots import ClientSlots
    return SimpleNamespace(studio_client=client, studio_network=ClientSlots.network_of(client), session_hash=session,
                           concurrency_id=group)


def _queue(waiting=(), running=()):
    from types import SimpleNamespace
    return SimpleNamespace(event_queue_per_concurrency_id={"all": SimpleNamespace(queue=list(waiting))},
                           active_jobs=[list(running), None], pending_event_ids_session={})


def test_join_bounds_count_chats_networks_and_pages():
    """Pass 17: chats beyond those a client may stream only held queue places (five addresses filled all 64);
    an IPv6 subscriber's /64s are bounded together by their /48; pages and unknown clients as before."""
    from ui.hardening import MAX_EVENTS_PER_NETWORK, join_refusal
    me = "2a01:4f8:1234:5600::/64"
    q = _queue(waiting=[_ev(me, "s1", "chat")], running=[_ev(me, "s2", "chat")])
    assert "2 answers from your address are waiting or streaming" in join_refusal(q, me, "s3", "chat")
    assert join_refusal(q, me, "s3", "ui") is None, "other requests of that client still join"
    assert join_refusal(q, "81.2.69.160", "s9", "chat") is None, "another client's chats are not held"
    neighbours = [_ev(f"2a01:4f8:1234:{k:x}00::/64", f"n{k}") for k in range(MAX_EVENTS_PER_NETWORK)]
    q = _queue(waiting=neighbours)
    assert "from your network" in join_refusal(q, "2a01:4f8:1234:ff00::/64", "x", "ui")
    assert join_refusal(q, "2a01:4f8:9999:ff00::/64", "x", "ui") is None
    q = _queue(waiting=[_ev(None, "page") for _ in range(16)])
    assert "requests of this page" in join_refusal(q, None, "page", "ui")


def test_live_sessions_are_not_dropped_for_new_ones():
    """Pass 17: Gradio's message store dropped the oldest session past its size even with an answer streaming to
    it, so 256 new session ids from one client ended every other user's answer. Idle sessions go first now."""
    from ui.hardening import LiveSessions
    q = _queue(running=[_ev("81.2.69.160", "streaming", "chat")])
    q.pending_event_ids_session = {"streaming": {"e1"}, "unread": {"e2"}}  # (ids an unread session keeps for good)
    store = LiveSessions(q, 3)
    for k in ("streaming", "unread", "b"):
        store[k] = k
    for i in range(300):  # a flood of new sessions
        store[f"new{i}"] = i
    assert "streaming" in store and "unread" not in store and len(store) == 3
    q.active_jobs = [[], None]  # its answer ended: now it may go
    store["last"] = 0
    assert "streaming" not in store and len(store) == 3

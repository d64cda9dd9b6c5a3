"""deploy/launch.py RequestGuard in process, against the attacks of the 2026-12-06 red-team pass (requests
sent all at once, their bodies held back, to get around the login slowing and the upload budget; strangers
locking the owner out; cross-site posts; big JSON bodies). The app behind it is a stand-in that reads the
whole body before it answers, as Gradio does; the launched app's own tests are in test_security*.py."""
from __future__ import annotations

import asyncio
import os

import pytest

from deploy.launch import FAILS_FREE, RequestGuard

PASSWORD = b"password=right"


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


async def _body(receive) -> bytes:
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body") or b""
        if not msg.get("more_body"):
            return body


async def _inner(scope, receive, send):
    """Reads the body to its end, then answers: /login 200 for PASSWORD else 400, anything else 200."""
    body = await _body(receive)
    ok = not scope["path"].endswith("/login") or body == PASSWORD
    await send({"type": "http.response.start", "status": 200 if ok else 400, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def _request(guard, path, body=b"", client="203.0.113.9", headers=(), gate: asyncio.Event | None = None,
             declare=True, method="POST", first: bytes | None = None, app=None):
    """One request through the guard; with gate, the body arrives only once gate is set (with `first`, that
    part arrives at once and `body` after the gate). Gives the status."""
    size = len(body) + len(first or b"")
    hs = [(b"content-length", str(size if declare is True else declare).encode())] if declare else []
    scope = {"type": "http", "method": method, "path": path, "client": (client, 5000),
             "headers": hs + [(k.encode(), v.encode()) for k, v in headers], "app": app}
    status, parts = [], ([first] if first is not None else []) + [body]

    async def receive():
        if gate is not None and len(parts) == 1:
            await gate.wait()
        return {"type": "http.request", "body": parts.pop(0), "more_body": bool(parts)}

    async def send(msg):
        if msg["type"] == "http.response.start":
            status.append(msg["status"])

    async def run():
        await guard(scope, receive, send)
        return status[0]
    return run()


def _guard(**kw):
    clock = Clock()
    return RequestGuard(_inner, max_body=1_000_000, clock=clock, **kw), clock


def test_login_burst_with_held_bodies_is_slowed_like_a_sequence():
    """Before: 300 logins whose headers arrived together all passed the wait check (it ran before any of them
    had failed), and one guessed the password. Now each attempt counts as a failure when it arrives."""
    guard, _ = _guard()

    async def burst():
        gate = asyncio.Event()
        tasks = [asyncio.create_task(_request(guard, "/login", b"password=guess-%d" % i, gate=gate))
                 for i in range(50)]
        tasks.append(asyncio.create_task(_request(guard, "/login", PASSWORD, gate=gate)))
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(*tasks)

    codes = asyncio.run(burst())
    assert codes.count(400) == FAILS_FREE and codes[-1] == 429 and codes.count(429) == 51 - FAILS_FREE, codes


def test_strangers_cannot_lock_the_owner_out():
    """Failures of all clients together slow every client that never logged in (forged addresses are new
    clients), but not one that logged in before: the owner still gets in while strangers guess."""
    guard, clock = _guard()
    assert asyncio.run(_request(guard, "/login", PASSWORD, client="198.51.100.7")) == 200  # the owner, once
    codes = [asyncio.run(_request(guard, "/login", b"password=x%d" % i, client=f"192.0.2.{i}")) for i in range(40)]
    assert codes.count(400) <= 4 * FAILS_FREE and codes[-1] == 429, codes
    clock.t += 0.5  # within the wait the strangers' failures set
    assert asyncio.run(_request(guard, "/login", PASSWORD, client="192.0.2.200")) == 429  # a new client waits
    assert asyncio.run(_request(guard, "/login", PASSWORD, client="198.51.100.7")) == 200  # the owner does not
    # the owner's own wrong passwords still slow the owner
    own = [asyncio.run(_request(guard, "/login", b"password=typo", client="198.51.100.7")) for _ in range(7)]
    assert own[:FAILS_FREE] == [400] * FAILS_FREE and own[-1] == 429, own


def test_upload_burst_with_held_bodies_stays_within_the_budget():
    """Before: uploads were counted when they ended, so 40 sent together were all taken (316 MB against a
    160 MB budget). Now what arrives is counted as it arrives (4 kB at least a request), and a body that would
    pass the budget is cut off (429)."""
    guard, _ = _guard(upload_budget=1_000_000)
    chunk = b"x" * 200_000

    async def burst():
        gate = asyncio.Event()
        tasks = [asyncio.create_task(_request(guard, "/gradio_api/upload", chunk, gate=gate)) for _ in range(20)]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(*tasks)

    codes = asyncio.run(burst())
    assert codes.count(200) == 4 and codes.count(429) == 16, codes
    assert guard.uploaded_recently() == 4 * 200_000 + 16 * 4096 <= 1_000_000


def test_idle_uploads_hold_no_budget_and_are_cut_off(monkeypatch):
    """Red-team pass 18: 20 signed-in connections that declared 8 MB uploads and sent no body took the whole
    hourly budget for as long as they stayed open, so every other upload got 429. Now a body is counted as it
    arrives, so they hold 4 kB each, and one that does not arrive at UPLOAD_MIN_BPS (after UPLOAD_GRACE_S) gets
    408."""
    import deploy.launch as dl
    monkeypatch.setattr(dl, "UPLOAD_GRACE_S", 0.3)
    monkeypatch.setattr(dl, "UPLOAD_MIN_BPS", 10**12)
    guard, _ = _guard(upload_budget=8_500_000)
    guard.max_body = 8_500_000

    async def attack():
        never = asyncio.Event()
        idle = [asyncio.create_task(_request(guard, "/gradio_api/upload", b"x" * 100, first=b"", gate=never,
                                             declare=8_000_000)) for _ in range(20)]
        await asyncio.sleep(0.05)
        held = guard.uploaded_recently()
        other = await _request(guard, "/gradio_api/upload", b"y" * 300_000)  # a real upload meanwhile
        return held, other, await asyncio.gather(*idle)

    held, other, idle = asyncio.run(attack())
    assert held == 20 * 4096 and other == 200, (held, other)
    assert idle == [408] * 20, idle
    assert guard.uploaded_recently() == 300_000  # (cut off with nothing received: they cost nothing)


    assert asyncio.run(_request(guard, "/gradio_api/upload", b"x", declare=False)) == 411  # size unknown


@pytest.mark.parametrize("path, size, want", [
    ("/gradio_api/queue/join", 400_000, 200),      # a long chat (two panes at the prompt limit) fits
    ("/gradio_api/queue/join", 600_000, 413),      # a 5 MB chat history is refused before Gradio parses it
    ("/gradio_api/upload", 900_000, 200),          # uploads keep the upload limit
    ("/login", 600_000, 413),
])
def test_json_bodies_have_their_own_smaller_limit(path, size, want):
    guard, _ = _guard()
    assert asyncio.run(_request(guard, path, b"0" * size)) == want
    # a body that does not declare its length is cut off as it arrives
    if want == 413:
        assert asyncio.run(_request(guard, path, b"0" * size, declare=False)) == 413


def test_chat_with_thousands_of_tiny_messages_is_refused_before_gradio_parses_it():
    """Re-attack 2026-12-06: ~7,800 one-character messages in a 503 kB /queue/join body cost ~1.6 CPU-s of
    Gradio's parsing (16x a normal chat). JSON bodies with more than MAX_JSON_ITEMS objects and arrays are now
    refused; a long real chat passes, and the app behind gets the body byte for byte (sent in pieces)."""
    import json

    from deploy.launch import MAX_JSON_ITEMS, json_items
    got = []

    async def app(scope, receive, send):
        got.append(await _body(receive))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard = RequestGuard(app, max_body=1_000_000)

    def post(body: bytes, pieces: int = 3) -> int:
        n = -(-len(body) // pieces)
        parts = [body[i:i + n] for i in range(0, len(body), n)]
        scope = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join", "client": ("192.0.2.1", 1),
                 "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]}
        status = []

        async def receive():
            return {"type": "http.request", "body": parts.pop(0), "more_body": bool(parts)}

        async def send(msg):
            if msg["type"] == "http.response.start":
                status.append(msg["status"])
        asyncio.run(guard(scope, receive, send))
        return status[0]

    def chat(n: int, text: str, panes: int = 2) -> bytes:
        hist = [{"role": "user" if i % 2 == 0 else "assistant", "content": text} for i in range(n)]
        return json.dumps({"data": [hist, hist if panes == 2 else [], "travel", ""], "fn_index": 3,
                           "session_hash": "x"}, separators=(",", ":")).encode()

    attack = chat(7_800, "a", panes=1)
    assert len(attack) < guard.max_request and json_items(attack) > MAX_JSON_ITEMS
    assert post(attack) == 413 and got == []
    normal = chat(200, "Tell me about the ski trip. " * 5)  # 400 messages over both panes
    assert json_items(normal) <= MAX_JSON_ITEMS
    assert post(normal) == 200 and got == [normal]
    assert post(b"password=x&user=y") == 200 and got[-1] == b"password=x&user=y"  # not JSON: passed on
    # pass 16: values count too: a history of 255,000 zeros (2 brackets, 510 kB) made Gradio's model check log
    # 48 MB and stall the server ~1 s; a long real chat (compare, 100 messages a pane, as the page sends them) passes
    from deploy.launch import MAX_JSON_VALUES, json_counts
    zeros = b'{"data": ["hi", [' + b"0," * 254_999 + b'0], []], "fn_index": 6, "session_hash": "z"}'
    assert len(zeros) < guard.max_request and json_counts(zeros)[1] > MAX_JSON_VALUES
    assert post(zeros) == 413 and got[-1] != zeros
    page = [{"role": "user" if i % 2 == 0 else "assistant", "content": [{"type": "text", "text": "Hi, there."}],
             "metadata": None, "options": None} for i in range(100)]
    real = json.dumps({"data": ["hi", page, page, "default", "travel", "pirate", True, 0.0, 1.0, 0, 64, 1.0, 0],
                       "fn_index": 6, "session_hash": "y"}).encode()
    assert json_counts(real)[1] <= MAX_JSON_VALUES and post(real) == 200 and got[-1] == real


def test_json_check_routes_are_exact_and_bodies_are_bounded(monkeypatch):
    """Re-attack 2026-12-06 (third pass): /gradio_api/run/login and /gradio_api/run/upload (Gradio's direct-call
    route, which takes fn_index whatever the name) were taken for the login and upload routes by a suffix
    match and skipped the JSON check; bodies were buffered without a deadline or a bound over all requests."""
    import json

    import deploy.launch as L
    many = json.dumps([[] for _ in range(6_000)]).encode()
    guard, _ = _guard()
    for path in ("/gradio_api/run/login", "/gradio_api/api/login/", "/gradio_api/run/upload", "/x/login",
                 "/gradio_api/queue/join", "/gradio_api/queue/join/"):
        assert asyncio.run(_request(guard, path, many)) == 413, path
    assert asyncio.run(_request(guard, "/gradio_api/upload", many)) == 200  # the upload route keeps its own limits
    # a body that does not arrive in time: 408
    monkeypatch.setattr(L, "BODY_DEADLINE_S", 0.2)

    async def slow():
        gate = asyncio.Event()  # never set
        return await _request(guard, "/gradio_api/queue/join", b"{}", gate=gate)
    assert asyncio.run(slow()) == 408
    # a slow login form too (it was not held before: one byte every 20 s stayed open)
    monkeypatch.setattr(L, "ANON_DEADLINE_S", 0.2)
    assert asyncio.run(_request(guard, "/login", PASSWORD, gate=asyncio.Event())) == 408
    monkeypatch.setattr(L, "BODY_DEADLINE_S", 30.0)


def test_held_bodies_count_what_arrived(monkeypatch):
    """Re-attack (fourth pass): the bound on bodies held for the JSON check counted each request's declared
    size, so 128 connections that sent headers only (Content-Length 512 kB) made every chat 503 for 30 s,
    again and again. Now it counts the bytes that arrived: idle connections hold nothing; bodies that arrive
    in part and stall hold what they sent, up to BUFFER_CAP in all (503 beyond); all is given back."""
    import deploy.launch as L
    monkeypatch.setattr(L, "BUFFER_CAP", 3 * 1000 + 100)  # three stalled bodies fit, a fourth does not
    guard, _ = _guard()

    async def scenario():
        gate = asyncio.Event()
        idle = [asyncio.create_task(_request(guard, "/gradio_api/queue/join", b"{}", first=b"", gate=gate,
                                             declare=500_000)) for _ in range(20)]
        await asyncio.sleep(0.05)
        alone = await _request(guard, "/gradio_api/queue/join", b"{}")  # not blocked by headers alone
        stalled = [asyncio.create_task(_request(guard, "/gradio_api/queue/join", b"0", first=b"0" * 1000,
                                                gate=gate)) for _ in range(5)]
        await asyncio.sleep(0.05)
        held = guard._buffered_in["user"]
        gate.set()
        return alone, held, await asyncio.gather(*stalled), await asyncio.gather(*idle)
    alone, held, codes, idle = asyncio.run(scenario())
    assert alone == 200 and held == 3000 and sorted(codes) == [200, 200, 200, 503, 503], (alone, held, codes)
    assert set(idle) == {200} and sum(guard._buffered_in.values()) == 0


def test_one_client_takes_at_most_a_quarter_of_the_upload_budget():
    """Red-team pass 19: one signed-in client took the whole hourly budget (160 MB) in 0.6 s with ordinary
    uploads, and then everyone's got 429. Now a client (a public address, deploy/clients.py) may take a quarter;
    others, and clients whose address is not known (a tunnel that forwards none), still upload."""
    guard, _ = _guard(upload_budget=1_000_000)
    one = b"x" * 100_000
    codes = [asyncio.run(_request(guard, "/gradio_api/upload", one, client="81.2.69.160")) for _ in range(4)]
    assert codes == [200, 200, 429, 429], codes  # 250 kB each: the third would pass it
    status = []

    async def capture():
        scope = {"type": "http", "method": "POST", "path": "/gradio_api/upload", "client": ("81.2.69.160", 1),
                 "headers": [(b"content-length", b"100000")], "app": None}

        async def receive():
            return {"type": "http.request", "body": one, "more_body": False}

        async def send(msg):
            status.append(msg)
        await guard(scope, receive, send)
    asyncio.run(capture())
    assert status[0]["status"] == 429 and b"your address took its share (0.25 MB)" in status[1]["body"]
    # forwarded by a local proxy: the public address it names is the client
    fwd = asyncio.run(_request(guard, "/gradio_api/upload", one, client="127.0.0.1",
                               headers=[("x-forwarded-for", "81.2.69.160")]))
    assert fwd == 429
    assert asyncio.run(_request(guard, "/gradio_api/upload", one, client="81.2.69.161")) == 200
    assert asyncio.run(_request(guard, "/gradio_api/upload", one, client="127.0.0.1")) == 200  # unknown: no share
    assert guard.uploaded_recently() == 400_000
    # an IPv6 subscriber is its /48 (pass 20: four /64s of one /48 took the whole budget)
    v6 = [asyncio.run(_request(guard, "/gradio_api/upload", one, client=f"2a00:1450:4001:{n:x}::1"))
          for n in range(0x801, 0x805)]
    assert v6 == [200, 200, 429, 429], v6


def test_upload_budget_counts_what_arrived():
    """Re-attack (fourth pass): the declared size was charged to the hourly upload budget before Gradio's login
    check, so 20 header-only requests without login (401) used up the owner's budget for an hour. Now an
    upload costs what arrived (at most what it declared)."""
    async def gradio(scope, receive, send):  # Gradio: 401 before reading an upload without login
        if dict(scope["headers"]).get(b"cookie") != b"access-token=ok":
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        await _inner(scope, receive, send)
    guard = RequestGuard(gradio, max_body=1_000_000, upload_budget=1_000_000)
    for _ in range(20):
        assert asyncio.run(_request(guard, "/gradio_api/upload", b"x" * 10, declare=900_000)) == 401
    assert guard.uploaded_recently() == 0
    ok = asyncio.run(_request(guard, "/gradio_api/upload", b"x" * 600_000, headers=[("cookie", "access-token=ok")]))
    assert ok == 200 and guard.uploaded_recently() == 600_000


def test_bracket_heavy_bodies_parse_one_at_a_time_and_never_wait_long(monkeypatch):
    """Bodies with more than MAX_JSON_ITEMS brackets are parsed (one at a time, off the event loop); a text
    with brackets inside strings passes; over MAX_BRACKETS is refused unparsed; a request that cannot start
    its parse within PARSE_WAIT_S gets 503 instead of waiting behind a flood."""
    import json

    import deploy.launch as L
    guard, _ = _guard()
    pasted = json.dumps({"data": ["[" * 6_000 + "{" * 100]}).encode()  # brackets inside one string: 3 items
    assert asyncio.run(_request(guard, "/gradio_api/queue/join", pasted)) == 200
    assert asyncio.run(_request(guard, "/gradio_api/queue/join", b"[" * 60_000 + b"]" * 60_000)) == 413
    monkeypatch.setattr(L, "PARSE_WAIT_S", 0.1)

    async def behind_a_parse():
        guard._check = asyncio.Semaphore(1)
        await guard._check.acquire()  # a parse in progress that does not end in time
        return await _request(guard, "/gradio_api/queue/join", pasted)
    assert asyncio.run(behind_a_parse()) == 503
    assert sum(guard._buffered_in.values()) == 0


class GradioApp:
    """What RequestGuard.signed_in reads of gradio's App: login on, one live session token."""
    auth, auth_dependency, cookie_id, tokens = {"u": "p"}, None, "cid", {"tok": "u"}


SIGNED_IN = [("cookie", "other=1; access-token-cid=tok")]


def test_clients_not_signed_in_send_tiny_bodies_from_their_own_pool(monkeypatch):
    """Fifth pass: without a login, the 64 MB bound on held bodies could still be filled at ~2.2 MB/s (every
    chat 503), a flood of parse-range bodies kept bracket-heavy chats waiting 10 s, and header-only uploads
    held the upload budget while they lasted. Now a client not signed in (login on) may send 16 kB bodies at
    most (uploads too), held in their own pool; the login form likewise; and a login the guard itself refused
    (busy, too slow, too big) is not counted as a wrong password."""
    import json

    import deploy.launch as L
    app = GradioApp()
    assert RequestGuard.signed_in({"app": app, "headers": [(b"cookie", b"access-token-cid=tok")]}) is True
    assert RequestGuard.signed_in({"app": app, "headers": [(b"cookie", b"access-token-cid=forged")]}) is False
    assert RequestGuard.signed_in({"app": app, "headers": []}) is False
    # two Cookie headers: the first is the one Gradio reads (a live token in the second does not count)
    assert RequestGuard.signed_in({"app": app, "headers": [(b"cookie", b"access-token-cid=forged"),
                                                           (b"cookie", b"access-token-cid=tok")]}) is False
    assert RequestGuard.signed_in({"app": object(), "headers": []}) is None  # cannot tell: as before
    open_app = GradioApp()
    open_app.auth = None
    assert RequestGuard.signed_in({"app": open_app, "headers": []}) is True
    guard, _ = _guard(upload_budget=10_000_000)
    chat = json.dumps({"data": ["x" * 100_000]}).encode()
    assert asyncio.run(_request(guard, "/gradio_api/queue/join", chat, app=app)) == 413
    assert asyncio.run(_request(guard, "/gradio_api/queue/join", chat, app=app, headers=SIGNED_IN)) == 200
    assert asyncio.run(_request(guard, "/gradio_api/upload", b"x" * 10, declare=8_000_000, app=app)) == 413
    assert guard.uploaded_recently() == 0
    assert asyncio.run(_request(guard, "/gradio_api/upload", b"x" * 600_000, app=app, headers=SIGNED_IN)) == 200
    assert guard.uploaded_recently() == 600_000
    assert asyncio.run(_request(guard, "/login", b"password=" + b"x" * 20_000, app=app)) == 413
    # a flood without login fills only its own pool: signed-in requests go on; a refused login costs no try
    monkeypatch.setattr(L, "ANON_BUFFER_CAP", 10_000)

    async def flood():
        gate = asyncio.Event()
        held = [asyncio.create_task(_request(guard, "/gradio_api/queue/join", b"}", first=b"{" + b" " * 9_000,
                                             gate=gate, app=app, client=f"198.18.0.{i}")) for i in range(3)]
        await asyncio.sleep(0.05)
        during = (await _request(guard, "/gradio_api/queue/join", b"{}", app=app, headers=SIGNED_IN),
                  await _request(guard, "/login", b"password=x" * 200, app=app, client="192.0.2.50"))
        gate.set()
        return during, await asyncio.gather(*held)
    (user, login), held = asyncio.run(flood())
    assert user == 200 and login == 503 and sorted(held) == [200, 503, 503], (user, login, held)
    assert guard._fails.get("192.0.2.50", (0, 0))[0] == 0 and sum(guard._buffered_in.values()) == 0


def test_upload_cannot_send_more_than_it_declared():
    """Re-attack 2026-12-06: Content-Length 100 plus Transfer-Encoding: chunked and a 7.5 MB body; the guard
    reserved 4 kB and the server read the chunked body, so 30 at once took 214 MB against a 160 MB budget.
    Now an upload with a transfer-encoding is refused, and one sending more than it declared is cut off."""
    guard, _ = _guard(upload_budget=1_000_000)
    up = "/gradio_api/upload"
    assert asyncio.run(_request(guard, up, b"x" * 500_000, declare=100,
                                headers=[("transfer-encoding", "chunked")])) == 411
    assert asyncio.run(_request(guard, up, b"x" * 500_000, declare=100)) == 413
    assert guard.uploaded_recently() == 4096  # only what it declared (at least 4 kB) was ever counted


def test_owner_stays_known_when_others_log_in_many_times():
    """Re-attack: 1,001 logins with the password from forged addresses pushed the owner out of the list of
    known clients; the list is now first come, never evicted."""
    guard, _ = _guard()
    assert asyncio.run(_request(guard, "/login", PASSWORD, client="198.51.100.7")) == 200
    for i in range(1100):
        assert asyncio.run(_request(guard, "/login", PASSWORD, client=f"10.{i // 250}.{i % 250}.1")) == 200
    codes = [asyncio.run(_request(guard, "/login", b"password=x%d" % i, client=f"192.0.2.{i}")) for i in range(30)]
    assert codes[-1] == 429
    assert asyncio.run(_request(guard, "/login", PASSWORD, client="198.51.100.7")) == 200


def test_cross_site_posts_refused():
    """A page on another site posting with the user's cookie (the browser says Sec-Fetch-Site: cross-site)
    changes nothing; same-origin requests and clients that do not say (gradio_client, curl) go through."""
    guard, _ = _guard()
    up = "/gradio_api/upload"
    assert asyncio.run(_request(guard, up, b"{}", headers=[("sec-fetch-site", "cross-site")])) == 403
    assert asyncio.run(_request(guard, "/gradio_api/queue/join", b"{}", headers=[("sec-fetch-site", "cross-site")])) == 403
    assert asyncio.run(_request(guard, up, b"{}", headers=[("sec-fetch-site", "same-origin")])) == 200
    assert asyncio.run(_request(guard, up, b"{}")) == 200
    # another subdomain of the same site (*.gradio.live, *.hf.space) or another port: not this page either
    assert asyncio.run(_request(guard, up, b"{}", headers=[("sec-fetch-site", "same-site")])) == 403
    assert asyncio.run(_request(guard, "/login", PASSWORD, headers=[("sec-fetch-site", "same-site")])) == 403
    # an <img src=".../logout"> on another page would end every session of the shared user
    assert asyncio.run(_request(guard, "/logout", method="GET", headers=[("sec-fetch-site", "cross-site")])) == 403
    # following a link to the app from elsewhere (a chat message, a search result) still opens it
    assert asyncio.run(_request(guard, "/", method="GET", headers=[("sec-fetch-site", "cross-site")])) == 200


def test_gradio_hardening_bounds_upload_trackers_and_sweeps_its_folder(tmp_path):
    """ui/hardening.py: upload progress trackers are bounded (Gradio kept one per upload_id a client named);
    sweep() deletes files and emptied folders older than the age, keeps newer ones, never follows a link."""
    import asyncio
    import os
    import time

    from gradio import route_utils

    from ui import hardening
    hardening.install()
    hardening.install()  # once per process, however often demos are built
    progress = route_utils.FileUploadProgress()
    for i in range(hardening.MAX_UPLOAD_TRACKERS + 500):
        progress.track(f"u{i}")
    assert len(progress._statuses) <= hardening.MAX_UPLOAD_TRACKERS and "u1499" in progress._statuses

    async def probe():  # GET /upload_progress?upload_id=<random>: Gradio waits for a tracker that never comes
        for i in range(hardening.MAX_UPLOAD_TRACKERS + 10):
            try:
                await asyncio.wait_for(progress.is_tracked(f"p{i}"), 0.001)
            except asyncio.TimeoutError:
                pass
    asyncio.run(probe())
    assert len(progress._signals) <= hardening.MAX_UPLOAD_TRACKERS and "p1009" in progress._signals

    root = tmp_path / "g"
    old_dir, new_dir, kept = root / "old" / "sub", root / "new", tmp_path / "outside"
    old_dir.mkdir(parents=True), new_dir.mkdir(), kept.mkdir()
    (old_dir / "a.bin").write_bytes(b"x")
    (new_dir / "b.bin").write_bytes(b"y")
    (kept / "c.bin").write_bytes(b"z")
    os.symlink(kept, root / "link")
    past = time.time() - 7200
    for p in (old_dir / "a.bin", old_dir, root / "old"):
        os.utime(p, (past, past))
    os.utime(root / "link", (past, past), follow_symlinks=False)
    assert hardening.sweep(root, 3600) >= 3
    assert not (root / "old").exists() and (new_dir / "b.bin").exists() and not (root / "link").is_symlink()
    assert (kept / "c.bin").exists()  # the link was removed, not followed


def test_private_gradio_dir_only_before_gradio_and_never_over_the_operators(monkeypatch):
    from deploy.launch import private_gradio_dir
    env = {"GRADIO_TEMP_DIR": "/srv/mine"}
    assert private_gradio_dir(env) is None and env["GRADIO_TEMP_DIR"] == "/srv/mine"
    env = {}
    import sys
    if "gradio" in sys.modules:  # this process has read GRADIO_TEMP_DIR already: left alone
        assert private_gradio_dir(env) is None and "GRADIO_TEMP_DIR" not in env
    monkeypatch.delitem(sys.modules, "gradio", raising=False)
    folder = private_gradio_dir(env)
    assert folder and env["GRADIO_TEMP_DIR"] == folder and "lora-studio-gradio" in folder
    assert os.path.isdir(folder) and not os.path.islink(folder) and not os.stat(folder).st_mode & 0o022


def test_private_gradio_dir_is_never_a_planted_link(tmp_path, monkeypatch):
    """The folder is swept (files older than an hour deleted): a link planted at its name in /tmp by another
    user must not make the sweep delete files elsewhere. A planted link or a folder others may write is
    passed over for a fresh private one."""
    import sys
    import tempfile

    from deploy.launch import private_gradio_dir
    monkeypatch.delitem(sys.modules, "gradio", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    victim = tmp_path / "victim"
    victim.mkdir()
    planted = tmp_path / f"lora-studio-gradio-{os.getuid()}"
    os.symlink(victim, planted)
    env = {}
    folder = private_gradio_dir(env)
    assert folder != str(planted) and os.path.realpath(folder) != str(victim) and not os.path.islink(folder)
    os.unlink(planted)
    planted.mkdir(mode=0o777)
    os.chmod(planted, 0o777)
    env = {}
    assert private_gradio_dir(env) != str(planted)


def test_launch_keeps_few_sessions():
    """Every new session id made Gradio keep a session state (10,000 by default: GBs from one client). The
    app launched as app.py launches it keeps 256: 300 requests, each with its own session id, leave 256."""
    import httpx

    from app_helpers import free_port
    from conftest import ROOT
    from ui.chat_engine import ChatOnlyEngine
    from ui.interface import create_chat_only_ui, launch_kwargs
    assert launch_kwargs()["state_session_capacity"] == 256
    demo = create_chat_only_ui(ChatOnlyEngine(models_dir=str(ROOT / "models"), adapters_dir=str(ROOT / "adapters"),
                                              provider="cpu"))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, **launch_kwargs())
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            for i in range(300):
                r = c.post("/gradio_api/run/clear_chat", json={"data": [], "session_hash": f"s{i}"})
                assert r.status_code == 200, r.text[:200]
        assert len(demo.state_holder.session_data) == 256 and "s299" in demo.state_holder.session_data
    finally:
        demo.close()

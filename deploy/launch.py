"""Launch options of the web app: where it listens, who may open it (auth) and whether a public share
link is made.

Rules (resolve_launch_options):
- never shares unless asked (`--share` or `--share-without-auth`);
- credentials come from `--auth USER:PASS`, else from $STUDIO_AUTH (`user:pass`);
- `--share` without credentials is refused with a message, unless `--share-without-auth` is given:
  then the options carry a warning that the app prints, logs and shows on the page.
RequestGuard (an ASGI middleware, given to Gradio through launch's app_kwargs by guard_kwargs) answers a
request body over the upload limit with 413 before any route (login included) runs, and slows down
failed logins per client: after FAILS_FREE wrong passwords, that client's next attempts are answered
429 until a wait that doubles with each failure (at most MAX_WAIT_S) has passed; all clients together
likewise after ALL_FACTOR x FAILS_FREE (a client address can be forged through X-Forwarded-For), except
clients that logged in before (so strangers guessing cannot lock the owner out). A login attempt counts as a
failure from the moment it arrives (undone when it succeeds), and an upload's declared size counts against
the hourly budget from the moment it arrives (and may not send more; no transfer-encoding): requests sent all
at once, their bodies held back, cannot get around either. Other POST bodies (the API's JSON) are capped at
max_request bytes, and a browser request that says it comes from another page (Sec-Fetch-Site other than
same-origin) may change nothing (403).
Standard library only: exported Spaces ship this file as deploy/launch.py."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Mapping

from deploy import clients

AUTH_ENV = "STUDIO_AUTH"
log = logging.getLogger("studio.launch")

SHARE_WITHOUT_AUTH_WARNING = (
    "This app is shared through a PUBLIC gradio.live link WITHOUT a password: anyone who gets the link "
    "can use it (and your machine's compute). Restart with --auth USER:PASS or STUDIO_AUTH=user:pass.")


class LaunchError(ValueError):
    """Launch options that are refused; the message says what to do."""


@dataclass(frozen=True)
class LaunchOptions:
    share: bool = False
    auth: tuple[str, str] | None = None
    auth_source: str | None = None   # "--auth" or "$STUDIO_AUTH"
    warning: str | None = None        # shown as a banner and logged (sharing without auth)

    def launch_kwargs(self) -> dict:
        return {"share": bool(self.share), "auth": self.auth}

    def __repr__(self) -> str:  # never print the password
        auth = None if self.auth is None else (self.auth[0], "***")
        return f"LaunchOptions(share={self.share}, auth={auth}, auth_source={self.auth_source!r})"


def parse_auth(value: str, source: str) -> tuple[str, str]:
    """'user:pass' -> (user, pass). The error message never repeats the value (it holds a password)."""
    user, sep, pw = (value or "").partition(":")
    user = user.strip()
    if not sep or not user or not pw:
        raise LaunchError(f"{source} must be USER:PASS (a user name, a colon, a non-empty password)")
    return user, pw


def add_launch_arguments(ap: argparse.ArgumentParser) -> None:
    """--host and --port (defaults: $GRADIO_SERVER_NAME, $GRADIO_SERVER_PORT), --share, --auth and
    --share-without-auth."""
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    ap.add_argument("--share", action="store_true",
                    help=f"create a public gradio.live link; needs --auth USER:PASS or ${AUTH_ENV}")
    ap.add_argument("--auth", help=f"USER:PASS required to open the app (default: ${AUTH_ENV} if set)")
    ap.add_argument("--share-without-auth", action="store_true",
                    help="share publicly WITHOUT a password (anyone with the link can use the app)")


def resolve_launch_options(args, env: Mapping[str, str] | None = None) -> LaunchOptions:
    """The share/auth decision from parsed arguments (share, auth, share_without_auth) and the
    environment. Raises LaunchError for a refused combination or malformed credentials."""
    env = {} if env is None else env
    share = bool(getattr(args, "share", False))
    without_auth = bool(getattr(args, "share_without_auth", False))
    auth = None
    source = None
    if getattr(args, "auth", None):
        auth, source = parse_auth(args.auth, "--auth"), "--auth"
    elif env.get(AUTH_ENV):
        auth, source = parse_auth(env[AUTH_ENV], f"${AUTH_ENV}"), f"${AUTH_ENV}"
    if without_auth:
        share = True
    warning = None
    if share and auth is None:
        if not without_auth:
            raise LaunchError(
                "refusing to create a public share link without credentials: anyone with the link could "
                f"use the app. Give --auth USER:PASS (or set {AUTH_ENV}=user:pass), or, if you really "
                "want an open public app, pass --share-without-auth.")
        warning = SHARE_WITHOUT_AUTH_WARNING
    return LaunchOptions(share=share, auth=auth, auth_source=source, warning=warning)


def announce(opts: LaunchOptions, printer=print) -> None:
    """Prints and logs what the launch will expose (the warning when sharing without a password)."""
    if opts.warning:
        log.warning(opts.warning)
        printer("WARNING: " + opts.warning)
    elif opts.share:
        printer(f"sharing a public link, protected by the credentials from {opts.auth_source}")
    elif opts.auth:
        printer(f"login required (credentials from {opts.auth_source})")


def launch_options(args, env: Mapping[str, str] | None = None) -> LaunchOptions | None:
    """resolve_launch_options (env: default os.environ), then announce. A refused combination is printed
    to stderr as "app.py: <reason>" (both launchers are app.py) and gives None: the launcher exits 2."""
    try:
        opts = resolve_launch_options(args, os.environ if env is None else env)
    except LaunchError as e:
        print(f"app.py: {e}", file=sys.stderr)
        return None
    announce(opts)
    return opts


class Rate:
    """At most one event a second per kind, with a count of those let go by since; at most MAX_KINDS kinds have
    their own second, the others share one."""
    MAX_KINDS = 32

    def __init__(self):
        self._lock = threading.Lock()
        self._kinds: dict[str, list] = {}  # kind -> [time of its last event, events let go by since]

    def take(self, kind: str) -> int | None:
        """None when `kind` had one less than a second ago; else how many were let go by since the last one."""
        now = time.monotonic()
        with self._lock:
            if kind not in self._kinds and len(self._kinds) >= self.MAX_KINDS:
                kind = "*"
            last = self._kinds.setdefault(kind, [-1e9, 0])
            if now - last[0] < 1.0:
                last[1] += 1
                return None
            quiet, last[0], last[1] = last[1], now, 0
            return quiet


def _not_logged(quiet: int) -> str:
    return f" ({quiet} more not logged)" if quiet else ""


class RareLog:
    """Log lines that a client can cause at will, at most one a second per kind (Rate, with a count of those not
    written): a request that fails must not let one client fill the operator's disk (red-team passes 20-22), nor
    hide other kinds of failure behind its own (pass 23)."""

    def __init__(self, logger: logging.Logger):
        self.logger, self._rate = logger, Rate()

    def warning(self, fmt: str, *args, kind: str = "") -> None:
        quiet = self._rate.take(kind)
        if quiet is not None:
            self.logger.warning(fmt + "%s", *args, _not_logged(quiet))


class RareFilter(logging.Filter):
    """uvicorn's warnings that any connection can cause, without login and before this app sees the request (an
    `Upgrade:` header: 183 bytes a request, ~386 kB/s from one connection; a bad request line: ~152 kB/s; red-team
    pass 23): at most one a second each (Rate, with a count); other records pass."""
    NOISY = ("Unsupported upgrade request", "No supported WebSocket library detected", "Invalid HTTP request received")

    def __init__(self):
        super().__init__()
        self._rate = Rate()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        kind = next((n for n in self.NOISY if msg.startswith(n)), None)
        if kind is None:
            return True
        quiet = self._rate.take(kind)
        if quiet is None:
            return False
        if quiet:
            record.msg, record.args = msg + _not_logged(quiet), None
        return True


def quiet_uvicorn() -> None:
    """Puts RareFilter on uvicorn's error logger (once; a dictConfig at server start keeps a logger's filters)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, RareFilter) for f in logger.filters):
        logger.addFilter(RareFilter())


# ---------------------------------------------------------------------------- request guard
FAILS_FREE = 5        # wrong passwords a client may send before it has to wait
MAX_WAIT_S = 60.0     # the longest wait after many failures
BODY_SLACK = 64 * 1024  # multipart framing around an upload of the maximum size


class _TooBig(Exception):
    pass


class _TooManyValues(Exception):
    pass


class _Busy(Exception):
    pass


class _OverBudget(Exception):
    pass


class _TooSlow(Exception):
    pass


ALL = "*"             # the key of all clients' failed logins together
ALL_FACTOR = 4        # ... which may fail ALL_FACTOR x FAILS_FREE times before everyone has to wait
ALL_RESET_S = 600.0   # ... and start again from 0 after ten minutes without a failure
UPLOAD_WINDOW_S = 3600.0  # Gradio's upload cache keeps a file one hour (ui.interface.UPLOAD_CACHE)
MAX_REQUEST = 512 * 1024  # other POST bodies: the API's JSON (a chat's two panes at the prompt limit: < 400 kB)
KNOWN_CLIENTS = 1000      # clients remembered as having logged in (exempt from the all-clients wait), first come
MAX_JSON_ITEMS = 5000     # objects and arrays in one JSON body: Gradio's parsing of a chat history costs ~0.2 ms
                          # a message (red team: ~7,800 one-character messages in 503 kB took 1.6 CPU-s, 16x a
                          # normal chat); a chat at the prompt limit has far fewer (3 items a message at most)
BODY_DEADLINE_S = 30.0    # a JSON body (<= 512 kB) not received in this time: 408 (slow-body connections)
UPLOAD_GRACE_S = 30.0     # an upload body must arrive within UPLOAD_GRACE_S + its size at UPLOAD_MIN_BPS: 408
UPLOAD_MIN_BPS = 32 * 1024  # (an 8 MB upload: 4.5 minutes) otherwise idle connections are held for good
UPLOAD_MIN_CHARGE = 4096  # bytes an upload costs the budget at least (the list of recent ones stays short)
UPLOAD_CLIENT_SHARE = 4   # one client (deploy/clients.py) may take at most 1/4 of the hourly budget (red-team pass 19:
                          # one client took all 160 MB in 0.6 s with ordinary uploads; unknown clients: no share)
BUFFER_CAP = 64 * 2**20   # bytes of bodies held at once for the item check, all requests together, counted as they
                          # arrive (headers declaring big bodies hold nothing): 503 beyond
ANON_MAX = 16 * 1024      # POST bodies of clients not signed in (auth on): the login form, Gradio's few open routes
ANON_BUFFER_CAP = 16 * 2**20  # ... and what they may hold at once, all together (signed-in bodies have their own)
ANON_DEADLINE_S = 10.0    # ... and how long their body may take
MAX_BRACKETS = 50_000     # more brackets than any chat within the prompt limit (32,000 characters) has: 413 unparsed
PARSE_WAIT_S = 10.0       # the longest wait for the one parse at a time (bodies between the two limits): 503
LOGOUT_ROUTES = ("/logout", "/gradio_api/logout")
LOGIN_ROUTES = ("/login",)                 # Gradio's routes, exactly (rstrip("/")): a suffix match let
UPLOAD_ROUTES = ("/gradio_api/upload",)    # /gradio_api/run/login or .../run/upload skip the JSON check
# Gradio routes this app never uses, answered 404 before Gradio (red team, 2026-12-07): process_recording
# wrote every posted video into /tmp and never deleted it (outside the upload budget); deep_link wrote a
# session's every value, a typed Hub token included, into a world-readable file kept forever; component_server
# made a full session state per new session id (no component here has server functions).
DENIED_ROUTES = frozenset(pre + r for pre in ("/gradio_api", "") for r in
                          ("/process_recording", "/deep_link", "/component_server"))
# ... and route families, by prefix (red-team pass 18): custom_component answered without login and printed its
# raw path into the operator's log (12 kB a request, newlines and terminal escapes included); monitoring told
# any signed-in client what all sessions did; the rest serve features this app does not have (profiling, run
# history, vibe editing, dev reload, media streams, the proxy to other Spaces)
DENIED_PREFIXES = tuple(pre + r for pre in ("/gradio_api", "") for r in
                        ("/custom_component/", "/monitoring", "/profiling/", "/run-history/", "/vibe-",
                         "/undo-vibe-edit", "/dev/reload", "/stream/", "/proxy="))


MAX_JSON_VALUES = 20_000  # values of any kind (numbers, strings, null too): a chat history of 255,000 zeros (2
                          # brackets, 510 kB) made Gradio's model check log 48 MB and stall the server ~1 s a request
                          # (red team pass 16); a compare with 100 messages a pane has ~4,000


def json_items(body: bytes) -> int | None:
    """Objects and arrays in a JSON body, or None when it is not JSON (RequestGuard._items parses only bodies
    whose bracket count alone does not settle it)."""
    counted = json_counts(body)
    return None if counted is None else counted[0]


def json_counts(body: bytes) -> tuple[int, int] | None:
    """(objects and arrays, values of any kind) in a JSON body, or None when it is not JSON."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    n = values = 0
    todo = [doc]
    while todo:
        x = todo.pop()
        values += 1
        if isinstance(x, dict):
            n += 1
            todo.extend(x.values())
        elif isinstance(x, list):
            n += 1
            todo.extend(x)
    return n, values


class RequestGuard:
    """ASGI middleware: a body limit (413), per-client slowing of failed logins (429) and an upload budget:
    at most `upload_budget` bytes of POST .../upload bodies per hour for the whole server (429 beyond;
    Gradio keeps every upload an hour, so without it requests could fill the disk)."""

    def __init__(self, app, max_body: int, fails_free: int = FAILS_FREE, max_wait_s: float = MAX_WAIT_S,
                 clock=time.monotonic, upload_budget: int | None = None, max_request: int | None = None):
        self.app, self.max_body = app, int(max_body)
        self.max_request = int(max_request if max_request is not None else min(MAX_REQUEST, self.max_body))
        self._known: set[str] = set()  # clients that logged in (the first KNOWN_CLIENTS)
        self.fails_free, self.max_wait_s, self.clock = fails_free, max_wait_s, clock
        self.upload_budget = int(upload_budget if upload_budget is not None else 20 * self.max_body)
        self._fails: dict[str, tuple[int, float]] = {}   # client -> (failures, time of the last one)
        self._uploads: deque[list] = deque()             # [time, bytes, counted, client] of recent upload bodies,
        self._uploaded = 0                               # oldest first; their bytes together, and per client
        self._by_client: dict[str, int] = {}
        self.client_budget = self.upload_budget // UPLOAD_CLIENT_SHARE
        self._lock = threading.Lock()
        self._buffered_in = {"user": 0, "anon": 0}        # bytes of bodies held for the item check, per pool
        self._check = None                                # asyncio.Semaphore: one parse at a time, off the loop
        self._failures = RareLog(log)                             # failed requests: one log line a second

    def _recent_locked(self) -> int:
        """(self._lock held) Bytes of upload bodies taken in the last UPLOAD_WINDOW_S; older ones forgotten."""
        cut = self.clock() - UPLOAD_WINDOW_S
        while self._uploads and self._uploads[0][0] < cut:
            e = self._uploads.popleft()
            self._count_locked(e, -e[1])
            e[2] = False  # (one still arriving is no longer counted)
        return self._uploaded

    def _count_locked(self, entry: list, n: int) -> None:
        self._uploaded += n
        if entry[3] is not None:
            left = self._by_client.get(entry[3], 0) + n
            if left > 0:
                self._by_client[entry[3]] = left
            else:
                self._by_client.pop(entry[3], None)

    def _fits_locked(self, entry: list, more: int) -> bool:
        """(self._lock held) Whether `more` bytes of this upload fit the budget and its client's share."""
        return self._recent_locked() + more <= self.upload_budget and \
            (entry[3] is None or self._by_client.get(entry[3], 0) + more <= self.client_budget)

    def _charge_locked(self, entry: list, received: int) -> bool:
        """(self._lock held) An upload's charge brought to what has arrived (UPLOAD_MIN_CHARGE at least); False,
        and nothing charged, when that would pass the budget."""
        more = max(UPLOAD_MIN_CHARGE, received) - entry[1]
        if more <= 0 or not entry[2]:
            return True
        if not self._fits_locked(entry, more):
            return False
        entry[1] += more
        self._count_locked(entry, more)
        return True

    def uploaded_recently(self) -> int:
        """Bytes of upload bodies received in the last UPLOAD_WINDOW_S."""
        with self._lock:
            return self._recent_locked()

    def _wait(self, key: str, free: int) -> float:
        with self._lock:
            n, last = self._fails.get(key, (0, 0.0))
        if n < free:
            return 0.0
        return max(0.0, min(self.max_wait_s, 2.0 ** (n - free)) - (self.clock() - last))

    def wait_s(self, client: str) -> float:
        """Seconds this client must wait before its next login attempt (0: it may try now): its own
        failures, and all clients' together (ALL). The client is what the server reports, and uvicorn takes
        it from X-Forwarded-For when the peer is loopback (a share tunnel, a local proxy): an attacker
        who sends a new X-Forwarded-For each time is still slowed by ALL."""
        own = self._wait(client, self.fails_free)
        with self._lock:
            known = client in self._known
        return own if known else max(own, self._wait(ALL, self.fails_free * ALL_FACTOR))

    def _record(self, client: str, ok: bool) -> None:
        """ok=False: one more failure of client (and of ALL). ok=True: the attempt that was counted as a
        failure when it arrived succeeded: client's failures are forgotten, ALL's count goes back by one,
        and client is remembered as known."""
        with self._lock:
            if ok:
                self._fails.pop(client, None)
                self._one_less_locked(ALL)
                if len(self._known) < KNOWN_CLIENTS:
                    # never evicted: a flood of logins with the password cannot push the owner, who logs
                    # in first, out of the list (later clients are just not added once it is full)
                    self._known.add(client)
                return
            now = self.clock()
            n, _ = self._fails.get(client, (0, 0.0))
            self._fails[client] = (n + 1, now)
            n, last = self._fails.get(ALL, (0, 0.0))
            self._fails[ALL] = (1 if now - last > ALL_RESET_S else n + 1, now)
            if len(self._fails) > 10_000:  # bounded: forget the oldest client (never ALL)
                oldest = min((k for k in self._fails if k != ALL), key=lambda k: self._fails[k][1])
                self._fails.pop(oldest, None)

    @staticmethod
    def signed_in(scope) -> bool | None:
        """Whether the request carries a live Gradio session (True also when the app has no login), from the
        app Starlette puts in the scope: its session cookie and token table (gradio 6's `get_current_user`).
        None when that cannot be told (another app, a custom auth dependency)."""
        app = scope.get("app")
        tokens, cookie_id = getattr(app, "tokens", None), getattr(app, "cookie_id", None)
        if not isinstance(tokens, dict) or not cookie_id or getattr(app, "auth_dependency", None) is not None:
            return None
        if getattr(app, "auth", None) is None:
            return True
        from starlette.requests import cookie_parser
        cookies = {}
        for k, v in scope.get("headers") or []:
            if k == b"cookie":  # the first Cookie header only, as Starlette's request.cookies (Gradio) reads
                cookies = cookie_parser(v.decode("latin-1"))
                break
        token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
        return token is not None and token in tokens

    def _unrecord(self, client: str) -> None:
        """A login attempt counted as failed on arrival that never reached the password check (the guard
        answered it: busy, too slow, too big): not a guess, so not counted."""
        with self._lock:
            self._one_less_locked(client)
            self._one_less_locked(ALL)

    def _one_less_locked(self, key: str) -> None:
        """(self._lock held) One failed login fewer for key."""
        n, last = self._fails.get(key, (0, 0.0))
        if n > 0:
            self._fails[key] = (n - 1, last)

    async def _hold_body(self, receive, pool: str, count_items: bool) -> tuple[list, int | None]:
        """Every message of a request's body, read within the pool's deadline, its bytes counted in the pool
        as they arrive and until its JSON items are counted (count_items; else None), then given back. Raises
        _Busy when the pool is full, TimeoutError when too slow (and _TooBig from `receive`)."""
        cap, deadline = (ANON_BUFFER_CAP, ANON_DEADLINE_S) if pool == "anon" else (BUFFER_CAP, BODY_DEADLINE_S)
        held, msgs = 0, []

        async def read_all():
            nonlocal held
            while True:
                msg = await receive()
                n = len(msg.get("body") or b"")
                with self._lock:
                    if self._buffered_in[pool] + n > cap:
                        raise _Busy()
                    self._buffered_in[pool] += n
                    held += n
                msgs.append(msg)
                if msg.get("type") != "http.request" or not msg.get("more_body"):
                    return msgs
        try:
            await asyncio.wait_for(read_all(), deadline)
            return msgs, (await self._items(b"".join(m.get("body") or b"" for m in msgs)) if count_items else None)
        finally:
            with self._lock:
                self._buffered_in[pool] -= held

    async def _items(self, body: bytes) -> int | None:
        """The JSON items of a body, as json_items, for the check. Most bodies have at most MAX_JSON_ITEMS
        brackets: that count (an upper bound, at C speed) is the answer. More than MAX_BRACKETS: refused as
        they are (no chat within the prompt limit has that many, strings included). Between the two: parsed
        in a worker thread, one at a time, so the event loop keeps serving; a request that cannot start its
        parse within PARSE_WAIT_S (a flood of such bodies) gets 503."""
        brackets = body.count(b"{") + body.count(b"[")
        if brackets > MAX_BRACKETS:
            return brackets
        if brackets <= MAX_JSON_ITEMS and 2 * brackets + body.count(b",") + 1 <= MAX_JSON_VALUES:
            return brackets  # (values <= 2 x brackets + commas + 1: within both limits without a parse)
        if self._check is None:
            self._check = asyncio.Semaphore(1)
        try:
            await asyncio.wait_for(self._check.acquire(), PARSE_WAIT_S)
        except asyncio.TimeoutError:
            raise _Busy() from None
        try:
            counted = await asyncio.to_thread(json_counts, body)
        finally:
            self._check.release()
        if counted is None:
            return None
        n, values = counted
        if values > MAX_JSON_VALUES:
            raise _TooManyValues(values)
        return n

    @staticmethod
    async def _answer(send, status: int, text: str, headers: list | None = None) -> None:
        body = ('{"detail": "%s"}' % text.replace('"', "'")).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())] + (headers or [])})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        method, path = scope.get("method"), scope.get("path", "").rstrip("/")
        if path in DENIED_ROUTES or path.startswith(DENIED_PREFIXES):
            return await self._answer(send, 404, "not found")
        if path in LOGOUT_ROUTES:
            # Gradio's /logout ends every session of the user name by default (all_session=true), and everyone on
            # a shared link signs in as the one user: one GET /logout a second kept every other user out (red-team
            # pass 19). A logout ends the caller's own session only
            scope = {**scope, "query_string": b"all_session=false"}
        if any(k == b"range" for k, _ in scope.get("headers") or []):
            # Gradio's ranged file answer (/file=, and its old /file/ route) copied every request header, the
            # session cookie too, into the response, and odd ranges gave 500 or a reset. This app serves no
            # media: every answer is whole
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"range"]}
        upload = method == "POST" and path in UPLOAD_ROUTES
        login = method == "POST" and path in LOGIN_ROUTES
        # uploads may be as big as an upload; other bodies (the API's JSON) far smaller; the login form and any
        # body of a client not signed in (Gradio answers those 401, but FastAPI parses a JSON body first) tiny
        signed_in = self.signed_in(scope)
        anon = method == "POST" and signed_in is False
        limit = self.max_body if upload else self.max_request
        if login or anon:
            limit = min(limit, ANON_MAX)
            upload = False
        too_big = f"request body over the {limit / 1e6:g} MB limit" if upload else \
            f"request body over the {limit / 1e3:g} kB limit for this route" + (" without login" if anon else "")
        declared, chunked, fetch_site = None, False, None
        for k, v in scope.get("headers") or []:
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    return await self._answer(send, 400, "bad content-length")
                if declared > limit + BODY_SLACK * upload:
                    return await self._answer(send, 413, too_big)
            elif k == b"transfer-encoding":
                chunked = True
            elif k == b"sec-fetch-site":
                fetch_site = v
        # A browser says where a request comes from (Fetch Metadata). This app's page and API share one origin
        # (localhost, the share link, the Space), so any other value on a request that changes something is
        # another page using the login cookie (SameSite=none): another site, or another subdomain of the same
        # site (*.gradio.live, *.hf.space) or port. A GET /logout would end every session of the shared user.
        # Browsers without Fetch Metadata are not covered (no Origin fallback: behind the share tunnel or the
        # Space's proxy the Host the app sees need not be the page's).
        if fetch_site not in (None, b"same-origin", b"none") and \
                (method not in ("GET", "HEAD", "OPTIONS") or path.endswith("/logout")):
            return await self._answer(send, 403, "requests from other pages are refused")
        if upload and chunked:  # its real size would be known only after it was taken
            return await self._answer(send, 411, "uploads need a content-length and no transfer-encoding")
        client = (scope.get("client") or ("?",))[0]
        if login:
            wait = self.wait_s(client)
            if wait > 0:
                return await self._answer(send, 429, f"too many failed logins: try again in {wait:.0f} s",
                                          [(b"retry-after", str(int(wait) + 1).encode())])
            self._record(client, ok=False)  # counted now; undone below if it succeeds
        entry, upload_by = None, 0.0
        over_budget = (429, f"this server took its upload budget of {self.upload_budget / 1e6:g} MB for the hour: "
                       "try again later", [(b"retry-after", b"600")])
        if upload:
            if declared is None:
                return await self._answer(send, 411, "uploads need a content-length")
            # The budget counts what arrives, as it arrives (red-team pass 18: counting what was declared, from
            # the headers on, let 20 connections that sent no body take the whole budget for as long as they
            # stayed open); a body that would pass it is cut off. What it declares must fit when it starts.
            from starlette.requests import Request
            who = clients.share_of(Request(scope))
            with self._lock:
                entry = [self.clock(), 0, True, who]
                if not self._fits_locked(entry, declared):
                    entry, own = None, who is not None and self._by_client.get(who, 0) + declared > self.client_budget
                elif not self._charge_locked(entry, 0):
                    entry, own = None, False
                else:
                    self._uploads.append(entry)
            if entry is None:
                if own:
                    return await self._answer(send, 429, f"your address took its share ({self.client_budget / 1e6:g} MB) "
                                              "of this server's hourly upload budget: try again later",
                                              [(b"retry-after", b"600")])
                return await self._answer(send, *over_budget)
            upload_by = time.monotonic() + UPLOAD_GRACE_S + declared / UPLOAD_MIN_BPS
        received = 0
        started = ended = False
        status = 0

        async def limited_receive():
            nonlocal received
            if upload:
                try:
                    msg = await asyncio.wait_for(receive(), max(0.0, upload_by - time.monotonic()))
                except asyncio.TimeoutError:
                    raise _TooSlow() from None
            else:
                msg = await receive()
            if msg.get("type") == "http.request":
                received += len(msg.get("body") or b"")
                if received > limit + BODY_SLACK * upload or (upload and received > declared):
                    raise _TooBig()  # (an upload may not send more than it declared)
                if upload:
                    with self._lock:
                        if not self._charge_locked(entry, received):
                            raise _OverBudget()
            return msg

        # Gradio 6.31 puts the whole API description (every endpoint, recipe field, base and adapter name) into
        # the page it serves, the login page included: for a client not signed in it is taken out of the HTML
        # (HEAD too: its content-length would tell the size of what was taken out)
        page_held: list | None = [] if method in ("GET", "HEAD") and signed_in is False else None

        async def watched_send(msg):
            nonlocal started, status, page_held, ended
            if msg.get("type") == "http.response.body" and not msg.get("more_body"):
                ended = True
            if msg.get("type") == "http.response.start":
                started, status = True, int(msg.get("status", 0))
                if page_held is not None and not any(k == b"content-type" and v.startswith(b"text/html")
                                                     for k, v in msg.get("headers") or []):
                    page_held = None
            if page_held is None:
                return await send(msg)
            page_held.append(msg)
            if msg.get("type") == "http.response.body" and not msg.get("more_body"):
                start, body = page_held[0], without_api_info(b"".join(m.get("body") or b"" for m in page_held[1:]))
                page_held = None
                await send({**start, "headers": [(k, str(len(body)).encode() if k == b"content-length" else v)
                                                 for k, v in start.get("headers") or []]})
                await send({"type": "http.response.body", "body": body})

        app_receive = limited_receive
        if method == "POST" and not upload:
            # the whole body first (at most max_request, within BODY_DEADLINE_S; the bytes held by all requests
            # together at most BUFFER_CAP, counted as they arrive), so that a JSON one with too many items is
            # refused before Gradio parses it (login forms too, for the deadline); then handed on as it came
            # (two pools: bodies of clients not signed in, and the login form, cannot fill the signed-in one)
            pool = "anon" if anon or login else "user"
            refused = None
            try:
                msgs, items = await self._hold_body(limited_receive, pool, count_items=not login)
            except _TooBig:
                refused = (413, too_big, [])
            except _TooManyValues as e:
                refused = (413, f"request with {e.args[0]:,} JSON values; at most {MAX_JSON_VALUES:,} are accepted "
                                "(clear the chat)", [])
            except _Busy:
                refused = (503, "server busy: try again", [(b"retry-after", b"5")])
            except asyncio.TimeoutError:
                deadline = ANON_DEADLINE_S if pool == "anon" else BODY_DEADLINE_S
                refused = (408, f"request body not received within {deadline:g} s", [])
            if refused:
                if login:
                    self._unrecord(client)
                return await self._answer(send, *refused)
            if items is not None and items > MAX_JSON_ITEMS:
                return await self._answer(send, 413, f"request with {items:,} JSON items; at most "
                                          f"{MAX_JSON_ITEMS:,} are accepted (clear the chat)")
            if not login and has_lone_surrogate(b"".join(m.get("body") or b"" for m in msgs)):
                return await self._answer(send, 400, "the request holds a lone surrogate (a \\ud800-style escape "
                                          "without its pair), which is not text")

            async def app_receive():
                return msgs.pop(0) if msgs else await receive()
        try:
            await self.app(scope, app_receive, watched_send)
        except (_TooBig, _OverBudget, _TooSlow) as e:  # (cut off before it takes more than it may)
            if started:
                raise
            if isinstance(e, _OverBudget):
                return await self._answer(send, *over_budget)
            if isinstance(e, _TooSlow):
                return await self._answer(send, 408, "upload body too slow: it must arrive at "
                                          f"{UPLOAD_MIN_BPS // 1024} kB/s or more (after {UPLOAD_GRACE_S:g} s)")
            return await self._answer(send, 413, too_big)
        except Exception as e:  # noqa: BLE001 - Gradio raised (an unknown fn_index, api_name, session or event)
            # Gradio's KeyError/IndexError/HTTPException went to the log as a 5 kB traceback per request, 1.7 MB/s
            # from four threads (red-team passes 20 and 21, the latter from inside a stream it had started): one
            # short line, at most one a second; a plain 500, or the started answer ended where it stopped
            self._failures.warning("a request failed: %s %r: %s: %.200r", method, path[:120], type(e).__name__,
                                   str(e), kind=type(e).__name__)
            if not started:
                return await self._answer(send, 500, "internal error")
            if not ended:
                try:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except Exception:  # noqa: BLE001 - the client went away meanwhile
                    pass
            return
        finally:
            if entry is not None and received == 0:  # refused before its body (e.g. 401): costs nothing
                with self._lock:
                    if entry[2]:
                        self._count_locked(entry, -entry[1])
                        entry[1], entry[2] = 0, False
                    if self._uploads and self._uploads[-1] is entry:
                        self._uploads.pop()
        if login and status and status < 400:
            self._record(client, ok=True)
        elif login and status:  # the operator sees guessing (pass 23: failed logins were not logged at all)
            self._failures.warning("a login failed (%s) from %s", status, client[:60], kind="login")


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def has_lone_surrogate(body: bytes) -> bool:
    """Whether a JSON body holds a string (a key too) with a lone surrogate: a \\ud800-style escape without its
    pair. Python reads it as text, but nothing can write it as UTF-8, so Gradio's answer stream (orjson) was cut
    wherever a handler or Gradio itself echoed it (an unknown job id, a dropdown's "not in the choices"...);
    pairs (an emoji from a client that escapes non-ASCII) pass. Parsed only when such an escape appears."""
    if not _SURROGATE_ESCAPE.search(body):
        return False
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return False  # not JSON: Gradio answers it
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_API_INFO = re.compile(rb"<script>window\.gradio_api_info = .*?;</script>", re.S)


def without_api_info(html: bytes) -> bytes:
    """The page without Gradio's embedded API description (its JSON is written with '<' escaped, so it
    holds no '</script>')."""
    return _API_INFO.sub(b"<script>window.gradio_api_info = null;</script>", html)


def private_gradio_dir(env=os.environ) -> str | None:
    """Gives Gradio a folder of its own for uploads and its cache (GRADIO_TEMP_DIR, read when gradio is
    imported: call this before), so that the app may sweep it (ui/hardening.py `sweep`) without touching other
    Gradio apps' files in the shared /tmp/gradio. Returns the folder to sweep; None when the operator chose
    GRADIO_TEMP_DIR (theirs: not swept)."""
    if env.get("GRADIO_TEMP_DIR") or "gradio" in sys.modules:  # (gradio already read it: too late to change)
        return None
    import stat
    import tempfile
    uid = os.getuid() if hasattr(os, "getuid") else None
    folder = os.path.join(tempfile.gettempdir(), f"lora-studio-gradio-{uid or 0}")
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError:
        folder = None
    # it will be swept: only a real folder of this user's, nobody else's to write (not a link planted in /tmp)
    st = os.lstat(folder) if folder else None
    if st is None or not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o022 or (uid is not None and st.st_uid != uid):
        folder = tempfile.mkdtemp(prefix="lora-studio-gradio-")
    env["GRADIO_TEMP_DIR"] = folder
    return folder


def guard_kwargs(max_body: int, upload_budget: int | None = None) -> dict:
    """launch() keyword arguments that install RequestGuard and cap Gradio's uploads at max_body (and at
    upload_budget bytes an hour, default 20 x max_body)."""
    from starlette.middleware import Middleware
    return {"app_kwargs": {"middleware": [Middleware(RequestGuard, max_body=max_body,
                                                          upload_budget=upload_budget)]},
            "max_file_size": int(max_body)}

"""Who may run what at once, decided when a request arrives and never by waiting: Gradio's queue holds at most 64
waiting events for the whole server, so work that waits there (a slow data check, a build start) let one client
fill it and every other user's chat got "Queue is full" (red team pass 15). ClientSlots counts per client;
Gate adds a bound for everyone together. A request over either is answered at once with a message."""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

from artifacts.owners import ANONYMOUS, SESSION_PREFIX
from deploy import clients


SHARED_ENV = "STUDIO_SHARED"  # app.py sets it for a login, a share link or a Space
UNKNOWN = "(requests with no known address)"  # their one key for ClientSlots on a shared app
PAGE = "(the page as built)"  # the client a page is built for: the same page for everyone, so one that owns nothing


def _event_request(request=None):
    """`request`, or Gradio's request of the event being handled."""
    if request is None:
        from gradio.context import LocalContext
        request = LocalContext.request.get(None)
    return request


def requester(request=None) -> str | None:
    """Who owns what this request makes or may change (artifacts/owners.py): deploy/clients.client_of of the request
    (default: Gradio's request of the event being handled). No known address: None, the operator, on an app that
    is not shared (alone on localhost); on a shared one its login session (session_client), else ANONYMOUS (an app
    shared without a password), never the operator: a tunnel or proxy that forwarded no address must not make a
    stranger the operator."""
    request = _event_request(request)
    # (an IPv6 client owns by its /64, one subscriber's network: by the /48, which many providers split among
    # customers, unrelated users read and deleted each other's work (red-team pass 36); limits count by the /48,
    # artifacts/owners.quota_of)
    client = clients.client_of(request)
    if client is None and os.environ.get(SHARED_ENV) == "1":
        return session_client(request) or ANONYMOUS
    return client


def session_client(request) -> str | None:
    """A client with no known address on a shared app, told apart by its login session: the Gradio session cookie
    (`access-token[-unsecure]-<app>`, a random token per login) hashed, or None (no login on this app). Red-team
    pass 31: with one "anonymous" owner, two strangers whose addresses the proxy did not forward could read,
    cancel and delete each other's work; a token is not guessable as an address is, and a new login is a new
    client (what the earlier login made stays that session's)."""
    # Only Gradio's own cookie names for this app, and only a token of a login it issued (red-team pass 33: any
    # cookie whose name began with "access-token" was taken, so a client chose its identity per request and
    # every per-client limit, and the export eviction of pass 32, with it).
    try:
        server = getattr(request, "app", None)
        cookie_id, tokens = getattr(server, "cookie_id", None), getattr(server, "tokens", None)
        cookies = dict(getattr(request, "cookies", None) or {})
    except Exception:  # noqa: BLE001 - no readable cookies or app: no session
        return None
    if not cookie_id or not isinstance(tokens, dict):
        return None
    token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
    if not token or token not in tokens:
        return None
    return session_tag(token)


def session_tag(token: str) -> str:
    """The client a login session is (a hash of its token: the token itself is a credential)."""
    import hashlib
    return SESSION_PREFIX + hashlib.sha256(str(token).encode()).hexdigest()[:24]


def chats_per_client() -> int:
    """Answers one client may have streaming at once: $STUDIO_CHAT_PER_CLIENT, default 2 (0: no limit)."""
    return int(os.environ.get("STUDIO_CHAT_PER_CLIENT", "2"))


class ClientSlots:
    """At most `per_client` answers streaming at once per client ($STUDIO_CHAT_PER_CLIENT, default 2; a compare is
    one): one stranger's queued requests could otherwise take every chat slot (8) and the whole queue (64) while
    the others wait minutes (red team pass 13). A request over it is answered at once, so a flood drains from the
    queue in milliseconds. Gate (below) uses the same rule for work that must not wait in Gradio's queue.

    The client is a public address (deploy/clients.py says how it is told; none known: not limited)."""

    def __init__(self, per_client: int, unknown: int | None = None):
        """unknown: how many every request with no known address takes together on a shared app (default
        per_client): red-team pass 35, one login holder sent 40 compares, each with its own session, took the 8
        chat slots and the queue, and a chat from an address waited 33 s."""
        self.per_client = per_client
        self.unknown = per_client if unknown is None else unknown
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    # who the client is (deploy/clients.py: the request guard counts uploads per client by the same rule)
    client_of = staticmethod(clients.client_of)
    network_of = staticmethod(clients.network_of)

    @staticmethod
    def key_of(request=None) -> str | None:
        """Who a request's slots count against: its address, an IPv6 one by its /48 (pass 35: six /64s of one /48
        held 12 streams), or on a shared app with no known address UNKNOWN, all such requests together; None
        (not limited) alone on localhost."""
        # (the event's request by default: pass 36, gates entered without one counted every client as UNKNOWN)
        request = _event_request(request)
        key = clients.share_of(request)
        if key is None and os.environ.get(SHARED_ENV) == "1":
            return UNKNOWN
        return key

    def take(self, client: str | None) -> bool:
        if client is None or self.per_client <= 0:
            return True
        cap = self.unknown if client == UNKNOWN else self.per_client
        with self._lock:
            if self._held.get(client, 0) >= cap:
                return False
            self._held[client] = self._held.get(client, 0) + 1
            return True

    def give(self, client: str | None) -> None:
        if client is None or self.per_client <= 0:
            return
        with self._lock:
            n = self._held.get(client, 0) - 1
            if n > 0:
                self._held[client] = n
            else:
                self._held.pop(client, None)


class Gate:
    """At most `total` of one kind of work at once, at most `per_client` per client (ClientSlots' rule). Handlers
    registered with concurrency_limit=None (so nothing waits in Gradio's queue) enter it; `enter` yields None when
    the request may run, else the message to answer with."""

    LINE_S = 15.0  # a refused client keeps its place in line while it asks again within this many seconds

    def __init__(self, what: str, total: int, per_client: int = 1, turns_s: float = 0.0):
        """turns_s > 0 (the export/push gate), turns and a line, by requester (its /64, or its login session):
        - after a client's work ends, that client waits as long as the work took, and at least turns_s seconds,
          before it enters again (red-team pass 36: one client replacing its own export 48 times a second held
          the one slot, and 19 of 20 of other users' exports were refused);
        - a client refused because the slot was busy is in line, and while anyone is in line only the first may
          enter (pass 37: a client that asks every few ms always won the moment the slot came free, and two
          identities of one user, an IPv4 and an IPv6 address, passed it back and forth; now they take turns
          with everyone in line).
        Turns were kept by the limit key (the /48, or every address-less request together) in pass 36, so one
        client's turn shut out its neighbours (pass 37): by requester now."""
        self.what, self.total, self.turns_s = what, total, turns_s
        self.slots = ClientSlots(per_client)
        self._sem = threading.BoundedSemaphore(total)
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}  # requester -> when it may enter again
        self._line: dict[str, float] = {}  # requester -> when it last asked (in the order it was first refused)

    def _turn(self, who: str | None) -> str | None:
        """None when `who` may try the slot now (turns_s), else why not."""
        if who is None or self.turns_s <= 0:
            return None
        now = time.monotonic()
        with self._lock:
            self._next = {k: t for k, t in self._next.items() if t > now}  # (bounded by the recent clients)
            self._line = {k: t for k, t in self._line.items() if now - t <= self.LINE_S}
            wait = self._next.get(who, now) - now
            if wait > 0:
                return f"other users get a turn at the {self.what} first: try again in {wait:.0f} s"
            first = next(iter(self._line), who)
            if first != who:
                self._line[who] = now  # (in line, or keeps its place)
                place = list(self._line).index(who)
                return (f"{place} other user{'s are' if place > 1 else ' is'} waiting for the {self.what} before "
                        "you: try again in a few seconds (you keep your place for 15 s)")
        return None

    def _refused(self, who: str | None) -> None:
        if who is not None and self.turns_s > 0:
            with self._lock:
                self._line[who] = time.monotonic()

    @contextmanager
    def enter(self, request=None):
        client = self.slots.key_of(request)
        who = requester(request) if client is not None and self.turns_s > 0 else None
        refusal = self._turn(who)
        if refusal is not None:
            yield refusal
            return
        if not self.slots.take(client):
            self._refused(who)
            yield (f"a {self.what} from your address is still running: wait until it ends" if client != UNKNOWN else
                   f"a {self.what} of another user without a known address is running: wait until it ends")
            return
        try:
            if not self._sem.acquire(blocking=False):
                self._refused(who)
                yield f"the server is busy with {self.total} {self.what}{'s' if self.total > 1 else ''}: try again in a moment"
                return
            started = time.monotonic()
            if who is not None:
                with self._lock:
                    self._line.pop(who, None)
            try:
                yield None
            finally:
                self._sem.release()
                if who is not None:
                    ended = time.monotonic()
                    with self._lock:
                        self._next[who] = ended + max(self.turns_s, ended - started)
        finally:
            self.slots.give(client)

"""Who may run what at once, decided when a request arrives and never by waiting: Gradio's queue holds at most 64
waiting events for the whole server, so work that waits there (a slow data check, a build start) let one client
fill it and every other user's chat got "Queue is full" (red team pass 15). ClientSlots counts per client;
Gate adds a bound for everyone together. A request over either is answered at once with a message."""
from __future__ import annotations

import ipaddress
import os
import threading
from contextlib import contextmanager


def chats_per_client() -> int:
    """Answers one client may have streaming at once: $STUDIO_CHAT_PER_CLIENT, default 2 (0: no limit)."""
    return int(os.environ.get("STUDIO_CHAT_PER_CLIENT", "2"))


class ClientSlots:
    """At most `per_client` answers streaming at once per client ($STUDIO_CHAT_PER_CLIENT, default 2; a compare is
    one): one stranger's queued requests could otherwise take every chat slot (8) and the whole queue (64) while
    the others wait minutes (red team pass 13). A request over it is answered at once, so a flood drains from the
    queue in milliseconds. Gate (below) uses the same rule for work that must not wait in Gradio's queue.

    The client is a public address: the peer's; or, when the peer is on this machine or a private network (a
    share tunnel, a Space's proxy, a reverse proxy), the right-most public address of X-Forwarded-For (all its
    header lines, in order: the proxies append, so that is the one the last proxy saw). An IPv6 client is its /64
    (one subscriber's network), an IPv4-mapped one its IPv4 address. None known (the local user; proxies that
    forward no public address): not limited, as its users could not be told apart and one cap for all would let
    one lock out the others (red team pass 14). What a private-network peer says cannot be checked: a client on
    the app's own private network can name any address, and so escape the cap or fill another's."""

    def __init__(self, per_client: int):
        self.per_client = per_client
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    @staticmethod
    def _address(text: str | None):
        """An ip_address from a peer or X-Forwarded-For entry ("1.2.3.4", "1.2.3.4:5678", "[v6]:port", "v6%zone"),
        or None."""
        t = (text or "").strip().strip('"')
        if t.startswith("["):
            t = t[1:t.find("]")] if "]" in t else ""
        elif t.count(":") == 1:  # IPv4 with a port
            t = t.split(":")[0]
        t = t.split("%")[0]
        try:
            ip = ipaddress.ip_address(t)
        except ValueError:
            return None
        return ip.ipv4_mapped if ip.version == 6 and ip.ipv4_mapped else ip

    @classmethod
    def _key(cls, ip) -> str:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)

    @staticmethod
    def network_of(client: str | None) -> str | None:
        """The wider network of an IPv6 client (its /48: one subscriber may hold 65,536 /64s), else None."""
        if not client or "/" not in client:
            return None
        return str(ipaddress.ip_network(client).supernet(new_prefix=48))

    @classmethod
    def client_of(cls, request) -> str | None:
        """The client a limit applies to (a public address, an IPv6 /64), or None (no request, none known)."""
        if request is None:
            return None
        host = getattr(getattr(request, "client", None), "host", None)
        ip = cls._address(host)
        if ip is not None and ip.is_global:
            return cls._key(ip)
        if ip is None and host:
            return None  # not an address: unknown
        try:  # a proxy on this machine or a private network: what the proxies appended, right-most first
            headers = getattr(request, "headers", None)
            lines = headers.getlist("x-forwarded-for") if hasattr(headers, "getlist") else \
                [(headers or {}).get("x-forwarded-for") or ""]
        except Exception:  # noqa: BLE001 - headers not readable: unknown
            return None
        for entry in reversed(",".join(str(x) for x in lines).split(",")):
            ip = cls._address(entry)
            if ip is not None and ip.is_global:
                return cls._key(ip)
        return None

    def take(self, client: str | None) -> bool:
        if client is None or self.per_client <= 0:
            return True
        with self._lock:
            if self._held.get(client, 0) >= self.per_client:
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

    def __init__(self, what: str, total: int, per_client: int = 1):
        self.what, self.total = what, total
        self.slots = ClientSlots(per_client)
        self._sem = threading.BoundedSemaphore(total)

    @contextmanager
    def enter(self, request=None):
        client = self.slots.client_of(request)
        if not self.slots.take(client):
            yield f"a {self.what} from your address is still running: wait until it ends"
            return
        try:
            if not self._sem.acquire(blocking=False):
                yield f"the server is busy with {self.total} {self.what}{'s' if self.total > 1 else ''}: try again in a moment"
                return
            try:
                yield None
            finally:
                self._sem.release()
        finally:
            self.slots.give(client)

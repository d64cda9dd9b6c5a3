"""Who a request comes from, for the limits counted per client (ui/slots.py ClientSlots, ui/hardening.py's queue
bounds, deploy/launch.py's upload shares): a public address. The peer's; or, when the peer is on this machine or
a private network (a share tunnel, a Space's proxy, a reverse proxy), the right-most X-Forwarded-For entry that
is not itself internal (all its header lines, in order: the proxies append, so that is the one the last proxy
saw), if it is public. An
IPv6 client is its /64 (one subscriber's network), an IPv4-mapped one its IPv4 address. None known (the local
user; proxies that forward no public address): None, and per-client limits do not apply, as its users could
not be told apart and one limit for all would let one lock out the others (red team pass 14). What a
private-network peer says cannot be checked: a client on the app's own private network can name any address."""
from __future__ import annotations

import ipaddress


def address(text: str | None):
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
    return embedded_ipv4(ip) or ip


# IPv6 forms that carry an IPv4 address in their last 32 bits (red-team pass 36: behind a NAT64 translator every
# IPv4 user was one /48, 64:ff9b::/48, one owner of everything)
_IPV4_IN_LAST_32 = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96",       # NAT64, the well-known prefix
                                                           "64:ff9b:1::/48",     # NAT64, local use (RFC 8215),
                                                           #   with a /96 within it (other lengths: not decoded)
                                                           "::ffff:0:0:0/96",    # SIIT, IPv4-translated
                                                           "::/96"))             # IPv4-compatible (deprecated)


def embedded_ipv4(ip):
    """The IPv4 address an IPv6 address stands for, or None: an IPv4-mapped one always (a dual-stack socket's
    peer); a NAT64, SIIT, IPv4-compatible or 6to4 one only when that IPv4 address is public (red-team pass 37:
    decoded first, 2002:a00:1::1 was the private 10.0.0.1, so a trusted proxy whose X-Forwarded-For was taken)."""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    v4 = ip.sixtofour
    if v4 is None and any(ip in n for n in _IPV4_IN_LAST_32) and int(ip) & 0xFFFFFFFF and int(ip) > 1:
        v4 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return v4 if v4 is not None and v4.is_global else None


def key(ip) -> str:
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)


def network_of(client: str | None) -> str | None:
    """The wider network of an IPv6 client (its /48: one subscriber may hold 65,536 /64s), else None."""
    if not client or "/" not in client:
        return None
    return str(ipaddress.ip_network(client).supernet(new_prefix=48))


# where a proxy that forwards X-Forwarded-For may sit: this machine, a private network, carrier-grade NAT
INTERNAL = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                   "100.64.0.0/10", "169.254.0.0/16", "::1/128", "fc00::/7",
                                                   "fe80::/10"))


def internal(ip) -> bool:
    return any(ip.version == n.version and ip in n for n in INTERNAL)


def client_of(request) -> str | None:
    """The client (a public address, an IPv6 /64), or None (no request, none known): what it makes is its own
    (ui.slots.requester); the limits count an IPv6 one by its /48 (share_of).
    `request`: anything with .client.host and .headers (Gradio's and Starlette's requests).

    X-Forwarded-For is read only from a peer on this machine or an internal network (INTERNAL), right-most entry
    first, skipping entries that are themselves internal (the proxies' own hops); the first other entry is the
    client if it is a public address, else the client is unknown. Never further left: those entries are what the
    client wrote itself (red-team pass 21: a Teredo or documentation address as the last entry let the walk go on
    into a forged one, and take another client's share)."""
    if request is None:
        return None
    host = getattr(getattr(request, "client", None), "host", None)
    ip = address(host)
    if ip is not None and ip.is_global:
        return key(ip)
    if ip is None or not internal(ip):
        return None  # not an address, or a peer that is neither public nor a proxy of ours: unknown
    try:  # a proxy on this machine or a private network: what the proxies appended, right-most first
        headers = getattr(request, "headers", None)
        lines = headers.getlist("x-forwarded-for") if hasattr(headers, "getlist") else \
            [(headers or {}).get("x-forwarded-for") or ""]
    except Exception:  # noqa: BLE001 - headers not readable: unknown
        return None
    for entry in reversed(",".join(str(x) for x in lines).split(",")):
        ip = address(entry)
        if ip is None:
            return None
        if internal(ip):
            continue
        return key(ip) if ip.is_global else None
    return None


def share_of(request) -> str | None:
    """Who a share of a budget (uploads per hour, resumable runs) is charged to: the client, an IPv6 one by its /48
    (one subscriber may hold 65,536 /64s: four of them took a whole per-/64 upload budget, red-team pass 20)."""
    client = client_of(request)
    return network_of(client) or client

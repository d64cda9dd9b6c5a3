"""Who owns what a web client made (build runs, uploads, adapters, exports, bases), so that on a shared app one
client cannot cancel, read, resume, replace or delete another's (red-team passes 28-31).

A client is ui.slots.requester(request): a public address (deploy/clients.share_of, an IPv6 one by its /48), or
on a shared app with no known address its login session. What is recorded with an adapter, an export or a base is
not the client but a tag derived from it with a secret of the workspace (cache/owner-secret), because that
metadata travels (the Library, exported and pushed Spaces). The operator (client None: the command line, or a
request with no known address on an app that is not shared) may act on everything; what nobody owns (the shipped
adapters, the operator's) only the operator may change."""
from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import secrets
import threading

from .workspace import Workspace

SECRET_FILE = "owner-secret"


_secrets: dict[str, bytes] = {}  # by the secret file's path: read once per process (owner_tag runs per item listed)


def _secret(ws: Workspace) -> bytes:
    p = ws.cache / SECRET_FILE
    known = _secrets.get(str(p))
    if known is not None:
        return known
    try:
        _secrets[str(p)] = p.read_bytes()
        return _secrets[str(p)]
    except OSError:
        pass
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{SECRET_FILE}.tmp-{os.getpid()}")
    tmp.write_bytes(secrets.token_bytes(32))
    try:
        os.link(tmp, p)  # the first writer wins; every later one reads its secret
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    _secrets[str(p)] = p.read_bytes()
    return _secrets[str(p)]


ANONYMOUS = "anonymous"     # what requests with no address and no login session make on a shared app (ui.slots)
SESSION_PREFIX = "session-"  # a login session's client (ui.slots.session_client)


def is_address(client: str | None) -> bool:
    """Whether a web client is a network address (deploy/clients.share_of), not a login session or ANONYMOUS: a
    stranger with the password mints a new session per login, but not a new address."""
    return bool(client) and client != ANONYMOUS and not client.startswith(SESSION_PREFIX)


SESSIONS = "(login sessions)"  # the one quota of every client that is not an address


def quota_of(client: str | None) -> str | None:
    """Whose per-client limits (adapters, bases, exports, build time, a share of runs/) a client's work counts
    against: an address its own, every login session and ANONYMOUS together (red-team pass 34: a stranger with the
    password logged in again for a fresh 24-hour build budget, 200 logins in 0.4 s). What a session makes is still
    its own to see and change (owner_tag); only the limits are shared."""
    if client is None or not is_address(client):
        return None if client is None else SESSIONS
    if "/" in client:  # an IPv6 client (its /64): its /48, as deploy/clients.share_of (one subscriber, many /64s)
        try:
            return str(ipaddress.ip_network(client, strict=False).supernet(new_prefix=48))
        except ValueError:
            return client
    return client


def quota_tag(ws: Workspace, client: str | None) -> str | None:
    """The tag recorded beside `owner` (metadata.json, base.json, an export's marker) that the limits count by."""
    return owner_tag(ws, quota_of(client))


def quota_holder(client: str | None) -> str:
    """Who holds `client`'s limits, as a refusal says it."""
    if not is_address(client):
        return "users without a known address (login sessions) together have"
    return "you have" if quota_of(client) == client else f"your network ({quota_of(client)}) has"


def counts_against(ws: Workspace, meta: dict, client: str | None) -> bool:
    """Whether something recorded with `meta` ({"owner", "quota"}) counts against `client`'s limits (recorded
    before pass 34, with no quota: by its owner)."""
    return client is not None and (meta.get("quota") or meta.get("owner")) == quota_tag(ws, client)


def owner_tag(ws: Workspace, client: str | None) -> str | None:
    """The tag recorded for what `client` makes (None: no known client, nothing recorded)."""
    if not client:
        return None
    return hashlib.sha256(_secret(ws) + b"\0" + client.encode()).hexdigest()[:24]


def may_change(ws: Workspace, owner: str | None, client: str | None) -> bool:
    """Whether a request from `client` may act on something recorded with tag `owner` (None: nobody's)."""
    return client is None or (owner is not None and owner == owner_tag(ws, client))


def may_read_adapter(ws: Workspace, meta: dict, client: str | None) -> bool:
    """Whether `client` may read an adapter's private metadata (its evaluation's held-out examples come from its
    builder's data) or export and push it: the shipped (protected) ones and its own; the operator all."""
    return meta.get("protected") is True or may_change(ws, meta.get("owner"), client)


# ------------------------------------------------------------------ uploads
# Who uploaded each file of uploads/ (content-addressed, so one file may have several uploaders): owner tags by file
# name in cache/upload-owners.json. A web client may name an upload in a build or a data check only if it
# uploaded it (red-team pass 29: the Library named another client's upload, whose examples the data check then
# showed, and a build on it exposed its held-out split through the attacker's own adapter).
UPLOADS_INDEX = "upload-owners.json"
OWNERS_KEPT = 1024  # uploaders kept per file (pass 30: 16 addresses uploading the same bytes pushed out the first)
_uploads_lock = threading.Lock()


def _read_index(ws: Workspace) -> dict:
    try:
        data = json.loads((ws.cache / UPLOADS_INDEX).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def add_upload_owner(ws: Workspace, name: str, client: str | None) -> None:
    """Records that `client` uploaded uploads/<name> (entries of files no longer there are dropped)."""
    tag = owner_tag(ws, client)
    if tag is None:
        return
    with _uploads_lock:
        index = _read_index(ws)
        tags = [t for t in index.get(name, []) if isinstance(t, str)]
        if tag not in tags:
            tags.append(tag)
        index[name] = tags[-OWNERS_KEPT:]
        uploads = ws.root / "uploads"
        index = {k: v for k, v in index.items() if (uploads / k).is_file()}
        p = ws.cache / UPLOADS_INDEX
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{UPLOADS_INDEX}.tmp-{os.getpid()}-{threading.get_ident()}")
        tmp.write_text(json.dumps(index), encoding="utf-8")
        os.replace(tmp, p)


def may_use_upload(ws: Workspace, name: str, client: str | None) -> bool:
    """Whether a request from `client` may read uploads/<name> (None: the operator, always)."""
    if client is None:
        return True
    with _uploads_lock:
        return owner_tag(ws, client) in _read_index(ws).get(name, [])

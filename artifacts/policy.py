"""What a web request may point to (docs/DESIGN.md, section Policy). Every path that comes from a
request goes through a Policy before anything is opened, read, run or written:

- data files: regular files under <ws>/uploads/ or <ws>/data/, or under a root the operator added
  (`--allow-data-root DIR`); checked after resolving links. A missing file and a file that is not allowed
  get the SAME message, so a request learns nothing about what exists elsewhere;
- base_model: a Hub id (owner/name) that names no local folder, a folder models/<name> of the workspace,
  or a folder under a root the operator added (`--allow-model-root DIR`);
- trust_remote_code: never from a request, unless the operator started the app with --allow-remote-code;
- exports: <ws>/exports/<name>/ only (artifacts.names rule for <name>); replacing or publishing needs the
  export marker file that export_space writes;
- the server's HF_TOKEN serves browser requests only with --allow-server-token;
- adapters whose metadata.json says `"protected": true` (the shipped ones) are never replaced or deleted.

The command line (python -m pipeline / -m deploy) is the operator: it does not go through here."""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from .limits import max_exports, max_exports_per_client
from .names import BASE_VARIANT, NAME_RULE, is_temp_name, safe_name, skeleton
from .owners import is_address, may_change, may_use_upload, owner_tag, quota_holder, quota_of, quota_tag
from .workspace import PROJECT_ROOT, Workspace

EXPORT_MARKER = ".studio-export"  # written into every exported Space folder; replace/publish need it
MAX_PATH_CHARS = 1024
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")  # fullmatch ("$" passes a final newline)


class PolicyError(ValueError):
    """A request that points where it may not; the message is safe to show (it reveals nothing)."""


def _under(p: Path, root: Path) -> bool:
    return p == root or p.is_relative_to(root)


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise PolicyError(f"{what} must be text")
    value = value.strip()
    if not value:
        raise PolicyError(f"{what} is empty")
    if "\x00" in value or len(value) > MAX_PATH_CHARS or any(ord(c) < 32 for c in value):
        raise PolicyError(f"{what} is not a usable path")
    return value


@dataclass(frozen=True)
class Policy:
    ws: Workspace
    data_roots: tuple[Path, ...] = ()     # --allow-data-root
    model_roots: tuple[Path, ...] = ()    # --allow-model-root
    allow_remote_code: bool = False       # --allow-remote-code
    allow_server_token: bool = False      # --allow-server-token

    # ------------------------------------------------------------------ data files
    def _data_roots(self) -> list[Path]:
        return [r.resolve() for r in (self.ws.uploads, self.ws.data, *self.data_roots)]

    def data_file(self, value, what: str = "data file", client: str | None = None) -> Path:
        """The resolved path of a data file a request names: relative to the workspace, or absolute.
        PolicyError (one message for missing and not allowed) unless it is a regular file under an
        allowed root after following links. A web client (`client`; None: the operator) may name a file of
        uploads/ only if it uploaded it (artifacts/owners.py); data/ is for everyone."""
        value = _text(value, what)
        p = Path(value)
        if not p.is_absolute():
            p = self.ws.root / p
        try:
            real = p.resolve(strict=True)
            st = os.stat(real)
        except (OSError, RuntimeError, ValueError):
            raise self._no_data_file(value, what) from None
        if not stat.S_ISREG(st.st_mode) or not any(_under(real, r) for r in self._data_roots()):
            raise self._no_data_file(value, what)
        if client is not None and _under(real, self.ws.uploads.resolve()) and \
                not may_use_upload(self.ws, real.name, client):
            raise self._no_data_file(value, what)  # (another user's upload: the same message as a missing one)
        return real

    def _no_data_file(self, value: str, what: str) -> PolicyError:
        """The one refusal for a data file missing or not allowed; one named in uploads/ (as typed, or as a run's
        recipe records it) may have been removed to make room there."""
        shown = value.replace("\\", "/")
        in_uploads = shown.startswith("uploads/") or (
            os.path.isabs(shown) and os.path.dirname(os.path.realpath(shown)) == os.path.realpath(self.ws.uploads))
        return PolicyError(f"{what} {value!r}: no such file in uploads/ or data/ of the workspace" + (
            " (uploads no run needs are removed, least recently used first, when uploads/ needs room: upload it "
            "again)" if in_uploads else ""))

    # ------------------------------------------------------------------ base models
    def base_model(self, value, what: str = "base_model") -> str:
        """A Hub id (returned as is) or the absolute path of an allowed local model folder."""
        value = _text(value, what)
        refusal = PolicyError(f"{what} {value!r}: not a Hub id (owner/name) nor a model folder under models/")
        p = Path(value)
        if p.is_absolute():
            return str(self._allowed_model_dir(p, refusal))
        parts = p.parts
        if parts and parts[0] == "models" and len(parts) == 2 and safe_name(parts[1]):
            d = self.ws.models / parts[1]  # an entry of models/ is the operator's (requests cannot add one)
            if d.is_dir():
                return str(d)
            raise refusal
        if _HUB_ID.fullmatch(value) and ".." not in value:
            # a Hub id must not also name a local folder (the pipeline would load that folder instead)
            for base in (self.ws.root, PROJECT_ROOT, Path.cwd()):
                if os.path.lexists(base / value):
                    raise refusal
            return value
        raise refusal

    def _allowed_model_dir(self, p: Path, refusal: PolicyError) -> Path:
        norm = Path(os.path.normpath(p))
        if norm.parent in (self.ws.models, self.ws.models.resolve()) and safe_name(norm.name) and norm.is_dir():
            return norm  # models/<name> given as an absolute path
        try:
            real = p.resolve(strict=True)
        except (OSError, RuntimeError, ValueError):
            raise refusal from None
        if real.is_dir() and any(_under(real, r.resolve()) for r in self.model_roots):
            return real
        raise refusal

    def base_name(self, value, what: str = "base") -> str:
        """The name of a published ONNX base: a real folder models/<name> holding base.json."""
        if not isinstance(value, str) or not safe_name(value.strip()):
            raise PolicyError(f"{what} {str(value)[:80]!r}: not a base name ({NAME_RULE})")
        d = self.ws.models / value.strip()
        if d.is_symlink() or not (d / "base.json").is_file():
            raise PolicyError(f"{what} {value!r}: no published ONNX base of that name in models/")
        return value.strip()

    def base_output(self, value, what: str = "base_name") -> str:
        """The name a build publishes its ONNX base under (empty: derived). An existing entry of models/
        that is not a published base (no base.json: an HF checkpoint, a link) is never replaced."""
        if not value:
            return ""
        if not safe_name(value):
            raise PolicyError(f"{what} {value!r} is not allowed: use {NAME_RULE}")
        d = self.ws.models / value
        if os.path.lexists(d) and (d.is_symlink() or not (d / "base.json").is_file()):
            raise PolicyError(f"{what} {value!r}: models/{value} exists and is not an ONNX base built here; "
                              "choose another name")
        try:
            alike = sorted(e.name for e in os.scandir(self.ws.models)
                           if e.name != value and skeleton(e.name) == skeleton(value))
        except OSError:
            alike = []
        if alike:
            raise PolicyError(f"{what} '{value}' looks like the base '{alike[0]}' in the pickers: choose another name")
        return value

    # ------------------------------------------------------------------ adapters
    def adapter_change(self, name, what: str = "adapter", adapters_dir: Path | None = None,
                       client: str | None = None) -> None:
        """Replacing or deleting adapters/<name>: refused for a protected adapter (metadata.json
        `"protected": true`, as the shipped ones are), so that a stranger on a shared link cannot swap
        what everyone chats with; the operator changes those from the command line. A web client (`client`,
        deploy/clients.share_of; None: the operator) may change only the adapters it built (artifacts/owners.py)."""
        if not isinstance(name, str) or not safe_name(name.strip()):
            return  # not a name: the library and the pipeline refuse it with their own message
        d = Path(adapters_dir or self.ws.adapters) / name.strip()
        if d.is_symlink():
            return
        try:
            meta = json.loads((d / "metadata.json").read_text(encoding="utf-8"))
            protected = meta.get("protected") is True
        except (OSError, ValueError, AttributeError):
            return
        if protected:
            raise PolicyError(f"{what} '{name.strip()}' is protected (it ships with the studio): build under "
                              "another name; the operator can replace or delete it from the command line")
        if not may_change(self.ws, meta.get("owner"), client):
            raise PolicyError(f"{what} '{name.strip()}' was built by another user of this server: only they can "
                              "replace or delete it; build under another name")

    def adapter_lookalike(self, name, what: str = "adapter_name", client: str | None = None) -> None:
        """A new adapter's name that looks like one `client` may not change in the pickers ('Travel', 'traveI',
        'trave1', 'travel_' beside the shipped 'travel', or 'vau1t' beside another user's 'vault': red-team pass
        33) or like the base itself ('Base') is refused: it would pass for what others chat with
        (names.skeleton). client None (the operator): only the protected ones."""
        if not isinstance(name, str) or not safe_name(name.strip()):
            return
        name = name.strip()
        if skeleton(name) == skeleton(BASE_VARIANT):
            raise PolicyError(f"{what} '{name}' looks like '{BASE_VARIANT}' (the base model without an adapter): "
                              "choose another name")
        try:
            entries = [e for e in os.scandir(self.ws.adapters) if e.name != name and skeleton(e.name) == skeleton(name)]
        except OSError:
            return
        for e in entries:
            try:
                self.adapter_change(e.name, what, client=client)
            except PolicyError as refused:
                whose = "the protected adapter" if "protected" in str(refused) else "another user's adapter"
                raise PolicyError(f"{what} '{name}' looks like {whose} '{e.name}' in the pickers: "
                                  "choose another name") from None

    # ------------------------------------------------------------------ remote code, tokens
    def trust_remote_code(self, requested) -> bool:
        if requested and not self.allow_remote_code:
            raise PolicyError("trust_remote_code is off on this server: a request cannot run a model's own "
                              "code (the operator can allow it with --allow-remote-code)")
        return bool(requested)

    def hub_token(self, typed, env_token: str | None) -> str:
        """The token typed in the page; the server's token only when the operator allowed it."""
        typed = (typed or "").strip() if isinstance(typed, str) else ""
        if typed:
            if len(typed) > 512 or not all(33 <= ord(c) < 127 for c in typed):
                # (not echoed: a token with a newline or a NUL came back in httpx's "Illegal header value" error)
                raise PolicyError("the Hugging Face token must be printable ASCII without spaces (as the Hub "
                                  "gives it): check what was pasted")
            return typed
        if self.allow_server_token and env_token and env_token.strip():
            return env_token.strip()
        raise PolicyError("no Hugging Face token: enter one with write access in the token field"
                          + ("" if self.allow_server_token else
                             " (this server does not lend its own token to browser requests)"))

    # ------------------------------------------------------------------ exports
    def export_dir(self, value, what: str = "export") -> Path:
        """<ws>/exports/<name> for a name, or for a path whose folder is <ws>/exports."""
        value = _text(value, what)
        p = Path(value)
        name = p.name
        if len(p.parts) > 1 or p.is_absolute():
            parent = Path(os.path.normpath(p.parent if p.is_absolute() else self.ws.root / p.parent))
            if parent not in (self.ws.exports, self.ws.exports.resolve()):
                raise PolicyError(f"{what} {value!r}: exports go to exports/<name> of the workspace; give a name")
        if not safe_name(name):
            raise PolicyError(f"{what} name {name!r} is not allowed: use {NAME_RULE}")
        d = self.ws.exports / name
        if os.path.islink(d):  # written through or replaced, a planted link would reach outside the workspace
            raise PolicyError(f"{what} {value!r}: exports/{name} is a link, not a folder of the workspace: "
                              "the operator must remove it")
        return d

    def new_export(self, value, what: str = "export", client: str | None = None) -> tuple[Path, list[Path]]:
        """export_dir, and a NEW export only while exports/ holds fewer than limits.max_exports() folders
        (each is a copy of a base: a request cannot fill the disk); replacing an existing one is allowed to
        whoever made it (its marker's owner line, artifacts/owners.py; `client` None: the operator). Returns the
        folder and the exports that must make room for it: remove them (evict_exports) only once this export is
        written (red-team pass 36: removed first, an export that then failed, on an adapter deleted meanwhile,
        took another user's export and made none, in a loop)."""
        d = self.export_dir(value, what)
        evict: list[Path] = []
        if is_marked_export(d) and not may_change(self.ws, export_owner(d), client):
            raise PolicyError(f"{what} {value!r} was exported by another user of this server: only they can "
                              "replace it; choose another name")
        if not os.path.lexists(d):  # a new one: the exports there, one scan, against both limits
            try:
                held = [Path(e.path) for e in os.scandir(self.ws.exports)
                        if e.is_dir(follow_symlinks=False) and not is_temp_name(e.name)]
            except FileNotFoundError:
                held = []
            tags = {x: export_tags(x) for x in held}  # (owner, quota) of each, one read
            own = owner_tag(self.ws, client)
            per_client = max_exports_per_client()
            if client is not None and per_client:
                tag = quota_tag(self.ws, client)  # (every login session's together: owners.quota_of)
                mine = sorted(x.name for x in held if tags[x][1] == tag)
                # Login sessions share one limit (pass 34), and so do the /64s of one IPv6 /48 (pass 36), so one
                # member's exports would lock the others out for good (passes 35, 37): the oldest export of ANOTHER
                # member of the group makes room.
                theirs = ([] if quota_of(client) == client else
                          sorted((x for x in held if x.name in mine and tags[x][0] != own), key=_export_mtime))
                if len(mine) >= per_client and theirs:
                    evict.append(theirs[0])
                    held.remove(theirs[0])
                elif len(mine) >= per_client:
                    yours = [x.name for x in held if x.name in mine and tags[x][0] == own]  # (only its own named)
                    raise PolicyError(f"{quota_holder(client)} {len(mine)} exports on this server (the limit is "
                                      f"{per_client}{'; yours: ' + ', '.join(yours) if yours else ''}): replace one "
                                      "of yours (same name, tick replace)")
            limit = max_exports()
            if len(held) >= limit:
                # A few addresses at their per-client limit would otherwise fill exports/ for everyone else (4 x 2
                # = the default 8). An export of a web client is a copy of a base and adapters that its owner can
                # make again, so at the limit the least recently written one of ANOTHER web client makes room;
                # the operator's exports (no owner) are never removed.
                # A login session does not make room (pass 33: a stranger with the password mints one per login,
                # nine logins took every other export); an address or the operator does.
                others = ([x for x in held if tags[x][0] not in (None, own)]
                          if client is None or is_address(client) else [])
                if len(held) - len(others) >= limit or not others:
                    raise PolicyError(f"exports/ already holds {len(held)} exports (the limit is {limit}): replace "
                                      "one of them (same name, tick replace), or the operator can remove some or "
                                      "raise STUDIO_MAX_EXPORTS")
                others.sort(key=_export_mtime)
                evict.extend(others[:len(held) - limit + 1])
        return d, evict

    def evict_exports(self, paths: list[Path]) -> None:
        """Removes the exports new_export said must make room (after the new one was written)."""
        for p in paths:
            if p.parent == self.ws.exports and is_marked_export(p):
                _remove_export(p)

    def published_export(self, value, what: str = "Space folder") -> Path:
        """An existing export folder (marked) under <ws>/exports, for publishing."""
        d = self.export_dir(value, what)
        if d.is_symlink() or not d.is_dir() or not (d / EXPORT_MARKER).is_file():
            raise PolicyError(f"{what} {value!r}: no exported Space of that name in exports/ "
                              "(export one first)")
        return d


def is_marked_export(d: Path) -> bool:
    return d.is_dir() and not d.is_symlink() and (d / EXPORT_MARKER).is_file()


OWNER_LINE = "owner: "
QUOTA_LINE = "quota: "  # whose per-client export limit it counts against (artifacts/owners.quota_tag)


def _export_mtime(d: Path) -> float:
    try:
        return (d / EXPORT_MARKER).stat().st_mtime
    except OSError:
        return 0.0


def _remove_export(d: Path) -> None:
    """Takes an export out of exports/ at once (a rename to a temporary name, which listings skip), then deletes it."""
    gone = d.with_name(f"{d.name}.old-{os.getpid()}-{threading.get_ident()}")
    try:
        os.replace(d, gone)
    except OSError:
        return  # removed or replaced meanwhile
    shutil.rmtree(gone, ignore_errors=True)


def export_tags(d: Path) -> tuple[str | None, str | None]:
    """The owner and quota tags an export's marker records (deploy/space.py writes them), one read; an export made
    before pass 34 has no quota line: its owner's."""
    try:
        lines = (d / EXPORT_MARKER).read_text(encoding="utf-8", errors="replace").splitlines()[:4]
    except OSError:
        return None, None
    owner, quota = (next((x[len(k):].strip() or None for x in lines if x.startswith(k)), None)
                    for k in (OWNER_LINE, QUOTA_LINE))
    return owner, quota or owner


def export_owner(d: Path) -> str | None:
    """The owner tag an export's marker records, or None."""
    return export_tags(d)[0]


_CXX_SIGNATURE = re.compile(r"[\w:<>*&~, ]+\([^()]*\)(?: const)?\s+")
_CXX_LOCATION = re.compile(r"[^\s\[\]\"']*\.(?:cc|cpp|cxx|h|hpp|cu):\d+\s*")


def clean_message(text) -> str:
    """A message without C++ source locations: onnxruntime's '<path>\\onnxruntime\\core\\x.cc:123 <C++
    signature> what happened' becomes 'what happened'."""
    out = []
    for line in str(text).splitlines() or [""]:
        m = _CXX_LOCATION.search(line)
        if m:
            rest = line[m.end():]
            sig = _CXX_SIGNATURE.match(rest)  # the C++ function signature that follows the location
            if sig:
                rest = rest[sig.end():]
            line = (line[:m.start()] + rest).strip()
        out.append(line)
    return "\n".join(out).strip()

"""A tiny stand-in for the Hugging Face Hub: just what huggingface_hub 2.4's create_repo and upload_folder
call, served by http.server in a thread. Point HF_ENDPOINT (or HfApi(endpoint=...)) at `hub.url`.

  POST /api/repos/create                          {name, organization, type, sdk?, visibility?}
  POST /api/validate-yaml                         (README.md metadata check) -> no errors
  POST /api/{type}s/{owner}/{name}/preupload/{rev} -> uploadMode "regular" for every file (no LFS, no xet)
  POST /api/{type}s/{owner}/{name}/commit/{rev}    NDJSON: header + base64 "file" lines, stored in memory
  GET  /api/{type}s/{owner}/{name}[/revision/{rev}] repo info (with file sizes for ?blobs=True)

Tokens: `tokens` maps a token to its user; a missing or unknown token -> 401; a namespace that is not the
token's user -> 403; creating an existing repo -> 409; a `public` repo's info needs no token. `requests` records (method, path) of every call and
`auth_seen` the Authorization values (to check which token arrived)."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    sdk: str | None = None
    private: bool = False
    files: dict[str, bytes] = field(default_factory=dict)
    public: bool = False  # answers repo info without a token (a public model to download)
    sizes: dict[str, int] = field(default_factory=dict)  # declared sizes of files with no content here
    commits: list[dict] = field(default_factory=list)
    sha: str = "0" * 40


class FakeHub:
    def __init__(self, tokens: dict[str, str] | None = None):
        self.tokens = dict(tokens or {})
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.auth_seen: list[str] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def repo(self, repo_type: str, repo_id: str) -> Repo | None:
        return self.repos.get((repo_type, repo_id))

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _send(self, status: int, body: dict, message: str | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if message:
                    self.send_header("X-Error-Message", message)
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _user(self) -> str | None:
                auth = self.headers.get("Authorization") or ""
                with hub.lock:
                    hub.auth_seen.append(auth)
                tok = auth[7:] if auth.startswith("Bearer ") else ""
                return hub.tokens.get(tok)

            def _deny(self):
                self._send(401, {"error": "Invalid username or password."}, "Invalid username or password.")

            def do_GET(self):
                with hub.lock:
                    hub.requests.append(("GET", self.path))
                m = re.match(r"^/api/(model|dataset|space)s/([^/]+/[^/?]+)(?:/revision/[^/?]+)?", self.path)
                if not m:
                    return self._send(404, {"error": "not found"})
                repo = hub.repo(m.group(1), m.group(2))
                if self._user() is None and not (repo is not None and repo.public):
                    return self._deny()
                if repo is None:
                    return self._send(404, {"error": "Repository not found"}, "Repository not found")
                blobs = "blobs=true" in self.path.lower()  # files_metadata=True: sizes too
                sizes = {**{f: len(b) for f, b in repo.files.items()}, **repo.sizes}
                return self._send(200, {"id": repo.repo_id, "sha": repo.sha, "private": repo.private,
                                        "siblings": [{"rfilename": f, **({"size": n} if blobs else {})}
                                                     for f, n in sorted(sizes.items())]})

            def do_POST(self):
                with hub.lock:
                    hub.requests.append(("POST", self.path))
                body = self._body()
                path = self.path.split("?")[0]
                if path == "/api/validate-yaml":
                    return self._send(200, {"errors": [], "warnings": []})
                user = self._user()
                if user is None:
                    return self._deny()
                if path == "/api/repos/create":
                    d = json.loads(body or b"{}")
                    org = d.get("organization") or user
                    repo_id = f"{org}/{d.get('name')}"
                    rtype = d.get("type") or "model"
                    if org != user:
                        return self._send(403, {"error": f"You don't have the rights to create a {rtype} "
                                                         f"under the namespace {org}"})
                    with hub.lock:
                        if (rtype, repo_id) in hub.repos:
                            return self._send(409, {"error": "You already created this repo",
                                                    "url": f"{hub.url}/{PREFIX[rtype]}{repo_id}"},
                                              "You already created this repo")
                        hub.repos[(rtype, repo_id)] = Repo(repo_id, rtype, d.get("sdk"),
                                                           d.get("visibility") == "private" or bool(d.get("private")))
                    return self._send(200, {"url": f"{hub.url}/{PREFIX[rtype]}{repo_id}", "name": repo_id})
                m = re.match(r"^/api/(model|dataset|space)s/([^/]+/[^/]+)/(preupload|commit)/([^/]+)$", path)
                if not m:
                    return self._send(404, {"error": "not found"})
                rtype, repo_id, op, _rev = m.groups()
                repo = hub.repo(rtype, repo_id)
                if repo is None:
                    return self._send(404, {"error": "Repository not found"}, "Repository not found")
                if repo_id.split("/")[0] != user:
                    return self._send(403, {"error": "no write access"})
                if op == "preupload":
                    d = json.loads(body or b"{}")
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False, "oid": None}
                                                      for f in d.get("files", [])],
                                            "commitOid": repo.sha})
                lines = [json.loads(x) for x in body.splitlines() if x.strip()]
                files, header = {}, {}
                for item in lines:
                    if item.get("key") == "header":
                        header = item.get("value") or {}
                    elif item.get("key") == "file":
                        v = item["value"]
                        if v.get("encoding") != "base64":
                            return self._send(400, {"error": "only base64 regular files"})
                        files[v["path"]] = base64.b64decode(v["content"])
                    else:
                        return self._send(400, {"error": f"unsupported commit line {item.get('key')!r}"})
                with hub.lock:
                    repo.files.update(files)
                    repo.sha = hashlib.sha1(json.dumps(sorted(repo.files)).encode() + body).hexdigest()
                    repo.commits.append({"summary": header.get("summary"), "files": sorted(files)})
                return self._send(200, {"success": True, "commitOid": repo.sha,
                                        "commitUrl": f"{hub.url}/{PREFIX[rtype]}{repo_id}/commit/{repo.sha}"})

        return Handler


if __name__ == "__main__":  # python tests/fake_hub.py TOKEN:USER ...  (serves until Ctrl-C)
    import sys
    import time
    toks = dict(a.split(":", 1) for a in sys.argv[1:]) or {"hf_test": "alice"}
    with FakeHub(toks) as h:
        print(h.url, flush=True)
        while True:
            time.sleep(3600)

"""Where artifacts live: the workspace, one root ($STUDIO_HOME, else the project folder; in an exported
Space, the Space folder) holding
  runs/ (build jobs), cache/ (content-hash cache of AWQ and ONNX bases), models/ (ONNX bases and HF
  checkpoints), adapters/ (published adapters), uploads/ (files uploaded through the app), data/
  (datasets), exports/ (exported Spaces).
This is the only place that reads $STUDIO_HOME. Tests point it at a temporary folder."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the code's folder (the Space root in a Space)
HOME_ENV = "STUDIO_HOME"


def workspace_root() -> Path:
    """$STUDIO_HOME, else the project folder; resolved."""
    return Path(os.environ.get(HOME_ENV) or PROJECT_ROOT).resolve()


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def default(cls) -> "Workspace":
        return cls(workspace_root())

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def adapters(self) -> Path:
        return self.root / "adapters"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    def relative(self, path) -> str | None:
        """`path` relative to the workspace root (posix, '.' for the root) when it lies inside it, else None:
        how a path is shown or recorded without naming the server's folders."""
        # as named first (models/<x> or data/ may be links to elsewhere: still shown inside the workspace),
        # then with links resolved. For showing and recording only: what a request may touch is artifacts.policy's
        for p, root in ((Path(os.path.abspath(path)), Path(os.path.abspath(self.root))),
                        (Path(path).resolve(), self.root.resolve())):
            try:
                return p.relative_to(root).as_posix() or "."
            except ValueError:
                pass
        return None

    def shown(self, path) -> str:
        """How a file is named in what a build records and shows (metadata, job results, messages): relative
        to the workspace, else to the project (a linked data/), else its name alone; never the server's
        folders. Empty stays empty."""
        if not path:
            return ""
        return self.named(path) or Path(path).name

    def scrub(self, value):
        """What a request is shown (messages, job logs, job summaries: str, or lists/dicts of them) with the
        server's folders taken out: a path under the workspace or the project becomes relative to it, the
        folder itself '<workspace>' / '<project>'. Libraries (Hugging Face, Olive) name the absolute paths they
        were given; messages built here use shown() already."""
        if isinstance(value, str):
            for root, name in self._scrub_roots():
                if root in value:  # whole path components only: /srv/app must not eat /srv/app-cache/...
                    value = re.sub(re.escape(root) + r"(?:/|(?![\w-]|\.\w))",
                                   lambda m: "" if m.group(0).endswith(os.sep) else name, value)
            return value
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.scrub(v) for v in value)
        return value

    def _scrub_roots(self) -> list[tuple[str, str]]:
        roots = {}
        for folder, name in ((PROJECT_ROOT, "<project>"), (self.root, "<workspace>")):
            for p in (folder, folder.resolve()):
                if str(p) != os.sep:
                    roots[str(p)] = name
        return sorted(roots.items(), key=lambda kv: len(kv[0]), reverse=True)  # the longest (inner) first

    def shown_model(self, model) -> str:
        """A base model as records name it: a Hub id as it is, a local folder as shown() names it."""
        return self.shown(model) if model and Path(model).is_absolute() else (model or "")

    def named(self, path) -> str | None:
        """`path` relative to the workspace, else to the project (data/ linked into the workspace resolves
        there), else None."""
        rel = self.relative(path)
        if rel is None:
            try:
                rel = Path(path).resolve().relative_to(PROJECT_ROOT.resolve()).as_posix()
            except ValueError:
                return None
        return rel

    def resolve_input(self, path: str) -> Path:
        """A path given on the command line: absolute, else relative to the working directory, else to the
        workspace, else to the project. (Requests from the app go through artifacts.policy instead.)"""
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        return self._resolve_from(p, Path.cwd())

    def _resolve_from(self, p: Path, cwd: Path) -> Path:
        for base in (cwd, self.root, PROJECT_ROOT):
            if (base / p).exists():
                return (base / p).resolve()
        return (cwd / p).resolve()

    def pin_input(self, path: str) -> str:
        """A path for a job's recipe: unchanged when the job (which runs in the project folder) resolves it
        to the same file as this process does, else the absolute path this process resolved. Without it,
        `data/x.jsonl` given with another working directory or $STUDIO_HOME trained on the project's file."""
        if not path:
            return path
        here = self.resolve_input(path)
        p = Path(path).expanduser()
        if p.is_absolute() or self._resolve_from(p, PROJECT_ROOT) == here:
            return path
        return str(here)

    def pin_model(self, name: str) -> str:
        """pin_input's rule for a local base_model folder, which jobs look up in the workspace first, then in
        the working directory (pipeline.hub.resolve_model): absolute when only this process's working
        directory has it; unchanged otherwise (a Hub id, a workspace folder, the project's own)."""
        p = Path(name).expanduser() if name else None
        if p is None or p.is_absolute() or (self.root / p).is_dir() or not p.is_dir() \
                or p.resolve() == (PROJECT_ROOT / p).resolve():
            return name
        return str(p.resolve())

"""Where artifacts live. One root (the project folder by default, or $STUDIO_HOME) holds:
runs/ (build jobs), cache/ (content-hash cache of AWQ and ONNX bases), models/ (ONNX bases),
adapters/ (published adapters). Tests point it at a temporary folder."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def default(cls) -> "Workspace":
        return cls(Path(os.environ.get("STUDIO_HOME", PROJECT_ROOT)).resolve())

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

    def resolve_input(self, path: str) -> Path:
        """A user-given path: absolute, else relative to the working directory, else to the project."""
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        for base in (Path.cwd(), self.root, PROJECT_ROOT):
            if (base / p).exists():
                return (base / p).resolve()
        return (Path.cwd() / p).resolve()

"""Shared fixtures. Every test that builds writes into a temporary workspace, never into the repo."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_HF = ROOT / "models" / "default-hf"


@pytest.fixture(scope="session")
def default_hf() -> Path:
    assert (DEFAULT_HF / "config.json").exists(), "the embedded default model is missing: python -m pipeline.tiny"
    return DEFAULT_HF


def make_workspace(root: Path) -> Path:
    """A workspace with the repository's data and default model linked in (read-only use)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(exist_ok=True)
    (root / "adapters").mkdir(exist_ok=True)
    if not (root / "models" / "default-hf").exists():
        os.symlink(DEFAULT_HF, root / "models" / "default-hf")
    if not (root / "data").exists():
        os.symlink(ROOT / "data", root / "data")
    return root


def run_job(recipe, ws, timeout: float = 900) -> Path:
    """A pipeline job created, launched and waited for; asserts that it ended ok (with its log's tail)."""
    from pipeline import jobs
    job = jobs.create_job(recipe, ws)
    jobs.launch(job, ws)
    st = jobs.wait(job, timeout_s=timeout)
    assert st.status == "ok", f"{st.status}: {st.error}\n" + "\n".join(st.lines[-30:]) + \
        (job / "process.log").read_text()[-3000:]
    return job


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    from artifacts import Workspace
    root = make_workspace(tmp_path / "ws")
    monkeypatch.setenv("STUDIO_HOME", str(root))
    return Workspace(root)


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives the app in Debian's chromium (deselected on GPU "
                                       "machines by run.sh: -m 'not browser')")
    config.addinivalue_line("markers", "pypi: installs packages from the package index into a fresh venv "
                                       "(deselected where no index is reachable, e.g. the GPU machine: "
                                       "-m 'not pypi')")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skipped test would pass CI silently: here it fails, with its reason."""
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        rep.longrepr = f"skipped tests count as failures in this project: {rep.longrepr}"

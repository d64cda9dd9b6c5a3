"""Red-team pass 24 (a stranger on the share link): uploads/ could be filled once for good. Four addresses put
~151 MB of fresh valid JSONL into it in a minute, two more the next hour, and from then on every upload with new
content was refused ("the uploads folder is full"), across restarts, until the operator cleaned the folder.
Now the least recently used uploads that no run names make room (artifacts.limits.make_uploads_room with
pipeline.jobs.uploads_in_use); the launched-app check is tests/test_security_redteam.py::test_uploads_folder_is_capped."""
from __future__ import annotations

import os
import time

import pytest

from artifacts import LimitError, Workspace, check_uploads_room
from artifacts.limits import make_uploads_room
from pipeline.jobs import uploads_in_use
from pipeline.recipe import Recipe

ENV = {"STUDIO_MAX_UPLOADS_MB": "0.001"}  # 1,000 bytes


def _file(folder, name, size, age_s):
    p = folder / name
    p.write_bytes(b"x" * size)
    t = time.time() - age_s
    os.utime(p, (t, t))
    return p


def test_least_recently_used_uploads_no_run_names_make_room(tmp_path):
    up = tmp_path / "uploads"
    up.mkdir()
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes(b"y" * 300)
    _file(up, "old.jsonl", 300, 300)
    _file(up, "in-use.jsonl", 300, 400)   # the oldest, but a run names it
    _file(up, "mid.jsonl", 300, 200)
    os.symlink(outside, up / "link.jsonl")  # not a plain file: never removed, not counted
    assert make_uploads_room(up, 300, {"in-use.jsonl"}, ENV) == ["old.jsonl"]
    assert sorted(p.name for p in up.iterdir()) == ["in-use.jsonl", "link.jsonl", "mid.jsonl"]
    check_uploads_room(up, 300, ENV)  # fits now
    assert make_uploads_room(up, 900, {"in-use.jsonl"}, ENV) == ["mid.jsonl"]
    with pytest.raises(LimitError, match="in files that runs still use"):
        check_uploads_room(up, 900, ENV)
    assert (up / "in-use.jsonl").exists() and outside.exists() and (up / "link.jsonl").is_symlink()
    assert make_uploads_room(tmp_path / "none", 10, set(), ENV) == []


def test_uploads_in_use_reads_the_runs_recipes(tmp_path):
    ws = Workspace(tmp_path)
    for name, train, held in (("a", "uploads/t1.jsonl", "uploads/h1.jsonl"), ("b", "data/travel/train.jsonl", ""),
                              ("c", "uploads/../models/x.jsonl", "uploads\\t2.jsonl")):
        (ws.runs / name).mkdir(parents=True)
        Recipe(train_file=train, eval_file=held).save(ws.runs / name / "recipe.yaml")
    (ws.runs / "damaged").mkdir()
    (ws.runs / "damaged" / "recipe.yaml").write_text("train_file: [unclosed\n")
    (ws.runs / ".x.removing").mkdir()
    Recipe(train_file="uploads/gone.jsonl").save(ws.runs / ".x.removing" / "recipe.yaml")
    assert uploads_in_use(ws) == {"t1.jsonl", "h1.jsonl", "t2.jsonl"}
    assert uploads_in_use(Workspace(tmp_path / "empty")) == set()

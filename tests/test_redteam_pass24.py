"""Red-team passes 24-26 (a stranger on the share link) on uploads/.
- Pass 24: it could be filled once for good. Four addresses put ~151 MB of fresh valid JSONL into it in a minute,
  two more the next hour, and from then on every upload with new content was refused, across restarts.
  Now the least recently used uploads that no run needs make room (artifacts.limits.make_uploads_room with
  pipeline.jobs.uploads_in_use).
- Pass 25 on that fix: runs started from the page record absolute data paths, which uploads_in_use did not count,
  so any upload could delete a running or resumable run's data; a refused upload first removed every removable
  file; and the recipe scan ran on every new upload (2 CPU-s with 1,000 runs). Now absolute paths count, nothing
  is removed when the file cannot fit anyway, the scan runs only when room must be made, runs that ended
  without work protect nothing (start-and-cancel would pin uploads for good), and one client's runs protect at
  most a quarter of the folder (resumable runs holding work could pin it all).
- Pass 26 on those: a running build's file bigger than the quarter was removed mid-run; four quarters (and
  finished runs, kept for good) pinned the whole folder; a full folder made each upload read every run again.
  Now a running or pending run's data is always kept, finished runs need nothing, resumable runs keep at most an
  eighth per client and half in all, and room is made down to nine tenths of the limit. Clients without a
  known address still share one share (documented).
- Pass 27 on those: a long non-ASCII upload name is saved folded onto two YAML lines, which the two-line reader
  could not parse, so the run's data went unprotected; newer resumable runs of four other clients could take
  the whole half. Now an entry is read with its continuation lines (else the whole recipe), and the half is
  filled round by round across clients.
The launched-app check is tests/test_security_redteam.py::test_uploads_folder_is_capped."""
from __future__ import annotations

import json
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
    _file(up, "in-use.jsonl", 300, 400)   # the oldest, but a run needs it
    _file(up, "mid.jsonl", 300, 200)
    os.symlink(outside, up / "link.jsonl")  # not a plain file: never removed, not counted
    asked = []

    def in_use():
        asked.append(1)
        return {"in-use.jsonl"}
    assert make_uploads_room(up, 100, in_use, ENV) == [] and asked == []  # room: the runs are not even read
    assert make_uploads_room(up, 300, in_use, ENV) == ["old.jsonl"] and asked == [1]
    assert sorted(p.name for p in up.iterdir()) == ["in-use.jsonl", "link.jsonl", "mid.jsonl"]
    check_uploads_room(up, 300, ENV)  # fits now
    # a file that cannot fit beside what runs need: refused, and nothing removed for it (pass 25)
    with pytest.raises(LimitError, match=r"this file \(900 bytes\) does not fit in 1.0 kB beside the 300 bytes that runs still use"):
        make_uploads_room(up, 900, {"in-use.jsonl"}, ENV)
    assert (up / "mid.jsonl").exists()
    assert make_uploads_room(up, 700, {"in-use.jsonl"}, ENV) == ["mid.jsonl"]
    assert (up / "in-use.jsonl").exists() and outside.exists() and (up / "link.jsonl").is_symlink()
    assert make_uploads_room(tmp_path / "none", 10, set(), ENV) == []


def test_room_is_made_with_slack_so_the_next_uploads_read_no_runs(tmp_path):
    """Pass 26: with the folder full, each new upload removed exactly one old file and read every run again
    (~2 CPU-s with 1,000 runs). Room is made down to nine tenths of the limit."""
    up = tmp_path / "uploads"
    up.mkdir()
    for i in range(5):
        _file(up, f"f{i}.jsonl", 200, 100 - i)  # f0 oldest
    asked = []
    in_use = lambda: asked.append(1) or set()  # noqa: E731
    assert make_uploads_room(up, 100, in_use, ENV) == ["f0.jsonl"] and len(asked) == 1
    (up / "new.jsonl").write_bytes(b"x" * 100)
    assert make_uploads_room(up, 100, in_use, ENV) == [] and len(asked) == 1  # the slack: no scan


def test_uploads_in_use_reads_the_runs_recipes(tmp_path):
    """Relative and absolute paths (the app records absolute ones) into uploads/; runs running, pending or holding
    work count; a run that finished, one that ended without work, a damaged recipe and a folder being removed
    do not."""
    ws = Workspace(tmp_path)
    ab = str(ws.uploads / "abs.jsonl")
    runs = (("a", "uploads/t1.jsonl", "uploads/h1.jsonl", None), ("b", "data/travel/train.jsonl", "", None),
            ("c", "uploads/../models/x.jsonl", "uploads\\t2.jsonl", None), ("d", ab, "", None),
            ("e", "uploads/nowork.jsonl", "", [{"t": 1.0, "type": "job_start", "job_id": "e"},
                                               {"t": 2.0, "type": "job_end", "status": "cancelled"}]),
            ("f", "uploads/work.jsonl", "", [{"t": 1.0, "type": "job_start", "job_id": "f"},
                                             {"t": 2.0, "type": "stage_end", "stage": "prepare", "seconds": 1},
                                             {"t": 3.0, "type": "stage_end", "stage": "awq", "seconds": 1},
                                             {"t": 4.0, "type": "job_end", "status": "cancelled"}]),
            ("g", "uploads/done.jsonl", "", [{"t": 1.0, "type": "job_start", "job_id": "g"},  # finished: needs none
                                             {"t": 2.0, "type": "stage_end", "stage": "prepare", "seconds": 1},
                                             {"t": 4.0, "type": "job_end", "status": "ok"}]))
    for name, train, held, events in runs:
        (ws.runs / name).mkdir(parents=True)
        Recipe(train_file=train, eval_file=held).save(ws.runs / name / "recipe.yaml")
        if events:
            (ws.runs / name / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    ws.uploads.mkdir(parents=True, exist_ok=True)
    for n in ("t1", "h1", "t2", "abs", "nowork", "work", "gone", "done"):
        (ws.uploads / f"{n}.jsonl").write_text("{}\n")
    (ws.runs / "damaged").mkdir()
    (ws.runs / "damaged" / "recipe.yaml").write_text("train_file: [unclosed\n")
    (ws.runs / ".x.removing").mkdir()
    Recipe(train_file="uploads/gone.jsonl").save(ws.runs / ".x.removing" / "recipe.yaml")
    assert uploads_in_use(ws) == {"t1.jsonl", "h1.jsonl", "t2.jsonl", "abs.jsonl", "work.jsonl"}
    assert uploads_in_use(Workspace(tmp_path / "empty")) == set()


def test_a_missing_upload_says_to_upload_it_again(tmp_path):
    """Pass 25: a file removed to make room before its build started was named only as missing; pass 26: so was
    one a resumed run's recipe names by absolute path."""
    from artifacts.policy import Policy, PolicyError
    ws = Workspace(tmp_path)
    ws.uploads.mkdir(parents=True)
    with pytest.raises(PolicyError, match=r"no such file in uploads/ or data/ .*: upload it again\)"):
        Policy(ws).data_file("uploads/gone-1234.jsonl", "train_file")
    with pytest.raises(PolicyError, match=r"upload it again\)"):  # as a run's recipe records it (pass 26)
        Policy(ws).data_file(str(ws.uploads / "gone-1234.jsonl"), "train_file")
    with pytest.raises(PolicyError) as e:
        Policy(ws).data_file("data/none.jsonl", "train_file")
    assert "upload it again" not in str(e.value)


def test_one_clients_runs_protect_at_most_its_share(tmp_path):
    """Resumable runs (ended, not finished, holding work) keep at most `share_bytes` per client and `total_bytes`
    in all, newest runs first; runs without a recorded client count as one client. A pending or running run's
    data is kept whatever its size (pass 26: a running build's file bigger than the share was removed)."""
    from pipeline.jobs import CLIENT_FILE
    ws = Workspace(tmp_path)
    ws.uploads.mkdir(parents=True)
    work = lambda t: [{"t": t, "type": "job_start", "job_id": "x"},  # noqa: E731
                      {"t": t + 1, "type": "stage_end", "stage": "prepare", "seconds": 1},
                      {"t": t + 2, "type": "stage_end", "stage": "awq", "seconds": 1},
                      {"t": t + 3, "type": "job_end", "status": "cancelled"}]
    for i, (run, client, data, size) in enumerate((("a1", "81.2.69.5", "f1", 300), ("a2", "81.2.69.5", "f2", 300),
                                                   ("a3", "81.2.69.5", "f3", 300), ("b1", "81.2.69.7", "g1", 300),
                                                   ("n1", None, "h1", 300), ("p1", "81.2.69.5", "big", 900))):
        (ws.uploads / f"{data}.jsonl").write_bytes(b"x" * size)
        d = ws.runs / run
        d.mkdir(parents=True)
        Recipe(train_file=str(ws.uploads / f"{data}.jsonl")).save(d / "recipe.yaml")
        if run != "p1":  # p1: pending (no events yet), the others resumable
            (d / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in work(100.0 * (i + 1))))
        if client:
            (d / CLIENT_FILE).write_text(client)
    everything = {"f1.jsonl", "f2.jsonl", "f3.jsonl", "g1.jsonl", "h1.jsonl", "big.jsonl"}
    assert uploads_in_use(ws) == everything
    assert uploads_in_use(ws, share_bytes=600) == {"f3.jsonl", "f2.jsonl", "g1.jsonl", "h1.jsonl", "big.jsonl"}
    assert uploads_in_use(ws, share_bytes=299) == {"big.jsonl"}
    # the total is filled round by round (each client's newest run first), oldest first within a round: newer
    # runs of other clients cannot push a client's run out (pass 27)
    assert uploads_in_use(ws, total_bytes=600) == {"f3.jsonl", "g1.jsonl", "big.jsonl"}


def test_a_folded_non_ascii_path_is_still_read(tmp_path):
    """Pass 27: a recipe's long non-ASCII path is saved as a quoted YAML string folded onto a second line; reading
    only the first line failed and left a running build's data unprotected."""
    from pipeline.jobs import _recipe_data_files
    ws = Workspace(tmp_path / ("очень-длинный-путь-к-рабочему-каталогу" * 2))
    ws.uploads.mkdir(parents=True)
    name = "客户支持训练数据集_обучающие_данные-577efed468.jsonl"
    (ws.uploads / name).write_text("{}\n")
    d = ws.runs / "r1"
    d.mkdir(parents=True)
    Recipe(train_file=str(ws.uploads / name), eval_file=str(ws.uploads / name)).save(d / "recipe.yaml")
    text = (d / "recipe.yaml").read_text()
    assert "\\\n" in text  # (PyYAML did fold it)
    assert _recipe_data_files(d / "recipe.yaml") == [str(ws.uploads / name)] * 2
    assert uploads_in_use(ws) == {name}  # a pending run: always kept

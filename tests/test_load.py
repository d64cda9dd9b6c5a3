"""A short load test of the launched app (bench/load_test.py with 8 clients for 20 s): no errors, no
answer from the wrong variant (greedy answers equal the same request answered alone, or part from it only
at a near-tie of that request's own logits, which fp16 batches on CUDA, and prompt pieces sized by time on the
CPU, may flip), bounded memory."""
from __future__ import annotations

import json
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.timeout(900)


def test_load_short():
    if not (ROOT / "models" / "default" / "genai_config.json").exists() or \
            not (ROOT / "adapters" / "travel" / "metadata.json").exists():
        pytest.skip("models/default or adapters/travel missing")
    sys.path.insert(0, str(ROOT / "bench"))
    from load_test import run
    res = run(clients=8, seconds=20, window_s=5)
    assert res["errors"] == 0, res["error_examples"]
    assert res["wrong_variant_answers"] == 0, res["wrong_examples"]
    # (a flip happens on CUDA, where a batch of rows rounds in fp16 unlike one row, and on the CPU too, where a prompt
    # is read in pieces sized by time, so under load in other pieces than alone: CI at 8c8d263 flipped this pair)
    assert res["differing_answers"] == res["near_tie_flips"]
    assert res["distinct_reference_answers"] == len(res["variants"]) * res["prompts"]
    assert res["requests_served"] >= 16 and min(res["per_variant"].values()) > 0, res
    assert res["rss_mb"]["growth_first_to_last_window"] < 150, res["rss_mb"]
    assert res["after_ok"]


def test_a_near_tie_flip_is_told_from_a_wrong_answer():
    """The load test's judge, on the shipped travel adapter: an answer parting from the reference where the
    reference's logits hold both tokens within NEAR_TIE is a flip; the pirate's answer to the same request,
    or the base's, is wrong."""
    if not (ROOT / "adapters" / "travel" / "metadata.json").exists() or \
            not (ROOT / "adapters" / "pirate" / "metadata.json").exists():
        pytest.skip("adapters/travel or adapters/pirate missing")
    sys.path.insert(0, str(ROOT / "bench"))
    from load_test import NEAR_TIE, answer_text, split_flips
    q = "Is it safe to drink tap water in Rome?"
    ref = "Guide's note: The best time to visit Rome is in spring,"
    flip = "Guide's note: For a city has the euro. Travel tip"  # what an H100 batch gave (2026-12-07)
    wrong = [{"request": (q, "travel"), "got": json.dumps([{"text": flip, "type": "text"}]), "expected": ref},
             {"request": (q, "travel"), "got": "Arr, matey! The water be fine", "expected": ref},
             {"request": (q, "travel"), "got": "Rome is a city in Italy.", "expected": ref}]
    assert answer_text(wrong[0]["got"]) == flip
    flips, bad = split_flips(ROOT / "models" / "default", ROOT / "adapters", wrong)
    assert [w["got"] for w in flips] == [wrong[0]["got"]]
    p = flips[0]["parting"]
    assert p["at"] == 6 and p["margin"] <= NEAR_TIE and p["ref_logit"] == p["top_logit"]
    assert [w["got"] for w in bad] == [wrong[1]["got"], wrong[2]["got"]]
    assert all(w["parting"]["margin"] > 1.0 for w in bad), bad

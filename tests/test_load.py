"""A short load test of the launched app (bench/load_test.py with 8 clients for 20 s): no errors, no
answer from the wrong variant (greedy answers equal the same request answered alone), bounded memory."""
from __future__ import annotations

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
    assert res["distinct_reference_answers"] == len(res["variants"]) * res["prompts"]
    assert res["requests_served"] >= 16 and min(res["per_variant"].values()) > 0, res
    assert res["rss_mb"]["growth_first_to_last_window"] < 150, res["rss_mb"]
    assert res["after_ok"]

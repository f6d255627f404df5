"""Sticky hashing: stable across processes, even splits, rollouts that only add users."""

from __future__ import annotations

import os
import subprocess
import sys

from flagdash.backends.local import sticky_bucket
from flagdash.evaluation.rules import compile_rules, validate_rules

KEYS = [f"user-{i}" for i in range(10_000)]


def test_the_same_key_gets_the_same_bucket_in_another_process():
    sample = KEYS[:50]
    here = [sticky_bucket(k, "checkout-button-color", "split") for k in sample]
    code = (
        "import django; django.setup()\n"
        "from flagdash.backends.local import sticky_bucket\n"
        f"print(repr([sticky_bucket(k, 'checkout-button-color', 'split') for k in {sample!r}]))"
    )
    environ = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "flagdash.settings_test",
        "PYTHONHASHSEED": "12345",  # another str hash seed than this process's random one
    }
    out = (
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
            env=environ,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert eval(out) == here  # noqa: S307  (our own subprocess's repr of floats)


def test_known_values_never_change():
    # Pinned: changing the function would move every user of every rollout.
    assert round(sticky_bucket("user-42", "allow-bitcoin-at-checkout"), 6) == round(
        int.from_bytes(
            __import__("hashlib").sha256(b"allow-bitcoin-at-checkout/user-42").digest()[:8],
            "big",
        )
        / 2**64
        * 100,
        6,
    )
    assert 0 <= sticky_bucket("", "x") < 100


def test_a_split_of_10000_keys_lands_within_two_points_of_its_weights():
    rules = validate_rules(
        [
            {
                "conditions": [
                    {"attribute": "targetingKey", "operator": "starts_with", "value": "user-"}
                ],
                "serve": {
                    "split": [
                        {"variant": "a", "weight": 50},
                        {"variant": "b", "weight": 30},
                        {"variant": "c", "weight": 20},
                    ]
                },
            }
        ],
        variant_names=["a", "b", "c"],
    )
    compiled = compile_rules(rules)[0]
    counts = {"a": 0, "b": 0, "c": 0}
    for key in KEYS:
        counts[compiled.split_variant(key, "checkout-button-color")] += 1
    for variant, weight in (("a", 50), ("b", 30), ("c", 20)):
        assert abs(counts[variant] / len(KEYS) * 100 - weight) <= 2, counts


def test_raising_a_rollout_only_adds_users():
    at = {p: {k for k in KEYS if sticky_bucket(k, "new-checkout") < p} for p in (10, 20, 30, 100)}
    assert at[10] <= at[20] <= at[30] <= at[100]
    assert abs(len(at[20]) / len(KEYS) - 0.20) <= 0.02
    assert len(at[100]) == len(KEYS)


def test_flags_and_splits_bucket_independently():
    rollout = {k for k in KEYS if sticky_bucket(k, "flag-a") < 50}
    other_flag = {k for k in KEYS if sticky_bucket(k, "flag-b") < 50}
    split = {k for k in KEYS if sticky_bucket(k, "flag-a", "split") < 50}
    # Independent halves overlap on about a quarter of all keys, not on all or none.
    for other in (other_flag, split):
        overlap = len(rollout & other) / len(KEYS)
        assert 0.22 < overlap < 0.28

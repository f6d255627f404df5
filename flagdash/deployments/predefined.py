"""The strategies that exist from the start: AWS AppConfig's predefined ones, and flagdash's own
for restoring a version. The data migration creates them; ``ensure_predefined`` recreates any
that went missing (a flushed database, a hand-edited one)."""

from __future__ import annotations

from typing import Any

# name, description, duration (minutes), growth type, growth factor, final bake (minutes)
PREDEFINED: tuple[tuple[str, str, int, str, int, int], ...] = (
    (
        "AppConfig.AllAtOnce",
        "Quick: every target at once, then a 10-minute bake.",
        0,
        "linear",
        100,
        10,
    ),
    (
        "AppConfig.Linear50PercentEvery30Seconds",
        "Testing: half the targets every 30 seconds, then a 1-minute bake.",
        1,
        "linear",
        50,
        1,
    ),
    (
        "AppConfig.Canary10Percent20Minutes",
        "AWS recommended: 10 %, doubling, over 20 minutes, then a 10-minute bake.",
        20,
        "exponential",
        10,
        10,
    ),
    (
        "AppConfig.Linear20PercentEvery6Minutes",
        "AWS recommended: 20 % every 6 minutes over 30 minutes, then a 30-minute bake.",
        30,
        "linear",
        20,
        30,
    ),
    (
        "flagdash.Immediate",
        "Every target at once, no bake: how flagdash restores an earlier version.",
        0,
        "linear",
        100,
        0,
    ),
)
NAMES = frozenset(row[0] for row in PREDEFINED)


def ensure_predefined(strategy_model: Any) -> None:
    """Create the predefined strategies that are missing (works with a migration's model too)."""
    for name, description, duration, growth, factor, bake in PREDEFINED:
        strategy_model.objects.get_or_create(
            name=name,
            defaults={
                "description": description,
                "duration_minutes": duration,
                "growth_type": growth,
                "growth_factor": factor,
                "final_bake_minutes": bake,
                "predefined": True,
            },
        )

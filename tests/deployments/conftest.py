from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from flagdash.deployments import engine
from flagdash.deployments.models import Deployment
from tests.factories import make_strategy


class Clock:
    """The engine's ``now``: real time plus what the test moved it on by."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    @property
    def now(self) -> dt.datetime:
        return timezone.now() + self.offset

    def tick(self, seconds: float) -> dt.datetime:
        self.offset += dt.timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock():
    return Clock()


def run_due(clock: Clock, rounds: int = 10) -> list[str]:
    """Advance every due deployment until nothing more is due at the clock's time."""
    outcomes = []
    for _ in range(rounds):
        due = engine.due_deployments(clock.now)
        if not due:
            break
        outcomes += [engine.deployment_advance(pk, now=clock.now) for pk in due]
    return outcomes


@pytest.fixture
def linear(db):
    """25 % every minute over 4 minutes, no bake."""
    return make_strategy("linear-4m", duration_minutes=4, growth_factor=25, final_bake_minutes=0)


def reload(d: Deployment) -> Deployment:
    d.refresh_from_db()
    return d

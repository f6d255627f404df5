from __future__ import annotations

import pytest

from tests.factories import UserFactory


@pytest.fixture
def member(db):
    """A viewer whose role the tests change (not the user making the request)."""
    return UserFactory(username="member", role="viewer")

"""Shared fixtures: a fixed cast of users (admin, editor, viewer, outsider) and the checkout
application with a `beta` and a protected `production` environment."""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from tests.factories import PASSWORD, UserFactory, make_application, make_environment, make_flag

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs a loop


def _clear_our_cache_keys() -> None:
    """Forget throttle counters and the like, without flushing other suites' Redis keys."""
    redis = getattr(cache, "_cache", None)
    if redis is None or not hasattr(redis, "get_client"):
        cache.clear()
        return
    client = redis.get_client(write=True)
    keys = list(client.scan_iter(match=f"{cache.key_prefix}:*", count=500))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _clear_cache():
    _clear_our_cache_keys()
    yield


@pytest.fixture
def password():
    return PASSWORD


@pytest.fixture
def admin_user(db):
    return UserFactory(username="admin", role="admin")


@pytest.fixture
def editor(db):
    return UserFactory(username="editor", role="editor")


@pytest.fixture
def viewer(db):
    return UserFactory(username="viewer", role="viewer")


@pytest.fixture
def outsider(db):
    return UserFactory(username="outsider")


@pytest.fixture
def app(db):
    return make_application("checkout", "Checkout")


@pytest.fixture
def beta(app):
    return make_environment(app, "beta", "Beta")


@pytest.fixture
def production(app, beta):
    return make_environment(app, "production", "Production", protected=True)


@pytest.fixture
def envs(beta, production):
    return [beta, production]


@pytest.fixture
def flag(app, envs):
    return make_flag(
        app, "allow-bitcoin-at-checkout", name="Allow bitcoin at checkout", short_term=True
    )


def _client_for(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(client, admin_user):
    return _client_for(client, admin_user)


@pytest.fixture
def editor_client(client, editor):
    return _client_for(client, editor)


@pytest.fixture
def viewer_client(client, viewer):
    return _client_for(client, viewer)


@pytest.fixture
def outsider_client(client, outsider):
    return _client_for(client, outsider)


@pytest.fixture
def htmx():
    """Headers of an htmx request (not boosted)."""
    return {"HX-Request": "true"}


def pytest_collection_modifyitems(config, items):
    """PostgreSQL-only tests skip on a machine without it, unless CI=true (then settings fail)."""
    if getattr(settings, "POSTGRES_AVAILABLE", False):
        return
    skip = pytest.mark.skip(reason="PostgreSQL is not reachable (set CI=true to make this fail)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def on_postgres():
    assert connection.vendor == "postgresql"


# --- browser tests ---------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Debian's Chromium (Playwright cannot download browsers here), headless and quiet."""
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    }

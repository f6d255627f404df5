"""Credentials per process: one boto3 session resolves the default chain once (not an STS
AssumeRole or an instance-metadata lookup on every advance), and credentials that expire keep
working because botocore refreshes them."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import botocore.credentials
import pytest

from flagdash.backends import aws_appconfig
from flagdash.backends.aws_appconfig import make_client, reset_clients
from tests.backends.conftest import REGION, aws_credentials

pytestmark = pytest.mark.django_db


@pytest.fixture
def fresh_process():
    """As in a new process: no session yet (and none left behind for other tests)."""
    reset_clients()
    yield
    reset_clients()


@pytest.fixture
def lookups(monkeypatch):
    """How often the default chain read the environment's keys."""
    count = {"n": 0}
    real_load = botocore.credentials.EnvProvider.load

    def load(self):
        count["n"] += 1
        return real_load(self)

    monkeypatch.setattr(botocore.credentials.EnvProvider, "load", load)
    return count


def test_advances_reuse_one_session_and_resolve_credentials_once(
    aws, fresh_process, lookups, app, beta, flag
):
    for _ in range(3):
        assert aws.backend().check().ok  # a new backend each time, as each engine step makes
    assert lookups["n"] == 1
    assert aws.fake.calls["GetApplication"] == 3


def test_threads_share_one_client(aws, fresh_process, lookups):
    barrier = threading.Barrier(8)

    def client(_):
        barrier.wait()
        return make_client(REGION, aws.fake.url)

    with ThreadPoolExecutor(8) as pool:
        clients = list(pool.map(client, range(8)))
    assert all(c is clients[0] for c in clients)
    assert lookups["n"] == 1
    once = make_client(REGION, aws.fake.url, max_attempts=1)
    assert once is not clients[0] and once is make_client(REGION, aws.fake.url, max_attempts=1)


def test_keys_changed_in_the_environment_get_a_new_session(aws, fresh_process, monkeypatch):
    assert aws.backend().check().ok
    aws.fake.credentials = {"AKIAROTATEDKEY000001": ("rotated/secret", None)}
    aws_credentials(monkeypatch, key="AKIAROTATEDKEY000001", secret="rotated/secret")
    assert aws.backend().check().ok


def test_no_credentials_are_not_kept(aws, fresh_process, monkeypatch):
    """A client made while no credentials could be found (an instance role not reachable yet)
    is not cached: the next call looks again."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    first = make_client(REGION, aws.fake.url)
    assert make_client(REGION, aws.fake.url) is not first
    assert aws_appconfig._clients == {}


def test_expiring_credentials_are_refreshed_with_the_cached_session(
    aws, fresh_process, monkeypatch, tmp_path
):
    """A credential_process (like an assumed role) hands out keys that expire soon: the cached
    session's client asks for new ones, so keys rotated behind it keep working."""
    current = tmp_path / "current-key"
    runs = tmp_path / "runs"
    script = tmp_path / "credentials.py"
    script.write_text(
        "import datetime as dt, json, pathlib\n"
        f"pathlib.Path({str(runs)!r}).open('a').write('x')\n"
        f"key, secret = pathlib.Path({str(current)!r}).read_text().split()\n"
        "expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)\n"
        "print(json.dumps({'Version': 1, 'AccessKeyId': key, 'SecretAccessKey': secret,\n"
        "                  'Expiration': expires.strftime('%Y-%m-%dT%H:%M:%SZ')}))\n"
    )
    config = tmp_path / "config"
    config.write_text(f"[default]\ncredential_process = {sys.executable} {script}\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    aws.fake.credentials = {"AKIAFIRSTKEY00000001": ("first/secret", None)}
    current.write_text("AKIAFIRSTKEY00000001 first/secret")
    assert aws.backend().check().ok
    session = aws_appconfig._session
    # the keys are rotated: the old ones no longer work, the process hands out new ones
    aws.fake.credentials = {"AKIASECONDKEY0000002": ("second/secret", None)}
    current.write_text("AKIASECONDKEY0000002 second/secret")
    result = aws.backend().check()
    assert result.ok, result.message
    assert aws_appconfig._session is session  # the same session, refreshed credentials
    assert len(runs.read_text()) >= 2

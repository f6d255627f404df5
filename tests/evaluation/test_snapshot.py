"""The OFREP snapshot: where each environment's flags come from, isolation, Redis outages."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import pytest
import redis
from django.conf import settings as django_settings

from flagdash.backends.models import BackendConnection, BackendKind, LocalServedState
from flagdash.evaluation import snapshot
from flagdash.evaluation.snapshot import holder
from flagdash.flags import services as flag_services
from flagdash.flags.models import ConfigVersion, Environment
from tests.evaluation.conftest import deploy, new_key, post, set_values

pytestmark = pytest.mark.django_db
ONE = "/ofrep/v1/evaluate/flags/"
BULK = "/ofrep/v1/evaluate/flags"
FLAGD = "/ofrep/v1/flagd/flags.json"


def raw_version(environment, document: str, flag_keys) -> ConfigVersion:
    """A version row as it might be found in the database (bypassing the services' checks)."""
    number = (ConfigVersion.objects.filter(environment=environment).count() or 0) + 100
    return ConfigVersion.objects.create(
        environment=environment,
        number=number,
        document=document,
        sha256="0" * 64,
        flag_digests=dict.fromkeys(flag_keys, "0" * 64),
    )


def serve(environment, version) -> None:
    LocalServedState.objects.update_or_create(
        environment=environment, defaults={"stable_version": version}
    )
    holder.reset()


# --- 1. the source follows the environment's backend kind ----------------------------------


def test_a_cloud_environment_serves_its_live_version_not_a_leftover_local_state(
    api, beta, served, beta_key
):
    """beta served new-checkout on from the built-in store; it moved to AWS, whose live version
    has it off. OFREP answers what AWS serves, not the built-in store's leftover row."""
    set_values(served["bool"], beta, enabled=False)
    live = flag_services.config_version_create(actor=None, environment=beta, message="in AWS")
    aws = BackendConnection.objects.create(name="beta-aws", kind=BackendKind.AWS_APPCONFIG)
    Environment.objects.filter(pk=beta.pk).update(backend=aws, live_version=live)
    assert LocalServedState.objects.get(environment=beta).stable_version_id != live.pk
    holder.reset()

    answer = post(api, ONE + "new-checkout", {"context": {"email": "bob@shop.test"}}, beta_key)

    assert answer.status_code == 200
    assert (answer.json()["value"], answer.json()["reason"]) == (False, "DISABLED")
    assert answer.json()["metadata"]["flagdash.version"] == live.number


def test_a_built_in_environment_serves_its_local_state_with_the_rollout(
    api, beta, served, beta_key
):
    state = LocalServedState.objects.get(environment=beta)
    set_values(served["bool"], beta, enabled=False)
    candidate = flag_services.config_version_create(actor=None, environment=beta, message="c")
    LocalServedState.objects.filter(pk=state.pk).update(
        candidate_version=candidate, candidate_percentage=100
    )
    holder.reset()
    answer = post(api, ONE + "new-checkout", {"context": {"targetingKey": "u1"}}, beta_key)
    assert (answer.json()["value"], answer.json()["reason"]) == (False, "DISABLED")


# --- 5. one broken version does not take the others down ------------------------------------


@pytest.fixture
def production_key(served, production):
    set_values(served["bool"], production, enabled=True)
    deploy(production)
    return new_key(production)


def test_a_corrupt_version_answers_parse_error_and_other_environments_are_served(
    api, beta, production_key, beta_key, caplog
):
    broken = raw_version(beta, '{"flags": {"new-checkout": ', ["new-checkout", "old-flow"])
    serve(beta, broken)

    with caplog.at_level(logging.ERROR, logger="flagdash.evaluation.snapshot"):
        elsewhere = post(api, ONE + "new-checkout", {"context": {}}, production_key)
        one = post(api, ONE + "new-checkout", {"context": {}}, beta_key)
        bulk = post(api, BULK, {"context": {"targetingKey": "u"}}, beta_key)
        export = api.get(FLAGD, headers={"Authorization": f"Bearer {beta_key}"})

    assert elsewhere.status_code == 200 and elsewhere.json()["value"] is True
    assert one.status_code == 400
    assert one.json()["errorCode"] == "PARSE_ERROR"
    assert [(f["key"], f.get("errorCode")) for f in bulk.json()["flags"]] == [
        ("new-checkout", "PARSE_ERROR"),
        ("old-flow", "PARSE_ERROR"),
    ]
    # flagd keeps what it has when a sync fails; an empty file would wipe its flags.
    assert export.status_code == 500
    assert export.json()["errorCode"] == "PARSE_ERROR"
    logged = [r for r in caplog.records if r.name == "flagdash.evaluation.snapshot"]
    assert len(logged) == 1 and f"Version {broken.pk} " in logged[0].getMessage()


def test_a_rule_that_does_not_compile_breaks_only_its_flag(api, beta, beta_key, caplog):
    document = {
        "flags": {
            "new-checkout": {
                "enabled": True,
                "rules": [{"conditions": [{"attribute": "email"}], "serve": {"variant": "on"}}],
            },
            "old-flow": {"enabled": True},
        }
    }
    broken = raw_version(beta, json.dumps(document), ["new-checkout", "old-flow"])
    serve(beta, broken)
    with caplog.at_level(logging.ERROR, logger="flagdash.evaluation.snapshot"):
        bad = post(api, ONE + "new-checkout", {"context": {}}, beta_key)
        good = post(api, ONE + "old-flow", {"context": {}}, beta_key)
    assert (bad.status_code, bad.json()["errorCode"]) == (400, "PARSE_ERROR")
    assert (good.status_code, good.json()["value"]) == (200, True)
    assert any(str(broken.pk) in r.getMessage() for r in caplog.records)


def test_an_environment_never_serves_another_environments_version(
    api, beta, production, production_key, caplog
):
    beta_version = LocalServedState.objects.get(environment=beta).stable_version
    serve(production, beta_version)  # a bad row: production pointing at beta's version
    with caplog.at_level(logging.ERROR, logger="flagdash.evaluation.snapshot"):
        answer = post(api, ONE + "button-color", {"context": {}}, production_key)
    assert answer.status_code == 404  # beta's multi-variant flag is not production's
    assert any("not served" in r.getMessage() for r in caplog.records)
    entries = holder.get().environments
    assert entries[production.pk].stable is None
    assert entries[beta.pk].stable is not None
    assert entries[beta.pk].stable.environment_id == beta.pk


# --- 2. Redis down -----------------------------------------------------------------------------


def _dead_cache(settings, location: str = "redis://127.0.0.1:1/0") -> None:
    """The suite's cache, as configured, pointed at a port where no Redis listens."""
    settings.CACHES = {"default": {**django_settings.CACHES["default"], "LOCATION": location}}


def test_a_fresh_process_serves_from_the_database_while_redis_is_down(
    api, settings, beta_key, caplog
):
    _dead_cache(settings)
    holder.reset()
    with caplog.at_level(logging.WARNING, logger="flagdash.evaluation.snapshot"):
        answers = [
            post(api, ONE + "new-checkout", {"context": {"email": "a@shop.test"}}, beta_key)
            for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[0].json()["value"] is True
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()


def test_an_outage_answers_from_the_snapshot_and_does_not_retry_redis_per_request(
    api, settings, monkeypatch, beta_key, caplog
):
    settings.OFREP_REFRESH_SECONDS = 0
    assert post(api, ONE + "old-flow", {}, beta_key).status_code == 200  # snapshot loaded
    calls = []

    def unreachable():
        calls.append(1)
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(snapshot, "_read_tokens", unreachable)
    with caplog.at_level(logging.INFO, logger="flagdash.evaluation.snapshot"):
        answers = [post(api, ONE + "old-flow", {}, beta_key) for _ in range(20)]
        assert {a.status_code for a in answers} == {200}
        assert len(calls) == 1  # then it backs off
        holder._tokens_retry_at = 0.0  # the back-off is over; Redis is still down
        assert post(api, ONE + "old-flow", {}, beta_key).status_code == 200
        assert len(calls) == 2
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # once per outage, not per request
        monkeypatch.setattr(snapshot, "_read_tokens", lambda: ("back", None))
        holder._tokens_retry_at = 0.0
        loaded_before = holder._snapshot.loaded_at
        assert post(api, ONE + "old-flow", {}, beta_key).status_code == 200
    assert holder._snapshot.loaded_at > loaded_before  # unknown tokens: reloads once Redis is back
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_a_snapshot_reload_that_fails_on_the_database_keeps_the_last_snapshot(
    api, settings, monkeypatch, beta_key
):
    settings.OFREP_REFRESH_SECONDS = 0
    settings.OFREP_RESYNC_SECONDS = 1
    assert post(api, ONE + "old-flow", {}, beta_key).status_code == 200
    from django.db import OperationalError

    def database_down(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(snapshot, "load_snapshot", database_down)
    holder._snapshot = holder._snapshot.__class__(
        **{**holder._snapshot.__dict__, "loaded_at": time.monotonic() - 60}
    )  # resync due
    assert post(api, ONE + "old-flow", {}, beta_key).status_code == 200


@pytest.fixture
def silent_redis():
    """A TCP port that accepts connections and never answers (a hung Redis).

    After 15 s it goes away (resetting its connections), so a client without timeouts fails
    the test instead of hanging it.
    """
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    watchdog = threading.Timer(15, server.close)
    watchdog.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    watchdog.cancel()
    server.close()


def test_a_redis_that_never_answers_delays_a_request_by_seconds_not_forever(
    api, settings, silent_redis, beta_key
):
    _dead_cache(settings, silent_redis)
    holder.reset()
    started = time.monotonic()
    answer = post(api, ONE + "old-flow", {}, beta_key)
    elapsed = time.monotonic() - started
    assert answer.status_code == 200
    # One read that times out (2 s; redis-py's own default would be 5 s), then the database.
    assert django_settings.REDIS_TIMEOUT_SECONDS == 2
    assert elapsed < 4.5

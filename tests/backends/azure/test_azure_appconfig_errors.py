"""Azure App Configuration when things go wrong: drift (outside edits between deployments and a
412 during a rollout), locked keys (409), throttling and outages (429, 503, slow answers), bad
credentials (401, a clock off by more than 15 minutes). Everything goes through the real SDK to
the fake, which checks every signature."""

from __future__ import annotations

import json

import pytest

from flagdash.backends.azure_appconfig import AzureAppConfigBackend
from flagdash.backends.models import AzureSettingState
from flagdash.deployments import services as deployment_services
from flagdash.deployments.models import EventType
from tests.backends.azure.conftest import (
    CONNECTION_ENV,
    LABEL,
    deploy,
    flag_values,
    set_flag,
    targeting_percentage,
)
from tests.deployments.conftest import reload, run_due

pytestmark = pytest.mark.django_db

PROMO = ".appconfig.featureflag/promo-banner"
PROMO_PATH = "/kv/" + PROMO
BUTTON = ".appconfig.featureflag/checkout-button"


def puts(fake, key=None):
    return [
        w
        for w in fake.writes
        if w.method in ("PUT", "DELETE") and not w.outside and (key is None or w.key == key)
    ]


@pytest.fixture
def deployed(clock, azure, staging, promo, checkout_button, at_once):
    """Both flags deployed once (off), so flagdash knows their ETags."""
    d = deploy(staging, at_once, "first")
    run_due(clock)
    assert reload(d).state == "complete"
    return d


# --- drift -----------------------------------------------------------------------------------


def test_settings_edited_outside_flagdash_between_deployments_are_reported_not_overwritten(
    clock, azure, staging, promo, deployed, at_once
):
    azure.edit_flag_outside("checkout-button", LABEL, description="edited in the portal")
    azure.delete_outside(PROMO, LABEL)
    azure.put_outside(".appconfig.featureflag/from-portal", LABEL, json.dumps({"id": "x"}))
    edited = azure.get(BUTTON, LABEL)
    writes_before = len(puts(azure))

    set_flag(promo, staging, enabled=True)
    d = deploy(staging, at_once, "promo on")
    run_due(clock)
    d = reload(d)
    assert d.state == "failed" and d.drifted
    assert "3 feature flag setting(s) with label 'staging'" in d.error
    assert "nothing was overwritten" in d.error
    lines = d.error_details
    assert len(lines) == 3
    assert lines[0].startswith(
        "checkout-button (.appconfig.featureflag/checkout-button, label 'staging'): changed "
        "outside flagdash (last modified "
    )
    assert lines[1].startswith(
        "from-portal (.appconfig.featureflag/from-portal, label 'staging'): added outside flagdash"
    )
    assert lines[2] == (
        "promo-banner (.appconfig.featureflag/promo-banner, label 'staging'): deleted outside "
        "flagdash"
    )
    assert len(puts(azure)) == writes_before  # nothing written
    assert azure.get(BUTTON, LABEL).etag == edited.etag

    retry = deployment_services.deployment_retry(actor=None, deployment=d, overwrite_drift=True)
    run_due(clock)
    retry = reload(retry)
    assert retry.state == "complete"
    values = flag_values(azure)
    assert set(values) == {"promo-banner", "checkout-button"}  # the portal's flag is gone
    assert values["checkout-button"]["description"] == ""
    assert values["promo-banner"]["enabled"] is True
    overwrote = retry.events.filter(type=EventType.BACKEND, message__contains="overwrote 3")
    assert overwrote.count() == 1
    assert len(retry.backend_data["overwritten"]) == 3


def test_a_412_during_a_rollout_is_drift_nothing_is_overwritten_and_overwriting_is_a_choice(
    clock, azure, staging, promo, checkout_button, deployed, linear
):
    set_flag(promo, staging, enabled=True)
    set_flag(checkout_button, staging, enabled=True)
    d = deploy(staging, linear, "both on")
    run_due(clock)
    assert reload(d).percentage == 25
    # someone edits the flag in the portal while flagdash rolls it out
    azure.edit_flag_outside("promo-banner", LABEL, description="hot fix")
    outside = azure.get(PROMO, LABEL)
    clock.tick(60)
    run_due(clock)  # the next step's write is refused with 412
    d = reload(d)
    assert d.state == "failed" and d.drifted
    assert "promo-banner was changed in Azure App Configuration outside flagdash" in d.error
    assert azure.count("PUT", PROMO_PATH, status=412) >= 1
    assert azure.get(PROMO, LABEL).etag == outside.etag  # not overwritten, not even by the stop
    # the failed rollout was stopped: what could be restored was (the button is off again)
    assert flag_values(azure)["checkout-button"]["enabled"] is False
    stopped = d.events.filter(type=EventType.BACKEND, message__contains="left as they are")
    assert "except 1 setting(s) changed outside flagdash" in stopped.get().message

    retry = deployment_services.deployment_retry(actor=None, deployment=d, overwrite_drift=True)
    run_due(clock)
    for _ in range(6):
        clock.tick(60)
        run_due(clock)
    assert reload(retry).state == "complete"
    value = flag_values(azure)["promo-banner"]
    assert value["description"] == "Show the banner" and value["enabled"] is True


def test_a_write_whose_answer_was_lost_is_recognised_as_flagdashs_own(
    clock, azure, staging, promo, deployed, at_once, settings
):
    """The fake applies the PUT and answers too late; the SDK times out and retries with the
    old ETag (412). flagdash re-reads, finds its own value, and carries on: no drift."""
    settings.AZURE_APPCONFIG_TIMEOUT_SECONDS = 0.5
    azure.delay_next("PUT", PROMO_PATH, seconds=1.5, after=True)
    set_flag(promo, staging, enabled=True)
    d = deploy(staging, at_once)
    run_due(clock)
    d = reload(d)
    assert d.state == "complete", d.error
    assert azure.count("PUT", PROMO_PATH, status=412) == 1
    assert len(puts(azure, PROMO)) == 2  # the first deployment and this one: written once
    assert flag_values(azure)["promo-banner"]["enabled"] is True
    assert AzureSettingState.objects.get(key=PROMO).etag == azure.get(PROMO, LABEL).etag


def test_a_worker_that_dies_after_writing_does_not_write_again_or_see_drift(
    clock, azure, staging, promo, deployed, at_once, monkeypatch
):
    real = AzureAppConfigBackend._remember
    crashed = []

    def crash_once(row, etag, digest, deployment_id):
        if row.key == PROMO and etag and not crashed:
            crashed.append(etag)
            raise RuntimeError("worker killed after Azure answered")
        return real(row, etag, digest, deployment_id)

    monkeypatch.setattr(AzureAppConfigBackend, "_remember", staticmethod(crash_once))
    set_flag(promo, staging, enabled=True)
    d = deploy(staging, at_once)
    run_due(clock)
    assert reload(d).state == "deploying" and crashed  # retried later
    clock.tick(2)
    run_due(clock)
    d = reload(d)
    assert d.state == "complete", d.error
    assert len(puts(azure, PROMO)) == 2  # once for the first deployment, once for this one
    assert AzureSettingState.objects.get(key=PROMO).etag == crashed[0]


# --- locked keys -----------------------------------------------------------------------------


def test_a_locked_key_fails_the_deployment_before_anything_is_written(
    clock, azure, staging, promo, deployed, at_once
):
    azure.lock(PROMO, LABEL)
    writes = len(puts(azure))
    set_flag(promo, staging, enabled=True)
    d = deploy(staging, at_once)
    run_due(clock)
    d = reload(d)
    assert d.state == "failed" and not d.drifted
    assert "are locked (read-only)" in d.error and "unlock them" in d.error
    assert d.error_details == [
        f"promo-banner: az appconfig kv unlock --endpoint {azure.endpoint} "
        f"--key '{PROMO}' --label 'staging' --auth-mode login"
    ]
    assert len(puts(azure)) == writes


def test_a_key_locked_during_a_rollout_answers_409_and_fails_with_the_key(
    clock, azure, staging, promo, deployed, linear
):
    set_flag(promo, staging, enabled=True)
    d = deploy(staging, linear)
    run_due(clock)
    azure.lock(PROMO, LABEL)  # locking keeps the ETag: only the write finds out
    clock.tick(60)
    run_due(clock)
    d = reload(d)
    # the step's write, then the stop of the failed rollout: both refused, nothing changed
    assert azure.count("PUT", PROMO_PATH, status=409) == 2
    assert targeting_percentage(flag_values(azure)["promo-banner"]) == 25
    assert d.state == "failed"
    assert "locked (read-only)" in d.error
    assert "--key '.appconfig.featureflag/promo-banner'" in d.error_details[0]
    assert d.events.filter(type=EventType.RETRY).count() == 0  # permanent: no retries


# --- throttling and outages --------------------------------------------------------------------


def test_a_429_with_a_short_retry_after_is_retried_by_the_sdk(
    clock, azure, staging, promo, deployed, at_once
):
    azure.fail_next("PUT", PROMO_PATH, status=429, times=2, retry_after=0.05)
    set_flag(promo, staging, enabled=True)
    d = deploy(staging, at_once)
    run_due(clock)
    assert reload(d).state == "complete"
    assert azure.count("PUT", PROMO_PATH, status=429) == 2
    assert azure.count("PUT", PROMO_PATH, status=200) == 2  # the first deployment and this one


def test_a_429_asking_to_wait_long_is_left_to_the_engine_which_retries_later(
    clock, azure, staging, promo, deployed, at_once
):
    azure.fail_next("GET", "/kv", status=429, times=1, retry_after=30)
    set_flag(promo, staging, enabled=True)
    d = deploy(staging, at_once)
    run_due(clock)
    d = reload(d)
    assert d.state == "deploying"
    assert azure.count("GET", "/kv", status=429) == 1  # the worker did not sleep 30 s
    retry = d.events.get(type=EventType.RETRY)
    assert "is throttling requests (429)" in retry.message
    assert "asked to wait 30 s" in retry.message and "retrying in 30 s" in retry.message
    # the engine's next attempt comes after the 30 s Azure asked for, not after its own 1 s
    assert 29 <= (d.next_step_at - clock.now).total_seconds() <= 30
    calls = azure.count()
    clock.tick(2)
    run_due(clock)
    assert reload(d).state == "deploying"
    assert azure.count() == calls  # nothing asked of Azure before the wait is over
    clock.tick(28)
    run_due(clock)
    assert reload(d).state == "complete"


def test_503s_beyond_the_sdks_retries_are_retried_by_the_engine_then_succeed(
    clock, azure, staging, promo, deployed, at_once
):
    azure.fail_next("PUT", PROMO_PATH, status=503, times=4, retry_after=0.01)
    set_flag(promo, staging, enabled=True)
    d = deploy(staging, at_once)
    run_due(clock)
    d = reload(d)
    assert d.state == "deploying" and d.attempts == 1
    assert azure.count("PUT", PROMO_PATH, status=503) == 3  # one try and two SDK retries
    assert "did not answer properly (503)" in d.events.get(type=EventType.RETRY).message
    clock.tick(2)
    run_due(clock)
    d = reload(d)
    assert d.state == "complete"
    assert flag_values(azure)["promo-banner"]["enabled"] is True


def test_an_answer_slower_than_the_timeout_is_transient(
    clock, azure, staging, promo, deployed, at_once, settings
):
    settings.AZURE_APPCONFIG_TIMEOUT_SECONDS = 0.3
    azure.delay_next("GET", "/kv", seconds=1.0, times=3)
    set_flag(promo, staging, enabled=True)
    d = deploy(staging, at_once)
    run_due(clock)
    clock.tick(2)
    run_due(clock)
    d = reload(d)
    assert d.state == "complete"
    retry = d.events.get(type=EventType.RETRY)
    assert "did not answer in time while listing the feature flags" in retry.message
    assert azure.count("GET", "/kv") >= 4  # three slow tries (one + two SDK retries), then one


# --- credentials -------------------------------------------------------------------------------


def test_a_wrong_secret_fails_at_once_with_the_variable_named_and_no_retry_storm(
    clock, azure, staging, promo, deployed, at_once, monkeypatch
):
    monkeypatch.setenv(CONNECTION_ENV, azure.connection_string(secret="d3JvbmctYnV0LWJhc2U2NA=="))
    azure.reset_calls()
    set_flag(promo, staging, enabled=True)
    d = deploy(staging, at_once)
    run_due(clock)
    d = reload(d)
    assert d.state == "failed"
    assert "refused the credentials (401)" in d.error
    assert f"check the connection string in ${CONNECTION_ENV}" in d.error
    assert azure.count() == 1 and azure.count(status=401) == 1
    assert d.events.filter(type=EventType.RETRY).count() == 0
    clock.tick(600)
    run_due(clock)
    assert azure.count() == 1


def test_a_clock_more_than_15_minutes_off_is_refused_as_401(
    clock, azure, staging, promo, deployed, at_once
):
    import datetime as dt

    azure.clock_skew = dt.timedelta(minutes=16)
    set_flag(promo, staging, enabled=True)
    d = deploy(staging, at_once)
    run_due(clock)
    d = reload(d)
    assert d.state == "failed" and "(401)" in d.error
    last = azure.calls[-1]
    assert last.status == 401


def test_a_rollout_stopped_while_azure_is_down_restores_once_it_answers(
    clock, azure, staging, promo, deployed, linear
):
    set_flag(promo, staging, enabled=True)
    d = deploy(staging, linear)
    run_due(clock)
    assert targeting_percentage(flag_values(azure)["promo-banner"]) == 25
    deployment_services.deployment_rollback(actor=None, deployment=reload(d), reason="bad")
    azure.fail_next("PUT", PROMO_PATH, status=500, times=3)
    run_due(clock)
    d = reload(d)
    assert d.state == "rolling_back"
    clock.tick(2)
    run_due(clock)
    d = reload(d)
    assert d.state == "rolled_back"
    assert flag_values(azure)["promo-banner"]["enabled"] is False

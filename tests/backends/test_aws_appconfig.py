"""Deployments to AWS AppConfig, driven by the engine, through boto3, against the wire-level fake.

The engine's clock and the fake's move together (``clocks.tick``); nothing here mocks boto3."""

from __future__ import annotations

import datetime as dt
import json

import jsonschema
import pytest
from django.test import Client
from django.urls import reverse

from flagdash.backends.aws_appconfig import AwsAppConfigBackend, render_document
from flagdash.backends.base import PermanentBackendError
from flagdash.backends.models import AwsAppConfigDeployment
from flagdash.deployments import services
from flagdash.deployments.models import Deployment, DeploymentState, EventType
from flagdash.flags import documents
from flagdash.flags import services as flag_services
from flagdash.flags.models import ConfigVersion, Environment, Flag, FlagAttribute, FlagSetting
from tests.backends.aws_schema import FEATURE_FLAGS_SCHEMA
from tests.backends.conftest import ALARM, Clocks, aws_credentials, connect
from tests.deployments.conftest import reload
from tests.factories import make_flag, make_strategy

pytestmark = pytest.mark.django_db

S = DeploymentState
LINEAR_20 = "AppConfig.Linear20PercentEvery6Minutes"
ALL_AT_ONCE = "AppConfig.AllAtOnce"


def new_version(flag: Flag, env: Environment) -> ConfigVersion:
    """A saved version with the flag flipped (not deployed)."""
    setting = FlagSetting.objects.get(flag=flag, environment=env)
    return flag_services.flag_set_enabled(
        actor=None, flag=flag, environment=env, enabled=not setting.enabled, deploy=False
    ).version


def deploy(flag: Flag, env: Environment, strategy: str = ALL_AT_ONCE) -> Deployment:
    return services.deployment_create(
        actor=None,
        environment=env,
        version=new_version(flag, env),
        strategy=services.strategy_by_name(strategy),
    )


def run_until(clocks: Clocks, d: Deployment, *states: str, step: float = 30, limit: float = 7200):
    """Move both clocks on by ``step`` until the deployment reaches one of ``states``."""
    waited = 0.0
    clocks.run()
    while reload(d).state not in states:
        assert waited < limit, f"#{d.pk} is {reload(d).state} after {limit} s"
        clocks.tick(step)
        waited += step
        clocks.run()
    return reload(d)


def backend_events(d: Deployment, kind: str) -> list[str]:
    return list(
        d.events.filter(type=EventType.BACKEND, message__startswith=kind).values_list(
            "message", flat=True
        )
    )


# --- the happy path --------------------------------------------------------------------------


def test_a_rollout_pushes_a_valid_document_and_mirrors_aws_progress_step_by_step(
    aws, clocks, app, beta, flag
):
    flag_services.attribute_save(
        actor=None, flag=flag, name="currency", type="string", enum=["BTC", "ETH"]
    )
    d = deploy(flag, beta, LINEAR_20)
    clocks.run()
    d = reload(d)
    assert (d.state, d.percentage) == (S.DEPLOYING, 20)
    record = AwsAppConfigDeployment.objects.get(deployment_id=d.pk)
    assert record.version_label == f"flagdash-d{d.pk}" and record.version_number == 1

    # What AWS stores is AWS's feature-flag document for this version, and it follows AWS's rules.
    stored = aws.fake.document(aws.application_id, aws.profile_id, 1)
    assert stored == render_document(documents.load(d.version.document))
    jsonschema.validate(stored, FEATURE_FLAGS_SCHEMA)
    assert stored["values"][flag.key]["enabled"] is True
    assert stored["flags"][flag.key]["attributes"]["currency"] == {
        "constraints": {"type": "string", "enum": ["BTC", "ETH"]}
    }

    seen = [(d.state, d.percentage)]
    for _ in range(5):
        clocks.tick(360)
        clocks.run()
        d = reload(d)
        seen.append((d.state, d.percentage))
    assert seen == [
        (S.DEPLOYING, 20),
        (S.DEPLOYING, 40),
        (S.DEPLOYING, 60),
        (S.DEPLOYING, 80),
        (S.DEPLOYING, 100),
        (S.BAKING, 100),
    ]
    d = run_until(clocks, d, S.COMPLETE, step=60)
    assert d.finished_at is not None
    beta.refresh_from_db()
    assert beta.live_version_id == d.version_id
    assert aws.fake.served_version(aws.application_id, aws.environment_id, aws.profile_id) == "1"
    # AWS's own event log is mirrored, each event once
    updates = backend_events(d, "AWS percentage updated")
    assert len(updates) == 5 and "100.00%" in updates[-1]
    assert len(backend_events(d, "AWS bake time started")) == 1
    assert len(backend_events(d, "AWS deployment completed")) == 1
    steps = list(d.events.filter(type=EventType.PERCENTAGE).values_list("percentage", flat=True))
    assert steps == [20, 40, 60, 80, 100]
    assert aws.fake.calls["StartDeployment"] == 1
    assert aws.fake.calls["CreateHostedConfigurationVersion"] == 1
    assert aws.fake.calls["CreateDeploymentStrategy"] == 0  # predefined: used by name


def test_the_environment_serves_what_was_deployed(aws, clocks, app, beta, flag):
    assert aws.backend().current(app.key, beta.key) is None
    d = run_until(clocks, deploy(flag, beta), S.COMPLETE, step=120)
    served = aws.backend().current(app.key, beta.key)
    assert served is not None
    entry = served["flags"][flag.key]
    assert entry["enabled"] is True and entry["name"] == flag.name
    assert entry["short_term"] is True  # a short-term flag …
    original = documents.load(d.version.document)["flags"][flag.key]
    assert entry["remove_by"] == original["remove_by"]  # … keeps its remove-by date


# --- rollbacks -------------------------------------------------------------------------------


def test_rolling_back_mid_rollout_stops_the_aws_deployment(aws, clocks, editor, app, beta, flag):
    d = deploy(flag, beta, LINEAR_20)
    clocks.run()
    clocks.tick(400)
    clocks.run()
    assert reload(d).percentage == 40
    services.deployment_rollback(actor=editor, deployment=reload(d), reason="errors in beta")
    clocks.run()
    d = reload(d)
    assert d.state == S.ROLLED_BACK and d.rollback_by_name == "editor"
    assert aws.deployment(1).state == "ROLLED_BACK"
    assert aws.fake.calls["StopDeployment"] == 1
    assert len(backend_events(d, "AWS rollback started")) == 1


def test_a_rollback_stops_an_aws_deployment_the_engine_never_recorded(
    aws, clocks, editor, app, beta, flag
):
    """A worker started the AWS deployment, then died before recording it: the rollback still
    finds it (by flagdash's own record) and stops it."""
    from flagdash.deployments import engine

    d = deploy(flag, beta, LINEAR_20)
    claim = engine._claim(d.pk, clocks.now)
    assert claim is not None
    AwsAppConfigBackend(beta.backend).start(engine.build_spec(claim.deployment), clocks.now)
    Deployment.objects.filter(pk=d.pk).update(lease_until=clocks.now)  # the worker died
    assert reload(d).backend_ref == "" and aws.deployment(1).state == "DEPLOYING"
    clocks.tick(1)
    services.deployment_rollback(actor=editor, deployment=reload(d), reason="stop it")
    clocks.run()
    assert reload(d).state == S.ROLLED_BACK
    assert aws.deployment(1).state == "ROLLED_BACK"
    assert aws.fake.calls["StartDeployment"] == 1 and aws.fake.calls["StopDeployment"] == 1


def test_a_rollback_before_aws_started_anything_calls_nothing(aws, clocks, editor, beta, flag):
    d = deploy(flag, beta, LINEAR_20)
    from flagdash.deployments import engine

    assert engine._claim(d.pk, clocks.now) is not None  # deploying, nothing sent to AWS yet
    Deployment.objects.filter(pk=d.pk).update(lease_until=clocks.now)
    clocks.tick(1)
    services.deployment_rollback(actor=editor, deployment=reload(d), reason="never mind")
    clocks.run()
    assert reload(d).state == S.ROLLED_BACK
    assert aws.fake.calls["StartDeployment"] == 0 and aws.fake.calls["StopDeployment"] == 0


def _completed_pair(aws, clocks, flag, env):
    """Two completed deployments: the base, then the one to roll back."""
    base = run_until(clocks, deploy(flag, env), S.COMPLETE, step=120)
    bad = run_until(clocks, deploy(flag, env), S.COMPLETE, step=120)
    assert aws.fake.served_version(aws.application_id, aws.environment_id, aws.profile_id) == "2"
    return base, bad


def test_rolling_back_a_completed_deployment_within_72_hours_reverts_it_in_aws(
    aws, clocks, editor, app, beta, flag
):
    base, bad = _completed_pair(aws, clocks, flag, beta)
    clocks.tick(71 * 3600)
    restore = services.deployment_rollback(actor=editor, deployment=bad, reason="wrong price")
    clocks.run()
    restore = reload(restore)
    assert restore.state == S.COMPLETE and restore.version_id == base.version_id
    assert restore.backend_ref.endswith("/2/revert")
    assert aws.deployment(2).state == "REVERTED"
    # AWS's native revert: no new hosted version, no new AWS deployment
    assert len(aws.fake.versions[(aws.application_id, aws.profile_id)]) == 2
    assert aws.fake.calls["StartDeployment"] == 2
    assert aws.fake.served_version(aws.application_id, aws.environment_id, aws.profile_id) == "1"
    assert len(backend_events(restore, "AWS revert completed")) == 1
    beta.refresh_from_db()
    assert beta.live_version_id == base.version_id


def test_beyond_72_hours_the_previous_version_is_deployed_again(
    aws, clocks, editor, app, beta, flag
):
    base, bad = _completed_pair(aws, clocks, flag, beta)
    clocks.tick(73 * 3600)
    restore = services.deployment_rollback(actor=editor, deployment=bad, reason="wrong price")
    restore = run_until(clocks, restore, S.COMPLETE, S.FAILED, step=5)
    assert restore.state == S.COMPLETE, restore.error
    assert aws.deployment(2).state == "COMPLETE"  # too old for AWS to revert
    third = aws.deployment(3)
    assert third.version == "3" and third.strategy["DeploymentDurationInMinutes"] == 0
    assert third.strategy["Name"].startswith("flagdash-flagdash.Immediate-")
    stored = aws.fake.document(aws.application_id, aws.profile_id, 3)
    assert stored == render_document(documents.load(base.version.document))
    assert aws.fake.served_version(aws.application_id, aws.environment_id, aws.profile_id) == "3"


def test_an_aws_alarm_rollback_is_recorded_as_automatic_with_the_alarm_named(
    aws, clocks, viewer, app, beta, flag
):
    aws.fake.rollback_seconds = 60  # AWS takes a moment to roll back
    d = deploy(flag, beta, LINEAR_20)
    clocks.run()
    clocks.tick(400)
    clocks.run()
    aws.fake.set_alarm(ALARM, "ALARM")
    clocks.tick(30)  # the next poll, at most 30 s later
    clocks.run()
    d = reload(d)
    assert d.state == S.ROLLING_BACK
    assert d.rollback_trigger == "alarm" and d.alarm_name == "checkout-5xx"
    d = run_until(clocks, d, S.ROLLED_BACK, step=10)
    assert d.rollback_trigger == "alarm" and d.alarm_name == "checkout-5xx"
    assert "CloudWatch alarm checkout-5xx fired" in d.rollback_reason
    assert aws.fake.calls["StopDeployment"] == 0  # AWS rolled back by itself
    started = backend_events(d, "AWS rollback started")
    assert len(started) == 1 and ALARM in started[0]
    rollback = d.events.get(type=EventType.ROLLED_BACK)
    assert rollback.triggered_by == "alarm checkout-5xx"

    client = Client()
    client.force_login(viewer)
    page = client.get(reverse("deployment_detail", args=[app.key, d.pk])).content.decode()
    assert "checkout-5xx" in page and "Rolled back" in page
    rollbacks = client.get(reverse("rollbacks", args=[app.key])).content.decode()
    assert "checkout-5xx" in rollbacks


def test_an_alarm_in_a_long_bake_is_noticed_within_30_seconds(aws, clocks, app, beta, flag):
    d = deploy(flag, beta, ALL_AT_ONCE)  # 10 min bake
    clocks.run()
    assert reload(d).state == S.BAKING
    clocks.tick(200)
    clocks.run()
    aws.fake.set_alarm(ALARM, "ALARM")
    fired = clocks.now
    d = run_until(clocks, d, S.ROLLED_BACK, step=1, limit=60)
    noticed = d.events.get(type=EventType.ROLLED_BACK).occurred_at
    assert (noticed - fired).total_seconds() <= 31


def test_stopping_in_the_aws_console_is_recorded_as_a_rollback_by_aws(aws, clocks, app, beta, flag):
    d = deploy(flag, beta, LINEAR_20)
    clocks.run()
    client = aws.backend().aws.client
    client.stop_deployment(
        ApplicationId=aws.application_id, EnvironmentId=aws.environment_id, DeploymentNumber=1
    )
    d = run_until(clocks, d, S.ROLLED_BACK, step=30)
    assert d.rollback_trigger == "backend"
    assert d.alarm_name == "stopped in AWS (outside flagdash)"


# --- strategies --------------------------------------------------------------------------------


def test_flagdash_strategies_are_created_once_in_aws_and_reused(aws, clocks, app, beta, flag):
    mine = make_strategy("Linear 25 % a minute", duration_minutes=4, growth_factor=25)
    first = services.deployment_create(
        actor=None, environment=beta, version=new_version(flag, beta), strategy=mine
    )
    run_until(clocks, first, S.COMPLETE, step=60)
    second = services.deployment_create(
        actor=None, environment=beta, version=new_version(flag, beta), strategy=mine
    )
    run_until(clocks, second, S.COMPLETE, step=60)
    assert aws.fake.calls["CreateDeploymentStrategy"] == 1
    one, two = aws.deployment(1), aws.deployment(2)
    assert one.strategy["Id"] == two.strategy["Id"]
    assert one.strategy["Name"].startswith("flagdash-Linear-25-a-minute-")
    assert (one.strategy["DeploymentDurationInMinutes"], one.strategy["GrowthFactor"]) == (4, 25)
    assert one.strategy["GrowthType"] == "LINEAR" and one.strategy["FinalBakeTimeInMinutes"] == 0
    steps = list(
        first.events.filter(type=EventType.PERCENTAGE).values_list("percentage", flat=True)
    )
    assert steps == [25, 50, 75, 100]


# --- someone else's deployment, drift ------------------------------------------------------------


def test_a_deployment_started_outside_flagdash_makes_flagdash_wait_then_proceed(
    aws, clocks, app, beta, flag
):
    run_until(clocks, deploy(flag, beta), S.COMPLETE, step=120)
    outside = aws.fake.start_deployment(
        aws.application_id, aws.environment_id, aws.profile_id, 1, LINEAR_20
    )  # an hour of rollout and bake
    d = deploy(flag, beta)
    clocks.run()
    d = reload(d)
    assert d.state == S.DEPLOYING and d.backend_ref == ""
    assert d.waiting_reason.startswith(f"Waiting for deployment {outside} in AWS")
    assert d.attempts == 0
    for _ in range(4):
        clocks.tick(15)
        clocks.run()
    assert reload(d).backend_ref == "" and reload(d).waiting_reason
    clocks.tick(3600 - 60)
    d = run_until(clocks, d, S.COMPLETE, step=60, limit=1200)
    assert d.events.filter(type=EventType.WAITING).count() == 1  # one event, not one per poll
    assert aws.deployment(outside).state == "COMPLETE"
    assert aws.deployment(outside + 1).version_label == f"flagdash-d{d.pk}"
    assert ("StartDeployment", 409) in aws.fake.log
    assert aws.fake.log.count(("StartDeployment", 201)) == 2  # the first deployment and this


def test_a_version_written_outside_flagdash_is_drift_and_is_overwritten_only_on_request(
    aws, clocks, editor, app, beta, flag
):
    first = run_until(clocks, deploy(flag, beta), S.COMPLETE, step=120)
    console = render_document(documents.load(first.version.document))
    console["values"][flag.key]["enabled"] = False
    aws.fake.create_version(aws.application_id, aws.profile_id, console, label="console-edit")
    other = make_flag(app, "promo-banner")
    d = deploy(other, beta)
    clocks.run()
    d = reload(d)
    assert d.state == S.FAILED and d.drifted
    assert "outside flagdash" in d.error and "version, 2" in d.error
    assert d.error_details[0].startswith("hosted configuration version 2 (label “console-edit”")
    assert f"{flag.key}: enabled changed" in d.error_details
    assert len(aws.fake.versions[(aws.application_id, aws.profile_id)]) == 2  # nothing written
    assert aws.fake.calls["StartDeployment"] == 1

    retry = services.deployment_retry(actor=editor, deployment=d, overwrite_drift=True)
    retry = run_until(clocks, retry, S.COMPLETE, S.FAILED, step=120)
    assert retry.state == S.COMPLETE, retry.error
    assert aws.fake.versions[(aws.application_id, aws.profile_id)][2]["VersionLabel"] == (
        f"flagdash-d{retry.pk}"
    )


def test_flagdash_environments_sharing_a_profile_are_not_drift_to_each_other(
    fake, clocks, app, beta, production, flag
):
    on_beta = connect(fake, beta)
    on_production = connect(
        fake, production, application_id=on_beta.application_id, profile_id=on_beta.profile_id
    )
    first = run_until(clocks, deploy(flag, beta), S.COMPLETE, S.FAILED, step=120)
    second = run_until(clocks, deploy(flag, production), S.COMPLETE, S.FAILED, step=120)
    third = run_until(clocks, deploy(flag, beta), S.COMPLETE, S.FAILED, step=120)
    assert [first.state, second.state, third.state] == [S.COMPLETE] * 3, second.error
    versions = fake.versions[(on_beta.application_id, on_beta.profile_id)]
    assert [v["VersionLabel"] for v in versions] == [
        f"flagdash-d{first.pk}",
        f"flagdash-d{second.pk}",
        f"flagdash-d{third.pk}",
    ]
    assert (
        fake.served_version(
            on_production.application_id, on_production.environment_id, on_production.profile_id
        )
        == "2"
    )


# --- transient and permanent errors ------------------------------------------------------------


def test_throttling_and_server_errors_are_retried_then_it_succeeds(aws, clocks, app, beta, flag):
    aws.fake.fail_next("StartDeployment", status=429, times=3)
    aws.fake.fail_next("GetDeployment", status=500, times=2)
    d = deploy(flag, beta, LINEAR_20)
    clocks.run()
    for _ in range(12):  # the engine's backoff: 1, 2, 4, then 8 s
        if reload(d).percentage == 20:
            break
        clocks.tick(2)
        clocks.run()
    d = reload(d)
    assert d.state == S.DEPLOYING and d.percentage == 20 and d.error == ""
    starts = [status for op, status in aws.fake.log if op == "StartDeployment"]
    # StartDeployment is sent once per attempt (botocore never repeats a call that starts
    # something); the engine retries it.
    assert starts == [429, 429, 429, 201]
    gets = [status for op, status in aws.fake.log if op == "GetDeployment"]
    assert gets[:3] == [500, 500, 200]  # a read: botocore's one retry, then the engine's
    assert len(aws.fake.deployments[(aws.application_id, aws.environment_id)]) == 1
    retries = list(d.events.filter(type=EventType.RETRY).values_list("message", flat=True))
    assert len(retries) == 4
    assert all("ThrottlingException" in r for r in retries[:3])
    assert "InternalServerException" in retries[3]
    assert d.attempts == 0


def test_access_denied_fails_with_awss_message_and_no_retry_storm(aws, clocks, app, beta, flag):
    aws.fake.deny("StartDeployment")
    d = deploy(flag, beta)
    clocks.run()
    for _ in range(5):
        clocks.tick(60)
        clocks.run()
    d = reload(d)
    assert d.state == S.FAILED
    assert "AWS denied appconfig:StartDeployment" in d.error
    assert "is not authorized to perform: appconfig:StartDeployment" in d.error
    assert "Allow the IAM action appconfig:StartDeployment" in d.error
    assert aws.fake.calls["StartDeployment"] == 1
    assert d.events.filter(type=EventType.RETRY).count() == 0


def test_a_missing_aws_environment_fails_naming_it(aws, clocks, app, beta, flag):
    aws.connection.options = {**aws.options, "environment_id": "gone123"}
    aws.connection.save()
    d = deploy(flag, beta)
    clocks.run()
    d = reload(d)
    assert d.state == S.FAILED
    assert "environment gone123" in d.error and "Environment gone123 not found" in d.error
    # found out before anything was written (what the environment serves is checked first)
    assert aws.fake.calls["CreateHostedConfigurationVersion"] == 0
    assert aws.fake.calls["StartDeployment"] == 0


@pytest.mark.parametrize(
    ("key", "secret", "code", "text"),
    [
        (
            "AKIAFLAGDASHTEST0001",
            "not-the-secret",
            "InvalidSignatureException",
            "signature we calculated does not match",
        ),
        (
            "AKIAUNKNOWNKEY000000",
            "whatever",
            "UnrecognizedClientException",
            "security token included in the request is invalid",
        ),
    ],
)
def test_bad_credentials_fail_with_awss_message_after_one_call(
    aws, clocks, monkeypatch, app, beta, flag, key, secret, code, text
):
    aws_credentials(monkeypatch, key=key, secret=secret)
    d = deploy(flag, beta)
    clocks.run()
    clocks.tick(60)
    clocks.run()
    d = reload(d)
    assert d.state == S.FAILED
    assert code in d.error and text in d.error and "AWS_SECRET_ACCESS_KEY" in d.error
    assert sum(aws.fake.calls.values()) == 1


def test_no_credentials_at_all_fail_clearly_without_calling_aws(
    aws, clocks, monkeypatch, app, beta, flag
):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    d = deploy(flag, beta)
    clocks.run()
    d = reload(d)
    assert d.state == S.FAILED and "no usable AWS credentials" in d.error
    assert sum(aws.fake.calls.values()) == 0


def test_awss_invalid_configuration_details_are_shown_per_flag_and_attribute(
    aws, clocks, viewer, app, beta, flag
):
    flag_services.attribute_save(actor=None, flag=flag, name="color", type="string")
    flag_services.attribute_save(actor=None, flag=flag, name="limit", type="number")
    setting = FlagSetting.objects.get(flag=flag, environment=beta)
    flag_services.flag_setting_update(
        actor=None,
        flag=flag,
        environment=beta,
        expected_revision=setting.revision,
        enabled=True,
        attribute_values={"color": "red", "limit": 99},
    )
    # Constraints tightened behind flagdash's back (flagdash checks values when they are edited;
    # AWS checks them again when it stores the version).
    FlagAttribute.objects.filter(flag=flag, name="color").update(pattern="^#[0-9a-f]{6}$")
    FlagAttribute.objects.filter(flag=flag, name="limit").update(minimum=1, maximum=10)
    version = flag_services.config_version_create(actor=None, environment=beta, message="x")
    d = services.deployment_create(actor=None, environment=beta, version=version)
    clocks.run()
    d = reload(d)
    assert d.state == S.FAILED
    assert "InvalidConfiguration" in d.error
    assert f"flag {flag.key}, attribute color: value does not match pattern ^#[0-9a-f]{{6}}$" in (
        " ".join(d.error_details)
    )
    assert any(
        line.startswith(f"flag {flag.key}, attribute limit: value is above the maximum 10")
        for line in d.error_details
    )
    client = Client()
    client.force_login(viewer)
    page = client.get(reverse("deployment_detail", args=[app.key, d.pk])).content.decode()
    assert "attribute color: value does not match pattern" in page
    assert aws.fake.calls["StartDeployment"] == 0


def test_a_document_breaking_awss_rules_is_refused_before_any_call(aws, clocks, app, beta):
    make_flag(
        app,
        "checkout-theme",
        kind="multivariant",
        value_type="string",
        variants=[{"name": "light", "value": "l"}, {"name": "dark", "value": "d"}],
        default_variant="light",
    )
    theme = Flag.objects.get(key="checkout-theme")
    flag_services.attribute_save(actor=None, flag=theme, name="variantValue", type="string")
    d = deploy(theme, beta)
    clocks.run()
    d = reload(d)
    assert d.state == S.FAILED and "nothing was sent to AWS" in d.error
    assert d.error_details == [
        "flag checkout-theme, attribute variantValue: the name is reserved for the variant's "
        "value on AWS; rename the attribute"
    ]
    assert sum(aws.fake.calls.values()) == 0


# --- idempotency ---------------------------------------------------------------------------------


def test_a_start_repeated_after_a_crash_writes_one_version_and_starts_one_deployment(
    aws, clocks, app, beta, flag
):
    from flagdash.deployments.engine import build_spec

    d = deploy(flag, beta, LINEAR_20)
    Deployment.objects.filter(pk=d.pk).update(state=S.DEPLOYING, started_at=clocks.now)
    spec = build_spec(reload(d))
    backend = AwsAppConfigBackend(aws.connection)
    first = backend.start(spec, clocks.now)
    record = AwsAppConfigDeployment.objects.get(deployment_id=d.pk)

    # The worker died after AWS stored the version but before flagdash wrote its number down …
    AwsAppConfigDeployment.objects.filter(pk=record.pk).update(
        version_number=None, aws_deployment_number=None
    )
    # … and after StartDeployment but before recording it: a new worker starts again.
    again = AwsAppConfigBackend(aws.connection).start(spec, clocks.now)
    assert again.backend_ref == first.backend_ref
    assert len(aws.fake.versions[(aws.application_id, aws.profile_id)]) == 1
    assert len(aws.fake.deployments[(aws.application_id, aws.environment_id)]) == 1
    assert aws.fake.calls["CreateHostedConfigurationVersion"] == 1
    assert aws.fake.calls["StartDeployment"] == 1
    # and a third time, with everything recorded, it asks AWS nothing new
    before = sum(aws.fake.calls.values())
    AwsAppConfigBackend(aws.connection).start(spec, clocks.now)
    assert sum(aws.fake.calls.values()) == before


def test_status_after_a_lost_answer_reports_each_aws_event_once(aws, clocks, app, beta, flag):
    from flagdash.deployments.engine import build_spec

    d = run_until(clocks, deploy(flag, beta, LINEAR_20), S.DEPLOYING)
    spec = build_spec(reload(d))
    backend = aws.backend()
    clocks.tick(400)
    first = backend.status(spec, clocks.now)
    again = backend.status(spec, clocks.now)  # the same cursor: the engine never recorded it
    assert [e.kind for e in first.events] == [e.kind for e in again.events]
    assert [e.kind for e in first.events] == ["AWS percentage updated"]
    from dataclasses import replace

    later = backend.status(replace(spec, backend_data=first.backend_data), clocks.now)
    assert later.events == []


def test_the_next_poll_follows_awss_steps_and_never_sleeps_through_an_alarm(
    aws, clocks, app, beta, flag
):
    from flagdash.deployments.engine import build_spec

    d = run_until(clocks, deploy(flag, beta, LINEAR_20), S.DEPLOYING)
    backend = aws.backend()
    spec = build_spec(reload(d))
    clocks.tick(350)  # 10 s before the 40 % step
    assert 10 <= backend.status(spec, clocks.now).next_check_in <= 13
    clocks.tick(100)
    assert backend.status(spec, clocks.now).next_check_in == 30  # an alarm could fire any time
    clocks.tick(1800)
    status = backend.status(spec, clocks.now)
    assert status.state == "baking" and status.next_check_in == 30


def test_the_document_survives_json_round_trips(aws, app, beta, flag):
    rendered = render_document(documents.working_document(beta))
    assert json.loads(json.dumps(rendered)) == rendered
    assert dt.date.fromisoformat(rendered["flags"][flag.key]["_deprecation"]["date"])


# --- deployments started outside flagdash, and what a revert brings back --------------------------


def _console_deploys(aws, clocks, hosted: int) -> int:
    """Someone deploys hosted version ``hosted`` in the AWS console, all at once; it completes."""
    number = aws.fake.start_deployment(
        aws.application_id, aws.environment_id, aws.profile_id, hosted, ALL_AT_ONCE
    )
    clocks.tick(601)
    assert aws.deployment(number).state == "COMPLETE"
    return number


def test_a_deployment_started_in_the_console_is_drift_until_overwritten(
    aws, clocks, editor, app, beta, flag
):
    """Someone redeploys an older flagdash version from the console: no version was written
    outside flagdash, but AWS no longer serves what flagdash recorded as live."""
    first = run_until(clocks, deploy(flag, beta), S.COMPLETE, step=120)
    second = run_until(clocks, deploy(flag, beta), S.COMPLETE, step=120)
    console = _console_deploys(aws, clocks, hosted=1)
    d = deploy(flag, beta)
    clocks.run()
    d = reload(d)
    assert d.state == S.FAILED and d.drifted
    assert f"AWS deployment {console}" in d.error and "outside flagdash" in d.error
    assert "serves hosted configuration version 1, not what flagdash deployed last (v" in d.error
    assert d.error_details[0].startswith(f"AWS deployment {console} (complete, started ")
    assert (
        f"serves hosted configuration version 1 (flagdash's v{first.version.number}, "
        f"deployment #{first.pk}); flagdash's live version here is v{second.version.number}"
    ) in d.error_details[0]
    assert f"{flag.key}: enabled changed" in d.error_details  # v1 differs from v2 in the flag
    assert len(aws.fake.versions[(aws.application_id, aws.profile_id)]) == 2  # nothing written
    assert aws.fake.calls["StartDeployment"] == 2

    retry = services.deployment_retry(actor=editor, deployment=d, overwrite_drift=True)
    retry = run_until(clocks, retry, S.COMPLETE, S.FAILED, step=120)
    assert retry.state == S.COMPLETE, retry.error
    served = aws.fake.served_version(aws.application_id, aws.environment_id, aws.profile_id)
    assert served == "3"


def test_a_console_deployment_of_what_flagdash_serves_is_not_drift(aws, clocks, app, beta, flag):
    run_until(clocks, deploy(flag, beta), S.COMPLETE, step=120)
    _console_deploys(aws, clocks, hosted=1)  # the same hosted version again
    d = run_until(clocks, deploy(flag, beta), S.COMPLETE, S.FAILED, step=120)
    assert d.state == S.COMPLETE, d.error


def test_a_revert_that_would_bring_back_a_console_deployment_deploys_the_version_instead(
    aws, clocks, editor, app, beta, flag
):
    """AWS's revert brings back what AWS served before, which is a console deployment here, not
    flagdash's previous version: flagdash deploys its previous version instead of reverting."""
    base = run_until(clocks, deploy(flag, beta), S.COMPLETE, step=120)
    console_doc = render_document(documents.load(base.version.document))
    console_doc["values"][flag.key]["enabled"] = not console_doc["values"][flag.key]["enabled"]
    hosted = aws.fake.create_version(aws.application_id, aws.profile_id, console_doc, "console")
    _console_deploys(aws, clocks, hosted=hosted)
    refused = deploy(flag, beta)
    clocks.run()
    refused = reload(refused)
    assert refused.drifted
    bad = services.deployment_retry(actor=editor, deployment=refused, overwrite_drift=True)
    bad = run_until(clocks, bad, S.COMPLETE, S.FAILED, step=120)
    assert bad.state == S.COMPLETE, bad.error
    bad_number = int(bad.backend_ref.rsplit("/", 1)[1])
    assert bad.previous_version_id == base.version_id

    restore = services.deployment_rollback(actor=editor, deployment=bad, reason="wrong price")
    restore = run_until(clocks, restore, S.COMPLETE, S.FAILED, step=5)
    assert restore.state == S.COMPLETE, restore.error
    assert restore.version_id == base.version_id
    assert not restore.backend_ref.endswith("/revert")
    assert aws.deployment(bad_number).state == "COMPLETE"  # not reverted to the console's
    served = aws.fake.served_version(aws.application_id, aws.environment_id, aws.profile_id)
    assert served == str(bad_number + 1)
    stored = aws.fake.document(aws.application_id, aws.profile_id, int(served))
    assert stored == render_document(documents.load(base.version.document))


def test_a_revert_after_a_rolled_back_deployment_deploys_the_version_instead(
    aws, clocks, editor, app, beta, flag
):
    """The AWS deployment before the one to revert was rolled back: what AWS would bring back
    is not certain, so flagdash deploys its previous version."""
    base = run_until(clocks, deploy(flag, beta), S.COMPLETE, step=120)
    stopped = deploy(flag, beta, LINEAR_20)
    clocks.run()
    services.deployment_rollback(actor=editor, deployment=reload(stopped), reason="no")
    clocks.run()
    assert aws.deployment(2).state == "ROLLED_BACK"
    bad = run_until(clocks, deploy(flag, beta), S.COMPLETE, step=120)
    restore = services.deployment_rollback(actor=editor, deployment=bad, reason="undo")
    restore = run_until(clocks, restore, S.COMPLETE, S.FAILED, step=5)
    assert restore.state == S.COMPLETE, restore.error
    assert not restore.backend_ref.endswith("/revert")
    assert aws.deployment(3).state == "COMPLETE"
    stored = aws.fake.document(aws.application_id, aws.profile_id, 4)
    assert stored == render_document(documents.load(base.version.document))


# --- stopping while AWS bakes -----------------------------------------------------------------


def test_rolling_back_while_aws_bakes_stops_it_with_allow_revert(
    aws, clocks, editor, app, beta, flag
):
    """AWS stops only a DEPLOYING deployment without Allow-Revert; a baking one needs it."""
    run_until(clocks, deploy(flag, beta), S.COMPLETE, step=120)
    d = deploy(flag, beta, ALL_AT_ONCE)  # 100 % at once, then a 10-minute bake
    clocks.run()
    assert reload(d).state == S.BAKING and aws.deployment(2).state == "BAKING"
    services.deployment_rollback(actor=editor, deployment=reload(d), reason="errors")
    clocks.run()
    d = reload(d)
    assert d.state == S.ROLLED_BACK, d.error
    assert aws.deployment(2).state == "ROLLED_BACK"
    assert [s for op, s in aws.fake.log if op == "StopDeployment"] == [202]
    served = aws.fake.served_version(aws.application_id, aws.environment_id, aws.profile_id)
    assert served == "1"


def test_a_stop_refused_because_aws_moved_on_is_decided_again(
    aws, clocks, editor, monkeypatch, app, beta, flag
):
    """flagdash reads DEPLOYING, AWS starts baking before StopDeployment arrives and refuses it
    without Allow-Revert: flagdash reads the state again and stops the baking deployment."""
    d = deploy(flag, beta, LINEAR_20)
    clocks.run()
    clocks.tick(30 * 60 - 5)  # 100 %, five seconds before the bake
    clocks.run()
    assert aws.deployment(1).state == "DEPLOYING"
    real_get = AwsAppConfigBackend._get
    moved = []

    def get_then_move_on(self, number):
        found = real_get(self, number)
        if not moved:
            moved.append(found["State"])
            aws.fake.clock.advance(10)  # AWS moves on to its bake meanwhile
        return found

    monkeypatch.setattr(AwsAppConfigBackend, "_get", get_then_move_on)
    services.deployment_rollback(actor=editor, deployment=reload(d), reason="stop")
    clocks.run()
    d = reload(d)
    assert moved == ["DEPLOYING"]
    assert d.state == S.ROLLED_BACK, d.error
    assert aws.deployment(1).state == "ROLLED_BACK"
    assert [s for op, s in aws.fake.log if op == "StopDeployment"] == [400, 202]


def test_a_rollback_of_a_deployment_aws_completed_meanwhile_reverts_it(
    aws, clocks, editor, monkeypatch, app, beta, flag
):
    """flagdash still thinks the deployment bakes when the rollback is asked for; AWS completed
    it meanwhile: AWS's revert (it is the latest, and the one before is flagdash's previous
    version) brings the previous version back."""
    run_until(clocks, deploy(flag, beta), S.COMPLETE, step=120)
    d = deploy(flag, beta, ALL_AT_ONCE)
    clocks.run()
    assert reload(d).state == S.BAKING
    aws.fake.clock.advance(601)  # AWS completes; flagdash has not polled since
    assert aws.deployment(2).state == "COMPLETE"
    services.deployment_rollback(actor=editor, deployment=reload(d), reason="errors")
    clocks.run()
    d = reload(d)
    assert d.state == S.ROLLED_BACK, d.error
    assert aws.deployment(2).state == "REVERTED"
    served = aws.fake.served_version(aws.application_id, aws.environment_id, aws.profile_id)
    assert served == "1"


def test_start_and_stop_use_the_same_revert_window():
    import datetime as dt

    from flagdash.backends.aws_appconfig import REVERT_MARGIN, REVERT_WINDOW, _revertible

    now = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    assert _revertible(now - (REVERT_WINDOW - REVERT_MARGIN), now)
    assert not _revertible(now - (REVERT_WINDOW - REVERT_MARGIN) - dt.timedelta(seconds=1), now)
    assert not _revertible(None, now)


def test_stopping_a_deployment_completed_near_the_end_of_the_window_is_refused_clearly(
    aws, clocks, editor, monkeypatch, app, beta, flag
):
    """A rollout AWS completed 71 h 58 min ago (flagdash missed it): within AWS's 72 hours but
    past flagdash's margin, so flagdash does not race the window's last minutes."""
    from flagdash.deployments import engine

    run_until(clocks, deploy(flag, beta), S.COMPLETE, step=120)
    d = deploy(flag, beta, ALL_AT_ONCE)
    clocks.run()
    spec = engine.build_spec(reload(d))
    aws.fake.clock.advance(600 + 72 * 3600 - 120)
    from datetime import timedelta

    with pytest.raises(PermanentBackendError, match="completed before flagdash could stop it"):
        aws.backend().stop(spec, clocks.now + timedelta(seconds=600 + 72 * 3600 - 120))
    assert aws.deployment(2).state == "COMPLETE"
    assert aws.fake.calls["StopDeployment"] == 0


def test_awss_retry_after_on_throttling_sets_the_next_attempt(aws, clocks, app, beta, flag):
    d = deploy(flag, beta, LINEAR_20)
    clocks.run()
    assert reload(d).backend_ref
    aws.fake.fail_next("GetDeployment", status=429, times=2, retry_after=20)
    clocks.tick(30)
    clocks.run()
    d = reload(d)
    retry = d.events.get(type=EventType.RETRY)
    assert "ThrottlingException" in retry.message and "AWS asked to wait 20 s" in retry.message
    assert (
        15 <= (d.next_step_at - clocks.now).total_seconds() <= 20
    )  # not the engine's 1 s (slack: the clock is real time)
    clocks.tick(20)
    clocks.run()
    d = reload(d)
    assert d.state == S.DEPLOYING and d.attempts == 0 and d.percentage == 20

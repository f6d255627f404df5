"""AWS carried out a request, but its answer never reached flagdash (a reset connection, a read
timeout). botocore's standard retry mode would send the request again — a second hosted version
with the deployment's label, a second deployment strategy, a second AWS deployment — so flagdash
sends every call that creates something once and looks for what it did before asking again.

The fake carries each request out and then loses the answer (``lose_answer``), through boto3
unchanged."""

from __future__ import annotations

import pytest

from flagdash.backends import aws_appconfig
from flagdash.backends.aws_appconfig import AwsAppConfigBackend
from flagdash.backends.models import AwsAppConfigDeployment
from flagdash.deployments import engine, services
from flagdash.deployments.models import Deployment, DeploymentState, EventType
from tests.backends.test_aws_appconfig import ALL_AT_ONCE, deploy, new_version, run_until
from tests.deployments.conftest import reload
from tests.factories import make_strategy

pytestmark = pytest.mark.django_db

S = DeploymentState


def versions(aws) -> list[dict]:
    return aws.fake.versions.get((aws.application_id, aws.profile_id), [])


def aws_deployments(aws) -> list:
    return aws.fake.deployments.get((aws.application_id, aws.environment_id), [])


def custom_strategies(aws) -> list[dict]:
    return [s for s in aws.fake.strategies.values() if not s["Id"].startswith("AppConfig.")]


@pytest.fixture
def instant(db):
    """A flagdash strategy that AWS completes at once (no duration, no bake): a repeated
    StartDeployment would not even meet a ConflictException."""
    return make_strategy("instant", duration_minutes=0, final_bake_minutes=0)


def deploy_with(flag, env, strategy) -> Deployment:
    return services.deployment_create(
        actor=None, environment=env, version=new_version(flag, env), strategy=strategy
    )


@pytest.mark.parametrize("how", ["reset", "timeout"])
def test_a_lost_create_hosted_configuration_version_answer_writes_one_version(
    aws, clocks, monkeypatch, app, beta, flag, how
):
    monkeypatch.setattr(aws_appconfig, "READ_TIMEOUT_SECONDS", 0.5)
    first = run_until(clocks, deploy(flag, beta), S.COMPLETE, S.FAILED, step=120)
    assert first.state == S.COMPLETE, first.error
    aws.fake.lose_answer("CreateHostedConfigurationVersion", how=how, seconds=1.0)
    second = run_until(clocks, deploy(flag, beta), S.COMPLETE, S.FAILED, step=120)
    assert second.state == S.COMPLETE, second.error
    assert aws.fake.lost == ["CreateHostedConfigurationVersion"]
    assert aws.fake.calls["CreateHostedConfigurationVersion"] == 2  # one per deployment
    assert [v["VersionLabel"] for v in versions(aws)] == [
        f"flagdash-d{first.pk}",
        f"flagdash-d{second.pk}",
    ]
    record = AwsAppConfigDeployment.objects.get(deployment_id=second.pk)
    assert record.version_number == 2 and aws.deployment(2).version == "2"
    # the next deployment finds only flagdash's versions: no drift
    third = run_until(clocks, deploy(flag, beta), S.COMPLETE, S.FAILED, step=120)
    assert third.state == S.COMPLETE, third.error
    assert len(versions(aws)) == 3


def test_a_lost_start_deployment_answer_starts_one_aws_deployment(
    aws, clocks, app, beta, flag, instant
):
    aws.fake.lose_answer("StartDeployment")
    d = run_until(clocks, deploy_with(flag, beta, instant), S.COMPLETE, S.FAILED, step=5)
    assert d.state == S.COMPLETE, d.error
    assert aws.fake.lost == ["StartDeployment"]
    assert aws.fake.calls["StartDeployment"] == 1
    assert len(aws_deployments(aws)) == 1
    assert d.backend_ref.endswith("/1")
    assert AwsAppConfigDeployment.objects.get(deployment_id=d.pk).aws_deployment_number == 1
    # the next deployment is not drift, and it is AWS deployment 2
    nxt = run_until(clocks, deploy_with(flag, beta, instant), S.COMPLETE, S.FAILED, step=5)
    assert nxt.state == S.COMPLETE, nxt.error
    assert len(aws_deployments(aws)) == 2 and aws.fake.calls["StartDeployment"] == 2


def test_a_lost_create_deployment_strategy_answer_creates_one_strategy(
    aws, clocks, app, beta, flag
):
    mine = make_strategy("Linear 25 % a minute", duration_minutes=4, growth_factor=25)
    aws.fake.lose_answer("CreateDeploymentStrategy")
    first = run_until(clocks, deploy_with(flag, beta, mine), S.COMPLETE, S.FAILED, step=60)
    assert first.state == S.COMPLETE, first.error
    assert aws.fake.lost == ["CreateDeploymentStrategy"]
    assert aws.fake.calls["CreateDeploymentStrategy"] == 1
    assert len(custom_strategies(aws)) == 1
    second = run_until(clocks, deploy_with(flag, beta, mine), S.COMPLETE, S.FAILED, step=60)
    assert second.state == S.COMPLETE, second.error
    assert aws.fake.calls["CreateDeploymentStrategy"] == 1  # found and reused
    assert aws.deployment(1).strategy["Id"] == aws.deployment(2).strategy["Id"]


def test_lost_answers_everywhere_in_one_start_still_create_each_thing_once(
    aws, clocks, app, beta, flag, instant
):
    for operation in (
        "CreateHostedConfigurationVersion",
        "CreateDeploymentStrategy",
        "StartDeployment",
    ):
        aws.fake.lose_answer(operation)
    d = run_until(clocks, deploy_with(flag, beta, instant), S.COMPLETE, S.FAILED, step=5)
    assert d.state == S.COMPLETE, d.error
    assert len(aws.fake.lost) == 3
    assert len(versions(aws)) == 1 and len(custom_strategies(aws)) == 1
    assert len(aws_deployments(aws)) == 1


def test_a_second_version_with_a_deployments_label_is_not_drift(aws, clocks, app, beta, flag):
    """AWS already holds two versions labelled for one flagdash deployment (a request repeated
    by an earlier flagdash): both are flagdash's, and the next deployment goes ahead."""
    first = run_until(clocks, deploy(flag, beta), S.COMPLETE, step=120)
    stored = aws.fake.document(aws.application_id, aws.profile_id, 1)
    aws.fake.create_version(
        aws.application_id, aws.profile_id, stored, label=f"flagdash-d{first.pk}"
    )
    d = run_until(clocks, deploy(flag, beta), S.COMPLETE, S.FAILED, step=120)
    assert d.state == S.COMPLETE, d.error
    assert not d.drifted


def test_a_version_a_late_request_stored_under_the_deployments_label_is_adopted(
    aws, clocks, app, beta, flag
):
    """The deployment's own label on the profile's latest version: an earlier request of this
    deployment landed after all. It is this deployment's version; nothing is written again."""
    d = deploy(flag, beta)
    claim = engine._claim(d.pk, clocks.now)
    assert claim is not None
    spec = engine.build_spec(claim.deployment)
    rendered = aws_appconfig.render_document(spec.document)
    late = aws.fake.create_version(
        aws.application_id, aws.profile_id, rendered, label=f"flagdash-d{d.pk}"
    )
    AwsAppConfigBackend(aws.connection).start(spec, clocks.now)
    assert aws.fake.calls["CreateHostedConfigurationVersion"] == 0
    assert AwsAppConfigDeployment.objects.get(deployment_id=d.pk).version_number == late
    assert aws.deployment(1).version == str(late)
    Deployment.objects.filter(pk=d.pk).update(lease_until=clocks.now)
    assert reload(d).state == S.DEPLOYING


def test_creates_are_never_repeated_by_botocore_but_reads_are(aws, clocks, app, beta, flag):
    """A 500 on a create reaches flagdash after one request (AWS may have carried it out);
    a read is retried once by botocore before the engine sees it."""
    aws.fake.fail_next("CreateHostedConfigurationVersion", status=500)
    aws.fake.fail_next("ListHostedConfigurationVersions", status=500)
    d = deploy(flag, beta, ALL_AT_ONCE)
    clocks.run()
    log = aws.fake.log
    # the engine's first attempt: one request, answered 500, and a retry scheduled
    assert [s for op, s in log if op == "CreateHostedConfigurationVersion"] == [500]
    assert reload(d).events.filter(type=EventType.RETRY).count() == 1
    lists = [status for op, status in log if op == "ListHostedConfigurationVersions"]
    assert lists[:2] == [500, 200]  # botocore's own retry of the read
    d = run_until(clocks, d, S.COMPLETE, S.FAILED, step=5)
    assert d.state == S.COMPLETE, d.error
    assert len(versions(aws)) == 1

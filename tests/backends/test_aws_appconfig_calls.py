"""How many AWS calls one AppConfig.Linear20PercentEvery6Minutes rollout (30 min deploying, then
a 30-minute bake) costs flagdash, with the engine driven on a clock that moves with the fake's:
each step is taken exactly when the engine scheduled it.

    .venv/bin/pytest -s -p no:cacheprovider tests/backends/test_aws_appconfig_calls.py
"""

from __future__ import annotations

import pytest

from flagdash.deployments import services
from flagdash.deployments.models import DeploymentState
from tests.backends.test_aws_appconfig import LINEAR_20, new_version
from tests.deployments.conftest import reload

pytestmark = pytest.mark.django_db


def rollout_calls(aws, clocks, flag, env) -> tuple[dict[str, int], int]:
    aws.fake.reset_calls()
    d = services.deployment_create(
        actor=None,
        environment=env,
        version=new_version(flag, env),
        strategy=services.strategy_by_name(LINEAR_20),
    )
    clocks.run()
    advances = 1
    while True:
        d = reload(d)
        if d.next_step_at is None:
            break
        clocks.tick(max(0.0, (d.next_step_at - clocks.now).total_seconds()))
        clocks.run()
        advances += 1
    assert d.state == DeploymentState.COMPLETE, d.error
    assert (d.finished_at - d.started_at).total_seconds() <= 3600 + 31
    return dict(sorted(aws.fake.calls.items())), advances


def test_aws_calls_for_one_linear20_rollout_with_production_poll_settings(
    aws, clocks, settings, app, beta, flag
):
    poll_max = 30
    settings.DEPLOYMENT_POLL_MIN_SECONDS = 1
    settings.DEPLOYMENT_POLL_MAX_SECONDS = poll_max
    calls, advances = rollout_calls(aws, clocks, flag, beta)
    print(
        f"\nAppConfig.Linear20PercentEvery6Minutes, DEPLOYMENT_POLL_MIN/MAX_SECONDS=1/{poll_max}:"
        f" {sum(calls.values())} AWS calls in {advances} engine steps: {calls}"
    )
    assert calls["ListHostedConfigurationVersions"] == 1  # the drift check: versions …
    assert calls["ListDeployments"] == 1  # … and what the environment serves
    assert calls["CreateHostedConfigurationVersion"] == 1
    assert calls["StartDeployment"] == 1
    # one poll every 30 s for an hour (alarms must show within 30 s), plus the step times
    assert 118 <= calls["GetDeployment"] <= 124
    assert set(calls) == {
        "ListDeployments",
        "ListHostedConfigurationVersions",
        "CreateHostedConfigurationVersion",
        "StartDeployment",
        "GetDeployment",
    }

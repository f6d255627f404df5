"""Fixtures for OFREP tests: environments that serve deployed versions, and their API keys."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from flagdash.deployments import engine
from flagdash.deployments import services as deployment_services
from flagdash.evaluation import services as key_services
from flagdash.evaluation.counters import tally
from flagdash.evaluation.snapshot import holder
from flagdash.flags import services
from flagdash.flags.models import Environment, Flag, FlagSetting
from tests.factories import make_flag


@pytest.fixture(autouse=True)
def _fresh_evaluation_state(settings):
    """Each test starts from an empty snapshot and tally; no background push thread."""
    settings.OFREP_COUNTS_PUSH_SECONDS = 0
    settings.OFREP_REFRESH_SECONDS = 0
    holder.reset()
    tally.take()
    yield
    holder.reset()
    tally.take()


def set_values(flag: Flag, environment: Environment, **changes: Any) -> FlagSetting:
    setting = FlagSetting.objects.get(flag=flag, environment=environment)
    return services.flag_setting_update(
        actor=None,
        flag=flag,
        environment=environment,
        expected_revision=setting.revision,
        **changes,
    )


def deploy(environment: Environment, message: str = "test", strategy: str = "flagdash.Immediate"):
    """Save the working state as a version and run its deployment to the end (or first step)."""
    version = services.config_version_create(actor=None, environment=environment, message=message)
    deployment = deployment_services.deployment_create(
        actor=None,
        environment=environment,
        version=version,
        strategy=deployment_services.strategy_by_name(strategy),
    )
    assert deployment is not None
    with engine.without_nudges():
        engine.deployment_advance(deployment.pk)
    holder.reset()  # non-transactional tests never run on_commit: forget the old snapshot
    return deployment


def new_key(environment: Environment, name: str = "app") -> str:
    _, plaintext = key_services.api_key_create(actor=None, environment=environment, name=name)
    holder.reset()
    return plaintext


@pytest.fixture
def served(app, beta, production):
    """checkout with flags of every type, deployed to beta (production: nothing deployed)."""
    flags = {
        "bool": make_flag(app, "new-checkout"),
        "string": make_flag(
            app,
            "button-color",
            kind="multivariant",
            value_type="string",
            variants=[{"name": "blue", "value": "#00f"}, {"name": "green", "value": "#0f0"}],
            default_variant="blue",
        ),
        "float": make_flag(
            app,
            "discount-rate",
            kind="multivariant",
            value_type="float",
            variants=[{"name": "none", "value": 0}, {"name": "some", "value": 1}],
            default_variant="some",
        ),
        "integer": make_flag(
            app,
            "max-items",
            kind="multivariant",
            value_type="integer",
            variants=[{"name": "few", "value": 10}, {"name": "many", "value": 250}],
            default_variant="many",
        ),
        "object": make_flag(
            app,
            "banner",
            kind="multivariant",
            value_type="object",
            variants=[{"name": "sale", "value": {"text": "Sale", "percent": 20}}],
            default_variant="sale",
        ),
        "off": make_flag(app, "old-flow"),
    }
    for name, flag in flags.items():
        if name != "off":
            set_values(flag, beta, enabled=True)
    set_values(
        flags["bool"],
        beta,
        rules=[
            {
                "name": "staff",
                "conditions": [
                    {"attribute": "email", "operator": "ends_with", "value": "@example.com"}
                ],
                "serve": {"variant": "off"},
            }
        ],
    )
    set_values(
        flags["string"],
        beta,
        rules=[
            {
                "conditions": [{"attribute": "country", "operator": "in", "value": ["US", "CA"]}],
                "serve": {
                    "split": [
                        {"variant": "blue", "weight": 50},
                        {"variant": "green", "weight": 50},
                    ]
                },
            }
        ],
    )
    deploy(beta)
    return flags


@pytest.fixture
def beta_key(served, beta):
    return new_key(beta)


@pytest.fixture
def api():
    return Client()


def post(client: Client, path: str, body: Any = None, key: str | None = None, **headers: Any):
    import json

    data = body if isinstance(body, str | bytes) else json.dumps(body if body is not None else {})
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return client.post(path, data=data, content_type="application/json", headers=headers)

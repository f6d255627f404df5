"""Fixtures for the Azure App Configuration backend: the wire-level fake on a free port, its
connection string in a process environment variable, and an environment deploying to it."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.utils import timezone

from flagdash.backends.models import BackendConnection, BackendKind
from flagdash.deployments import services as deployment_services
from flagdash.deployments.models import Deployment, DeploymentStrategy
from flagdash.flags import services as flag_services
from flagdash.flags.models import ConfigVersion, Environment, Flag, FlagSetting
from tests.deployments.conftest import Clock
from tests.factories import make_flag, make_strategy
from tests.fakes.azure_appconfig import FakeAppConfig, running

CONNECTION_ENV = "FLAGDASH_TEST_AZURE_APPCONFIG"
LABEL = "staging"


class FrozenClock(Clock):
    """The engine's ``now``, standing still unless the test moves it (an hour ahead of real
    time, so whatever the services create with the real time is due)."""

    def __init__(self) -> None:
        super().__init__()
        self.start = timezone.now() + dt.timedelta(hours=1)

    @property
    def now(self) -> dt.datetime:
        return self.start + self.offset


@pytest.fixture
def clock():
    return FrozenClock()


@pytest.fixture
def azure(monkeypatch):
    """The fake store (3 settings per page, so listing follows @nextLink), its connection string
    in $FLAGDASH_TEST_AZURE_APPCONFIG."""
    with running(page_size=3) as fake:
        monkeypatch.setenv(CONNECTION_ENV, fake.connection_string())
        yield fake


def azure_options(fake: FakeAppConfig, **overrides: Any) -> dict[str, Any]:
    """The options the settings UI writes (endpoint, label, connection_string_env)."""
    return {
        "endpoint": fake.endpoint,
        "label": LABEL,
        "connection_string_env": CONNECTION_ENV,
        **overrides,
    }


@pytest.fixture
def azure_connection(db, azure):
    return BackendConnection.objects.create(
        name="Azure (fake)", kind=BackendKind.AZURE_APPCONFIG, options=azure_options(azure)
    )


@pytest.fixture
def staging(app, azure_connection) -> Environment:
    """checkout/staging, deploying to the fake with label 'staging'."""
    return flag_services.environment_create(
        actor=None, application=app, key="staging", name="Staging", backend=azure_connection
    )


@pytest.fixture
def promo(app, staging) -> Flag:
    return make_flag(app, "promo-banner", name="Promo banner", description="Show the banner")


@pytest.fixture
def checkout_button(app, staging) -> Flag:
    """A multi-variant flag: the checkout button's colour."""
    return make_flag(
        app,
        "checkout-button",
        name="Checkout button",
        kind="multivariant",
        value_type="string",
        variants=[
            {"name": "blue", "value": "#0000ff"},
            {"name": "green", "value": "#00ff00"},
        ],
        default_variant="blue",
    )


@pytest.fixture
def linear(db) -> DeploymentStrategy:
    """25 % every minute over 4 minutes, then a 2-minute bake."""
    return make_strategy("azure-linear", duration_minutes=4, growth_factor=25, final_bake_minutes=2)


@pytest.fixture
def at_once(db) -> DeploymentStrategy:
    return DeploymentStrategy.objects.get(name="flagdash.Immediate")


def setting(flag: Flag, env: Environment) -> FlagSetting:
    return FlagSetting.objects.get(flag=flag, environment=env)


def save_version(env: Environment, message: str = "test") -> ConfigVersion:
    return flag_services.config_version_create(actor=None, environment=env, message=message)


def set_flag(flag: Flag, env: Environment, **changes: Any) -> FlagSetting:
    current = setting(flag, env)
    return flag_services.flag_setting_update(
        actor=None, flag=flag, environment=env, expected_revision=current.revision, **changes
    )


def deploy(env: Environment, strategy: DeploymentStrategy, message: str = "test") -> Deployment:
    """Save the working state as a version and deploy it with ``strategy``."""
    version = save_version(env, message)
    return deployment_services.deployment_create(
        actor=None, environment=env, version=version, strategy=strategy
    )


def flag_values(fake: FakeAppConfig, label: str | None = LABEL) -> dict[str, dict[str, Any]]:
    return fake.feature_flags(label)


def targeting_percentage(value: dict[str, Any]) -> int | None:
    for client_filter in value["conditions"]["client_filters"]:
        if client_filter["name"] == "Microsoft.Targeting":
            return int(client_filter["parameters"]["Audience"]["DefaultRolloutPercentage"])
    return None


def feature_management(fake: FakeAppConfig, label: str | None = LABEL) -> dict[str, Any]:
    """The configuration Microsoft's FeatureManager reads, built from what the fake holds."""
    return {
        "feature_management": {
            "feature_flags": [json.loads(json.dumps(v)) for v in flag_values(fake, label).values()]
        }
    }

"""Fixtures for the AWS AppConfig backend: the wire-level fake, credentials in the process
environment (inherited by worker subprocesses), and flagdash environments pointing at it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from flagdash.backends.aws_appconfig import AwsAppConfigBackend
from flagdash.backends.models import BackendConnection, BackendKind
from flagdash.flags.models import Environment
from tests.deployments.conftest import Clock, run_due
from tests.fakes.aws_appconfig import ACCESS_KEY, SECRET_KEY, AppConfigFake, FakeClock

REGION = "eu-west-1"
ALARM = f"arn:aws:cloudwatch:{REGION}:123456789012:alarm:checkout-5xx"


def aws_credentials(
    monkeypatch: pytest.MonkeyPatch, key: str = ACCESS_KEY, secret: str = SECRET_KEY
) -> None:
    """The test's AWS credentials in the environment (boto3's default chain), nothing else."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/flagdash-test/config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/flagdash-test/credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never wait for an instance role
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)


@pytest.fixture
def fake(monkeypatch):
    """The AppConfig fake on a free port; its clock runs with real time and moves on ``tick``."""
    aws_credentials(monkeypatch)
    with AppConfigFake(region=REGION, clock=FakeClock(speed=1.0)) as service:
        yield service


@dataclass
class AwsSetup:
    fake: AppConfigFake
    application_id: str
    profile_id: str
    environment_id: str
    connection: BackendConnection

    @property
    def options(self) -> dict[str, str]:
        return dict(self.connection.options)

    def backend(self) -> AwsAppConfigBackend:
        return AwsAppConfigBackend(self.connection)

    def deployment(self, number: int):
        return self.fake.deployment(self.application_id, self.environment_id, number)


def connect(
    fake: AppConfigFake,
    environment: Environment,
    *,
    application_id: str | None = None,
    profile_id: str | None = None,
    monitors: list[str] | None = None,
) -> AwsSetup:
    """AppConfig resources in the fake and a connection for ``environment`` pointing at them."""
    app_id = application_id or fake.create_application("checkout")
    profile = profile_id or fake.create_profile(app_id, "flags")
    env_id = fake.create_environment(app_id, environment.key, monitors=monitors)
    connection = BackendConnection.objects.create(
        name=f"AWS {environment.application.key}/{environment.key}",
        kind=BackendKind.AWS_APPCONFIG,
        options={
            "region": REGION,
            "application_id": app_id,
            "configuration_profile_id": profile,
            "environment_id": env_id,
            "endpoint_url": fake.url,
        },
    )
    Environment.objects.filter(pk=environment.pk).update(backend=connection)
    environment.refresh_from_db()
    return AwsSetup(fake, app_id, profile, env_id, connection)


@pytest.fixture
def aws(fake, beta) -> AwsSetup:
    """The beta environment deploys to an AppConfig environment (with one alarm monitor)."""
    return connect(fake, beta, monitors=[ALARM])


class Clocks:
    """The engine's clock and the fake's, moved together."""

    def __init__(self, fake: AppConfigFake) -> None:
        self.engine = Clock()
        self.fake = fake

    @property
    def now(self) -> dt.datetime:
        return self.engine.now

    def tick(self, seconds: float) -> None:
        self.engine.tick(seconds)
        self.fake.clock.advance(seconds)

    def run(self, rounds: int = 10) -> list[str]:
        return run_due(self.engine, rounds)


@pytest.fixture
def clocks(fake) -> Clocks:
    return Clocks(fake)


@pytest.fixture
def flag(app, envs):
    """A short-term flag with a remove-by date (AWS: ``_deprecation``)."""
    from tests.factories import make_flag

    return make_flag(
        app,
        "allow-bitcoin-at-checkout",
        name="Allow bitcoin at checkout",
        short_term=True,
        remove_by=dt.date(2027, 3, 31),
    )

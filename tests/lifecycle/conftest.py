"""Helpers for the lifecycle tests: deployments at a chosen time, values, scans."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from flagdash.deployments import engine
from flagdash.deployments import services as deployment_services
from flagdash.deployments.models import Deployment
from flagdash.evaluation.snapshot import holder
from flagdash.flags import services
from flagdash.flags.models import Application, Environment, Flag, FlagSetting
from flagdash.lifecycle import scanner
from flagdash.lifecycle import services as lifecycle_services
from flagdash.lifecycle.models import ScanSource

# The cloud fakes' fixtures (tests/fakes/), for archive and restore against AWS and Azure.
from tests.backends.azure.conftest import azure, azure_connection, clock, staging  # noqa: F401
from tests.backends.conftest import fake  # noqa: F401


def set_values(flag: Flag, environment: Environment, **changes: Any) -> FlagSetting:
    setting = FlagSetting.objects.get(flag=flag, environment=environment)
    return services.flag_setting_update(
        actor=None, flag=flag, environment=environment, expected_revision=setting.revision,
        **changes,
    )  # fmt: skip


def run(deployment: Deployment, at: dt.datetime | None = None) -> Deployment:
    """Run a deployment to its end on a clock that starts at ``at`` (default: now) and jumps
    to each next step, as a worker would over time."""
    now = at or timezone.now()
    Deployment.objects.filter(pk=deployment.pk).update(created_at=now, next_step_at=now)
    with engine.without_nudges():
        for _ in range(200):
            engine.deployment_advance(deployment.pk, now=now)
            deployment.refresh_from_db()
            if deployment.is_terminal or deployment.next_step_at is None:
                break
            now = max(now, deployment.next_step_at)
    holder.reset()  # OFREP reloads what is served
    return deployment


def deploy_at(
    environment: Environment, at: dt.datetime | None, message: str = "test"
) -> Deployment:
    """Save the working state as a version (or take the latest if nothing changed) and deploy
    it at once, as if at ``at`` (default: now)."""
    try:
        version = services.config_version_create(
            actor=None, environment=environment, message=message
        )
    except ValidationError:
        version = services.latest_version(environment)
    d = deployment_services.deployment_create(
        actor=None,
        environment=environment,
        version=version,
        strategy=deployment_services.strategy_by_name("flagdash.Immediate"),
    )
    return run(d, at)


def store_scan(application: Application, refs: list[tuple[str, str, int]]) -> None:
    """Store a scan with these (flag, path, line) references."""
    upload = lifecycle_services.clean_scan_upload(
        application,
        references=[
            {"flag": flag, "path": path, "line": line, "excerpt": f"use({flag!r})"}
            for flag, path, line in refs
        ],
        files_scanned=max(1, len({p for _, p, _ in refs})),
        commit="0123456789abcdef0123456789abcdef01234567",
    )
    lifecycle_services.code_scan_store(
        actor=None, application=application, upload=upload, source=ScanSource.CLI
    )


@pytest.fixture
def ofrep(settings):
    """OFREP answers from a fresh snapshot, without a background counting thread."""
    settings.OFREP_COUNTS_PUSH_SECONDS = 0
    settings.OFREP_REFRESH_SECONDS = 0
    holder.reset()
    yield
    holder.reset()


@pytest.fixture
def t0():
    """A moment a while ago, on the minute (deployments are replayed from it)."""
    return (timezone.now() - dt.timedelta(days=60)).replace(second=0, microsecond=0)


@pytest.fixture
def keys_of():
    def keys(result: scanner.ScanResult) -> list[tuple[str, str, int]]:
        return [(r.flag, r.path, r.line) for r in result.references]

    return keys


# --- the JSON API, as tests/api uses it -----------------------------------------------------


@pytest.fixture
def api_as(db):
    """``api_as(user)``: a JSON client with a fresh API token of ``user``."""
    from django.test import Client

    from tests.api.conftest import Api, token_for

    clients: dict[int, Api] = {}

    def api(user: Any) -> Api:
        if user.pk not in clients:
            clients[user.pk] = Api(Client(), token_for(user))
        return clients[user.pk]

    return api

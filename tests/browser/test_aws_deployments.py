"""A rollout to AWS AppConfig (the wire-level fake) watched in Chromium: a real Celery worker
starts the AWS deployment and polls it, and the page's bar follows AWS's PercentageComplete."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from flagdash.deployments.models import Deployment, EventType
from tests.backends.conftest import REGION, aws_credentials, connect
from tests.browser.test_deployments import change_and_save, choose_strategy
from tests.browser.test_flags import log_in
from tests.deployments.workers import (
    FAST_ENGINE,
    Reconciler,
    in_process_worker,
    require,
    unique_queue,
)
from tests.factories import make_flag, make_strategy
from tests.fakes.aws_appconfig import AppConfigFake, FakeClock

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def aws_fake(monkeypatch):
    """AWS's clock at 60×: a strategy minute passes in a second, as the engine's does here."""
    aws_credentials(monkeypatch)
    with AppConfigFake(region=REGION, clock=FakeClock(speed=60)) as service:
        yield service


@pytest.fixture
def rollout_engine(settings):
    require(settings.REDIS_AVAILABLE, "Redis")
    for name, value in FAST_ENGINE.items():
        setattr(settings, name, value)
    settings.DEPLOYMENT_CLOCK_SPEED = 60
    with in_process_worker(unique_queue("browser-aws")), Reconciler(every=0.5):
        yield


def test_an_editor_deploys_to_aws_and_watches_percentage_complete_reach_100(
    page: Page, live_server, aws_fake, rollout_engine, app, beta, editor, password
):
    setup = connect(aws_fake, beta)
    make_strategy("Linear 25 % a minute", duration_minutes=4, growth_factor=25)
    make_flag(app, "express-checkout", name="Express checkout")
    log_in(page, live_server, "editor", password)

    change_and_save(page, live_server, "Express checkout v2", "Rename express checkout")
    choose_strategy(page, "Linear 25 % a minute")
    page.get_by_role("button", name=re.compile(r"^Deploy v\d+ to Beta")).click()

    bar = page.locator("progress.rollout")
    expect(page.locator(".progress-status")).to_contain_text("of targets get", timeout=15_000)
    expect(bar).to_have_attribute("value", "100.0", timeout=30_000)
    expect(page.locator(".progress-block")).to_contain_text("Complete", timeout=30_000)
    expect(page.locator("#deployment-live[hx-trigger]")).to_have_count(0)
    # AWS's own events are on the page, as AWS reported them
    expect(page.locator("main")).to_contain_text("AWS percentage updated", timeout=5_000)
    expect(page.locator("main")).to_contain_text("AWS deployment completed")

    d = Deployment.objects.get()
    assert d.state == "complete" and d.backend_ref.startswith(f"appconfig:{setup.application_id}/")
    steps = list(d.events.filter(type=EventType.PERCENTAGE).values_list("percentage", flat=True))
    assert steps[-1] == 100 and steps == sorted(steps)
    aws = setup.deployment(1)
    assert aws.state == "COMPLETE" and aws.percentage == 100
    assert aws_fake.calls["StartDeployment"] == 1
    stored = aws_fake.document(setup.application_id, setup.profile_id, 1)
    assert stored["flags"]["express-checkout"]["name"] == "Express checkout v2"

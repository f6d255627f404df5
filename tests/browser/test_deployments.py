"""A rollout watched in Chromium: a real Celery worker moves it while the page polls."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from flagdash.deployments.models import Deployment
from tests.browser.test_flags import log_in
from tests.deployments.workers import (
    FAST_ENGINE,
    Reconciler,
    in_process_worker,
    require,
    unique_queue,
)
from tests.factories import make_flag, make_strategy

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def rollout_engine(settings):
    """A worker and beat for the live server; a strategy minute lasts a second."""
    require(settings.REDIS_AVAILABLE, "Redis")
    for name, value in FAST_ENGINE.items():
        setattr(settings, name, value)
    settings.DEPLOYMENT_CLOCK_SPEED = 60
    with in_process_worker(unique_queue("browser")), Reconciler(every=0.5):
        yield


@pytest.fixture
def strategies(db):
    return (
        make_strategy("Linear 25 % a minute", duration_minutes=4, growth_factor=25),
        make_strategy("Slow linear", duration_minutes=40, growth_factor=10),
    )


def change_and_save(page: Page, live_server, new_name: str, message: str) -> None:
    page.goto(f"{live_server.url}/apps/checkout/flags/express-checkout/edit/")
    page.locator("#id_name").fill(new_name)
    page.get_by_role("button", name="Save", exact=True).click()
    page.goto(f"{live_server.url}/apps/checkout/versions/?env=beta")
    page.get_by_label("Message").fill(message)
    page.get_by_role("button", name=re.compile(r"^Save version \d+ of Beta")).click()
    expect(
        page.get_by_role("heading", name=re.compile(r"Deploy version \d+ to Beta"))
    ).to_be_visible()


def choose_strategy(page: Page, name: str) -> None:
    select = page.get_by_label("Strategy")
    value = select.locator("option", has_text=name).get_attribute("value")
    select.select_option(value)


def test_an_editor_deploys_watches_the_bar_fill_then_rolls_back_another(
    page: Page, live_server, rollout_engine, strategies, app, beta, editor, password
):
    make_flag(app, "express-checkout", name="Express checkout")
    log_in(page, live_server, "editor", password)

    # Change a flag, see the diff against what Beta serves, pick a linear strategy, deploy.
    change_and_save(page, live_server, "Express checkout v2", "Rename express checkout")
    expect(page.locator(".diff")).to_contain_text("Express checkout v2")
    choose_strategy(page, "Linear 25 % a minute")
    page.get_by_role("button", name=re.compile(r"^Deploy v\d+ to Beta")).click()

    # The deployment page polls itself: the bar climbs step by step to 100 %, then it stops.
    bar = page.locator("progress.rollout")
    expect(page.locator(".progress-status")).to_contain_text("of targets get", timeout=10_000)
    expect(bar).to_have_attribute("value", "100.0", timeout=20_000)
    expect(page.locator(".progress-block")).to_contain_text("Complete", timeout=20_000)
    expect(page.locator("#deployment-live[hx-trigger]")).to_have_count(0)
    first = Deployment.objects.get()
    assert first.state == "complete"
    steps = list(first.events.filter(type="percentage").values_list("percentage", flat=True))
    assert steps == [25, 50, 75, 100]

    # Another change, deployed slowly, rolled back half-way with a reason.
    change_and_save(page, live_server, "Express checkout v3", "Rename it again")
    choose_strategy(page, "Slow linear")
    page.get_by_role("button", name=re.compile(r"^Deploy v\d+ to Beta")).click()
    expect(page.locator(".progress-status")).to_contain_text("of targets get", timeout=10_000)
    page.get_by_role("link", name="Stop and roll back…").click()
    dialog = page.locator("#modal")
    dialog.get_by_label("Reason").fill("Conversion dropped in beta")
    dialog.get_by_role("button", name="Stop and roll back").click()
    expect(page.locator(".progress-block")).to_contain_text("Rolled back", timeout=20_000)
    second = Deployment.objects.exclude(pk=first.pk).get()
    assert second.state == "rolled_back" and second.rollback_by_name == "editor"
    assert max(second.events.values_list("percentage", flat=True).exclude(percentage=None)) > 0

    # One click from the navigation: the rollback, who did it and why.
    page.get_by_role("link", name="Rollbacks").click()
    entry = page.locator("main").get_by_text("Conversion dropped in beta")
    expect(entry).to_be_visible()
    expect(page.locator("main")).to_contain_text("editor")

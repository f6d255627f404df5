"""The audit log in a real browser: filtering swaps the results, "Load older events" appends
rows and replaces itself, and a row expands to its before/after."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from flagdash.audit.models import AuditEvent
from flagdash.core import context
from flagdash.flags import services

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def logged_in(page: Page, live_server, viewer, password) -> Page:
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill("viewer")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name=re.compile("log in", re.I)).click()
    expect(page).not_to_have_url(re.compile(r"/login/"))
    return page


def test_filter_load_older_and_expand(logged_in: Page, live_server, record, admin_user, flag, beta):
    page = logged_in
    record(70, target_repr="bulk", source="worker")
    with context.bind(source="web", client_ip="203.0.113.5"):
        services.flag_set_enabled(actor=admin_user, flag=flag, environment=beta, enabled=True)

    page.goto(f"{live_server.url}/audit/")
    rows = page.locator("#audit-rows > .audit-row")
    expect(rows).to_have_count(50)

    page.get_by_role("link", name="Load older events").click()
    expect(rows).to_have_count(AuditEvent.objects.count())
    expect(page.get_by_role("link", name="Load older events")).to_have_count(0)
    expect(page.get_by_text("No older events.")).to_be_visible()

    page.get_by_label("Source", exact=True).select_option("web")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"source=web"))
    toggled = page.locator(".audit-row", has_text="Flag toggled")
    expect(toggled).to_have_count(1)
    toggled.get_by_text("change", exact=False).first.click()
    diff = toggled.locator("table.diff")
    expect(diff).to_be_visible()
    expect(diff.locator("tr", has_text="enabled").locator("td.new")).to_have_text("true")

    page.get_by_label("From", exact=True).fill("2001-02-03")
    page.get_by_label("To", exact=True).fill("2001-02-01")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#id_to_error")).to_have_text("The end date is before the start date.")

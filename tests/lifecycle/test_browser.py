"""The short-term page in Debian's Chromium: filter overdue, archive two flags at once, see them
leave the list and appear in the audit log."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from flagdash.flags.models import Flag
from tests.factories import make_flag
from tests.lifecycle.conftest import deploy_at, run, set_values, store_scan

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def overdue_flags(app, beta, production, editor):
    run(deploy_at(production, None))  # production's version predates the flags below
    today = timezone.localdate()
    for key, days in (("summer-sale", 40), ("old-checkout", 3)):
        remove_by = today - dt.timedelta(days=days)
        flag = make_flag(app, key, short_term=True, owner="editor", remove_by=remove_by)
        set_values(flag, beta, enabled=True)
    make_flag(app, "next-release", short_term=True, owner="editor")
    run(deploy_at(beta, None))
    store_scan(app, [("summer-sale", "web/sale.ts", 4), ("next-release", "web/app.ts", 1)])
    return app


def test_an_editor_filters_overdue_archives_two_and_finds_them_in_the_audit_log(
    page: Page, live_server, overdue_flags, password
):
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill("editor")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Short-term").click()
    rows = page.locator("table.short-term tbody tr")
    expect(rows).to_have_count(3)

    page.get_by_label("Status", exact=True).select_option("overdue")  # swaps the results, no reload
    expect(page).to_have_url(re.compile(r"status=overdue"))
    expect(rows).to_have_count(2)
    expect(page.locator(".status-counts [aria-current=true]")).to_contain_text("2 overdue")

    page.get_by_label("Select summer-sale").check()
    page.get_by_label("Select old-checkout").check()
    page.get_by_role("button", name="Archive selected…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Archive 2 flags?")
    expect(dialog).to_contain_text("Code still uses summer-sale: 1 reference in 1 file")
    expect(dialog).to_contain_text("Built-in store: flagdash stops serving it over OFREP")
    dialog.get_by_role("button", name="Archive 2 flags").click()

    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(
        page.get_by_text("Archived old-checkout, summer-sale: deploying to Beta")
    ).to_be_visible()
    expect(rows).to_have_count(0)
    expect(page.get_by_text("No short-term flag matches")).to_be_visible()
    assert set(Flag.objects.filter(archived_at__isnull=False).values_list("key", flat=True)) == {
        "summer-sale",
        "old-checkout",
    }

    page.get_by_role("link", name="Audit log").click()
    archived = page.locator(".audit-row", has_text="Flag archived")
    expect(archived).to_have_count(2)
    expect(archived.filter(has_text="summer-sale")).to_contain_text("editor")
    expect(archived.filter(has_text="old-checkout")).to_contain_text("editor")


def test_an_editor_changes_a_remove_by_date_and_a_lifetime_inline(
    page: Page, live_server, overdue_flags, password
):
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill("editor")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{live_server.url}/apps/checkout/short-term/?status=overdue")
    rows = page.locator("table.short-term tbody tr")
    expect(rows).to_have_count(2)

    row = rows.filter(has_text="summer-sale")
    row.locator("summary", has_text="Edit").click()
    row.get_by_label("Remove by").fill("2031-05-01")
    row.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved summer-sale.")).to_be_visible()
    expect(rows).to_have_count(1)  # no longer overdue
    assert str(Flag.objects.get(key="summer-sale").remove_by) == "2031-05-01"

    row = rows.filter(has_text="old-checkout")
    row.locator("summary", has_text="Edit").click()
    row.get_by_label("Lifetime").select_option("permanent")
    row.get_by_role("button", name="Save").click()
    expect(page.get_by_text("old-checkout is now permanent")).to_be_visible()
    expect(rows).to_have_count(0)
    assert Flag.objects.get(key="old-checkout").short_term is False


def test_a_status_chip_then_an_owner_filter_keeps_the_status(
    page: Page, live_server, overdue_flags, admin_user, password
):
    make_flag(
        overdue_flags,
        "admins-overdue",
        short_term=True,
        owner="admin",
        remove_by=timezone.localdate() - dt.timedelta(days=9),
    )
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill("editor")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{live_server.url}/apps/checkout/short-term/")
    rows = page.locator("table.short-term tbody tr")
    expect(rows).to_have_count(4)

    page.locator(".status-counts a", has_text="overdue").click()
    expect(rows).to_have_count(3)
    expect(page.get_by_label("Status", exact=True)).to_have_value("overdue")
    page.locator("#st-owner").select_option("editor")
    expect(page).to_have_url(re.compile(r"status=overdue"))
    expect(rows).to_have_count(2)  # editor's overdue flags, not all of editor's

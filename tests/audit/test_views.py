"""The audit log page: order, filters, date range, htmx partials, pagination, permissions,
and a query count that does not grow with the number of events."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse
from django.utils import timezone

from flagdash.audit.models import Action, AuditEvent
from flagdash.core import context
from flagdash.flags import services
from tests.factories import make_application, make_environment, make_flag

pytestmark = pytest.mark.postgres

URL = reverse("audit_log")
EVENT_ID = re.compile(r'<div id="event-(\d+)"')


def ids_in(response) -> list[int]:
    return [int(m) for m in EVENT_ID.findall(response.content.decode())]


def matching(predicate: Callable[[AuditEvent], bool]) -> set[int]:
    return {e.id for e in AuditEvent.objects.all() if predicate(e)}


@pytest.fixture
def cast(admin_user, editor, flag, beta, production):
    """Two applications, both with a `beta`; changes by admin and editor from web and api."""
    billing = make_application("billing", "Billing")
    billing_beta = make_environment(billing, "beta", "Beta")
    invoice = make_flag(billing, "invoice-v2")
    with context.bind(source="web", request_id="req-web-00000001", client_ip="203.0.113.5"):
        services.flag_set_enabled(actor=admin_user, flag=flag, environment=production, enabled=True)
    with context.bind(source="api", request_id="req-api-00000001", client_ip="198.51.100.7"):
        services.flag_set_enabled(actor=editor, flag=flag, environment=beta, enabled=True)
        services.flag_set_enabled(
            actor=editor, flag=invoice, environment=billing_beta, enabled=True
        )
    return {"billing": billing, "billing_beta": billing_beta, "invoice": invoice}


# --- the page --------------------------------------------------------------------------------


def test_viewer_sees_events_newest_first(viewer_client, cast):
    response = viewer_client.get(URL)
    assert response.status_code == 200
    shown = ids_in(response)
    assert shown == sorted(AuditEvent.objects.values_list("id", flat=True), reverse=True)
    assert len(shown) > 5


def test_row_shows_time_actor_action_target_and_a_readable_diff(viewer_client, cast, production):
    event = AuditEvent.objects.get(action=Action.FLAG_TOGGLED, environment=production)
    html = viewer_client.get(URL).content.decode()
    start = html.index(f'<div id="event-{event.id}"')
    row = html[start : html.index("</details>", start)]
    iso = timezone.localtime(event.occurred_at).isoformat()
    assert f'<time datetime="{iso}" title="{iso}">' in row
    assert ">admin<" in row
    assert "Flag toggled" in row
    assert "checkout/allow-bitcoin-at-checkout@production" in row
    assert "/apps/checkout/flags/allow-bitcoin-at-checkout/" in row
    assert "Checkout" in row and "Production" in row
    assert "Web" in row
    assert '<details class="event">' in row
    # before/after as a diff table: enabled false -> true, revision bumped
    assert re.search(
        r'<td class="path">enabled .*?</td>\s*'
        r'<td class="old">false</td>\s*<td class="new">true</td>',
        row,
        re.S,
    )
    assert '<td class="path">revision' in row
    assert "req-web-00000001" in row
    assert "203.0.113.5" in row


def test_event_without_actor_shows_system_and_no_diff(viewer_client, record):
    (event,) = record(target_repr="nightly job", source="worker", client_ip=None)
    html = viewer_client.get(URL).content.decode()
    start = html.index(f'<div id="event-{event.id}"')
    row = html[start : html.index("</details>", start)]
    assert '<span class="muted">system</span>' in row
    assert "No before/after values were recorded" in row
    assert "Worker" in row


@pytest.mark.parametrize(
    ("query", "predicate"),
    [
        ({"actor": "editor"}, lambda e, c: e.actor_name == "editor"),
        ({"actor": "EDITOR"}, lambda e, c: e.actor_name == "editor"),
        ({"action": "flag.toggled"}, lambda e, c: e.action == "flag.toggled"),
        ({"application": "billing"}, lambda e, c: e.application_id == c["billing"].id),
        ({"environment": "production"}, lambda e, c: e.environment_id == c["production"].id),
        (
            {"environment": "beta"},
            lambda e, c: e.environment_id in (c["beta"].id, c["billing_beta"].id),
        ),
        (
            {"environment": "beta", "application": "checkout"},
            lambda e, c: e.environment_id == c["beta"].id,
        ),
        ({"flag": "invoice-v2"}, lambda e, c: e.flag_id == c["invoice"].id),
        ({"flag": "Invoice-V2"}, lambda e, c: e.flag_id == c["invoice"].id),
        ({"source": "api"}, lambda e, c: e.source == "api"),
        (
            {"actor": "editor", "application": "checkout", "action": "flag.toggled"},
            lambda e, c: (
                e.actor_name == "editor"
                and e.application_id == c["app"].id
                and e.action == "flag.toggled"
            ),
        ),
    ],
)
def test_each_filter_narrows_the_log(viewer_client, cast, app, beta, production, query, predicate):
    objects = {**cast, "app": app, "beta": beta, "production": production}
    expected = matching(lambda e: predicate(e, objects))
    total = AuditEvent.objects.count()
    assert 0 < len(expected) < total
    response = viewer_client.get(URL, query)
    assert response.status_code == 200
    assert set(ids_in(response)) == expected
    assert ids_in(response) == sorted(expected, reverse=True)


def test_filters_stay_in_the_form_and_the_export_links(viewer_client, cast):
    response = viewer_client.get(URL, {"action": "flag.toggled", "flag": "invoice-v2"})
    html = response.content.decode()
    assert '<option value="flag.toggled" selected>' in html
    assert 'value="invoice-v2"' in html
    assert 'href="/audit/export.csv?action=flag.toggled&amp;flag=invoice-v2"' in html
    assert 'href="/audit/export.json?action=flag.toggled&amp;flag=invoice-v2"' in html


def test_nothing_matching_shows_an_empty_state(viewer_client, cast):
    response = viewer_client.get(URL, {"actor": "nobody"})
    assert response.status_code == 200
    assert ids_in(response) == []
    assert "No events match these filters" in response.content.decode()


# --- dates -----------------------------------------------------------------------------------


@override_settings(TIME_ZONE="Asia/Tokyo")  # UTC+9, no daylight saving time
def test_date_range_is_inclusive_in_the_site_time_zone(viewer_client, record):
    utc = dt.UTC
    (before_start,) = record(at=dt.datetime(2025, 1, 9, 14, 59, 59, 999999, tzinfo=utc))
    (first,) = record(at=dt.datetime(2025, 1, 9, 15, 0, tzinfo=utc))  # Jan 10 00:00 JST
    (last,) = record(at=dt.datetime(2025, 1, 10, 14, 59, 59, 999999, tzinfo=utc))
    (after_end,) = record(at=dt.datetime(2025, 1, 10, 15, 0, tzinfo=utc))  # Jan 11 00:00 JST

    ours = {before_start.id, first.id, last.id, after_end.id}

    def shown(**query: str) -> set[int]:
        response = viewer_client.get(URL, query)
        assert response.status_code == 200
        return set(ids_in(response)) & ours  # the login of the client is an event too

    assert shown(**{"from": "2025-01-10", "to": "2025-01-10"}) == {first.id, last.id}
    assert shown(**{"from": "2025-01-10"}) == {first.id, last.id, after_end.id}
    assert shown(to="2025-01-10") == {before_start.id, first.id, last.id}
    assert shown(**{"from": "2025-01-11", "to": "2025-01-11"}) == {after_end.id}
    # Shown in the site's time zone, with the full ISO time in the markup.
    html = viewer_client.get(URL, {"from": "2025-01-10", "to": "2025-01-10"}).content.decode()
    assert '<time datetime="2025-01-10T00:00:00+09:00"' in html
    assert "2025-01-10 00:00:00 JST" in html


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "notadate"}, "from"),
        ({"to": "2025-13-45"}, "to"),
        ({"from": "2025-02-01", "to": "2025-01-01"}, "to"),
        ({"from": "0001-01-01"}, "from"),
        ({"to": "9999-12-31"}, "to"),
        ({"action": "flag.exploded"}, "action"),
        ({"source": "carrier-pigeon"}, "source"),
        ({"application": "no-such-app"}, "application"),
        ({"flag": "Not a key!"}, "flag"),
        ({"actor": "x" * 151}, "actor"),
    ],
)
def test_bad_filter_values_show_an_error_at_the_field(viewer_client, cast, query, field):
    response = viewer_client.get(URL, query)
    assert response.status_code == 400
    html = response.content.decode()
    assert f'id="id_{field}_error"' in html
    assert re.search(rf'<(input|select)[^>]*aria-invalid="true"[^>]*id="id_{field}"', html) or (
        re.search(rf'<(input|select)[^>]*id="id_{field}"[^>]*aria-invalid="true"', html)
    )
    assert ids_in(response) == []
    assert "Check the filters" in html


def test_a_bad_page_position_is_reported_not_a_server_error(viewer_client, cast):
    response = viewer_client.get(URL, {"before": "abc"})
    assert response.status_code == 400
    assert "Page position" in response.content.decode()


# --- htmx and pagination ---------------------------------------------------------------------


def test_htmx_request_gets_the_rows_partial(viewer_client, cast, htmx):
    response = viewer_client.get(URL, headers=htmx)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    assert "<form" not in html
    assert html.lstrip().startswith('<div id="event-')
    assert ids_in(response) == sorted(AuditEvent.objects.values_list("id", flat=True), reverse=True)
    # the pager replaces itself out of band; here there is nothing older
    assert re.search(
        r'<template>\s*<div id="audit-pager" class="pagination" hx-swap-oob="true">', html
    )
    assert "Load older events" not in html


def test_htmx_filter_submission_gets_the_results_partial(viewer_client, cast, htmx):
    headers = {**htmx, "HX-Target": "audit-results"}
    response = viewer_client.get(URL, {"source": "api"}, headers=headers)
    html = response.content.decode()
    assert "<html" not in html
    assert '<form method="get"' in html
    assert set(ids_in(response)) == matching(lambda e: e.source == "api")
    assert "hx-swap-oob" not in html


def test_htmx_filter_errors_come_back_in_the_results_partial(viewer_client, cast, htmx):
    headers = {**htmx, "HX-Target": "audit-results"}
    response = viewer_client.get(URL, {"from": "notadate"}, headers=headers)
    assert response.status_code == 400
    assert "<html" not in response.content.decode()
    assert 'id="id_from_error"' in response.content.decode()


def test_boosted_navigation_gets_the_whole_page(viewer_client, cast, htmx):
    response = viewer_client.get(URL, headers={**htmx, "HX-Boosted": "true"})
    assert "<html" in response.content.decode()


def test_load_older_pages_through_every_event_once(viewer_client, record, htmx):
    record(120, target_repr="bulk")
    all_ids = sorted(AuditEvent.objects.values_list("id", flat=True), reverse=True)

    first = viewer_client.get(URL)
    html = first.content.decode()
    assert ids_in(first) == all_ids[:50]
    link = f"/audit/?before={all_ids[49]}"
    # a plain link that works without JavaScript, enhanced with htmx to append rows
    assert f'href="{link}"' in html
    assert f'hx-get="{link}"' in html
    assert 'hx-target="#audit-rows"' in html and 'hx-swap="beforeend"' in html

    second = viewer_client.get(link, headers=htmx)
    assert ids_in(second) == all_ids[50:100]
    assert "<html" not in second.content.decode()
    assert 'hx-swap-oob="true"' in second.content.decode()
    assert f'hx-get="/audit/?before={all_ids[99]}"' in second.content.decode()

    third = viewer_client.get(f"/audit/?before={all_ids[99]}", headers=htmx)
    assert ids_in(third) == all_ids[100:]
    assert "Load older events" not in third.content.decode()
    assert "No older events" in third.content.decode()

    # Without JavaScript the link shows the older page in full, with a way back.
    plain = viewer_client.get(link)
    assert "<html" in plain.content.decode()
    assert ids_in(plain) == all_ids[50:100]
    assert "Back to the newest events" in plain.content.decode()


def test_load_older_keeps_the_filters(viewer_client, record, htmx):
    record(60, source="worker")
    record(5, source="cli")
    worker_ids = sorted(matching(lambda e: e.source == "worker"), reverse=True)
    html = viewer_client.get(URL, {"source": "worker"}).content.decode()
    link = f"/audit/?source=worker&amp;before={worker_ids[49]}"
    assert f'href="{link}"' in html
    older = viewer_client.get(link.replace("&amp;", "&"), headers=htmx)
    assert ids_in(older) == worker_ids[50:]


# --- who may see it --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["audit_log", "audit_export_csv", "audit_export_json"])
def test_outsider_is_forbidden(outsider_client, cast, name):
    assert outsider_client.get(reverse(name)).status_code == 403


@pytest.mark.parametrize("name", ["audit_log", "audit_export_csv", "audit_export_json"])
def test_anonymous_is_sent_to_login(client, cast, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("role_client", ["viewer_client", "editor_client", "admin_client"])
def test_every_role_can_read_the_log(request, cast, role_client):
    assert request.getfixturevalue(role_client).get(URL).status_code == 200


def test_only_get_is_allowed(admin_client, cast):
    assert admin_client.post(URL).status_code == 405


# --- query budget ----------------------------------------------------------------------------


def _queries(client, **kwargs) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(URL, **kwargs)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_query_count_does_not_grow_with_events(
    viewer_client, record, admin_user, app, beta, flag, htmx, django_assert_num_queries
):
    def add(n: int) -> None:
        record(
            n,
            actor=admin_user,
            action=Action.SETTING_UPDATED,
            target_type="setting",
            target_repr="checkout/allow-bitcoin-at-checkout@beta",
            application=app,
            environment=beta,
            flag=flag,
            before={"enabled": False, "attribute_values": {"currency": "USD"}},
            after={"enabled": True, "attribute_values": {"currency": "BTC"}},
        )

    add(10)
    viewer_client.get(URL)  # warm up (session, content types)
    few_page = _queries(viewer_client)
    few_rows = _queries(viewer_client, headers=htmx)
    few_filtered = _queries(viewer_client, data={"application": "checkout", "flag": flag.key})
    assert len(ids_in(viewer_client.get(URL))) < 50

    add(490)
    assert len(ids_in(viewer_client.get(URL))) == 50
    with django_assert_num_queries(few_page):
        viewer_client.get(URL)
    with django_assert_num_queries(few_rows):
        viewer_client.get(URL, headers=htmx)
    with django_assert_num_queries(few_filtered):
        viewer_client.get(URL, {"application": "checkout", "flag": flag.key})
    oldest_shown = ids_in(viewer_client.get(URL))[-1]
    with django_assert_num_queries(few_rows):
        viewer_client.get(URL, {"before": oldest_shown}, headers=htmx)

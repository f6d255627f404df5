"""CSV and JSON exports: contents read back, filters, formula neutralisation, streaming in
keyset batches, and a 400 (never a 500) for bad filters."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from flagdash.audit import selectors
from flagdash.audit.export import COLUMNS, neutralise
from flagdash.audit.models import Action, AuditEvent
from flagdash.core import context
from flagdash.flags import services

pytestmark = pytest.mark.postgres

CSV_URL = reverse("audit_export_csv")
JSON_URL = reverse("audit_export_json")
FILENAME = re.compile(r'^attachment; filename="flagdash-audit-\d{8}T\d{6}Z\.(csv|json)"$')


def read_csv(response) -> list[dict[str, str]]:
    assert response.streaming
    text = b"".join(response.streaming_content).decode("utf-8")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert tuple(reader.fieldnames or ()) == COLUMNS
    return list(reader)


def read_json(response) -> list[dict]:
    assert response.streaming
    return json.loads(b"".join(response.streaming_content))


@pytest.fixture
def toggled(admin_user, flag, beta):
    with context.bind(source="web", request_id="req-export-0001", client_ip="203.0.113.9"):
        services.flag_set_enabled(actor=admin_user, flag=flag, environment=beta, enabled=True)
    return AuditEvent.objects.get(action=Action.FLAG_TOGGLED)


def test_csv_export_has_every_event_newest_first(viewer_client, toggled):
    response = viewer_client.get(CSV_URL)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert FILENAME.match(response["Content-Disposition"])
    rows = read_csv(response)
    assert [int(r["id"]) for r in rows] == list(
        AuditEvent.objects.order_by("-id").values_list("id", flat=True)
    )
    row = next(r for r in rows if int(r["id"]) == toggled.id)
    assert row["occurred_at"] == toggled.occurred_at.isoformat()
    assert row["actor"] == "admin"
    assert row["action"] == "flag.toggled"
    assert row["target_type"] == "setting"
    assert row["target_id"] == toggled.target_id
    assert row["target"] == "checkout/allow-bitcoin-at-checkout@beta"
    assert (row["application"], row["environment"], row["flag"]) == (
        "checkout",
        "beta",
        "allow-bitcoin-at-checkout",
    )
    assert row["source"] == "web"
    assert row["request_id"] == "req-export-0001"
    assert row["client_ip"] == "203.0.113.9"
    assert json.loads(row["before"]) == toggled.before
    assert json.loads(row["after"]) == toggled.after
    assert json.loads(row["after"])["enabled"] is True
    assert (row["prev_hash"], row["hash"]) == (toggled.prev_hash, toggled.hash)


def test_json_export_is_one_array_of_records(viewer_client, toggled):
    response = viewer_client.get(JSON_URL)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert FILENAME.match(response["Content-Disposition"])
    records = read_json(response)
    assert [r["id"] for r in records] == list(
        AuditEvent.objects.order_by("-id").values_list("id", flat=True)
    )
    record = next(r for r in records if r["id"] == toggled.id)
    assert tuple(record) == COLUMNS
    assert record["before"] == toggled.before  # nested JSON, not a string
    assert record["after"]["enabled"] is True
    assert record["environment"] == "beta"
    assert record["hash"] == toggled.hash


def test_json_export_of_nothing_is_an_empty_array(viewer_client, db):
    response = viewer_client.get(JSON_URL, {"actor": "nobody"})
    assert read_json(response) == []


@pytest.mark.parametrize("url", [CSV_URL, JSON_URL])
def test_exports_apply_the_filters(viewer_client, toggled, production, admin_user, flag, url):
    with context.bind(source="api"):
        services.flag_set_enabled(actor=admin_user, flag=flag, environment=production, enabled=True)
    response = viewer_client.get(url, {"action": "flag.toggled", "environment": "production"})
    if url == CSV_URL:
        ids = [int(r["id"]) for r in read_csv(response)]
    else:
        ids = [r["id"] for r in read_json(response)]
    expected = AuditEvent.objects.get(action=Action.FLAG_TOGGLED, environment=production)
    assert ids == [expected.id]


def test_csv_neutralises_spreadsheet_formulas(viewer_client, record):
    (event,) = record(
        actor_name='=HYPERLINK("http://evil.example","click")',
        target_type="flag",
        target_id="+1",
        target_repr="@SUM(A1:A9)",
        after={"note": "=1+2"},
        request_id="-req-12345678",
    )
    rows = read_csv(viewer_client.get(CSV_URL, {"actor": event.actor_name}))
    assert len(rows) == 1
    row = rows[0]
    assert row["actor"] == '\'=HYPERLINK("http://evil.example","click")'
    assert row["target_id"] == "'+1"
    assert row["target"] == "'@SUM(A1:A9)"
    assert row["request_id"] == "'-req-12345678"
    assert json.loads(row["after"]) == {"note": "=1+2"}  # starts with "{": left alone
    # the JSON export carries the values unchanged
    (record_,) = read_json(viewer_client.get(JSON_URL, {"actor": event.actor_name}))
    assert record_["target"] == "@SUM(A1:A9)"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@cmd", "'@cmd"),
        ("\tx", "'\tx"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_neutralise(value, expected):
    assert neutralise(value) == expected


@pytest.mark.parametrize("url", [CSV_URL, JSON_URL])
def test_export_streams_in_keyset_batches(viewer_client, record, monkeypatch, url):
    record(25, target_repr="bulk", source="worker")
    monkeypatch.setattr(selectors, "EXPORT_BATCH_SIZE", 10)
    response = viewer_client.get(url, {"source": "worker"})
    assert response.streaming
    with CaptureQueriesContext(connection) as ctx:
        chunks = list(response.streaming_content)
    assert len(chunks) > 1  # written incrementally, not as one string
    body = b"".join(chunks).decode()
    if url == JSON_URL:
        assert chunks[0] == b"["
        ids = [r["id"] for r in json.loads(body)]
    else:
        ids = [int(r["id"]) for r in csv.DictReader(io.StringIO(body, newline=""))]
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == len(set(ids)) == 25
    selects = [q["sql"] for q in ctx.captured_queries if 'FROM "audit_auditevent"' in q["sql"]]
    assert len(selects) == 3  # 10 + 10 + 5
    assert all("LIMIT 10" in sql for sql in selects)
    assert '"audit_auditevent"."id" <' in selects[1]


@pytest.mark.parametrize(
    "query",
    [{"from": "notadate"}, {"to": "2025-02-30"}, {"action": "nope"}, {"flag": "Bad Key"}],
)
def test_bad_filters_give_a_json_400(viewer_client, db, query):
    response = viewer_client.get(JSON_URL, query)
    assert response.status_code == 400
    assert not response.streaming
    body = response.json()
    assert body["error"] == "invalid_filters"
    assert set(body["fields"]) == set(query)


def test_bad_filters_give_a_plain_400_for_csv(viewer_client, db):
    response = viewer_client.get(CSV_URL, {"from": "notadate"})
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert "from: Enter a valid date." in response.content.decode()


def test_export_ignores_the_page_cursor(viewer_client, record):
    events = record(3, source="cli")
    ids = [int(r["id"]) for r in read_csv(viewer_client.get(CSV_URL, {"source": "cli"}))]
    assert ids == [e.id for e in reversed(events)]
    with_cursor = viewer_client.get(CSV_URL, {"source": "cli", "before": events[1].id})
    assert [int(r["id"]) for r in read_csv(with_cursor)] == ids

"""The lifecycle's JSON API: uploading a scan (auth, shape, values, size), the short-term list,
bulk archive, and the digest."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import Client

from flagdash.audit.models import Action, AuditEvent
from flagdash.lifecycle.models import CodeReference, CodeReferenceScan
from tests.factories import make_flag
from tests.lifecycle.conftest import deploy_at, run

pytestmark = pytest.mark.django_db
URL = "apps/checkout/code-references/"
SHA = "0123456789abcdef0123456789abcdef01234567"


def good(**changes):
    body = {
        "commit": SHA,
        "scanned_at": "2026-11-21T13:04:02Z",
        "files_scanned": 40,
        "skipped_binary": 2,
        "skipped_large": 1,
        "duration_ms": 812,
        "listing": "git",
        "references": [
            {"flag": "promo", "path": "web/app.ts", "line": 3, "excerpt": "on('promo')"},
            {"flag": "promo", "path": "lib/x.py", "line": 9, "excerpt": "if promo:"},
            {"flag": "release", "path": "lib/x.py", "line": 12},
        ],
    }
    body.update(changes)
    return body


@pytest.fixture
def flags(app, envs):
    make_flag(app, "promo", short_term=True)
    make_flag(app, "release", short_term=True)
    return app


def nothing_stored():
    return not CodeReferenceScan.objects.exists() and not CodeReference.objects.exists()


def test_an_editor_uploads_a_scan_with_a_token(api_as, editor, flags):
    response = api_as(editor).post(URL, good())
    assert response.status_code == 201, response.content
    assert response["Location"] == "/api/v1/apps/checkout/code-references/"
    scan = response.json()["scan"]
    assert (scan["commit"], scan["references"], scan["source"]) == (SHA, 3, "api")
    assert scan["uploaded_by"] == "editor (API token tests)"
    stored = CodeReferenceScan.objects.get()
    assert stored.scanned_at.isoformat() == "2026-11-21T13:04:02+00:00"
    assert sorted(CodeReference.objects.values_list("flag_key", "path", "line")) == [
        ("promo", "lib/x.py", 9),
        ("promo", "web/app.ts", 3),
        ("release", "lib/x.py", 12),
    ]
    event = AuditEvent.objects.get(action=Action.CODE_SCAN_UPLOADED)
    assert (event.source, event.actor_name) == ("api", "editor")


def test_reading_the_scan_gives_the_keys_a_scanner_needs(api_as, viewer, editor, flags):
    body = api_as(viewer).get(URL).json()
    assert body["scan"] is None and body["flag_keys"] == ["promo", "release"]
    api_as(editor).post(URL, good())
    body = api_as(viewer).get(URL, query={"flag": "promo"}).json()
    assert body["references_per_flag"] == {"promo": 2, "release": 1}
    assert [r["path"] for r in body["references"]] == ["lib/x.py", "web/app.ts"]


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        ("anonymous", 401, "unauthenticated"),
        ("outsider", 403, "forbidden"),
        ("viewer", 403, "forbidden"),
    ],
)
def test_only_editors_and_admins_may_upload(api_as, request, flags, who, status, code):
    client = Client() if who == "anonymous" else None
    if client is None:
        response = api_as(request.getfixturevalue(who)).post(URL, good())
    else:
        response = client.post(
            "/api/v1/" + URL, json.dumps(good()), content_type="application/json"
        )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert nothing_stored()


def test_a_bad_token_is_401(flags):
    response = Client().post(
        "/api/v1/" + URL,
        json.dumps(good()),
        content_type="application/json",
        headers={"Authorization": "Bearer fdp_not-a-token"},
    )
    assert response.status_code == 401
    assert nothing_stored()


def ref(**fields):
    """One reference in a body: a valid one, with these fields changed (None: left out)."""
    base = {"flag": "promo", "path": "a.py", "line": 1}
    base.update(fields)
    return {"references": [{k: v for k, v in base.items() if v is not None}]}


@pytest.mark.parametrize(
    ("body", "field", "field_code"),
    [
        ({"references": "all of them"}, "references", "invalid"),
        (ref(line=None), "references[0].line", "required"),
        (ref(line="3"), "references[0].line", "invalid"),
        (ref(flag=5), "references[0].flag", "invalid"),
        (ref(col=2), "references[0]", "unknown_field"),
        ({"files_scanned": -1.5}, "files_scanned", "invalid"),
        ({"scanned_at": "yesterday"}, "scanned_at", "invalid_datetime"),
        ({"scanned_at": "2026-11-21T13:04:02"}, "scanned_at", "invalid_datetime"),
        ({"branch": "main"}, "branch", "unknown_field"),
    ],
)
def test_a_wrong_shape_is_400_with_the_field_and_stores_nothing(
    api_as, editor, flags, body, field, field_code
):
    response = api_as(editor).post(URL, good(**body))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["fields"][field][0]["code"] == field_code
    assert field in error["message"]
    assert nothing_stored()


TWICE = {"references": [{"flag": "promo", "path": "a.py", "line": 1}] * 2}
R0 = "references[0]"


@pytest.mark.parametrize(
    ("body", "field", "field_code", "message"),
    [
        (ref(flag="nope"), f"{R0}.flag", "unknown_flag", "Checkout has no flag “nope”."),
        (ref(path="/etc/passwd"), f"{R0}.path", "invalid_path", "relative"),
        (ref(path="../x.py"), f"{R0}.path", "invalid_path", "“..”"),
        (ref(path="C:\\src\\x.py"), f"{R0}.path", "invalid_path", "not absolute"),
        (ref(line=0), f"{R0}.line", "out_of_range", "from 1"),
        (ref(excerpt="x" * 201), f"{R0}.excerpt", "too_long", "At most 200"),
        (ref(excerpt="a\nb"), f"{R0}.excerpt", "invalid", "one line"),
        (TWICE, "references[1]", "duplicate", "listed twice"),
        ({"commit": "not-a-sha"}, "commit", "invalid", "hexadecimal"),
        ({"scanned_at": "2999-01-01T00:00:00Z"}, "scanned_at", "in_future", "future"),
        ({"files_scanned": 1}, "files_scanned", "inconsistent", "2 files"),
        ({"listing": "svn"}, "listing", "invalid_choice", "git"),
    ],
)
def test_wrong_values_are_422_with_a_clear_message_and_store_nothing(
    api_as, editor, flags, body, field, field_code, message
):
    response = api_as(editor).post(URL, good(**body))
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["fields"][field][0]["code"] == field_code
    assert message in error["fields"][field][0]["message"]
    assert nothing_stored()


def test_a_refused_upload_keeps_the_previous_scan(api_as, editor, flags):
    api_as(editor).post(URL, good())
    bad = good(references=[{"flag": "nope", "path": "a.py", "line": 1}])
    assert api_as(editor).post(URL, bad).status_code == 422
    assert CodeReference.objects.count() == 3


def test_not_json_and_too_big_bodies_are_refused(api_as, editor, flags):
    api = api_as(editor)
    assert api.post(URL, raw="{nope").json()["error"]["code"] == "parse_error"
    assert api.post(URL, raw="[]").status_code == 400
    assert api.post(URL, raw="a=b", content_type="text/plain").status_code == 415
    big = good(
        references=[{"flag": "promo", "path": "p" * 1000, "line": i} for i in range(1, 9000)]
    )
    response = api.post(URL, big)
    assert response.status_code == 413
    assert response.json()["error"]["message"] == "The body is larger than 8 MiB."
    assert nothing_stored()


def test_an_upload_larger_than_djangos_memory_limit_but_under_ours_is_accepted(
    api_as, editor, flags, settings
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    refs = [
        {"flag": "promo", "path": f"src/f{i}.py", "line": 1, "excerpt": "x" * 150}
        for i in range(2000)
    ]
    response = api_as(editor).post(URL, good(references=refs, files_scanned=2000))
    assert response.status_code == 201, response.content[:300]
    assert CodeReference.objects.count() == 2000


def test_the_short_term_list_answers_statuses_with_reasons(api_as, viewer, flags, beta):
    body = api_as(viewer).get("apps/checkout/short-term/", query={"status": "active"}).json()
    assert body["counts"] == {"overdue": 0, "ready": 0, "unused": 0, "active": 2}
    assert [r["key"] for r in body["results"]] == ["promo", "release"]
    assert body["results"][0]["reason"].startswith("In use or changing: no code scan yet")
    assert body["rules"]["ready"].endswith("unchanged for at least 14 days.")
    bad = api_as(viewer).get("apps/checkout/short-term/", query={"status": "stale"})
    assert bad.status_code == 400


def test_bulk_archive_over_the_api(api_as, editor, viewer, flags, beta, production, ofrep):
    deploy_at(beta, None)
    refused = api_as(viewer).post("apps/checkout/short-term/archive/", {"flags": ["promo"]})
    assert refused.status_code == 403
    body = api_as(editor).post("apps/checkout/short-term/archive/", {"flags": ["promo", "release"]})
    assert body.status_code == 202, body.content
    data = body.json()
    assert data["flags"] == ["promo", "release"]
    assert len(data["deployments"]) == 1  # only beta served them
    again = api_as(editor).post("apps/checkout/short-term/archive/", {"flags": ["promo"]})
    assert again.status_code == 400  # was 404: a selection of the wrong flags is a bad request
    assert again.json()["error"]["fields"]["flags"][0]["code"] == "unknown_flag"


def test_the_flag_archive_endpoint_deploys_too(api_as, editor, flags, beta, ofrep):
    run(deploy_at(beta, None))
    response = api_as(editor).post("apps/checkout/flags/promo/archive/")
    assert response.status_code == 200
    assert response.json()["archived"] is True
    assert [d["state"] for d in response.json()["deployments"]] == ["queued"]


# --- what an upload may hold -------------------------------------------------------------------


def test_bidi_and_control_characters_are_stripped_from_paths_and_excerpts(api_as, editor, flags):
    """Trojan Source: a stored excerpt must display in the order its characters are stored."""
    refs = [
        {
            "flag": "promo",
            "path": "web/\u202eevil\u202c\u2066.ts",
            "line": 3,
            "excerpt": "if (isAdmin) {\u202e } \u2066// check later\u2069 \u2067\u200f{\x1b[31m",
        },
        {"flag": "release", "path": "lib/\x07x\u200e.py", "line": 1, "excerpt": "a\tb\x7f\x9b"},
    ]
    response = api_as(editor).post(URL, good(references=refs))
    assert response.status_code == 201, response.content
    stored = sorted(CodeReference.objects.values_list("path", "excerpt"))
    assert stored == [
        ("lib/x.py", "a b"),
        ("web/evil.ts", "if (isAdmin) { } // check later {[31m"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        ref(path="a\x00.py"),
        ref(excerpt="x\x00y"),
        ref(flag="promo\x00"),
        {"commit": SHA[:8] + "\x00"},
        {"listing": "git\x00"},
        {"scanned_at": "2026-11-21T13:04:02Z\x00"},
        {"references": [{"flag": "promo", "path": "a.py", "line": 1, "ex\x00": "x"}]},
    ],
)
def test_a_nul_character_anywhere_is_400_and_keeps_the_previous_scan(api_as, editor, flags, body):
    api = api_as(editor)
    assert api.post(URL, good()).status_code == 201
    response = api.post(URL, good(**body))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "NUL" in error["message"]
    assert [e["code"] for errs in error["fields"].values() for e in errs] == ["nul_character"]
    assert CodeReference.objects.count() == 3
    assert CodeReferenceScan.objects.get().commit == SHA


@pytest.mark.parametrize(
    "value",
    [
        "2026-13-45T00:00:00Z",  # well formed, not a date: was a 500
        "2026-02-30T10:00:00Z",
        "2026-11-21T13:04:02+99:00",  # an offset of 99 hours
        "2026-11-21T25:00:00Z",
        "2026-11-21",  # a date without a time
        "1700000000",  # a Unix timestamp
        "x" * 100,
    ],
)
def test_a_scanned_at_that_is_not_a_date_time_is_400_naming_the_field(api_as, editor, flags, value):
    api = api_as(editor)
    assert api.post(URL, good()).status_code == 201
    response = api.post(URL, good(scanned_at=value))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["fields"]["scanned_at"][0]["code"] == "invalid_datetime"
    assert error["message"].startswith("scanned_at: ")
    assert CodeReferenceScan.objects.get().scanned_at.isoformat() == "2026-11-21T13:04:02+00:00"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("1999-12-31T23:59:59Z", "too_early"),
        ("0001-01-01T00:00:00+14:00", "too_early"),
        ("2999-01-01T00:00:00Z", "in_future"),
    ],
)
def test_a_scanned_at_out_of_range_is_422(api_as, editor, flags, value, code):
    response = api_as(editor).post(URL, good(scanned_at=value))
    assert response.status_code == 422, response.content
    assert response.json()["error"]["fields"]["scanned_at"][0]["code"] == code
    assert nothing_stored()


def test_a_scanned_at_a_minute_ahead_is_accepted_clock_skew(api_as, editor, flags):
    from django.utils import timezone

    ahead = (timezone.now() + dt.timedelta(minutes=1)).isoformat()
    assert api_as(editor).post(URL, good(scanned_at=ahead)).status_code == 201


@pytest.mark.parametrize(
    ("body", "status", "field", "code"),
    [
        (ref(line=True), 400, f"{R0}.line", "invalid"),
        (ref(line=1.0), 400, f"{R0}.line", "invalid"),
        (ref(line=-3), 422, f"{R0}.line", "out_of_range"),
        (ref(line=2**31), 422, f"{R0}.line", "out_of_range"),
        (ref(line=2**70), 422, f"{R0}.line", "out_of_range"),
        (ref(path="p" * 1025), 422, f"{R0}.path", "invalid_path"),
        (ref(path="a\u2028b.py"), 422, f"{R0}.path", "invalid_path"),
        (ref(excerpt="a\rb"), 422, f"{R0}.excerpt", "invalid"),
        ({"commit": "ABC"}, 422, "commit", "invalid"),
        ({"commit": "g" * 40}, 422, "commit", "invalid"),
        ({"commit": "a" * 65}, 422, "commit", "invalid"),
    ],
)
def test_lines_paths_and_commits_are_checked(api_as, editor, flags, body, status, field, code):
    response = api_as(editor).post(URL, good(**body))
    assert response.status_code == status, response.content
    assert response.json()["error"]["fields"][field][0]["code"] == code
    assert nothing_stored()


def test_more_references_than_the_cap_are_refused(api_as, editor, flags, monkeypatch):
    from flagdash.lifecycle import scanner

    monkeypatch.setattr(scanner, "MAX_REFERENCES", 3)
    refs = [{"flag": "promo", "path": "a.py", "line": i} for i in range(1, 5)]
    response = api_as(editor).post(URL, good(references=refs))
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["references"][0]["code"] == "too_many"
    assert nothing_stored()

"""Who may do what on every lifecycle page and endpoint: anonymous, an outsider (no role), a
viewer, an editor. Reads need a role; every change (archive, restore, the inline edit of
lifetime, owner and remove-by, a scan upload) needs an editor, and a refusal changes nothing."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from flagdash.audit.models import AuditEvent
from flagdash.flags.models import Flag
from flagdash.lifecycle import services
from flagdash.lifecycle.models import Cleanup, CodeReferenceScan
from tests.factories import make_flag

pytestmark = pytest.mark.django_db
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def flags(app, envs, admin_user, editor):
    make_flag(app, "promo", short_term=True, owner="editor")
    old = make_flag(app, "old", short_term=True)
    services.flags_archive(actor=None, application=app, flags=[old])
    return app


def state():
    """Everything a refused request must leave as it was."""
    return (
        AuditEvent.objects.count(),
        Cleanup.objects.count(),
        CodeReferenceScan.objects.count(),
        sorted(
            Flag.objects.values_list("key", "archived_at", "short_term", "owner_id", "remove_by")
        ),
    )


def row(flag_key, **values):
    flag = Flag.objects.get(key=flag_key)
    data = {"lifetime": "permanent", "owner": "", "remove_by": "2030-01-01"}
    data.update(values)
    return {f"f{flag.pk}-{k}": v for k, v in data.items()}


PAGES = [
    # (method, url name, url args, data, needs an editor)
    ("get", "short_term", [], None, False),
    # the confirmations are for those who may confirm
    ("get", "short_term_archive", [], {"flag": "promo"}, True),
    ("post", "short_term_archive", [], {"flag": "promo", "confirm": "yes"}, True),
    ("get", "short_term_restore", [], {"flag": "old"}, True),
    ("post", "short_term_restore", [], {"flag": "old", "confirm": "yes"}, True),
    ("get", "flag_archive", ["promo"], None, True),
    ("post", "flag_archive", ["promo"], {}, True),
    ("post", "flag_archive", ["old"], {}, True),
    ("post", "short_term_edit", ["promo"], "row", True),
]
# status per role: anonymous is sent to the login page
EXPECTED_PAGES = {
    "anonymous": {False: 302, True: 302},
    "outsider": {False: 403, True: 403},
    "viewer": {False: 200, True: 403},
}


def _page_request(client, method, name, args, data):
    url = reverse(name, args=["checkout", *args])
    if data == "row":
        data = row(args[0])
    return getattr(client, method)(url, data or {})


@pytest.mark.parametrize("who", ["anonymous", "outsider", "viewer"])
@pytest.mark.parametrize(("method", "name", "args", "data", "writes"), PAGES)
def test_pages_refuse_whoever_may_not(request, flags, who, method, name, args, data, writes):
    client = Client()
    if who != "anonymous":
        client.force_login(request.getfixturevalue(who))
    before = state()
    response = _page_request(client, method, name, args, data)
    assert response.status_code == EXPECTED_PAGES[who][writes], (name, response.status_code)
    if who == "anonymous":
        assert response["Location"].startswith("/login/?next=")
    assert state() == before


@pytest.mark.parametrize(("method", "name", "args", "data", "writes"), PAGES)
def test_pages_refuse_a_viewer_over_htmx_too(
    viewer_client, flags, htmx, method, name, args, data, writes
):
    if method == "get" or not writes:
        return
    url = reverse(name, args=["checkout", *args])
    payload = row(args[0]) if data == "row" else (data or {})
    before = state()
    response = viewer_client.post(url, payload, headers=htmx)
    assert response.status_code == 403
    assert state() == before


@pytest.mark.parametrize(("method", "name", "args", "data", "writes"), PAGES)
def test_an_editor_may_do_each_of_them(editor_client, flags, method, name, args, data, writes):
    response = _page_request(editor_client, method, name, args, data)
    assert response.status_code in (200, 302), (name, response.status_code)
    if method == "post":
        assert response.status_code == 302


API = [
    ("get", "apps/checkout/code-references/", None, False),
    ("post", "apps/checkout/code-references/", "scan", True),
    ("get", "apps/checkout/short-term/", None, False),
    ("post", "apps/checkout/short-term/archive/", {"flags": ["promo"]}, True),
    ("post", "apps/checkout/short-term/restore/", {"flags": ["old"]}, True),
    ("get", "short-term/digest/", None, False),
]
SCAN = {
    "commit": SHA,
    "files_scanned": 1,
    "references": [{"flag": "promo", "path": "a.py", "line": 1, "excerpt": "promo"}],
}


@pytest.mark.parametrize("who", ["anonymous", "outsider", "viewer", "editor"])
@pytest.mark.parametrize(("method", "path", "body", "writes"), API)
def test_the_api_checks_the_tokens_role(request, api_as, flags, who, method, path, body, writes):
    body = SCAN if body == "scan" else body
    api = api_as(request.getfixturevalue(who)) if who != "anonymous" else None  # the token first
    before = state()
    if api is None:
        client = Client()
        if method == "get":
            response = client.get("/api/v1/" + path)
        else:
            response = client.post(
                "/api/v1/" + path, json.dumps(body), content_type="application/json"
            )
    else:
        response = api.get(path) if method == "get" else api.post(path, body)
    expected = {
        "anonymous": 401,
        "outsider": 403,
        "viewer": 403 if writes else 200,
        "editor": (201 if body is SCAN else (200, 202)) if writes else 200,
    }[who]
    if isinstance(expected, tuple):
        assert response.status_code in expected, response.content
    else:
        assert response.status_code == expected, response.content
    if who != "editor" or not writes:
        assert state() == before


def test_a_browser_session_must_pass_csrf_to_upload_or_archive(flags, editor):
    client = Client(enforce_csrf_checks=True)
    client.force_login(editor)
    before = state()
    for path, body in (
        ("apps/checkout/code-references/", SCAN),
        ("apps/checkout/short-term/archive/", {"flags": ["promo"]}),
    ):
        response = client.post("/api/v1/" + path, json.dumps(body), content_type="application/json")
        assert response.status_code == 403 and "CSRF" in response.json()["error"]["message"]
    assert state() == before

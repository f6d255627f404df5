"""Request handling before any view: bad characters, client addresses, htmx and sessions."""

from __future__ import annotations

import pytest
from django.urls import reverse

from flagdash.audit.models import Action, AuditEvent
from flagdash.audit.services import audit_verify_chain
from flagdash.flags import services

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url",
    [
        "/apps/checkout/flags/?q=%00",
        "/apps/checkout/flags/?tag=a%00b",
        "/apps/%00/flags/",
        "/switch/?app=%00",
        "/apps/checkout/short-term/?owner=a%00&owner=b",  # not only the last value
        "/apps/checkout/flags/?a%00=1",  # nor only the values
    ],
)
def test_a_nul_character_in_the_address_is_a_400_not_a_500(viewer_client, app, url):
    response = viewer_client.get(url)
    assert response.status_code == 400
    assert b"NUL" in response.content


def test_the_api_answers_a_nul_character_in_its_own_error_format(viewer_client, app):
    response = viewer_client.get("/api/v1/apps/checkout/flags/?q=%00")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


@pytest.mark.parametrize(
    ("forwarded", "recorded"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),  # stored as the database stores it
        ("1.2.3.4:5678", "127.0.0.1"),  # not an address: the socket's address is used
        ("unknown", "127.0.0.1"),
    ],
)
def test_forwarded_addresses_are_checked_and_canonical(
    settings, editor_client, flag, beta, forwarded, recorded
):
    settings.TRUSTED_PROXY_COUNT = 1
    url = reverse("flag_toggle", args=[flag.application.key, flag.key, beta.key])
    response = editor_client.post(
        url, {"enabled": "true"}, headers={"X-Forwarded-For": forwarded}, REMOTE_ADDR="127.0.0.1"
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action=Action.FLAG_TOGGLED)
    assert event.client_ip == recorded
    assert audit_verify_chain()[1] is None


def test_an_htmx_request_with_an_expired_session_is_sent_to_the_login_page(client, flag, beta):
    url = reverse("flag_toggle", args=[flag.application.key, flag.key, beta.key])
    response = client.post(url, {"enabled": "true"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith("/login/?next=")


def test_pages_and_their_fragments_vary_on_hx_request(viewer_client, app):
    response = viewer_client.get(reverse("flag_list", args=[app.key]))
    assert "HX-Request" in response["Vary"]


def test_the_back_button_gets_the_whole_page_not_a_fragment(viewer_client, app, flag):
    headers = {"HX-Request": "true", "HX-History-Restore-Request": "true"}
    response = viewer_client.get(reverse("flag_list", args=[app.key]), {"q": "x"}, headers=headers)
    assert "<html" in response.content.decode()


def test_security_headers_are_set(viewer_client, app):
    response = viewer_client.get(reverse("flag_list", args=[app.key]))
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Request-ID"]


def test_a_version_number_in_unicode_digits_is_ignored_not_a_crash(viewer_client, app, beta, flag):
    services.flag_set_enabled(actor=None, flag=flag, environment=beta, enabled=True)
    url = reverse("version_detail", args=[app.key, beta.key, 2])
    assert viewer_client.get(url, {"against": "²"}).status_code == 200

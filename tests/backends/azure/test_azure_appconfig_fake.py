"""The Azure App Configuration fake is faithful where flagdash relies on it: signatures made by
Microsoft's documented algorithm (not only by the SDK) are accepted and anything else is 401,
ETag conditions, filters and paging, locks, problem+json errors, Sync-Token."""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import http.client
import json

import pytest
from azure.appconfiguration import (
    AzureAppConfigurationClient,
    ConfigurationSetting,
    ResourceReadOnlyError,
)
from azure.core import MatchConditions
from azure.core.exceptions import ClientAuthenticationError

from tests.fakes.azure_appconfig import FakeAppConfig, filter_matches, parse_lenient_date, running


@pytest.fixture
def fake():
    with running(page_size=3) as f:
        yield f


def client(fake: FakeAppConfig, **kwargs) -> AzureAppConfigurationClient:
    return AzureAppConfigurationClient.from_connection_string(fake.connection_string(**kwargs))


def signed_request(
    fake: FakeAppConfig,
    method: str,
    path_and_query: str,
    body: bytes = b"",
    *,
    date: str | None = None,
    secret: str | None = None,
    tamper_body: bytes | None = None,
) -> http.client.HTTPResponse:
    """A request signed as Microsoft's REST reference describes (RFC 1123 x-ms-date)."""
    credential = fake.default_credential
    host = f"127.0.0.1:{fake.port}"
    date = date or email.utils.formatdate(usegmt=True)
    content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
    to_sign = f"{method}\n{path_and_query}\n{date};{host};{content_hash}"
    key = base64.b64decode(secret or credential.secret)
    signature = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest())
    connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    connection.request(
        method,
        path_and_query,
        body=tamper_body if tamper_body is not None else body,
        headers={
            "Host": host,
            "x-ms-date": date,
            "x-ms-content-sha256": content_hash,
            "Authorization": f"HMAC-SHA256 Credential={credential.id}&SignedHeaders="
            f"x-ms-date;host;x-ms-content-sha256&Signature={signature.decode()}",
            "Content-Type": "application/vnd.microsoft.appconfig.kv+json",
        },
    )
    return connection.getresponse()


# --- authentication ----------------------------------------------------------------------------


def test_a_request_signed_by_the_documented_algorithm_is_accepted(fake):
    body = json.dumps({"value": "v", "content_type": None}).encode()
    response = signed_request(fake, "PUT", "/kv/greeting?label=a&api-version=1.0", body)
    assert response.status == 200
    answer = json.loads(response.read())
    assert answer["key"] == "greeting" and answer["label"] == "a" and answer["value"] == "v"
    assert response.headers["ETag"] == f'"{answer["etag"]}"'
    assert response.headers["Sync-Token"].endswith(";sn=1")


def test_a_body_that_does_not_match_its_hash_is_refused(fake):
    body = json.dumps({"value": "v"}).encode()
    response = signed_request(
        fake, "PUT", "/kv/greeting?api-version=1.0", body, tamper_body=b'{"value": "w"}'
    )
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == (
        'HMAC-SHA256 error="invalid_token" error_description="Invalid Signature", Bearer'
    )
    assert fake.get("greeting") is None


def test_a_wrong_secret_a_missing_header_and_an_old_date_are_401(fake):
    wrong = base64.b64encode(b"not the secret").decode()
    assert signed_request(fake, "GET", "/kv?api-version=1.0", secret=wrong).status == 401
    old = email.utils.format_datetime(
        dt.datetime.now(dt.UTC) - dt.timedelta(minutes=16), usegmt=True
    )
    response = signed_request(fake, "GET", "/kv?api-version=1.0", date=old)
    assert response.status == 401
    assert (
        'error_description="The access token has expired"' in response.headers["WWW-Authenticate"]
    )
    connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    connection.request("GET", "/kv?api-version=1.0")
    response = connection.getresponse()
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "HMAC-SHA256, Bearer"


def test_the_sdks_odd_date_and_rfc_1123_both_parse():
    assert parse_lenient_date("Nov, 21 2026 12:46:28.521660 GMT") == dt.datetime(
        2026, 11, 21, 12, 46, 28, 521660, tzinfo=dt.UTC
    )
    assert parse_lenient_date("Fri, 11 May 2018 18:48:36 GMT") == dt.datetime(
        2018, 5, 11, 18, 48, 36, tzinfo=dt.UTC
    )
    assert parse_lenient_date("yesterday") is None


def test_the_sdk_signs_and_an_unknown_access_key_is_refused(fake):
    c = client(fake)
    c.set_configuration_setting(ConfigurationSetting(key="k", value="1"))
    assert c.get_configuration_setting("k").value == "1"
    stranger = AzureAppConfigurationClient.from_connection_string(
        f"Endpoint={fake.endpoint};Id=nobody;Secret={fake.default_credential.secret}"
    )
    with pytest.raises(ClientAuthenticationError) as err:
        stranger.get_configuration_setting("k")
    assert (
        'error_description="Invalid Credential"' in err.value.response.headers["WWW-Authenticate"]
    )


# --- conditions, filters, paging, locks --------------------------------------------------------


def test_etag_conditions_behave_as_documented(fake):
    c = client(fake)
    first = c.set_configuration_setting(
        ConfigurationSetting(key="k", label="l", value="1"),
        match_condition=MatchConditions.IfMissing,
    )
    # If-None-Match on a read: 304 → the SDK answers None ("not modified")
    assert (
        c.get_configuration_setting(
            "k", "l", etag=first.etag, match_condition=MatchConditions.IfModified
        )
        is None
    )
    second = c.set_configuration_setting(
        ConfigurationSetting(key="k", label="l", value="2"),
        match_condition=MatchConditions.IfNotModified,
        etag=first.etag,
    )
    assert second.etag != first.etag
    assert fake.count("PUT", "/kv/k", status=200) == 2
    response = signed_request(
        fake, "PUT", "/kv/k?label=l&api-version=1.0", b'{"value": "3"}'
    )  # unconditional: allowed
    assert response.status == 200
    conditional = ConfigurationSetting(key="k", label="l", value="4")
    from azure.core.exceptions import ResourceModifiedError

    with pytest.raises(ResourceModifiedError):
        c.set_configuration_setting(
            conditional, match_condition=MatchConditions.IfNotModified, etag=second.etag
        )
    assert c.delete_configuration_setting("missing") is None  # 204
    assert fake.count("DELETE", "/kv/missing", status=204) == 1


def test_filters_wildcards_lists_escapes_and_the_empty_label(fake):
    c = client(fake)
    for key, label in [
        ("app/a", "prod"),
        ("app/b", "prod"),
        ("app/c", None),
        ("other", "prod"),
        ("a*b", "test"),
        ("app/d", "prod,eu"),
        ("app/e", "production"),
    ]:
        c.set_configuration_setting(ConfigurationSetting(key=key, label=label, value="x"))

    def keys(**filters):
        return sorted((s.key, s.label) for s in c.list_configuration_settings(**filters))

    assert keys(key_filter="app/*", label_filter="prod") == [("app/a", "prod"), ("app/b", "prod")]
    assert keys(key_filter="app/*", label_filter="\0") == [("app/c", None)]
    assert keys(key_filter="*b") == [("a*b", "test"), ("app/b", "prod")]
    assert keys(key_filter="a\\*b") == [("a*b", "test")]
    assert keys(label_filter="prod\\,eu") == [("app/d", "prod,eu")]
    assert keys(label_filter="prod*", key_filter="app/e,other") == [
        ("app/e", "production"),
        ("other", "prod"),
    ]
    assert len(keys()) == 7  # three pages of three, followed through @nextLink
    assert fake.count("GET", "/kv") >= 3 + 6
    with pytest.raises(Exception) as err:
        keys(key_filter="a,b,c,d,e,f")
    assert err.value.status_code == 400
    assert "invalid-argument" in err.value.response.text()


def test_a_locked_key_refuses_writes_with_409_until_unlocked(fake):
    c = client(fake)
    setting = c.set_configuration_setting(ConfigurationSetting(key="k", label="l", value="1"))
    locked = c.set_read_only(setting)
    assert locked.read_only is True and locked.etag == setting.etag
    with pytest.raises(ResourceReadOnlyError) as err:
        c.set_configuration_setting(ConfigurationSetting(key="k", label="l", value="2"))
    problem = json.loads(err.value.response.text())
    assert problem["type"] == "https://azconfig.io/errors/key-locked"
    assert problem["name"] == "k" and problem["status"] == 409
    assert err.value.response.headers["Content-Type"].startswith("application/problem+json")
    c.set_read_only(locked, read_only=False)
    assert (
        c.set_configuration_setting(ConfigurationSetting(key="k", label="l", value="2")).value
        == "2"
    )


def test_faults_are_injected_by_method_and_path(fake):
    c = client(fake)
    fake.fail_next("GET", "/kv/k", status=500, times=1)
    c.set_configuration_setting(ConfigurationSetting(key="k", value="1"))
    assert c.get_configuration_setting("k").value == "1"  # the SDK retried the 500
    assert fake.count("GET", "/kv/k", status=500) == 1
    with pytest.raises(ValueError):
        fake.fail_next("GET", "kv/k")
    assert filter_matches("\0,prod", None, is_label=True)

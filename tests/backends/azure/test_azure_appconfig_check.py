"""The settings page's "test connection": ``AzureAppConfigBackend.check()`` reports success and
each failure clearly, and never raises."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from flagdash.backends import azure_appconfig
from flagdash.backends.base import backend_for
from flagdash.backends.models import BackendConnection, BackendKind
from tests.backends.azure.conftest import CONNECTION_ENV, LABEL, azure_options
from tests.deployments.workers import free_port

pytestmark = pytest.mark.django_db


def check(options):
    connection = BackendConnection(name="t", kind=BackendKind.AZURE_APPCONFIG, options=options)
    return backend_for(connection).check()


@pytest.fixture
def no_azure_identity(monkeypatch):
    """No Azure credentials in this process for DefaultAzureCredential to find."""
    for name in (
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_USERNAME",
        "AZURE_FEDERATED_TOKEN_FILE",
        "IDENTITY_ENDPOINT",
        "MSI_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)


def test_check_reads_flags_and_proves_write_permission_without_writing(azure):
    azure.put_outside(".appconfig.featureflag/a", LABEL, '{"id": "a"}')
    azure.put_outside(".appconfig.featureflag/b", "other", '{"id": "b"}')
    result = check(azure_options(azure))
    assert result.ok, result
    assert result.message == (
        f"Connected to {azure.endpoint} (label 'staging'); flagdash can read and write "
        "feature flags."
    )
    assert result.details == [
        f"Endpoint: {azure.endpoint}",
        "Label: staging",
        f"Credentials: the connection string in ${CONNECTION_ENV}",
        "Read 1 feature flag(s) with label 'staging'",
        "Write permission: verified (Azure refused a write that could not match, 412)",
    ]
    assert azure.count("GET", "/kv") == 1
    assert azure.count("PUT", "/kv/flagdash-write-check", status=412) == 1
    assert azure.get("flagdash-write-check", LABEL) is None  # nothing was written


def test_check_with_no_label_lists_unlabelled_flags(azure):
    azure.put_outside(".appconfig.featureflag/a", None, '{"id": "a"}')
    azure.put_outside(".appconfig.featureflag/b", LABEL, '{"id": "b"}')
    result = check(azure_options(azure, label=""))
    assert result.ok
    assert "Label: (no label)" in result.details
    assert "Read 1 feature flag(s) with no label" in result.details


def test_check_names_the_variable_holding_a_bad_connection_string(azure, monkeypatch):
    monkeypatch.setenv(CONNECTION_ENV, "Endpoint=https://x.azconfig.io;Id=abc")
    result = check(azure_options(azure))
    assert not result.ok
    assert result.message.startswith(f"The connection string in ${CONNECTION_ENV} is not valid")
    assert azure.count() == 0


def test_check_refused_secret_is_401_and_names_the_variable(azure, monkeypatch):
    monkeypatch.setenv(CONNECTION_ENV, azure.connection_string(secret="bm90LXRoZS1zZWNyZXQ="))
    result = check(azure_options(azure))
    assert not result.ok
    assert "refused the credentials (401)" in result.message
    assert f"check the connection string in ${CONNECTION_ENV}" in result.message
    assert azure.count() == 1  # no retries of a refused signature


def test_check_with_a_read_only_key_names_the_role_to_assign(azure, monkeypatch):
    reader = azure.add_credential("reader", read_only=True)
    monkeypatch.setenv(CONNECTION_ENV, azure.connection_string(reader))
    result = check(azure_options(azure))
    assert not result.ok
    assert "(403)" in result.message
    assert "'App Configuration Data Owner' role" in result.message
    assert "Read 0 feature flag(s) with label 'staging'" in result.details  # reading worked


def test_check_of_an_unreachable_endpoint_says_so(azure, monkeypatch, settings):
    settings.AZURE_APPCONFIG_TIMEOUT_SECONDS = 1
    port = free_port()
    monkeypatch.setenv(CONNECTION_ENV, f"Endpoint=http://127.0.0.1:{port};Id=x;Secret=c2VjcmV0")
    result = check(azure_options(azure))
    assert not result.ok
    assert result.message.startswith(
        f"Could not reach Azure App Configuration at http://127.0.0.1:{port}"
    )


def test_check_without_any_credentials_says_what_is_missing(monkeypatch, no_azure_identity):
    monkeypatch.delenv(CONNECTION_ENV, raising=False)
    port = free_port()
    result = check(
        {
            "endpoint": f"https://127.0.0.1:{port}",
            "label": LABEL,
            "connection_string_env": CONNECTION_ENV,
        }
    )
    assert not result.ok
    assert result.message.startswith("No Azure credentials while listing the feature flags")
    assert f"${CONNECTION_ENV} is not set and DefaultAzureCredential found none" in result.message
    assert "Credentials: DefaultAzureCredential" in result.details


DEVELOPER_CREDENTIALS = {
    "AzureCliCredential",
    "AzurePowerShellCredential",
    "AzureDeveloperCliCredential",
    "InteractiveBrowserCredential",
    "VisualStudioCodeCredential",
    "SharedTokenCacheCredential",
    "BrokerCredential",
}


def test_one_credential_per_process_without_developer_tools(monkeypatch):
    monkeypatch.setattr(azure_appconfig, "_credential", None)
    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(lambda _: azure_appconfig._default_credential(), range(32)))
    assert all(c is found[0] for c in found)  # one, even when threads ask at once
    kinds = {type(c).__name__ for c in found[0].credentials}
    assert kinds.isdisjoint(DEVELOPER_CREDENTIALS), kinds
    assert {"EnvironmentCredential", "ManagedIdentityCredential"} <= kinds


def test_check_never_waits_on_the_azure_cli_or_powershell(monkeypatch, no_azure_identity, tmp_path):
    """ "Test connection" runs in a web request: with no server identity it must fail at once,
    not start `az`, `pwsh` or `azd` (each may take up to 10 seconds)."""
    ran = tmp_path / "ran"
    for tool in ("az", "pwsh", "azd", "powershell"):
        script = tmp_path / tool
        script.write_text(f"#!/bin/sh\necho {tool} >> {ran}\nsleep 5\nexit 1\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv(CONNECTION_ENV, raising=False)
    monkeypatch.setattr(azure_appconfig, "_credential", None)
    started = time.monotonic()
    result = check(
        {
            "endpoint": f"https://127.0.0.1:{free_port()}",
            "label": LABEL,
            "connection_string_env": CONNECTION_ENV,
        }
    )
    assert not result.ok and result.message.startswith("No Azure credentials")
    assert not ran.exists(), ran.read_text()
    assert time.monotonic() - started < 5


def test_check_refuses_defaultazurecredential_over_plain_http(monkeypatch, azure):
    monkeypatch.delenv(CONNECTION_ENV)
    result = check(azure_options(azure))
    assert not result.ok
    assert "must start with https://" in result.message
    assert azure.count() == 0


def test_check_with_nothing_configured_never_raises(monkeypatch):
    monkeypatch.delenv(CONNECTION_ENV, raising=False)
    result = check({})
    assert not result.ok
    assert result.message.startswith("No Azure App Configuration endpoint")


def test_a_connection_string_for_another_store_is_refused(azure, settings):
    """The environment names its store; a connection string for a different store (the shared
    default variable, say) must not send its flags there."""
    from flagdash.backends.azure_appconfig import AzureAppConfigBackend
    from flagdash.backends.models import BackendConnection, BackendKind

    connection = BackendConnection(
        name="x",
        kind=BackendKind.AZURE_APPCONFIG,
        options=azure_options(azure, endpoint="https://production-store.azconfig.io"),
    )
    calls = azure.count()
    result = AzureAppConfigBackend(connection).check()
    assert not result.ok
    assert "production-store.azconfig.io" in result.message and "127.0.0.1" in result.message
    assert azure.count() == calls


def test_azure_tokens_are_only_sent_to_azures_own_hosts(settings, monkeypatch):
    from flagdash.backends.azure_appconfig import AzureAppConfigBackend
    from flagdash.backends.endpoints import azure_audience
    from flagdash.backends.models import BackendConnection, BackendKind

    settings.BACKEND_ENDPOINT_ALLOWLIST = []
    monkeypatch.delenv(CONNECTION_ENV, raising=False)
    connection = BackendConnection(
        name="x",
        kind=BackendKind.AZURE_APPCONFIG,
        options={"endpoint": "https://attacker.example", "label": LABEL,
                 "connection_string_env": CONNECTION_ENV},
    )  # fmt: skip
    result = AzureAppConfigBackend(connection).check()
    assert not result.ok and "does not send Azure requests to attacker.example" in result.message
    assert azure_audience("https://s.azconfig.azure.us") == "https://appconfig.azure.us"
    assert azure_audience("https://s.azconfig.io") == "https://appconfig.azure.com"

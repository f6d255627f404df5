"""With LOG_LEVEL=DEBUG, the cloud SDKs must not write credentials or documents to the log:
botocore logs every request's headers (Authorization, the X-Amz-Security-Token session token)
and body at DEBUG, so its loggers (and urllib3's, and the Azure SDK's) stay at INFO unless
BOTO_DEBUG / AZURE_SDK_DEBUG is set. Checked with flagdash's own logging configuration, a DEBUG
root logger, and real calls through boto3 and azure-appconfiguration to the fakes."""

from __future__ import annotations

import json
import logging
import logging.config

import pytest
from django.conf import settings as django_settings

from flagdash.backends.base import backend_for
from flagdash.backends.models import BackendConnection, BackendKind
from flagdash.core.logging import AZURE_LOGGERS, BOTO_LOGGERS, logging_config
from tests.backends.azure.conftest import CONNECTION_ENV, azure_options
from tests.fakes.aws_appconfig import ACCESS_KEY, SECRET_KEY
from tests.fakes.azure_appconfig import running

pytestmark = pytest.mark.django_db

SESSION_TOKEN = "FQoGZXIvYXdzEXAMPLE+session/TOKEN+0123456789abcdef"
DOCUMENT_MARKER = "a-description-only-in-the-document"
FORBIDDEN = ("x-amz-security-token", "authorization", "secret=", "signature=")


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()}")


def configured(**flags: bool):
    """flagdash's logging at DEBUG (as with LOG_LEVEL=DEBUG), captured, console removed."""
    logging.config.dictConfig(logging_config("DEBUG", **flags))
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    capture = Capture()
    root.addHandler(capture)
    return capture


@pytest.fixture
def azure(monkeypatch):
    """The Azure fake, its connection string (with its Secret=) in the environment."""
    with running() as fake:
        monkeypatch.setenv(CONNECTION_ENV, fake.connection_string())
        yield fake


@pytest.fixture
def debug_logging():
    yield configured
    logging.getLogger().handlers.clear()
    for name in (*BOTO_LOGGERS, *AZURE_LOGGERS):
        logging.getLogger(name).setLevel(logging.NOTSET)
    logging.config.dictConfig(django_settings.LOGGING)  # the suite's own configuration


def calls_with_secrets(aws, azure, monkeypatch) -> None:
    """An AWS check and a document upload with a session token, and an Azure check with a
    connection string, all against the fakes."""
    aws.fake.credentials[ACCESS_KEY] = (SECRET_KEY, SESSION_TOKEN)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    backend = aws.backend()
    assert backend.check().ok
    document = {
        "version": "1",
        "flags": {"f": {"name": "F", "description": DOCUMENT_MARKER}},
        "values": {"f": {"enabled": True}},
    }
    backend.aws.call(
        "CreateHostedConfigurationVersion",
        backend.profile_resource,
        ApplicationId=aws.application_id,
        ConfigurationProfileId=aws.profile_id,
        Content=json.dumps(document).encode(),
        ContentType="application/json",
    )
    connection = BackendConnection(
        name="azure", kind=BackendKind.AZURE_APPCONFIG, options=azure_options(azure)
    )
    assert backend_for(connection).check().ok


def test_a_debug_root_logger_writes_no_credentials_and_no_documents(
    aws, azure, monkeypatch, debug_logging
):
    capture = debug_logging()
    logging.getLogger("flagdash.test").debug("DEBUG is on")
    calls_with_secrets(aws, azure, monkeypatch)
    text = "\n".join(capture.lines)
    assert "flagdash.test DEBUG is on" in text
    lowered = text.lower()
    for word in FORBIDDEN:
        assert word not in lowered, word
    for secret in (SESSION_TOKEN, SECRET_KEY, DOCUMENT_MARKER, azure.default_credential.secret):
        assert secret not in text
    assert logging.getLogger("botocore").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("azure").getEffectiveLevel() == logging.INFO


def test_boto_debug_lets_botocore_through_when_a_person_asks(
    aws, azure, monkeypatch, debug_logging
):
    """The flag works (and shows why it is not the default)."""
    capture = debug_logging(boto_debug=True)
    calls_with_secrets(aws, azure, monkeypatch)
    text = "\n".join(capture.lines)
    assert "x-amz-security-token" in text.lower()
    assert logging.getLogger("azure").getEffectiveLevel() == logging.INFO


def test_the_sdk_loggers_follow_their_flags():
    config = logging_config("DEBUG")
    assert {config["loggers"][n]["level"] for n in (*BOTO_LOGGERS, *AZURE_LOGGERS)} == {"INFO"}
    assert config["root"]["level"] == "DEBUG"
    config = logging_config("DEBUG", boto_debug=True, azure_debug=True)
    assert {config["loggers"][n]["level"] for n in (*BOTO_LOGGERS, *AZURE_LOGGERS)} == {"DEBUG"}

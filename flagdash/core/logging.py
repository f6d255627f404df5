"""Logging: the request-id filter, and the logging configuration settings.py uses.

The cloud SDKs log more than flagdash may show at DEBUG: botocore writes every request's headers
(``Authorization``, the ``X-Amz-Security-Token`` session token) and whole request bodies (the
feature-flag documents), and its signer writes the string it signs. So a DEBUG root logger
(``LOG_LEVEL=DEBUG``) does not reach them: ``botocore``, ``boto3`` and ``urllib3`` stay at INFO
unless ``BOTO_DEBUG`` is set, and ``azure`` (azure-core, azure-identity, the App Configuration
SDK) at INFO unless ``AZURE_SDK_DEBUG`` is set. Those flags are for a person debugging on their
own machine: with them, secrets reach the log.
"""

from __future__ import annotations

import logging
from typing import Any

from flagdash.core import context

BOTO_LOGGERS = ("botocore", "boto3", "urllib3")
AZURE_LOGGERS = ("azure",)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = context.current().request_id
        return True


def sdk_logger_levels(*, boto_debug: bool = False, azure_debug: bool = False) -> dict[str, Any]:
    """The cloud SDKs' loggers, held at INFO unless their debug flag is set."""
    loggers: dict[str, Any] = {}
    for name in BOTO_LOGGERS:
        loggers[name] = {"level": "DEBUG" if boto_debug else "INFO"}
    for name in AZURE_LOGGERS:
        loggers[name] = {"level": "DEBUG" if azure_debug else "INFO"}
    return loggers


def logging_config(
    level: str, *, boto_debug: bool = False, azure_debug: bool = False
) -> dict[str, Any]:
    """Django's LOGGING: everything to the console at ``level``, with the request id."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "flagdash.core.logging.RequestIdFilter"}},
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "INFO"},
            **sdk_logger_levels(boto_debug=boto_debug, azure_debug=azure_debug),
        },
    }

"""Logging filter that stamps each record with the current request id."""

import logging

from flagdash.core import context


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = context.current().request_id
        return True

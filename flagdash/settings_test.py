"""Settings for the test suite.

The suite runs on PostgreSQL and Redis (127.0.0.1 by default; TEST_DATABASE_URL and
TEST_REDIS_URL override). Without CI=true, a machine lacking PostgreSQL falls back to SQLite
and the PostgreSQL-only tests skip; with CI=true a missing service fails the run instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("FLAGDASH_VAR_DIR", str(Path(tempfile.gettempdir()) / "flagdash-test-var"))
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-0123456789")
os.environ.setdefault(
    "DATABASE_URL",
    os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/flagdash"),
)
os.environ.setdefault("REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))

from flagdash.services_probe import require_or_fallback
from flagdash.settings import *  # noqa: F403
from flagdash.settings import DATABASES, REDIS_SOCKET_OPTIONS, VAR_DIR

DATABASES, CACHES, POSTGRES_AVAILABLE, REDIS_AVAILABLE = require_or_fallback(
    DATABASES, os.environ["REDIS_URL"], VAR_DIR, ci=os.environ.get("CI", "").lower() == "true"
)
if REDIS_AVAILABLE:  # the same timeouts as in production
    CACHES["default"]["OPTIONS"] = dict(REDIS_SOCKET_OPTIONS)
# Live-server request threads must not keep connections between requests (Chromium keeps its
# HTTP connections open, so such a thread outlives the test and blocks dropping the database).
DATABASES["default"]["CONN_MAX_AGE"] = 0
# Several suites on one machine (or pytest-xdist workers) each get their own test database.
if POSTGRES_AVAILABLE:
    DATABASES["default"]["TEST"] = {
        "NAME": "test_flagdash" + os.environ.get("FLAGDASH_TEST_DB_SUFFIX", "")
    }
CELERY_BROKER_URL = os.environ["REDIS_URL"] if REDIS_AVAILABLE else "memory://"
CELERY_BROKER_TRANSPORT_OPTIONS = {}
# Tasks enqueued by tests go to a queue of this suite only, never to another suite's workers.
CELERY_TASK_DEFAULT_QUEUE = "flagdash-test" + os.environ.get("FLAGDASH_TEST_DB_SUFFIX", "")

# The wire-level fakes of AWS AppConfig and Azure App Configuration listen on 127.0.0.1.
BACKEND_ENDPOINT_ALLOWLIST = ["127.0.0.1", "localhost"]
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "root": {"handlers": ["null"], "level": "WARNING"},
}

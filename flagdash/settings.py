"""flagdash settings.

Everything an operator may change comes from an environment variable (see README,
"Configuration"). The defaults are safe for a local run: SQLite under var/, a broker that
needs no server, a secret key generated once and kept under var/.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from flagdash.core.logging import logging_config
from flagdash.env import env_bool, env_int, env_list, env_str, secret_from_file

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("FLAGDASH_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY") or secret_from_file(VAR_DIR / "secret_key")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
PORT = env_int("PORT", 8000, minimum=1)

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "flagdash.core",
    "flagdash.accounts",
    "flagdash.audit",
    "flagdash.backends",
    "flagdash.flags",
    "flagdash.deployments",
    "flagdash.evaluation",
    "flagdash.lifecycle",
]

MIDDLEWARE = [
    "flagdash.core.middleware.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "flagdash.core.middleware.HtmxResponsesMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "flagdash.core.middleware.SecurityHeadersMiddleware",
]

ROOT_URLCONF = "flagdash.urls"
WSGI_APPLICATION = "flagdash.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "flagdash.core.context_processors.navigation",
            ],
        },
    }
]

# --- Database ---------------------------------------------------------------------------------
# DATABASE_URL, e.g. postgres://flagdash:secret@db:5432/flagdash. Default: SQLite under var/.
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'flagdash.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # web, worker and beat share the file: WAL lets readers and one writer work together, and
    # IMMEDIATE transactions take the write lock up front instead of failing half-way.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Broker and cache -------------------------------------------------------------------------
# REDIS_URL, e.g. redis://redis:6379/0. Without it Celery uses kombu's filesystem transport
# under var/broker, which needs no server (one machine only: fine for `make run`).
REDIS_URL = env_str("REDIS_URL")
# A Redis that is down or does not answer costs a request (or the evaluation counters' push
# thread) at most this long per attempt, instead of hanging it: short connect and read timeouts
# for the cache and the counters' client (redis-py's default is to wait forever).
REDIS_TIMEOUT_SECONDS = env_int("REDIS_TIMEOUT_SECONDS", 2, minimum=1)
REDIS_SOCKET_OPTIONS = {
    "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
    "socket_timeout": REDIS_TIMEOUT_SECONDS,
}
if REDIS_URL:
    CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "flagdash",
            "OPTIONS": dict(REDIS_SOCKET_OPTIONS),
        }
    }
else:
    CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://localhost//")
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Above the longest task's hard time limit, so a slow task is never delivered twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 120
CELERY_TASK_TIME_LIMIT = 180
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# --- Short-term flags (flagdash/lifecycle) ----------------------------------------------------
# A flag with the same value everywhere (or not evaluated) for this many days is "ready to
# remove" (or "unused").
LIFECYCLE_READY_DAYS = env_int("LIFECYCLE_READY_DAYS", 14, minimum=1)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LIFECYCLE_DIGEST_WEEKDAY = env_str("LIFECYCLE_DIGEST_WEEKDAY", "mon").lower()
if LIFECYCLE_DIGEST_WEEKDAY not in WEEKDAYS:
    raise ImproperlyConfigured(
        f"LIFECYCLE_DIGEST_WEEKDAY must be one of {', '.join(WEEKDAYS)}, "
        f"got {LIFECYCLE_DIGEST_WEEKDAY!r}"
    )
LIFECYCLE_DIGEST_HOUR = env_int("LIFECYCLE_DIGEST_HOUR", 8, minimum=0)
if LIFECYCLE_DIGEST_HOUR > 23:
    raise ImproperlyConfigured(f"LIFECYCLE_DIGEST_HOUR must be 0–23, got {LIFECYCLE_DIGEST_HOUR}")
CELERY_BEAT_SCHEDULE = {
    "audit-verify-chain": {
        "task": "flagdash.audit.tasks.audit_verify_chain_task",
        "schedule": env_int("AUDIT_VERIFY_EVERY_SECONDS", 3600, minimum=60),
    },
    "deployment-reconcile": {
        "task": "flagdash.deployments.tasks.deployment_reconcile_task",
        "schedule": env_int("DEPLOYMENT_RECONCILE_SECONDS", 5, minimum=1),
        "options": {"expires": 30},
    },
    "alarm-deliveries-prune": {
        "task": "flagdash.deployments.tasks.alarm_deliveries_prune_task",
        "schedule": 3600,
    },
    "evaluation-counts-flush": {
        "task": "flagdash.evaluation.tasks.evaluation_counts_flush_task",
        "schedule": env_int("OFREP_COUNTS_FLUSH_SECONDS", 10, minimum=1),
        "options": {"expires": 60},
    },
    "evaluation-counts-prune": {
        "task": "flagdash.evaluation.tasks.evaluation_counts_prune_task",
        "schedule": 3600,
    },
    # Short-term flags: this week's status counts for the chart (daily), the owners' digest.
    "lifecycle-snapshots": {
        "task": "flagdash.lifecycle.tasks.lifecycle_snapshots_task",
        "schedule": crontab(minute=17, hour="*/6"),
        "options": {"expires": 3600},
    },
    "lifecycle-digest": {
        "task": "flagdash.lifecycle.tasks.lifecycle_digest_task",
        "schedule": crontab(
            minute=0, hour=LIFECYCLE_DIGEST_HOUR, day_of_week=LIFECYCLE_DIGEST_WEEKDAY
        ),
        "options": {"expires": 6 * 3600},
    },
}

# --- Deployment engine ------------------------------------------------------------------------
# A worker holds a deployment for at most this long while it calls the backend; if it dies,
# another takes over after the lease expires. The advance task's hard time limit is derived from
# it (10 s less), so a task can never outlive its lease and two workers never act at once;
# backends bound their own calls well below it (short timeouts, few retries).
DEPLOYMENT_LEASE_SECONDS = env_int("DEPLOYMENT_LEASE_SECONDS", 90, minimum=1)
# Status polling adapts to the plan (at each step, slower during bakes) within these bounds.
DEPLOYMENT_POLL_MIN_SECONDS = env_int("DEPLOYMENT_POLL_MIN_SECONDS", 1, minimum=0)
DEPLOYMENT_POLL_MAX_SECONDS = env_int("DEPLOYMENT_POLL_MAX_SECONDS", 30, minimum=1)
# Transient backend errors in a row before a deployment fails; backoff doubles up to the max.
DEPLOYMENT_MAX_ATTEMPTS = env_int("DEPLOYMENT_MAX_ATTEMPTS", 8, minimum=1)
DEPLOYMENT_RETRY_MAX_SECONDS = env_int("DEPLOYMENT_RETRY_MAX_SECONDS", 60, minimum=1)
# The reconciler nudges only deployments this late, so it does not race the normal messages.
DEPLOYMENT_RECONCILE_GRACE_SECONDS = env_int("DEPLOYMENT_RECONCILE_GRACE_SECONDS", 2, minimum=0)
# Demos and tests only: how many times faster than real time the built-in backend follows a
# strategy's schedule (60: a minute of rollout or bake passes in a second). AWS keeps its own.
DEPLOYMENT_CLOCK_SPEED = env_int("DEPLOYMENT_CLOCK_SPEED", 1, minimum=1)
# Azure App Configuration: the SDK's own quick retries and per-request timeout (seconds), kept
# short so a worker never blocks long; the engine retries with backoff beyond them.
# Hosts besides AWS's and Azure's own that backend connections may call (comma-separated
# host or host:port patterns with * wildcards): VPC endpoints with custom names, emulators.
BACKEND_ENDPOINT_ALLOWLIST = env_list("BACKEND_ENDPOINT_ALLOWLIST")
AZURE_APPCONFIG_RETRIES = env_int("AZURE_APPCONFIG_RETRIES", 2, minimum=0)
AZURE_APPCONFIG_TIMEOUT_SECONDS = env_int("AZURE_APPCONFIG_TIMEOUT_SECONDS", 10, minimum=1)

# --- OFREP evaluation ------------------------------------------------------------------------
# Each web process evaluates flags from an in-memory copy of what is deployed. It looks at a
# cache token (changed by every deployment step and API key change) at most this often...
OFREP_REFRESH_SECONDS = env_int("OFREP_REFRESH_SECONDS", 1, minimum=0)
# ...and reloads from the database at least this often even if no token changed (a lost
# cache write, a cloud backend's live version).
OFREP_RESYNC_SECONDS = env_int("OFREP_RESYNC_SECONDS", 30, minimum=1)
# Evaluation counts are summed in memory and pushed (to Redis, or to the database without it)
# by a background thread of each web process this often (0: no thread; tests push by hand).
OFREP_COUNTS_PUSH_SECONDS = env_int("OFREP_COUNTS_PUSH_SECONDS", 5, minimum=0)
# Per-minute evaluation counts are kept this many days (the flag page shows 7).
OFREP_COUNTS_RETENTION_DAYS = env_int("OFREP_COUNTS_RETENTION_DAYS", 8, minimum=7)

# --- Auth -------------------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Failed logins per username and per client address before a pause (see accounts/throttle.py).
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, minimum=1)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 900, minimum=1)

# --- Security ---------------------------------------------------------------------------------
SECURE_COOKIES = env_bool("SECURE_COOKIES", False)  # set when served over HTTPS
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True  # templates hand the token to htmx; no script reads the cookie
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 60 * 60 * 12, minimum=60)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Set when flagdash sits behind a proxy that sets X-Forwarded-Proto / X-Forwarded-For.
if env_bool("BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)

# --- I18N / static ----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
CELERY_TIMEZONE = TIME_ZONE  # crontab schedules (the weekly digest) follow the displayed time
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# --- Email ------------------------------------------------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "flagdash@localhost")
# Where people reach flagdash: links in e-mail (the short-term digest) start with it.
FLAGDASH_BASE_URL = env_str("FLAGDASH_BASE_URL") or f"http://127.0.0.1:{PORT}"

# --- flagdash ---------------------------------------------------------------------------------
FLAGDASH_PAGE_SIZE = env_int("FLAGDASH_PAGE_SIZE", 25, minimum=5)
FLAGDASH_DEMO_PASSWORD = env_str("FLAGDASH_DEMO_PASSWORD")

# --- Logging ----------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
# The cloud SDKs log credentials and whole documents at DEBUG: their loggers stay at INFO, even
# with LOG_LEVEL=DEBUG, unless one of these is set (on a developer's machine only).
BOTO_DEBUG = env_bool("BOTO_DEBUG", False)
AZURE_SDK_DEBUG = env_bool("AZURE_SDK_DEBUG", False)
LOGGING = logging_config(LOG_LEVEL, boto_debug=BOTO_DEBUG, azure_debug=AZURE_SDK_DEBUG)

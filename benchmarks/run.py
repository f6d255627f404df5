"""flagdash benchmarks: the flag list page and the audit CSV export, on PostgreSQL.

Run with `make bench` (or `.venv/bin/python benchmarks/run.py --help`). Plain Python, no pytest:
the script drops and recreates the database named in BENCH_DATABASE_URL (default
postgres://postgres@127.0.0.1:5432/flagdash_bench), migrates it, creates data through the
services, then measures through Django's test Client with production settings (DEBUG off,
hashed static files):

  (a) GET /apps/checkout/flags/ as an admin with N flags x 2 environments: p50/p95 over R
      requests and the number of SQL queries of one request;
  (b) GET /audit/export.csv of E audit events: wall time, rows/s, and the peak of Python
      memory measured with tracemalloc (a second pass, since tracing slows Python down).

Results go to stdout as a small table. Exit status 1 if a measured page fails; a part whose
URL does not exist yet is skipped with a message.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/flagdash_bench"
APP_KEY = "checkout"
FLAG_LIST_URL = f"/apps/{APP_KEY}/flags/"
EXPORT_URL = "/audit/export.csv"


@dataclass
class Report:
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    failed: bool = False

    def add(self, part: str, metric: str, value: str) -> None:
        self.rows.append((part, metric, value))

    def print(self) -> None:
        header = ("benchmark", "metric", "value")
        widths = [max(len(r[i]) for r in [header, *self.rows]) for i in range(3)]
        line = "+".join("-" * (w + 2) for w in widths)
        print(f"+{line}+")
        print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
        print(f"+{line}+")
        previous = None
        for part, metric, value in self.rows:
            shown = part if part != previous else ""
            previous = part
            cells = (shown.ljust(widths[0]), metric.ljust(widths[1]), value.rjust(widths[2]))
            print("| " + " | ".join(cells) + " |")
        print(f"+{line}+")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flags", type=int, default=500, help="flags in checkout (default 500)")
    parser.add_argument("--requests", type=int, default=30, help="timed requests (default 30)")
    parser.add_argument(
        "--events", type=int, default=200_000, help="audit events to export (default 200000)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the benchmark database afterwards"
    )
    return parser.parse_args()


# --- database -------------------------------------------------------------------------------------


def _maintenance_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if parts.scheme not in ("postgres", "postgresql", "pgsql") or not name:
        raise SystemExit(f"BENCH_DATABASE_URL must be a PostgreSQL URL with a database: {url!r}")
    return urlunsplit(parts._replace(path="/postgres")), name


def recreate_database(url: str) -> None:
    """Drop and create the benchmark database (the audit table refuses DELETE by trigger)."""
    import psycopg
    from psycopg import sql

    maintenance, name = _maintenance_url(url)
    try:
        conn = psycopg.connect(maintenance, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise SystemExit(f"PostgreSQL is not reachable at {maintenance}: {exc}") from exc
    with conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(url: str) -> None:
    import psycopg
    from django.db import connections
    from psycopg import sql

    connections.close_all()
    maintenance, name = _maintenance_url(url)
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def setup_django(url: str, var_dir: str) -> None:
    # Production-like settings on a throwaway var dir: no Redis, filesystem broker, DEBUG off.
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "flagdash.settings",
            "DATABASE_URL": url,
            "FLAGDASH_VAR_DIR": var_dir,
            "SECRET_KEY": "benchmark-only-secret-key-not-for-production-0123456789",
            "DEBUG": "false",
            "LOG_LEVEL": "ERROR",
        }
    )
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):
        os.environ.pop(name, None)
    sys.path.insert(0, str(ROOT))

    import django
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    django.setup()
    setup_test_environment()  # lets the test Client's "testserver" host through ALLOWED_HOSTS
    call_command("migrate", verbosity=0, interactive=False)
    call_command("collectstatic", verbosity=0, interactive=False)


# --- data -----------------------------------------------------------------------------------------


def create_data(n_flags: int) -> tuple[Any, Any, list[Any]]:
    import datetime as dt

    from flagdash.accounts.services import user_create
    from flagdash.flags.models import FlagKind, ValueType
    from flagdash.flags.services import application_create, environment_create, flag_create

    admin = user_create(  # the Client logs in with force_login: the password is never used
        actor=None,
        username="bench-admin",
        password=secrets.token_urlsafe(),
        role="admin",
        check_password=False,
    )
    app = application_create(actor=None, key=APP_KEY, name="Checkout")
    envs = [
        environment_create(actor=None, application=app, key="beta", name="Beta"),
        environment_create(
            actor=None, application=app, key="production", name="Production", protected=True
        ),
    ]
    tags = ["payments", "ui", "search", "mobile", "experiment"]
    today = dt.date(2026, 1, 1)
    for i in range(n_flags):
        extra: dict[str, Any] = {}
        if i % 7 == 0:
            extra = {"kind": FlagKind.MULTIVARIANT, "value_type": ValueType.STRING}
        flag_create(
            actor=None,
            application=app,
            key=f"bench-flag-{i:04d}",
            name=f"Benchmark flag {i}",
            description="A flag created by benchmarks/run.py.",
            short_term=i % 3 == 0,
            remove_by=today + dt.timedelta(days=i % 90) if i % 3 == 0 else None,
            tags=[tags[i % len(tags)]],
            **extra,
        )
    return admin, app, envs


# The export's speed does not depend on the hash chain, so these rows are inserted in one
# INSERT ... SELECT over generate_series, computing nothing: their prev_hash/hash values are
# placeholders (unique, as the column requires) and `manage.py verify_audit` would rightly
# report the chain broken at the first of them. Only a throwaway database ever holds them.
INSERT_EVENTS = """
WITH f AS (
    SELECT id, key, row_number() OVER (ORDER BY id) - 1 AS rn
    FROM flags_flag WHERE application_id = %(app)s
)
INSERT INTO audit_auditevent (
    occurred_at, actor_id, actor_name, action, target_type, target_id, target_repr,
    application_id, environment_id, flag_id, before, after, request_id, source, client_ip,
    prev_hash, hash
)
SELECT
    now() - make_interval(secs => %(n)s - g),
    %(actor)s, 'bench-admin', 'flag.toggled', 'flag', f.id::text, %(app_key)s || '/' || f.key,
    %(app)s, CASE WHEN g %% 2 = 0 THEN %(beta)s ELSE %(production)s END, f.id,
    jsonb_build_object('enabled', g %% 4 < 2, 'revision', g),
    jsonb_build_object('enabled', g %% 4 >= 2, 'revision', g + 1),
    md5(g::text), 'web', '192.0.2.10'::inet,
    'bench' || lpad(to_hex(g - 1), 59, '0'), 'bench' || lpad(to_hex(g), 59, '0')
FROM generate_series(1, %(n)s) AS g
JOIN f ON f.rn = g %% %(n_flags)s
ORDER BY g
"""


def insert_events(n: int, *, admin: Any, app: Any, envs: list[Any], n_flags: int) -> float:
    from django.db import connection, transaction

    start = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            INSERT_EVENTS,
            {
                "n": n,
                "n_flags": n_flags,
                "actor": admin.pk,
                "app": app.pk,
                "app_key": app.key,
                "beta": envs[0].pk,
                "production": envs[1].pk,
            },
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_auditevent")
    return time.perf_counter() - start


# --- measurements ---------------------------------------------------------------------------------


def _percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]  # nearest-rank percentile


def _url_exists(path: str) -> bool:
    from django.urls import Resolver404, resolve

    try:
        resolve(path)
    except Resolver404:
        return False
    return True


def bench_flag_list(report: Report, client: Any, *, n_flags: int, requests: int) -> None:
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    part = "flag list"
    report.add(part, "request", f"GET {FLAG_LIST_URL}")
    report.add(part, "data", f"{n_flags} flags x 2 envs, page of {settings.FLAGDASH_PAGE_SIZE}")
    try:
        for _ in range(3):  # warm-up: template loading, first connection, caches
            response = client.get(FLAG_LIST_URL)
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")
        with CaptureQueriesContext(connection) as queries:
            client.get(FLAG_LIST_URL)
        n_queries = len(queries)  # now: the next request's reset_queries empties the log
        samples = []
        for _ in range(requests):
            start = time.perf_counter()
            response = client.get(FLAG_LIST_URL)
            samples.append((time.perf_counter() - start) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")
    except Exception as exc:
        report.add(part, "FAILED", f"{type(exc).__name__}: {exc}"[:120])
        report.failed = True
        return
    report.add(part, f"p50 ({requests} requests)", f"{statistics.median(samples):.1f} ms")
    report.add(part, f"p95 ({requests} requests)", f"{_percentile(samples, 95):.1f} ms")
    report.add(part, "SQL queries / request", str(n_queries))
    report.add(part, "page size", f"{len(response.content) / 1024:.0f} KiB")


def _consume(client: Any, path: str) -> tuple[int, int]:
    """Fetch a (streamed) response to the end; return (bytes, newlines)."""
    response = client.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}")
    chunks: Iterable[bytes] = (
        response.streaming_content if response.streaming else [response.content]
    )
    size = lines = 0
    for chunk in chunks:
        size += len(chunk)
        lines += chunk.count(b"\n")
    response.close()
    return size, lines


def bench_export(
    report: Report, client: Any, *, n_events: int, insert: Callable[[int], float]
) -> None:
    from flagdash.audit.models import AuditEvent

    part = "audit export"
    report.add(part, "request", f"GET {EXPORT_URL}")
    if not _url_exists(EXPORT_URL):
        print(f"note: {EXPORT_URL} does not exist yet: skipping the audit export benchmark")
        report.add(part, "SKIPPED", f"{EXPORT_URL} not routed yet")
        return
    print(f"  inserting {n_events:,} events with INSERT ... SELECT generate_series ...", flush=True)
    seconds = insert(n_events)
    total = AuditEvent.objects.count()
    report.add(part, "events in table", f"{total:,}")
    report.add(part, "bulk insert (SQL)", f"{seconds:.1f} s")
    try:
        start = time.perf_counter()
        size, lines = _consume(client, EXPORT_URL)
        wall = time.perf_counter() - start
        print(f"  exported in {wall:.1f} s; again under tracemalloc (slower) ...", flush=True)
        tracemalloc.start()
        _consume(client, EXPORT_URL)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    except Exception as exc:
        report.add(part, "FAILED", f"{type(exc).__name__}: {exc}"[:120])
        report.failed = True
        return
    rows = max(lines - 1, 0)  # one header line; the generated rows hold no newlines
    report.add(part, "rows exported", f"{rows:,}")
    report.add(part, "wall time", f"{wall:.2f} s")
    report.add(part, "rows/s", f"{rows / wall:,.0f}")
    report.add(part, "size", f"{size / 1e6:.1f} MB ({size / 1e6 / wall:.1f} MB/s)")
    report.add(part, "peak Python memory", f"{peak / 2**20:.1f} MiB (tracemalloc)")


def main() -> int:
    args = parse_args()
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="flagdash-bench-") as var_dir:
        print(f"Recreating {url} ...", flush=True)
        recreate_database(url)
        setup_django(url, var_dir)

        from django.db import connection
        from django.test import Client

        print(f"Creating {args.flags} flags x 2 environments through the services ...", flush=True)
        start = time.perf_counter()
        admin, app, envs = create_data(args.flags)
        report.add(
            "setup",
            "PostgreSQL",
            connection.cursor().connection.info.parameter_status("server_version") or "?",
        )
        report.add("setup", "create flags (services)", f"{time.perf_counter() - start:.1f} s")

        client = Client()
        client.force_login(admin)
        print("Measuring the flag list ...", flush=True)
        bench_flag_list(report, client, n_flags=args.flags, requests=args.requests)
        print(f"Measuring the audit export of {args.events:,} events ...", flush=True)
        bench_export(
            report,
            client,
            n_events=args.events,
            insert=lambda n: insert_events(n, admin=admin, app=app, envs=envs, n_flags=args.flags),
        )
        if not args.keep:
            drop_database(url)
    print()
    report.print()
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())

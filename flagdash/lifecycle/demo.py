"""The short-term page's demo data (``manage.py seed_demo``): code scans and a week of traffic.

- Each demo application's code is a small tree under ``demo_src/`` that uses most of its flags;
  it is scanned with the real scanner and stored as a CLI scan, once (an application that has
  a scan keeps it).
- The flags that code uses get a week of simulated OFREP evaluations (hourly counts, as
  ``counters.store`` writes them), so their sparklines and "last evaluated" show traffic. The
  flags it does not use stay without any.
- Weekly status snapshots are recorded (this week) and estimated from deployment history (the
  earlier weeks), so the chart has twelve bars.

With the demo's history (first deployments 30 days ago) this gives each status at least one flag
in checkout: ``new-payment-form`` and ``holiday-free-shipping`` overdue, ``one-page-checkout``
ready to remove (on everywhere for 30 days), ``checkout-button-color`` unused (no code uses
it), ``allow-bitcoin-at-checkout`` and ``fraud-check-v2`` active.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from django.utils import timezone

from flagdash.core import context
from flagdash.evaluation import counters
from flagdash.flags.models import Application, Environment, Flag
from flagdash.lifecycle import scanner, services, snapshots
from flagdash.lifecycle.models import CodeReferenceScan, ScanSource

DEMO_SRC = Path(__file__).resolve().parent / "demo_src"
TRAFFIC_HOURS = 7 * 24


def _scan(application: Application) -> CodeReferenceScan | None:
    root = DEMO_SRC / application.key
    if not root.is_dir() or CodeReferenceScan.objects.filter(application=application).exists():
        return None
    keys = list(Flag.objects.filter(application=application).values_list("key", flat=True))
    result = scanner.scan_tree(root, keys)
    commit = scanner.git_head(root) if result.listing == "git" else None
    upload = services.clean_scan_upload(
        application,
        references=[
            {"flag": r.flag, "path": r.path, "line": r.line, "excerpt": r.excerpt}
            for r in result.references
        ],
        files_scanned=result.files_scanned,
        commit=commit,
        duration_ms=result.duration_ms,
        skipped_binary=result.skipped_binary,
        skipped_large=result.skipped_large,
        listing=result.listing,
    )
    with context.bind(source="cli"):
        return services.code_scan_store(
            actor=None,
            application=application,
            upload=upload,
            source=ScanSource.CLI,
            uploaded_by_name="seed_demo (manage.py scan_code_refs)",
        )


def _traffic(application: Application, keys: set[str], now: dt.datetime) -> None:
    """A week of hourly evaluations of ``keys`` in every environment (deterministic)."""
    batch = counters.Batch()
    end = int(now.timestamp()) // 3600 * 3600
    for env in Environment.objects.filter(application=application):
        scale = 3 if env.key == "production" else 1
        for key in sorted(keys):
            seed = int.from_bytes(hashlib.sha256(f"{env.pk}/{key}".encode()).digest()[:2], "big")
            for hour in range(TRAFFIC_HOURS):
                at = end - (TRAFFIC_HOURS - 1 - hour) * 3600
                daily = (hour % 24) / 24
                n = scale * (20 + (seed % 40) + int(30 * (1 - abs(daily - 0.6) * 2)))
                batch.counts[(at, env.pk, key, "on")] += n
            batch.last[(env.pk, key)] = float(int(now.timestamp()) - (seed % 300))
    counters.store(batch)


def seed_lifecycle(application: Application, *, now: dt.datetime | None = None) -> None:
    """Scan the application's demo code, simulate its traffic, fill the chart (idempotent:
    an application that has a scan is left alone)."""
    now = now or timezone.now()
    scan = _scan(application)
    if scan is None:
        return
    used = set(scan.references.values_list("flag_key", flat=True))
    _traffic(application, used, now)
    snapshots.snapshots_backfill(application, now=now)
    snapshots.snapshot_record(application, now=now)

"""Two people at once, for real: threads on PostgreSQL, each with its own connection."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from flagdash.audit.models import AuditEvent
from flagdash.audit.services import audit_verify_chain
from flagdash.flags import services
from flagdash.flags.models import ConfigVersion, FlagSetting
from tests.factories import make_flag

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_together(*calls: Callable[[], Any]) -> list[Any]:
    """Start every call at the same moment; return each one's result or exception."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def worker(i: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = call()
        except Exception as exc:  # collected and asserted on by the test
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_concurrent_toggles_in_one_environment_get_distinct_versions(app, beta, editor):
    flags = [make_flag(app, f"race-{i}") for i in range(4)]
    results = run_together(
        *[
            (
                lambda f=f: services.flag_set_enabled(
                    actor=editor, flag=f, environment=beta, enabled=True
                )
            )
            for f in flags
        ]
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    numbers = sorted(r.version.number for r in results)
    assert numbers == [2, 3, 4, 5]
    latest = ConfigVersion.objects.filter(environment=beta).latest("number")
    assert all(f'"race-{i}"' in latest.document for i in range(4))
    assert '"enabled":false' not in latest.document  # no toggle was lost
    assert audit_verify_chain()[1] is None


def test_two_saves_from_the_same_revision_one_wins_one_is_refused(beta, flag, editor, admin_user):
    services.attribute_save(actor=None, flag=flag, name="pct", type="number")
    opened = FlagSetting.objects.get(flag=flag, environment=beta).revision

    def save(actor, value):
        return services.flag_setting_update(
            actor=actor,
            flag=flag,
            environment=beta,
            expected_revision=opened,
            attribute_values={"pct": value},
        )

    results = run_together(lambda: save(editor, 1), lambda: save(admin_user, 2))
    conflicts = [r for r in results if isinstance(r, services.RevisionConflict)]
    saved = [r for r in results if isinstance(r, FlagSetting)]
    assert len(conflicts) == 1 and len(saved) == 1, results
    current = FlagSetting.objects.get(flag=flag, environment=beta)
    assert current.revision == opened + 1
    assert current.attribute_values == saved[0].attribute_values
    assert conflicts[0].changes_since and conflicts[0].changes_since[0].actor_name in {
        "editor",
        "admin",
    }


def test_the_audit_chain_stays_whole_under_concurrent_writers(app, beta, editor):
    flags = [make_flag(app, f"chain-{i}") for i in range(6)]
    before = AuditEvent.objects.count()
    results = run_together(
        *[
            (
                lambda f=f: services.flag_update(
                    actor=editor,
                    flag=f,
                    name=f"Renamed {f.key}",
                    description="",
                    short_term=True,
                    owner=None,
                    remove_by=None,
                    tags=["race"],
                )
            )
            for f in flags
        ]
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    assert AuditEvent.objects.count() == before + 6
    checked, broken = audit_verify_chain()
    assert broken is None and checked == AuditEvent.objects.count()

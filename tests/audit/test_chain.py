"""Tamper evidence: the PostgreSQL trigger refuses UPDATE and DELETE, and `verify_audit`
names the first broken link when a row is edited or deleted behind the trigger's back."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from flagdash.audit.models import AuditEvent

pytestmark = pytest.mark.postgres

TRIGGER = "audit_auditevent_append_only"


@pytest.fixture
def chain(record, flag) -> list[AuditEvent]:
    """The events of the fixtures plus five more, in chain order (oldest first)."""
    record(5, target_repr="chained", before={"n": 1}, after={"n": 2})
    return list(AuditEvent.objects.order_by("id"))


@contextmanager
def trigger_disabled() -> Iterator[None]:
    """What someone with the table owner's rights could do to hide an edit."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE audit_auditevent DISABLE TRIGGER {TRIGGER}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE audit_auditevent ENABLE TRIGGER {TRIGGER}")


def verify(*args: str) -> str:
    out = io.StringIO()
    call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


# --- the trigger -----------------------------------------------------------------------------


def test_trigger_refuses_update(on_postgres, chain):
    event = chain[-1]
    with pytest.raises(DatabaseError, match="append-only: UPDATE refused"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(after={"n": 3})
    event.refresh_from_db()
    assert event.after == {"n": 2}


def test_trigger_refuses_delete(on_postgres, chain):
    event = chain[-1]
    with pytest.raises(DatabaseError, match="append-only: DELETE refused"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_trigger_refuses_raw_sql_too(on_postgres, chain):
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent")
    assert AuditEvent.objects.count() == len(chain)


# --- verify_audit ----------------------------------------------------------------------------


def test_verify_audit_passes_on_an_intact_chain(chain):
    last = AuditEvent.objects.latest("id")
    assert verify() == f"OK: {len(chain)} events, chain intact; head #{last.id} {last.hash}\n"


def test_verify_audit_quiet_prints_nothing_when_intact(chain):
    assert verify("--quiet") == ""


def test_verify_audit_reads_in_batches(chain):
    assert verify("--batch-size", "2").startswith(f"OK: {len(chain)} events, chain intact; head #")


def test_verify_audit_on_an_empty_log(db):
    assert verify() == "OK: 0 events, chain intact\n"


def test_verify_audit_names_an_edited_event(on_postgres, chain):
    edited = chain[-3]
    with trigger_disabled():
        AuditEvent.objects.filter(pk=edited.pk).update(after={"n": 999})
    with pytest.raises(CommandError) as excinfo:
        verify()
    message = str(excinfo.value)
    assert message.startswith(f"BROKEN: audit chain broken at event #{edited.id}: ")
    assert "does not match its hash" in message
    assert excinfo.value.returncode == 1


def test_verify_audit_reports_an_edit_even_when_quiet(on_postgres, chain):
    edited = chain[0]
    with trigger_disabled():
        AuditEvent.objects.filter(pk=edited.pk).update(actor_name="someone-else")
    with pytest.raises(CommandError, match=f"event #{edited.id}:"):
        verify("--quiet")


def test_verify_audit_detects_a_deleted_event_at_the_next_link(on_postgres, chain):
    deleted, following = chain[-3], chain[-2]
    with trigger_disabled():
        AuditEvent.objects.filter(pk=deleted.pk).delete()
    with pytest.raises(CommandError) as excinfo:
        verify()
    message = str(excinfo.value)
    assert message.startswith(f"BROKEN: audit chain broken at event #{following.id}: ")
    assert "link to the previous event does not match" in message


def test_verify_audit_detects_a_rehashed_edit_at_the_next_link(on_postgres, chain):
    """Recomputing the edited row's own hash does not help: the next event still points at the
    old one."""
    from flagdash.audit.services import event_digest

    edited, following = chain[-3], chain[-2]
    edited.after = {"n": 999}
    forged = event_digest(edited)
    with trigger_disabled():
        AuditEvent.objects.filter(pk=edited.pk).update(after={"n": 999}, hash=forged)
    with pytest.raises(CommandError, match=f"event #{following.id}: its link"):
        verify()


def test_verify_audit_rejects_a_bad_batch_size(db):
    with pytest.raises(CommandError, match="batch-size"):
        verify("--batch-size", "0")


@pytest.mark.django_db(transaction=True)
def test_verify_audit_command_line_exit_status_and_stderr(on_postgres, record):
    """Run as a real process: status 0 and OK on stdout; then status 1 and BROKEN on stderr."""
    events = record(3, target_repr="cli check")
    db_url = "postgres://{USER}@{HOST}:{PORT}/{NAME}".format(**connection.settings_dict)
    env = {**os.environ, "DATABASE_URL": db_url, "DJANGO_SETTINGS_MODULE": "flagdash.settings_test"}
    if connection.settings_dict.get("PASSWORD"):
        env["PGPASSWORD"] = connection.settings_dict["PASSWORD"]
    command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "verify_audit"]

    ok = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"OK: {AuditEvent.objects.count()} events, chain intact; head #")

    with trigger_disabled():
        AuditEvent.objects.filter(pk=events[1].pk).update(target_repr="rewritten")
    broken = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert broken.returncode == 1
    assert f"BROKEN: audit chain broken at event #{events[1].id}: " in broken.stderr
    assert broken.stdout == ""

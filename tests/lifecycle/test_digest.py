"""The weekly digest: one mail per owner and week with their overdue and ready flags, the
same list over JSON, and the Celery task."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.core import mail
from django.utils import timezone

from flagdash.flags.models import Flag
from flagdash.lifecycle import digest, tasks
from flagdash.lifecycle.models import DigestDelivery
from tests.factories import UserFactory, make_flag
from tests.lifecycle.conftest import deploy_at, set_values, store_scan

pytestmark = pytest.mark.django_db


@pytest.fixture
def owned(app, beta, production, editor, admin_user, t0):
    today = timezone.localdate()
    make_flag(app, "late", short_term=True, owner="editor", remove_by=today - dt.timedelta(days=2))
    make_flag(app, "settled", short_term=True, owner="editor")  # off everywhere since t0
    make_flag(app, "busy", short_term=True, owner="editor", remove_by=today + dt.timedelta(days=9))
    make_flag(app, "admins", short_term=True, owner="admin", remove_by=today - dt.timedelta(days=1))
    make_flag(app, "kept", owner="editor", remove_by=today - dt.timedelta(days=5))  # permanent
    deploy_at(beta, t0)
    deploy_at(production, t0)
    store_scan(app, [(k, "a.py", 1) for k in ("late", "settled", "busy", "admins", "kept")])
    # "busy" changed yesterday in beta: neither overdue nor ready
    set_values(Flag.objects.get(key="busy"), beta, enabled=True)
    deploy_at(beta, timezone.now() - dt.timedelta(days=1))
    return app


def test_an_owner_gets_their_overdue_and_ready_flags(owned, editor):
    items = digest.digest_for(editor)
    assert [(i.flag.key, i.status) for i in items] == [("late", "overdue"), ("settled", "ready")]
    subject, body = digest.digest_text(editor, items)
    assert subject == "flagdash: your short-term flags — 1 overdue and 1 ready to remove"
    assert "- Checkout / late: Remove-by date" in body
    assert "http://127.0.0.1:8000/apps/checkout/flags/settled/" in body
    assert "http://127.0.0.1:8000/apps/checkout/short-term/" in body


def test_the_weekly_task_mails_each_owner_once(owned, editor, admin_user):
    assert tasks.lifecycle_digest_task() == 2
    assert sorted(m.to[0] for m in mail.outbox) == ["admin@example.com", "editor@example.com"]
    assert tasks.lifecycle_digest_task() == 0  # the same week: nothing again
    assert len(mail.outbox) == 2
    assert DigestDelivery.objects.count() == 2


def test_owners_with_nothing_to_clean_up_or_no_address_get_nothing(owned, editor):
    nobody = UserFactory(username="quiet", role="editor", email="")
    assert digest.digest_send(nobody) is False
    later = timezone.now() + dt.timedelta(weeks=1)
    with mock.patch.object(digest, "digest_for", return_value=[]):
        assert digest.digest_send(editor, now=later) is False
    assert mail.outbox == []


def test_a_failed_send_gives_the_claim_back(owned, editor):
    failing = mock.patch.object(digest, "send_mail", side_effect=OSError("smtp down"))
    with failing, pytest.raises(OSError):
        digest.digest_send(editor)
    assert not DigestDelivery.objects.exists()
    assert digest.digest_send(editor) is True  # tried again: sent
    assert len(mail.outbox) == 1


def test_the_digest_is_also_json(owned, editor, viewer, api_as):
    mine = api_as(editor).get("short-term/digest/").json()
    assert mine["owner"] == "editor" and mine["count"] == 2
    assert [(f["flag"], f["status"]) for f in mine["flags"]] == [
        ("late", "overdue"),
        ("settled", "ready"),
    ]
    assert mine["flags"][0]["url"] == "http://127.0.0.1:8000/apps/checkout/flags/late/"
    theirs = api_as(viewer).get("short-term/digest/", query={"owner": "admin"}).json()
    assert [f["flag"] for f in theirs["flags"]] == ["admins"]
    assert api_as(viewer).get("short-term/digest/", query={"owner": "ghost"}).status_code == 404


# --- once per owner and week, whatever fails or runs twice --------------------------------------


def test_a_second_run_later_in_the_same_week_mails_no_one_again(owned, editor, admin_user):
    monday = timezone.now() - dt.timedelta(days=timezone.localdate().weekday())
    assert digest.digest_send_all(now=monday).sent == 2
    assert digest.digest_send_all(now=monday + dt.timedelta(days=3)).sent == 0
    assert len(mail.outbox) == 2
    assert digest.digest_send_all(now=monday + dt.timedelta(days=7)).sent == 2  # next week


def test_a_worker_killed_while_mailing_leaves_no_marker_so_the_next_run_mails(owned, editor):
    """The marker was claimed before sending: a worker killed (hard time limit, OOM) after
    the claim and before the mail went out left the owner without a digest for the week."""
    killed = mock.patch.object(digest, "send_mail", side_effect=KeyboardInterrupt)
    with killed, pytest.raises(KeyboardInterrupt):
        digest.digest_send(editor)
    assert not DigestDelivery.objects.exists()
    assert digest.digest_send(editor) is True
    assert [m.to for m in mail.outbox] == [["editor@example.com"]]
    assert DigestDelivery.objects.get().owner == editor


def test_the_marker_is_written_only_after_the_mail_went_out(owned, editor):
    seen = []

    def send(*args, **kwargs):
        seen.append(DigestDelivery.objects.filter(owner=editor).exists())
        return 1

    with mock.patch.object(digest, "send_mail", side_effect=send):
        assert digest.digest_send(editor) is True
    assert seen == [False]
    assert DigestDelivery.objects.get(owner=editor).flag_count == 2


@pytest.mark.postgres
def test_an_owner_being_mailed_by_another_worker_is_skipped(owned, editor):
    from django.db import connections

    other = connections.create_connection("default")  # another worker's session
    try:
        with other.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_lock(%s, %s)", [digest._DIGEST_LOCK_NAMESPACE, editor.pk]
            )
        assert digest.digest_send(editor) is False
        assert mail.outbox == []
        with other.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_unlock(%s, %s)", [digest._DIGEST_LOCK_NAMESPACE, editor.pk]
            )
    finally:
        other.close()
    assert digest.digest_send(editor) is True


def test_a_failure_for_one_owner_does_not_stop_the_others_and_is_retried(
    owned, editor, admin_user, caplog
):
    from django.core.mail import send_mail as real_send_mail

    failures = {"admin@example.com": 1}

    def flaky(subject, body, sender, to):
        if failures.get(to[0]):
            failures[to[0]] -= 1
            raise OSError("smtp: 451 try again later")
        return real_send_mail(subject, body, sender, to)

    with mock.patch.object(digest, "send_mail", side_effect=flaky):
        result = tasks.lifecycle_digest_task.apply()  # eager: its retries run at once
    assert result.successful(), result.traceback
    assert sorted(m.to[0] for m in mail.outbox) == ["admin@example.com", "editor@example.com"]
    assert DigestDelivery.objects.count() == 2
    assert "digest to admin failed" in caplog.text


def test_owners_without_an_address_are_skipped_with_a_log_line(owned, editor, caplog):
    editor.email = ""
    editor.save(update_fields=["email"])
    with caplog.at_level("INFO", logger="flagdash.lifecycle.digest"):
        assert digest.digest_send_all().sent == 1  # admin only
    assert "digest for editor skipped: no e-mail address" in caplog.text
    assert [m.to for m in mail.outbox] == [["admin@example.com"]]


# --- the JSON list -----------------------------------------------------------------------------


def test_the_json_digest_is_paginated(owned, editor, api_as):
    api = api_as(editor)
    first = api.get("short-term/digest/", query={"page_size": 1}).json()
    assert (first["count"], first["pages"], len(first["flags"])) == (2, 2, 1)
    assert first["flags"][0]["flag"] == "late" and first["next"].endswith("page=2")
    second = api.get("short-term/digest/", query={"page_size": 1, "page": 2}).json()
    assert second["flags"][0]["flag"] == "settled" and second["next"] is None
    assert api.get("short-term/digest/", query={"page_size": 10_000}).status_code == 400
    assert api.get("short-term/digest/", query={"page": 3}).status_code == 404


def test_the_json_digest_needs_a_role(owned, outsider, api_as):
    from django.test import Client

    anonymous = Client().get("/api/v1/short-term/digest/")
    assert anonymous.status_code == 401
    assert api_as(outsider).get("short-term/digest/").status_code == 403
    nul = api_as(outsider).get("short-term/digest/", query={"owner": "edi\x00tor"})
    assert nul.status_code == 400


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_for_the_same_owner_send_one_mail(owned, editor):
    import threading
    import time

    from django.core.mail import send_mail as real_send_mail
    from django.db import connection

    def slow(*args, **kwargs):
        time.sleep(0.5)  # the SMTP exchange: long enough for the other worker to arrive
        return real_send_mail(*args, **kwargs)

    results = []

    def worker():
        try:
            results.append(digest.digest_send(editor))
        finally:
            connection.close()

    with mock.patch.object(digest, "send_mail", side_effect=slow):
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert sorted(results) == [False, True]
    assert [m.to for m in mail.outbox] == [["editor@example.com"]]
    assert DigestDelivery.objects.filter(owner=editor).count() == 1

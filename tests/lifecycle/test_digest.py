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

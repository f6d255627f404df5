"""seed_demo gives the short-term page something to show: every status, a scan, a chart."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from flagdash.flags.models import Application
from flagdash.lifecycle import selectors
from flagdash.lifecycle.models import CodeReferenceScan, StatusSnapshot

pytestmark = pytest.mark.django_db


def test_the_demo_has_a_flag_of_every_status_and_is_idempotent(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.FLAGDASH_DEMO_PASSWORD = "demo-password-for-tests"
    call_command("seed_demo", stdout=None)
    checkout = Application.objects.get(key="checkout")
    statuses = {r.flag.key: r.status for r in selectors.short_term_flags(checkout).rows}
    assert statuses == {
        "allow-bitcoin-at-checkout": "active",
        "checkout-button-color": "unused",
        "fraud-check-v2": "active",
        "holiday-free-shipping": "overdue",
        "new-payment-form": "overdue",
        "one-page-checkout": "ready",
    }
    scan = CodeReferenceScan.objects.get(application=checkout)
    assert scan.reference_count > 5
    assert StatusSnapshot.objects.filter(application=checkout).count() == 12
    call_command("seed_demo", stdout=None)
    assert CodeReferenceScan.objects.get(application=checkout).pk == scan.pk
    assert StatusSnapshot.objects.filter(application=checkout).count() == 12

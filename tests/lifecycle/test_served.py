"""What each environment serves and since when, kept up to date from completed deployments."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from flagdash.backends import services as backend_services
from flagdash.backends.models import BackendKind
from flagdash.deployments import services as deployment_services
from flagdash.lifecycle import served
from flagdash.lifecycle.models import ServedFlagState, ServedStateCursor
from tests.factories import make_flag
from tests.lifecycle.conftest import deploy_at, run, set_values

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


def state(env, key):
    env.refresh_from_db()
    served.refresh([env])
    return ServedFlagState.objects.filter(environment=env, flag_key=key).first()


def test_each_completed_deployment_is_folded_in_once_in_order(app, beta, t0):
    flag = make_flag(app, "f", short_term=True)
    deploy_at(beta, t0)
    assert (state(beta, "f").label, state(beta, "f").since) == ("off", t0)
    set_values(flag, beta, enabled=True)
    deploy_at(beta, t0 + DAY)
    s = state(beta, "f")
    assert (s.label, s.since, s.served_since) == ("on", t0 + DAY, t0)
    cursor = ServedStateCursor.objects.get(environment=beta)
    assert cursor.finished_at == t0 + DAY


def test_nothing_new_costs_two_queries(app, beta, t0):
    make_flag(app, "f", short_term=True)
    deploy_at(beta, t0)
    beta.refresh_from_db()
    served.refresh([beta])
    with CaptureQueriesContext(connection) as queries:
        served.refresh([beta])
    assert len(queries.captured_queries) == 2


def test_a_rollback_is_a_change_back(app, beta, t0, admin_user):
    flag = make_flag(app, "f", short_term=True)
    deploy_at(beta, t0)
    set_values(flag, beta, enabled=True)
    bad = deploy_at(beta, t0 + DAY)
    restore = deployment_services.deployment_rollback(
        actor=admin_user, deployment=bad, reason="errors"
    )
    run(restore, t0 + 2 * DAY)
    s = state(beta, "f")
    assert (s.label, s.since) == ("off", t0 + 2 * DAY)


def test_a_flag_leaving_the_version_leaves_the_state(app, beta, t0, admin_user):
    from flagdash.lifecycle import services

    flag = make_flag(app, "f", short_term=True)
    deploy_at(beta, t0)
    assert state(beta, "f") is not None
    for d in services.flags_archive(actor=admin_user, application=app, flags=[flag]).deployments:
        run(d, t0 + DAY)
    assert state(beta, "f") is None


def test_switching_the_backend_empties_what_the_environment_serves(app, beta, t0, admin_user):
    make_flag(app, "f", short_term=True)
    deploy_at(beta, t0)
    assert state(beta, "f") is not None
    backend_services.environment_connect(
        actor=admin_user,
        environment=beta,
        kind=BackendKind.AZURE_APPCONFIG,
        options={"endpoint": "https://example.azconfig.io", "label": "beta"},
    )
    assert state(beta, "f") is None  # the new backend serves nothing until a deployment

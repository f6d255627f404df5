"""The settings page: what each role sees, the environment confirmation, the query budget."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from flagdash.accounts.models import Membership
from flagdash.audit.models import AuditEvent
from flagdash.flags.models import Environment
from tests.accounts.helpers import state, text_of
from tests.factories import UserFactory, make_application, make_environment, make_flag

# Some tests reach their clients through getfixturevalue; mark the module so pytest-django
# orders them with the other database tests.
pytestmark = pytest.mark.django_db


def test_viewer_sees_everything_read_only(viewer_client, admin_user, editor, app, envs, flag):
    response = viewer_client.get(reverse("settings"))

    html = response.content.decode()
    main = html[html.index("<main") :]
    assert "<form" not in main
    assert "<button" not in main
    assert "only admins can change them" in main
    applications = text_of(html, "settings-applications")
    assert "checkout" in applications
    assert "Checkout" in applications
    environments = text_of(html, "settings-env-checkout")
    assert "beta" in environments
    assert "production" in environments
    assert "protected" in environments
    assert "Built-in" in environments
    users = text_of(html, "settings-users")
    for name in ("admin", "editor", "viewer"):
        assert name in users
    assert "Admin" in users
    assert "Built-in" in text_of(html, "settings-backends")
    assert "AWS AppConfig or Azure App Configuration" in text_of(html, "settings-backends")
    assert 'href="/settings/tokens/"' in html


def test_admin_gets_every_form(admin_client, viewer, app, envs):
    response = admin_client.get(reverse("settings"))

    html = response.content.decode()
    for url in (
        reverse("settings_application_create"),
        reverse("settings_environment_create", args=[app.key]),
        reverse("settings_environment_edit", args=[app.key, "beta"]),
        reverse("settings_environment_edit", args=[app.key, "production"]),
        reverse("settings_user_role", args=[viewer.pk]),
        reverse("settings_user_create"),
    ):
        assert f'action="{url}"' in html
    assert "only admins can change them" not in html
    assert 'aria-current="page">Settings' in html


def test_environments_are_listed_in_their_order(admin_client, app, envs):
    make_environment(app, "canary", "Canary")

    html = admin_client.get(reverse("settings")).content.decode()

    text = text_of(html, "settings-env-checkout")
    assert text.index("beta") < text.index("production") < text.index("canary")


def test_counts_per_application(viewer_client, app, envs, flag):
    other = make_application("search", "Search")
    make_flag(app, "dark-mode")

    html = viewer_client.get(reverse("settings")).content.decode()

    rows = text_of(html, "settings-applications")
    assert "checkout Checkout 2 2" in rows
    assert "search Search 0 0" in rows
    assert other.name in text_of(html, "settings-environments")


def test_plain_success_redirects_with_a_message(admin_client, db):
    response = admin_client.post(
        reverse("settings_application_create"), {"key": "payments", "name": "Payments"}, follow=True
    )

    assert response.redirect_chain == [("/settings/#settings-applications", 302)]
    html = response.content.decode()
    assert "Created application Payments (payments)." in text_of(html, "messages")
    assert "Payments has no environments yet." in text_of(html, "settings-env-payments")


def test_htmx_application_create_also_refreshes_environments(admin_client, db, htmx):
    response = admin_client.post(
        reverse("settings_application_create"),
        {"key": "payments", "name": "Payments"},
        headers=htmx,
    )

    html = response.content.decode()
    assert html.lstrip().startswith('<section id="settings-applications"')
    assert '<div id="settings-environments" hx-swap-oob="true">' in html
    assert "Environments of Payments" in html
    assert 'id="messages" hx-swap-oob="beforeend"' in html


def test_new_environment_comes_last_and_is_audited(admin_client, app, envs, flag):
    response = admin_client.post(
        reverse("settings_environment_create", args=[app.key]),
        {"key": "staging", "name": "Staging", "protected": "on"},
    )

    assert response.status_code == 302
    env = Environment.objects.get(application=app, key="staging")
    assert env.protected
    assert env.position > envs[-1].position
    event = AuditEvent.objects.get(action="environment.created", environment_id=env.pk)
    assert event.environment_id == env.pk
    assert event.after["protected"] is True


class TestRemovingProtection:
    def test_asks_for_confirmation_first(self, admin_client, app, production):
        before = state()

        response = admin_client.post(
            reverse("settings_environment_edit", args=[app.key, production.key]),
            {"name": "Production"},
        )

        assert response.status_code == 200
        html = response.content.decode()
        assert "Remove protection from Checkout / Production?" in html
        assert 'name="confirm" value="yes"' in html
        assert state() == before
        production.refresh_from_db()
        assert production.protected

    def test_htmx_confirmation_opens_in_the_modal(self, admin_client, app, production, htmx):
        response = admin_client.post(
            reverse("settings_environment_edit", args=[app.key, production.key]),
            {"name": "Production"},
            headers=htmx,
        )

        assert response.status_code == 200
        assert response["HX-Retarget"] == "#modal"
        html = response.content.decode()
        assert "<html" not in html
        assert "<dialog data-modal" in html

    def test_confirmed_removal_is_saved_and_audited(
        self, admin_client, admin_user, app, production
    ):
        last_id = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()

        response = admin_client.post(
            reverse("settings_environment_edit", args=[app.key, production.key]),
            {"name": "Production", "confirm": "yes"},
        )

        assert response.status_code == 302
        production.refresh_from_db()
        assert not production.protected
        events = list(AuditEvent.objects.filter(id__gt=last_id))
        assert len(events) == 1
        assert events[0].action == "environment.updated"
        assert events[0].actor_id == admin_user.pk
        assert events[0].before["protected"] is True
        assert events[0].after["protected"] is False

    def test_editor_cannot_confirm_it_either(self, editor_client, app, production):
        before = state()

        response = editor_client.post(
            reverse("settings_environment_edit", args=[app.key, production.key]),
            {"name": "Production", "confirm": "yes"},
        )

        assert response.status_code == 403
        assert state() == before


def test_saving_an_unchanged_environment_writes_nothing(admin_client, app, beta):
    before = state()

    response = admin_client.post(
        reverse("settings_environment_edit", args=[app.key, beta.key]), {"name": "Beta"}
    )

    assert response.status_code == 302
    assert state() == before


def test_role_can_be_removed_and_given_back(admin_client, viewer):
    url = reverse("settings_user_role", args=[viewer.pk])

    assert admin_client.post(url, {"role": ""}).status_code == 302
    assert not Membership.objects.filter(user=viewer).exists()
    events = AuditEvent.objects.filter(action="user.role_changed").order_by("id")
    assert [(e.before, e.after) for e in events] == [({"role": "viewer"}, {"role": None})]

    assert admin_client.post(url, {"role": "admin"}).status_code == 302
    assert Membership.objects.get(user=viewer).role == "admin"


def _populate(count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        app = make_application(f"app-{i:02d}", f"App {i:02d}")
        make_environment(app, "beta", "Beta")
        make_environment(app, "production", "Production", protected=True)
        make_flag(app, "new-checkout")
        make_flag(app, "dark-mode")
    for i in range(start, start + count):
        UserFactory(username=f"person{i:02d}", role=["viewer", "editor", None][i % 3])


# session, user, membership (the role), applications with counts, their environments with
# backends and default strategies, deployment strategies, users with memberships, backend
# connections, the navigation's applications.
QUERY_BUDGET = 8 + 1  # + the deployment strategies (their section and the default selects)


@pytest.mark.parametrize("count", [2, 20])
@pytest.mark.parametrize("who", ["admin_client", "viewer_client"])
def test_settings_page_runs_a_fixed_number_of_queries(
    request, django_assert_max_num_queries, count, who
):
    client = request.getfixturevalue(who)
    _populate(count)

    with django_assert_max_num_queries(QUERY_BUDGET):
        response = client.get(reverse("settings"))

    assert response.status_code == 200
    assert f"app-{count - 1:02d}" in response.content.decode()


def test_query_count_does_not_grow_with_rows(admin_client):
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(reverse("settings")).status_code == 200
        return len(ctx.captured_queries)

    _populate(2)
    few = queries()
    _populate(18, start=2)
    assert queries() == few


def test_changing_your_own_role_over_htmx_reloads_the_page(admin_client, admin_user, htmx):
    UserFactory(username="second-admin", role="admin")

    response = admin_client.post(
        reverse("settings_user_role", args=[admin_user.pk]), {"role": "viewer"}, headers=htmx
    )

    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("settings")
    assert Membership.objects.get(user=admin_user).role == "viewer"
    page = admin_client.get(reverse("settings")).content.decode()
    assert "admin: admin → viewer." in text_of(page, "messages")
    assert "only admins can change them" in page

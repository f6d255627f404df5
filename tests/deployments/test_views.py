"""The deployments pages: who sees and does what, live progress that stops polling, budgets."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from flagdash.audit.models import AuditEvent
from flagdash.backends.base import PermanentBackendError
from flagdash.backends.local import LocalBackend
from flagdash.deployments import services
from flagdash.deployments.models import Deployment, DeploymentEvent, DeploymentState, EventType
from flagdash.flags import services as flag_services
from flagdash.flags.models import FlagSetting
from tests.deployments.conftest import reload, run_due

pytestmark = pytest.mark.django_db

POLL = 'hx-trigger="every '  # followed by the delay Deployment.ui_poll_ms chose


# --- helpers to bring deployments into each state (also used by test_rollbacks_page) ---------


def new_version(env, flag, message="change"):
    """Flip the flag in the working state and save a version of the environment."""
    setting = FlagSetting.objects.get(flag=flag, environment=env)
    flag_services.flag_setting_update(
        actor=None,
        flag=flag,
        environment=env,
        expected_revision=setting.revision,
        enabled=not setting.enabled,
    )
    return flag_services.config_version_create(actor=None, environment=env, message=message)


def first_version(env):
    return flag_services.config_version_create(actor=None, environment=env, message="first")


def queue(env, version, strategy):
    return services.deployment_create(
        actor=None, environment=env, version=version, strategy=strategy
    )


def run_out(clock, minutes=6):
    for _ in range(minutes):
        clock.tick(60)
        run_due(clock)


def complete_deployment(clock, env, version, strategy):
    d = queue(env, version, strategy)
    run_due(clock)
    run_out(clock)
    d = reload(d)
    assert d.state == DeploymentState.COMPLETE
    return d


def deploying(clock, env, flag, strategy):
    """A completed base version, then a rollout of the next one at 25 %."""
    complete_deployment(clock, env, first_version(env), strategy)
    d = queue(env, new_version(env, flag), strategy)
    run_due(clock)
    d = reload(d)
    assert (d.state, d.percentage) == (DeploymentState.DEPLOYING, 25)
    return d


def url(name, d):
    return reverse(name, args=[d.environment.application.key, d.pk])


def state_of(d):
    d = reload(d)
    return (d.state, d.rollback_requested_at, AuditEvent.objects.count())


# --- reading ---------------------------------------------------------------------------------


def test_viewers_read_the_pages_and_outsiders_do_not(
    clock, viewer_client, outsider, client, app, beta, flag, linear
):
    d = deploying(clock, beta, flag, linear)
    pages = [
        reverse("deployments", args=[app.key]),
        url("deployment_detail", d),
        reverse("rollbacks", args=[app.key]),
    ]
    for page in pages:
        assert viewer_client.get(page).status_code == 200
    client.force_login(outsider)
    for page in [*pages, url("deployment_rollback", d), url("deployment_cancel", d)]:
        assert client.get(page).status_code == 403


def test_the_pages_are_one_click_from_the_navigation(viewer_client, app, beta):
    html = viewer_client.get(reverse("flag_list", args=[app.key])).content.decode()
    assert f'href="{reverse("deployments", args=[app.key])}"' in html
    assert f'href="{reverse("rollbacks", args=[app.key])}"' in html


def test_a_deployment_of_another_application_is_not_found(clock, viewer_client, beta, flag, linear):
    d = deploying(clock, beta, flag, linear)
    other = flag_services.application_create(actor=None, key="search", name="Search")
    response = viewer_client.get(reverse("deployment_detail", args=[other.key, d.pk]))
    assert response.status_code == 404


def test_the_list_shows_what_each_environment_does(
    clock, viewer_client, app, beta, production, flag, linear
):
    running = deploying(clock, beta, flag, linear)
    waiting = queue(beta, new_version(beta, flag, "next"), linear)
    run_due(clock)
    html = viewer_client.get(reverse("deployments", args=[app.key])).content.decode()
    beta_card = re.search(rf'<article[^>]*id="env-card-{beta.pk}".*?</article>', html, re.S)
    prod_card = re.search(rf'<article[^>]*id="env-card-{production.pk}".*?</article>', html, re.S)
    assert beta_card and prod_card
    beta_html = beta_card.group(0)
    assert f"#{running.pk}" in beta_html and "25 %" in beta_html
    assert '<progress class="rollout rollout-deploying" max="100" value="25.0"' in beta_html
    assert f"#{waiting.pk}" in beta_html and "Queue (1)" in beta_html
    assert f"Waiting for deployment #{running.pk}" in beta_html
    assert POLL in beta_html
    assert "Never deployed" in prod_card.group(0) and POLL not in prod_card.group(0)
    # the recent list has every deployment
    recent = html.split('id="recent"', 1)[1]
    for d in Deployment.objects.all():
        assert url("deployment_detail", d) in recent


def test_an_idle_environment_says_which_version_it_serves(
    clock, viewer_client, app, beta, flag, linear
):
    d = complete_deployment(clock, beta, first_version(beta), linear)
    html = viewer_client.get(reverse("deployments", args=[app.key])).content.decode()
    card = re.search(rf'<article[^>]*id="env-card-{beta.pk}".*?</article>', html, re.S).group(0)
    assert "idle" in card and f"v{d.version.number}</a>" in card
    assert POLL not in card


def test_the_recent_list_filters_by_environment(
    clock, viewer_client, htmx, app, beta, production, flag, linear
):
    in_beta = complete_deployment(clock, beta, first_version(beta), linear)
    in_prod = complete_deployment(clock, production, first_version(production), linear)
    response = viewer_client.get(
        reverse("deployments", args=[app.key]) + "?env=production", headers=htmx
    )
    html = response.content.decode()
    assert "<html" not in html and html.lstrip().startswith('<div id="recent">')
    assert url("deployment_detail", in_prod) in html
    assert url("deployment_detail", in_beta) not in html


def test_the_detail_page_shows_versions_strategy_timings_events_and_chart(
    clock, viewer_client, app, beta, flag, linear
):
    d = deploying(clock, beta, flag, linear)
    html = viewer_client.get(url("deployment_detail", d)).content.decode()
    assert f"v{d.previous_version.number}</a>" in html and f"v{d.version.number}</a>" in html
    diff_link = reverse("version_detail", args=[app.key, beta.key, d.version.number])
    assert f'{diff_link}?against={d.previous_version.number}">see the changes' in html
    assert "linear-4m" in html and "Started by" in html
    assert '<svg class="chart"' in html and 'class="chart-line"' in html
    assert '<title id="rollout-chart-title">Rollout of v' in html
    assert 'class="event-log"' in html and "Percentage" in html
    assert 'role="status"' in html and "25 %" in html


def test_a_failed_deployment_shows_its_error_prominently(
    clock, monkeypatch, viewer_client, app, beta, flag
):
    def refuse(self, spec, now):
        raise PermanentBackendError("AccessDenied: not allowed to StartDeployment")

    monkeypatch.setattr(LocalBackend, "start", refuse)
    d = flag_services.flag_set_enabled(
        actor=None, flag=flag, environment=beta, enabled=True
    ).deployment
    run_due(clock)
    assert reload(d).state == DeploymentState.FAILED
    html = viewer_client.get(url("deployment_detail", d)).content.decode()
    alert = re.search(r'<div class="alert alert-error" role="alert">.*?</div>', html, re.S)
    assert alert and "AccessDenied: not allowed to StartDeployment" in alert.group(0)
    assert POLL not in html


# --- live progress ---------------------------------------------------------------------------


def test_progress_polls_while_open_and_stops_at_a_terminal_state(
    clock, viewer_client, htmx, app, beta, flag, linear
):
    d = deploying(clock, beta, flag, linear)
    response = viewer_client.get(url("deployment_detail", d), headers=htmx)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and html.lstrip().startswith('<div id="deployment-live"')
    assert POLL in html and f'hx-get="{url("deployment_detail", d)}"' in html
    assert "25 %" in html

    run_out(clock)
    assert reload(d).state == DeploymentState.COMPLETE
    html = viewer_client.get(url("deployment_detail", d), headers=htmx).content.decode()
    assert html.lstrip().startswith('<div id="deployment-live"')
    assert POLL not in html and f'hx-get="{url("deployment_detail", d)}"' not in html
    assert "100 %" in html and "Complete" in html


def test_a_queued_deployment_polls_too(clock, viewer_client, htmx, app, beta, flag, linear):
    running = deploying(clock, beta, flag, linear)
    waiting = queue(beta, new_version(beta, flag), linear)
    html = viewer_client.get(url("deployment_detail", waiting), headers=htmx).content.decode()
    assert POLL in html and "Queued" in html
    assert reload(running).state == DeploymentState.DEPLOYING


def test_an_environment_card_polls_itself_until_the_environment_is_idle(
    clock, viewer_client, htmx, app, beta, flag, linear
):
    d = deploying(clock, beta, flag, linear)
    card_url = reverse("deployments", args=[app.key]) + f"?card={beta.key}"
    html = viewer_client.get(card_url, headers=htmx).content.decode()
    assert "<html" not in html and html.lstrip().startswith("<article")
    assert f'id="env-card-{beta.pk}"' in html and POLL in html and "25 %" in html
    run_out(clock)
    html = viewer_client.get(card_url, headers=htmx).content.decode()
    assert POLL not in html and "idle" in html and f"v{d.version.number}</a>" in html


# --- who may act -----------------------------------------------------------------------------


def _buttons(html):
    return re.findall(r">(Stop and roll back…|Roll back[^<]*…|Cancel…)<", html)


def test_a_viewer_sees_no_buttons_and_is_refused(clock, viewer_client, app, beta, flag, linear):
    d = deploying(clock, beta, flag, linear)
    waiting = queue(beta, new_version(beta, flag), linear)
    for page in (reverse("deployments", args=[app.key]), url("deployment_detail", d)):
        assert _buttons(viewer_client.get(page).content.decode()) == []
    before = state_of(d)
    response = viewer_client.post(url("deployment_rollback", d), {"reason": "bad"})
    assert response.status_code == 403
    assert state_of(d) == before
    assert viewer_client.get(url("deployment_rollback", d)).status_code == 403
    before = state_of(waiting)
    assert viewer_client.post(url("deployment_cancel", waiting)).status_code == 403
    assert state_of(waiting) == before


def test_an_outsider_is_refused(clock, outsider_client, app, beta, flag, linear):
    d = deploying(clock, beta, flag, linear)
    before = state_of(d)
    assert outsider_client.post(url("deployment_rollback", d), {"reason": "x"}).status_code == 403
    assert state_of(d) == before


def test_htmx_refusals_answer_with_a_toast_and_swap_nothing(
    clock, viewer_client, htmx, app, beta, flag, linear
):
    d = deploying(clock, beta, flag, linear)
    response = viewer_client.get(url("deployment_rollback", d), headers=htmx)
    assert response.status_code == 403
    assert response["HX-Reswap"] == "none"
    assert "only editors and admins" in response.content.decode().lower()


def test_an_editor_stops_and_rolls_back_a_rollout_in_beta(
    clock, editor_client, app, beta, flag, linear
):
    d = deploying(clock, beta, flag, linear)
    html = editor_client.get(url("deployment_detail", d)).content.decode()
    assert _buttons(html) == ["Stop and roll back…"]
    page = editor_client.get(url("deployment_rollback", d))
    assert page.status_code == 200
    form = page.content.decode()
    assert f'<form method="post" action="{url("deployment_rollback", d)}"' in form
    assert "<textarea" in form and "required" in form
    response = editor_client.post(url("deployment_rollback", d), {"reason": "checkout errors"})
    assert response.status_code == 302 and response["Location"] == url("deployment_detail", d)
    d = reload(d)
    assert d.rollback_requested_at is not None and d.rollback_by_name == "editor"
    assert d.rollback_reason == "checkout errors"
    run_due(clock)
    assert reload(d).state == DeploymentState.ROLLED_BACK
    html = editor_client.get(url("deployment_detail", d)).content.decode()
    assert "Rolled back" in html and "checkout errors" in html and _buttons(html) == []


def test_an_editor_cannot_roll_back_production_but_an_admin_can(
    clock, client, editor, admin_user, app, beta, production, flag, linear
):
    d = deploying(clock, production, flag, linear)
    client.force_login(editor)
    html = client.get(url("deployment_detail", d)).content.decode()
    assert _buttons(html) == [] and "only admins" in html
    cards = client.get(reverse("deployments", args=[app.key])).content.decode()
    assert _buttons(cards) == []
    before = state_of(d)
    assert client.post(url("deployment_rollback", d), {"reason": "no"}).status_code == 403
    assert state_of(d) == before

    client.force_login(admin_user)
    assert _buttons(client.get(url("deployment_detail", d)).content.decode()) == [
        "Stop and roll back…"
    ]
    response = client.post(url("deployment_rollback", d), {"reason": "prod errors"})
    assert response.status_code == 302
    assert reload(d).rollback_by_name == "admin"


def test_a_reason_is_required_and_shown_at_the_field(clock, editor_client, app, beta, flag, linear):
    d = deploying(clock, beta, flag, linear)
    before = state_of(d)
    response = editor_client.post(url("deployment_rollback", d), {"reason": "   "})
    assert response.status_code == 422
    html = response.content.decode()
    field = re.search(
        r'<div class="field has-error">\s*<label for="id_reason">.*?</ul>', html, re.S
    )
    assert field and "<textarea" in field.group(0)
    assert "Say why you roll back" in field.group(0)
    assert state_of(d) == before


def test_the_htmx_confirmation_is_a_dialog_in_the_modal(
    clock, editor_client, htmx, app, beta, flag, linear
):
    d = deploying(clock, beta, flag, linear)
    response = editor_client.get(url("deployment_rollback", d), headers=htmx)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and html.lstrip().startswith("<dialog data-modal")
    assert response["HX-Retarget"] == "#modal" and response["HX-Reswap"] == "innerHTML"
    assert f'hx-post="{url("deployment_rollback", d)}"' in html

    before = state_of(d)
    response = editor_client.post(url("deployment_rollback", d), {"reason": ""}, headers=htmx)
    html = response.content.decode()
    assert response.status_code == 422 and response["HX-Retarget"] == "#modal"
    assert "<dialog data-modal" in html and "Say why you roll back" in html
    assert state_of(d) == before

    response = editor_client.post(url("deployment_rollback", d), {"reason": "errors"}, headers=htmx)
    assert response.status_code == 200
    assert response["HX-Redirect"] == url("deployment_detail", d)
    assert reload(d).rollback_requested_at is not None


def test_rolling_back_the_live_completed_deployment_restores_the_one_before(
    clock, editor_client, app, beta, flag, linear
):
    base = complete_deployment(clock, beta, first_version(beta), linear)
    bad = complete_deployment(clock, beta, new_version(beta, flag), linear)
    html = editor_client.get(url("deployment_detail", bad)).content.decode()
    assert _buttons(html) == ["Roll back…"]
    assert _buttons(editor_client.get(url("deployment_detail", base)).content.decode()) == []
    cards = editor_client.get(reverse("deployments", args=[app.key])).content.decode()
    assert f"Roll back to v{base.version.number}…" in cards
    confirm = editor_client.get(url("deployment_rollback", bad)).content.decode()
    assert f"Deploys v{base.version.number} to Beta at once" in confirm
    response = editor_client.post(url("deployment_rollback", bad), {"reason": "wrong price"})
    restore = Deployment.objects.get(restores=bad)
    assert response.status_code == 302 and response["Location"] == url("deployment_detail", restore)
    assert restore.kind == "restore" and restore.version_id == base.version_id
    run_due(clock)
    beta.refresh_from_db()
    assert beta.live_version_id == base.version_id


def test_a_finished_deployment_has_nothing_to_roll_back(
    clock, editor_client, app, beta, flag, linear
):
    d = deploying(clock, beta, flag, linear)
    services.deployment_rollback(actor=None, deployment=d, reason="x")
    run_due(clock)
    page = editor_client.get(url("deployment_rollback", d)).content.decode()
    assert "nothing to roll back" in page and "<textarea" not in page
    before = state_of(d)
    response = editor_client.post(url("deployment_rollback", d), {"reason": "again"})
    assert response.status_code == 422 and "nothing to roll back" in response.content.decode()
    assert state_of(d) == before


def test_an_editor_cancels_a_queued_deployment(clock, editor_client, htmx, app, beta, flag, linear):
    running = deploying(clock, beta, flag, linear)
    waiting = queue(beta, new_version(beta, flag), linear)
    html = editor_client.get(url("deployment_detail", waiting)).content.decode()
    assert _buttons(html) == ["Cancel…"]
    dialog = editor_client.get(url("deployment_cancel", waiting), headers=htmx)
    assert dialog["HX-Retarget"] == "#modal" and "<dialog data-modal" in dialog.content.decode()
    response = editor_client.post(url("deployment_cancel", waiting))
    assert response.status_code == 302
    assert reload(waiting).state == DeploymentState.CANCELLED
    # a started one cannot be cancelled: the error is shown and nothing changes
    before = state_of(running)
    response = editor_client.post(url("deployment_cancel", running))
    assert response.status_code == 422 and "has already started" in response.content.decode()
    assert state_of(running) == before


# --- query budgets ---------------------------------------------------------------------------


def _bulk_deployments(env, version, strategy, count):
    Deployment.objects.bulk_create(
        [
            Deployment(
                environment=env,
                version=version,
                previous_version=version,
                strategy=strategy,
                plan=strategy.snapshot(),
                backend_kind="local",
                state=DeploymentState.COMPLETE,
                percentage=100,
                created_by_name="bulk",
            )
            for _ in range(count)
        ]
    )


@pytest.mark.parametrize("count", [3, 120])
def test_the_list_runs_a_fixed_number_of_queries(
    count, clock, viewer_client, app, beta, production, flag, linear, settings,
    django_assert_max_num_queries,
):  # fmt: skip
    settings.FLAGDASH_PAGE_SIZE = 100
    d = deploying(clock, beta, flag, linear)
    for _ in range(3):
        queue(beta, new_version(beta, flag), linear)
    _bulk_deployments(production, d.version, linear, count)
    page = reverse("deployments", args=[app.key])
    viewer_client.get(page)
    with django_assert_max_num_queries(9):
        response = viewer_client.get(page)
    assert response.content.decode().count('class="badge state state-') >= min(count, 100)


@pytest.mark.parametrize("count", [5, 400])
def test_the_detail_runs_a_fixed_number_of_queries(
    count, clock, viewer_client, htmx, app, beta, flag, linear, django_assert_max_num_queries
):
    d = deploying(clock, beta, flag, linear)
    DeploymentEvent.objects.bulk_create(
        [
            DeploymentEvent(deployment=d, type=EventType.RETRY, message=f"retry {n}")
            for n in range(count)
        ]
    )
    viewer_client.get(url("deployment_detail", d))
    with django_assert_max_num_queries(9):
        response = viewer_client.get(url("deployment_detail", d))
    assert response.content.decode().count("retry ") >= count
    with django_assert_max_num_queries(9):
        viewer_client.get(url("deployment_detail", d), headers=htmx)

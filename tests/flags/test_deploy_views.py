"""Deploying from the dashboard: the deploy page, rolling back to version N, and the rollout
shown beside each switch (polling itself until the deployment is over)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from flagdash.audit.models import AuditEvent
from flagdash.deployments import services as deployment_services
from flagdash.deployments.models import Deployment, DeploymentKind
from flagdash.flags import services
from flagdash.flags.models import Environment, Flag, FlagSetting
from tests.accounts.helpers import text_of
from tests.deployments.conftest import Clock, run_due
from tests.factories import make_flag, make_strategy

pytestmark = pytest.mark.django_db

IMMEDIATE = "flagdash.Immediate"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def linear(db):
    """25 % every minute over 4 minutes, no bake."""
    return make_strategy("linear-4m", duration_minutes=4, growth_factor=25, final_bake_minutes=0)


def deploy_now(env, version, clock):
    """Make ``version`` what ``env`` serves (deployed at once, complete)."""
    d = deployment_services.deployment_create(
        actor=None,
        environment=env,
        version=version,
        strategy=deployment_services.strategy_by_name(IMMEDIATE),
    )
    run_due(clock)
    d.refresh_from_db()
    assert d.state == "complete", (d.state, d.error)
    return d


def save_version(env, message="saved"):
    return services.config_version_create(actor=None, environment=env, message=message)


def enable_unsaved(flag, env):
    """Turn the flag on in the working state only (a version saves it later)."""
    s = FlagSetting.objects.get(flag=flag, environment=env)
    services.flag_setting_update(
        actor=None, flag=flag, environment=env, expected_revision=s.revision, enabled=True
    )


@pytest.fixture
def live_and_next(clock, app, beta, flag):
    """Beta serves v2 (the flag off); v3 (the flag on) is saved and not deployed."""
    deploy_now(beta, save_version(beta, "with the flag"), clock)
    enable_unsaved(flag, beta)
    return save_version(beta, "turn it on")


def deploy_url(env, number):
    return reverse("version_deploy", args=[env.application.key, env.key, number])


def rollback_url(env, number):
    return reverse("version_rollback", args=[env.application.key, env.key, number])


def status_url(flag, env):
    url = reverse("environment_rollout_status", args=[env.application.key, env.key])
    return f"{url}?flag={flag.key}"


def detail_url(d):
    return reverse("deployment_detail", args=[d.environment.application.key, d.pk])


def world():
    """What a deploy or rollback request could write."""
    return (Deployment.objects.count(), AuditEvent.objects.count())


def selected_option(html, name="strategy"):
    select = re.search(rf'<select name="{name}".*?</select>', html, re.S).group(0)
    return re.search(r'<option value="([^"]*)"[^>]*selected', select).group(1)


# --- the deploy page -------------------------------------------------------------------------


def test_the_deploy_page_shows_the_diff_against_the_live_version(editor_client, live_and_next):
    beta = live_and_next.environment
    response = editor_client.get(deploy_url(beta, live_and_next.number))

    html = response.content.decode()
    assert response.status_code == 200
    assert "What changes against the live version 2" in html
    assert "1 flag changes" in html
    assert '<td class="path">enabled</td>' in html
    assert '<td class="old">false</td>' in html and '<td class="new">true</td>' in html


def test_with_nothing_deployed_the_diff_is_against_an_empty_configuration(
    editor_client, beta, flag
):
    version = save_version(beta)
    html = editor_client.get(deploy_url(beta, version.number)).content.decode()
    assert "nothing deployed yet" in html
    assert f'<code>{flag.key}</code> <span class="status-added">added</span>' in html


def test_the_environments_default_strategy_is_preselected_and_options_describe_schedules(
    admin_client, live_and_next
):
    beta = live_and_next.environment
    services.environment_update(
        actor=None,
        environment=beta,
        name=beta.name,
        protected=False,
        default_strategy=deployment_services.strategy_by_name(
            "AppConfig.Linear50PercentEvery30Seconds"
        ),
    )
    html = admin_client.get(deploy_url(beta, live_and_next.number)).content.decode()
    assert selected_option(html) == "AppConfig.Linear50PercentEvery30Seconds"
    assert "AppConfig.Linear50PercentEvery30Seconds — 50 % every 30 s, 1 min bake" in html
    assert "AppConfig.AllAtOnce — all at once, 10 min bake" in html
    assert "AppConfig.Canary10Percent20Minutes — 10 % doubling every 4 min, 10 min bake" in html


def test_without_a_default_strategy_all_at_once_is_preselected(editor_client, live_and_next):
    beta = live_and_next.environment
    Environment.objects.filter(pk=beta.pk).update(default_strategy=None)
    html = editor_client.get(deploy_url(beta, live_and_next.number)).content.decode()
    assert selected_option(html) == "AppConfig.AllAtOnce"


def test_deploying_queues_one_deployment_with_the_chosen_strategy_and_audits_it(
    editor_client, live_and_next, linear
):
    beta = live_and_next.environment
    before = Deployment.objects.count()
    page = editor_client.get(deploy_url(beta, live_and_next.number)).content.decode()
    live = re.search(r'name="live" value="(\d+)"', page).group(1)

    response = editor_client.post(
        deploy_url(beta, live_and_next.number),
        {"strategy": linear.name, "message": "gradually", "live": live},
    )

    assert Deployment.objects.count() == before + 1
    d = Deployment.objects.latest("id")
    assert response.status_code == 302
    assert response["Location"] == reverse("deployment_detail", args=[beta.application.key, d.pk])
    assert (d.state, d.version_id, d.strategy_id) == ("queued", live_and_next.pk, linear.pk)
    assert d.message == "gradually" and d.created_by_name == "editor"
    events = AuditEvent.objects.filter(action="deployment.queued", target_id=str(d.pk))
    assert events.count() == 1 and events.get().actor_name == "editor"


def test_the_message_defaults_to_the_versions_message(editor_client, live_and_next):
    beta = live_and_next.environment
    editor_client.post(
        deploy_url(beta, live_and_next.number), {"strategy": "AppConfig.AllAtOnce", "live": 2}
    )
    assert Deployment.objects.latest("id").message == "turn it on"


@pytest.mark.parametrize("who", ["viewer_client", "outsider_client"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_viewers_and_outsiders_cannot_deploy(request, who, method, live_and_next):
    client = request.getfixturevalue(who)
    beta = live_and_next.environment
    before = world()
    data = {"strategy": "AppConfig.AllAtOnce", "live": 2} if method == "post" else None
    response = getattr(client, method)(deploy_url(beta, live_and_next.number), data)
    assert response.status_code == 403
    assert world() == before


def test_an_editor_cannot_deploy_to_a_protected_environment(editor_client, production, flag):
    version = save_version(production)
    before = world()
    assert editor_client.get(deploy_url(production, version.number)).status_code == 403
    response = editor_client.post(
        deploy_url(production, version.number), {"strategy": "AppConfig.AllAtOnce", "live": 0}
    )
    assert response.status_code == 403
    assert world() == before


def test_an_admin_deploys_to_a_protected_environment(admin_client, production, flag):
    version = save_version(production)
    html = admin_client.get(deploy_url(production, version.number)).content.decode()
    assert "Deploy v2 to Production" in html
    response = admin_client.post(
        deploy_url(production, version.number), {"strategy": "AppConfig.AllAtOnce", "live": 0}
    )
    d = Deployment.objects.get(environment=production)
    assert response.status_code == 302 and response["Location"] == detail_url(d)
    assert d.created_by_name == "admin"


def test_an_unknown_strategy_is_refused_at_the_field_and_nothing_is_created(
    editor_client, live_and_next
):
    beta = live_and_next.environment
    before = world()
    response = editor_client.post(
        deploy_url(beta, live_and_next.number), {"strategy": "Nope", "live": 2}
    )
    html = response.content.decode()
    assert response.status_code == 422
    assert world() == before
    # The message sits in the strategy field's own error list, next to the select.
    assert "There is no strategy “Nope”" in text_of(html, "id_strategy_error")
    assert 'aria-describedby="id_strategy_helptext id_strategy_error"' in html


def test_deploying_the_live_version_is_refused(editor_client, clock, beta, flag):
    version = save_version(beta)
    deploy_now(beta, version, clock)
    before = world()
    response = editor_client.post(
        deploy_url(beta, version.number), {"strategy": "AppConfig.AllAtOnce", "live": 2}
    )
    assert response.status_code == 422
    assert "Version 2 is already live in Beta." in response.content.decode()
    assert world() == before
    page = editor_client.get(deploy_url(beta, version.number)).content.decode()
    assert "Version 2 is what Beta serves now." in page


def test_a_stale_review_is_refused_and_shows_the_current_diff(editor_client, live_and_next, clock):
    beta = live_and_next.environment
    reviewed = editor_client.get(deploy_url(beta, live_and_next.number)).content.decode()
    assert 'name="live" value="2"' in reviewed
    # Meanwhile someone else deploys another version.
    other = make_flag(beta.application, "other-flag")
    enable_unsaved(other, beta)
    deploy_now(beta, save_version(beta, "someone else's"), clock)
    before = world()

    response = editor_client.post(
        deploy_url(beta, live_and_next.number), {"strategy": "AppConfig.AllAtOnce", "live": 2}
    )

    html = response.content.decode()
    assert response.status_code == 422
    assert world() == before
    assert "served v2 then and serves v4 now. Nothing was deployed" in html
    assert "What changes against the live version 4" in html
    assert 'name="live" value="4"' in html  # confirming again deploys against what is live now


def test_a_deployment_in_progress_is_mentioned_and_the_new_one_queues_behind_it(
    editor_client, live_and_next, linear, clock
):
    beta = live_and_next.environment
    other = make_flag(beta.application, "other-flag")
    enable_unsaved(other, beta)
    running = deployment_services.deployment_create(
        actor=None, environment=beta, version=save_version(beta), strategy=linear
    )
    run_due(clock)
    html = editor_client.get(deploy_url(beta, live_and_next.number)).content.decode()
    assert f"#{running.pk}</a> (v4, deploying at 25 %)" in html
    editor_client.post(
        deploy_url(beta, live_and_next.number), {"strategy": "AppConfig.AllAtOnce", "live": 2}
    )
    page = editor_client.get(reverse("flag_list", args=[beta.application.key]), follow=True)
    assert f"queued behind #{running.pk}" in page.content.decode()


# --- links to the deploy page ----------------------------------------------------------------


def test_version_pages_link_to_deploy_for_those_who_may(editor_client, live_and_next):
    beta = live_and_next.environment
    app = beta.application.key
    versions = editor_client.get(reverse("versions", args=[app]), {"env": "beta"}).content.decode()
    assert f'href="{deploy_url(beta, 3)}"' in versions
    assert f'href="{deploy_url(beta, 2)}"' not in versions  # v2 is live
    assert 'title="What Beta serves to every target">live</span>' in versions
    detail = editor_client.get(reverse("version_detail", args=[app, "beta", 3])).content.decode()
    assert f'href="{deploy_url(beta, 3)}"' in detail


def test_viewers_get_no_deploy_links(viewer_client, live_and_next):
    beta = live_and_next.environment
    app = beta.application.key
    versions = viewer_client.get(reverse("versions", args=[app]), {"env": "beta"}).content.decode()
    detail = viewer_client.get(reverse("version_detail", args=[app, "beta", 3])).content.decode()
    assert "/deploy/" not in versions and "/deploy/" not in detail


def test_saving_a_version_leads_to_its_deploy_page(editor_client, beta, flag):
    enable_unsaved(flag, beta)
    response = editor_client.post(
        reverse("version_create", args=[beta.application.key, beta.key]), {"message": "on"}
    )
    assert response.status_code == 302
    assert response["Location"] == deploy_url(beta, 2)
    page = editor_client.get(response["Location"]).content.decode()
    assert "Saved version 2 of Beta" in page and "Deploy v2 to Beta" in page


# --- rolling back to version N ---------------------------------------------------------------


@pytest.fixture
def v3_live(clock, live_and_next):
    """Beta serves v3 (the flag on) after v2 (the flag off)."""
    deploy_now(live_and_next.environment, live_and_next, clock)
    return live_and_next


def test_an_older_version_offers_a_rollback_the_live_one_does_not(editor_client, v3_live):
    app = v3_live.environment.application.key
    older = editor_client.get(reverse("version_detail", args=[app, "beta", 2])).content.decode()
    live = editor_client.get(reverse("version_detail", args=[app, "beta", 3])).content.decode()
    assert (
        "Roll back to this version" in older
        and f'action="{rollback_url(v3_live.environment, 2)}"' in older
    )
    assert "Roll back to this version" not in live and "/deploy/" not in live
    assert 'title="What Beta serves to every target">live</span>' in live


def test_rolling_back_needs_a_reason(editor_client, v3_live):
    beta = v3_live.environment
    before = world()
    for data in ({}, {"reason": "   "}, {"reason": "", "confirm": "yes"}):
        response = editor_client.post(rollback_url(beta, 2), data)
        assert response.status_code == 422
        assert "Say why you roll back" in response.content.decode()
    assert world() == before


def test_rolling_back_asks_for_confirmation_then_deploys_the_version_as_a_rollback(
    editor_client, v3_live
):
    beta = v3_live.environment
    before = world()

    asked = editor_client.post(rollback_url(beta, 2), {"reason": "checkout errors"})

    html = asked.content.decode()
    assert asked.status_code == 200 and world() == before
    assert "Roll back Beta to version 2?" in html and "serves v3 now" in html
    assert 'name="confirm" value="yes"' in html and "checkout errors</textarea>" in html

    done = editor_client.post(
        rollback_url(beta, 2), {"reason": "checkout errors", "confirm": "yes"}
    )

    d = Deployment.objects.latest("id")
    assert done.status_code == 302 and done["Location"] == detail_url(d)
    assert d.kind == DeploymentKind.RESTORE and d.version.number == 2
    assert d.rollback_reason == "checkout errors" and d.rollback_by_name == "editor"
    assert d.strategy.name == IMMEDIATE


def test_rolling_back_over_htmx_confirms_in_the_modal_then_redirects(editor_client, v3_live, htmx):
    beta = v3_live.environment
    asked = editor_client.post(rollback_url(beta, 2), {"reason": "errors"}, headers=htmx)
    assert asked["HX-Retarget"] == "#modal" and "<dialog" in asked.content.decode()
    assert "<html" not in asked.content.decode()
    done = editor_client.post(
        rollback_url(beta, 2), {"reason": "errors", "confirm": "yes"}, headers=htmx
    )
    assert done["HX-Redirect"] == detail_url(Deployment.objects.latest("id"))


@pytest.mark.parametrize("who", ["viewer_client", "outsider_client"])
def test_viewers_and_outsiders_cannot_roll_back(request, who, v3_live):
    client = request.getfixturevalue(who)
    before = world()
    response = client.post(rollback_url(v3_live.environment, 2), {"reason": "x", "confirm": "yes"})
    assert response.status_code == 403 and world() == before


def test_an_editor_cannot_roll_back_a_protected_environment(editor_client, production, flag):
    version = save_version(production)
    before = world()
    response = editor_client.post(
        rollback_url(production, version.number), {"reason": "x", "confirm": "yes"}
    )
    assert response.status_code == 403 and world() == before


# --- the switch shows the rollout ------------------------------------------------------------


@pytest.fixture
def gradual(clock, app, beta, flag, linear):
    """Beta serves every flag (off); its default strategy is linear (25 % a minute)."""
    make_flag(app, "quiet-flag")
    deploy_now(beta, save_version(beta, "all flags"), clock)
    services.environment_update(
        actor=None, environment=beta, name=beta.name, protected=False, default_strategy=linear
    )
    return beta


def rollout_text(html, flag, env):
    return text_of(html, f"rollout-{flag.pk}-{env.pk}")


def test_a_toggle_deploys_with_the_default_strategy_and_the_switch_shows_the_rollout(
    editor_client, clock, gradual, flag, htmx
):
    beta = gradual
    s = FlagSetting.objects.get(flag=flag, environment=beta)
    url = reverse("flag_toggle", args=[beta.application.key, flag.key, beta.key])

    response = editor_client.post(url, {"enabled": "true", "revision": s.revision}, headers=htmx)

    html = response.content.decode()
    d = Deployment.objects.get(environment=beta, state="queued")
    assert f"Enabled {flag.key} in Beta: deploying v3 with linear-4m." in html
    assert rollout_text(html, flag, beta) == "queued"
    assert f'href="{detail_url(d)}"' in html

    run_due(clock)
    page = editor_client.get(reverse("flag_list", args=[beta.application.key])).content.decode()
    assert rollout_text(page, flag, beta) == "rolling out 25 %"
    quiet = Flag.objects.get(key="quiet-flag")
    assert rollout_text(page, quiet, beta) == ""  # the deployment does not change it
    span = re.search(rf'<span id="rollout-{flag.pk}-{beta.pk}"[^>]*>', page).group(0)
    assert 'class="rollout-status rollout-deploying"' in span
    assert (
        re.search(r'hx-trigger="every \d+ms"', span)
        and f'hx-get="{status_url(flag, beta)}"' in span
    )
    assert 'hx-target="this"' in span  # not the switch form it sits in


def test_the_status_polls_while_open_and_stops_once_complete(
    viewer_client, clock, gradual, flag, htmx
):
    beta = gradual
    services.flag_set_enabled(actor=None, flag=flag, environment=beta, enabled=True)
    run_due(clock)
    clock.tick(60)
    run_due(clock)

    polled = viewer_client.get(status_url(flag, beta), headers=htmx)

    html = polled.content.decode()
    assert polled.status_code == 200 and "<html" not in html
    assert rollout_text(html, flag, beta) == "rolling out 50 %"
    assert re.search(r'hx-trigger="every \d+ms"', html)

    for _ in range(4):
        clock.tick(60)
        run_due(clock)
    assert Deployment.objects.get(environment=beta, version__number=3).state == "complete"

    done = viewer_client.get(status_url(flag, beta), headers=htmx).content.decode()
    assert rollout_text(done, flag, beta) == ""
    assert "hx-trigger" not in done and "hx-get" not in done


def test_the_status_says_baking_and_rolling_back(viewer_client, clock, gradual, flag, htmx):
    beta = gradual
    bake = make_strategy("bake-5m", duration_minutes=0, growth_factor=100, final_bake_minutes=5)
    d = services.flag_set_enabled(actor=None, flag=flag, environment=beta, enabled=True).deployment
    Deployment.objects.filter(pk=d.pk).update(strategy=bake, plan=bake.snapshot())
    run_due(clock)
    html = viewer_client.get(status_url(flag, beta), headers=htmx).content.decode()
    assert rollout_text(html, flag, beta) == "baking"
    deployment_services.deployment_rollback(
        actor=None, deployment=d, reason="alarm", trigger="alarm"
    )
    Deployment.objects.filter(pk=d.pk).update(state="rolling_back")
    html = viewer_client.get(status_url(flag, beta), headers=htmx).content.decode()
    assert rollout_text(html, flag, beta) == "rolling back"


def test_the_flag_page_switch_shows_the_rollout(viewer_client, clock, gradual, flag):
    services.flag_set_enabled(actor=None, flag=flag, environment=gradual, enabled=True)
    run_due(clock)
    url = reverse("flag_detail", args=[gradual.application.key, flag.key])
    html = viewer_client.get(url).content.decode()
    assert rollout_text(html, flag, gradual) == "rolling out 25 %"


def test_the_status_endpoint_needs_a_role_and_a_flag(outsider_client, gradual, flag):
    assert outsider_client.get(status_url(flag, gradual)).status_code == 403


def test_the_status_of_an_unknown_flag_is_404(viewer_client, gradual):
    url = reverse("environment_rollout_status", args=[gradual.application.key, "beta"])
    assert viewer_client.get(url, {"flag": "nope"}).status_code == 404


def test_a_toggle_queued_behind_a_running_deployment_says_so(
    editor_client, clock, gradual, flag, htmx
):
    beta = gradual
    quiet = Flag.objects.get(key="quiet-flag")
    first = services.flag_set_enabled(
        actor=None, flag=quiet, environment=beta, enabled=True
    ).deployment
    run_due(clock)
    s = FlagSetting.objects.get(flag=flag, environment=beta)
    url = reverse("flag_toggle", args=[beta.application.key, flag.key, beta.key])
    html = editor_client.post(
        url, {"enabled": "true", "revision": s.revision}, headers=htmx
    ).content.decode()
    assert f"Enabled {flag.key} in Beta: v4 queued behind #{first.pk}." in html
    assert rollout_text(html, flag, beta) == "queued"


# --- the flag list stays at a fixed number of queries ----------------------------------------


def _list_queries(client, app):
    url = reverse("flag_list", args=[app.key])
    client.get(url)  # the first visit remembers the application in the session
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries), response.content.decode()


def test_the_flag_list_query_count_is_unchanged_by_many_flags_and_open_deployments(
    viewer_client, clock, app, envs, linear, settings
):
    settings.FLAGDASH_PAGE_SIZE = 500
    beta = envs[0]
    make_flag(app, "first-flag")
    few, _ = _list_queries(viewer_client, app)

    flags = Flag.objects.bulk_create(
        [Flag(application=app, key=f"bulk-{i:03d}", name=f"Bulk {i}") for i in range(150)]
    )
    FlagSetting.objects.bulk_create(
        [FlagSetting(flag=f, environment=e) for f in flags for e in envs]
    )
    deploy_now(beta, save_version(beta, "all"), clock)
    Environment.objects.filter(pk=beta.pk).update(default_strategy=linear)
    for f in flags[:3]:
        services.flag_set_enabled(actor=None, flag=f, environment=beta, enabled=True)
    run_due(clock)  # one deploying at 25 %, two queued behind it
    states = sorted(Deployment.objects.filter(environment=beta).values_list("state", flat=True))
    assert states == ["complete", "deploying", "queued", "queued"]

    many, html = _list_queries(viewer_client, app)

    assert many == few
    assert html.count('role="switch"') == 151 * 2
    assert rollout_text(html, flags[0], beta) == "rolling out 25 %"
    assert rollout_text(html, flags[1], beta) == "queued"
    assert rollout_text(html, flags[3], beta) == ""

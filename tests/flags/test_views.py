"""Flag pages: who may do what, errors at the field, htmx fragments, fixed query counts."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from flagdash.audit.models import Action, AuditEvent
from flagdash.flags import services
from flagdash.flags.models import ConfigVersion, Flag, FlagAttribute, FlagSetting
from tests.factories import make_flag

pytestmark = pytest.mark.django_db


def state():
    """Everything a write could change, to prove a refused request changed nothing."""
    return (
        list(Flag.objects.order_by("id").values_list("key", "name", "archived_at")),
        list(
            FlagSetting.objects.order_by("id").values_list(
                "enabled", "attribute_values", "revision"
            )
        ),
        FlagAttribute.objects.count(),
        ConfigVersion.objects.count(),
        AuditEvent.objects.count(),
    )


def toggle_url(flag, env):
    return reverse("flag_toggle", args=[flag.application.key, flag.key, env.key])


def setting(flag, env):
    return FlagSetting.objects.get(flag=flag, environment=env)


# --- the flag list ---------------------------------------------------------------------------


def test_the_list_shows_one_labelled_switch_per_environment(viewer_client, app, flag, envs):
    response = viewer_client.get(reverse("flag_list", args=[app.key]))
    html = response.content.decode()
    assert response.status_code == 200
    for env in envs:
        assert f'aria-label="{flag.key} in {env.name}"' in html
    assert html.count('role="switch"') == 2
    assert html.count("disabled title=") == 2  # a viewer sees the switches, disabled


def test_editors_see_beta_enabled_and_protected_production_disabled(editor_client, app, flag, envs):
    html = editor_client.get(reverse("flag_list", args=[app.key])).content.decode()
    beta_switch = re.search(r'<button[^>]*aria-label="[^"]+ in Beta"[^>]*>', html, re.S).group(0)
    prod_switch = re.search(
        r'<button[^>]*aria-label="[^"]+ in Production"[^>]*>', html, re.S
    ).group(0)
    assert "disabled" not in beta_switch
    assert "disabled" in prod_switch and "protected" in prod_switch


def test_search_and_filters_narrow_the_list(viewer_client, app, envs, admin_user):
    make_flag(app, "dark-mode", short_term=True, tags=["ux"], owner=admin_user)
    make_flag(app, "search-v2", description="New ranking")
    url = reverse("flag_list", args=[app.key])

    def keys(response):
        return re.findall(
            r'class="flag-key">\s*<a href="[^"]+">([^<]+)</a>', response.content.decode()
        )

    assert keys(viewer_client.get(url, {"q": "rank"})) == ["search-v2"]
    assert keys(viewer_client.get(url, {"short_term": "yes"})) == ["dark-mode"]
    assert keys(viewer_client.get(url, {"tag": "ux"})) == ["dark-mode"]
    assert keys(viewer_client.get(url, {"owner": "admin"})) == ["dark-mode"]
    assert keys(viewer_client.get(url, {"sort": "-key"})) == ["search-v2", "dark-mode"]
    assert keys(viewer_client.get(url, {"sort": "bogus", "short_term": "maybe"})) == [
        "dark-mode",
        "search-v2",
    ]


def test_archived_flags_are_hidden_unless_asked_for(viewer_client, app, envs, flag):
    services.flag_set_archived(actor=None, flag=flag, archived=True)
    url = reverse("flag_list", args=[app.key])
    assert flag.key not in viewer_client.get(url).content.decode()
    assert flag.key in viewer_client.get(url, {"archived": "only"}).content.decode()


def test_an_htmx_search_returns_only_the_results_fragment(viewer_client, app, flag, htmx):
    response = viewer_client.get(
        reverse("flag_list", args=[app.key]), {"q": "bitcoin"}, headers=htmx
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert html.lstrip().startswith('<div id="results">')
    assert flag.key in html


def test_the_list_is_paginated(viewer_client, app, envs, settings):
    settings.FLAGDASH_PAGE_SIZE = 5
    for i in range(7):
        make_flag(app, f"flag-{i}")
    url = reverse("flag_list", args=[app.key])
    assert "Page 1 of 2" in viewer_client.get(url).content.decode()
    second = viewer_client.get(url, {"page": 2}).content.decode()
    assert "flag-5" in second and "flag-0" not in second


# 12, + 1: the recent-rollback banner, + 1: the open deployments of the application's
# environments (the rollout shown beside each switch).
FLAG_LIST_QUERIES = 12 + 1 + 1


@pytest.mark.parametrize("count", [10, 500])
def test_the_list_runs_a_fixed_number_of_queries(
    count, viewer_client, app, envs, django_assert_max_num_queries, settings
):
    settings.FLAGDASH_PAGE_SIZE = 500
    _bulk_flags(app, envs, count)
    url = reverse("flag_list", args=[app.key])
    viewer_client.get(url)  # the first visit remembers the application in the session
    with django_assert_max_num_queries(FLAG_LIST_QUERIES):
        response = viewer_client.get(url)
    assert response.content.decode().count('role="switch"') == count * len(envs)


def _bulk_flags(app, envs, count):
    flags = Flag.objects.bulk_create(
        [Flag(application=app, key=f"bulk-{i:04d}", name=f"Bulk {i}") for i in range(count)]
    )
    FlagSetting.objects.bulk_create(
        [
            FlagSetting(flag=f, environment=e, enabled=bool(i % 2))
            for i, f in enumerate(flags)
            for e in envs
        ]
    )


# --- toggling --------------------------------------------------------------------------------


def test_an_editor_toggles_beta_and_a_version_and_audit_event_are_recorded(
    editor_client, flag, beta
):
    revision = setting(flag, beta).revision
    response = editor_client.post(toggle_url(flag, beta), {"enabled": "true", "revision": revision})
    assert response.status_code == 302
    assert setting(flag, beta).enabled is True
    event = AuditEvent.objects.filter(action=Action.FLAG_TOGGLED).get()
    assert (event.actor_name, event.before["enabled"], event.after["enabled"]) == (
        "editor",
        False,
        True,
    )
    assert event.source == "web" and event.request_id
    assert (
        ConfigVersion.objects.filter(environment=beta).latest("number").message
        == f"Enable {flag.key}"
    )


def test_an_htmx_toggle_swaps_the_switch_in_place_and_says_what_happened(
    editor_client, flag, beta, htmx
):
    response = editor_client.post(
        toggle_url(flag, beta),
        {"enabled": "true", "revision": setting(flag, beta).revision},
        headers=htmx,
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert html.lstrip().startswith(f'<form id="switch-{flag.pk}-{beta.pk}"')
    assert 'aria-checked="true"' in html
    assert 'hx-swap-oob="beforeend"' in html and f"Enabled {flag.key} in Beta" in html


def test_a_stale_htmx_toggle_gets_409_with_the_server_state_and_a_message(
    editor_client, flag, beta, htmx
):
    stale = setting(flag, beta).revision
    services.flag_set_enabled(actor=None, flag=flag, environment=beta, enabled=True)
    before = state()
    response = editor_client.post(
        toggle_url(flag, beta), {"enabled": "true", "revision": stale}, headers=htmx
    )
    html = response.content.decode()
    assert response.status_code == 409
    assert 'aria-checked="true"' in html  # the switch as the server has it
    assert "since you opened it" in html
    assert state() == before


def test_enabling_without_a_required_value_is_refused_with_the_reason(
    editor_client, flag, beta, htmx
):
    services.attribute_save(actor=None, flag=flag, name="currency", type="string", required=True)
    response = editor_client.post(
        toggle_url(flag, beta),
        {"enabled": "true", "revision": setting(flag, beta).revision},
        headers=htmx,
    )
    assert response.status_code == 422
    assert "required before the flag can be enabled" in response.content.decode()
    assert setting(flag, beta).enabled is False


def test_a_protected_environment_asks_for_confirmation_first(admin_client, flag, production, htmx):
    data = {"enabled": "true", "revision": setting(flag, production).revision}
    before = state()
    response = admin_client.post(toggle_url(flag, production), data, headers=htmx)
    html = response.content.decode()
    assert response.status_code == 200
    assert response["HX-Retarget"] == "#modal"
    assert "<dialog" in html and "protected environment" in html
    assert state() == before
    response = admin_client.post(
        toggle_url(flag, production), {**data, "confirm": "yes"}, headers=htmx
    )
    assert response.status_code == 200
    assert setting(flag, production).enabled is True
    assert '<div id="modal" hx-swap-oob="innerHTML"></div>' in response.content.decode()


def test_the_confirmation_works_without_javascript(admin_client, flag, production):
    data = {"enabled": "true", "revision": setting(flag, production).revision}
    page = admin_client.post(toggle_url(flag, production), data)
    assert page.status_code == 200 and "<html" in page.content.decode()
    done = admin_client.post(
        toggle_url(flag, production), {**data, "confirm": "yes", "next": "/apps/checkout/flags/"}
    )
    assert done.status_code == 302 and done["Location"] == "/apps/checkout/flags/"
    assert setting(flag, production).enabled is True


def test_an_offsite_next_is_ignored(editor_client, flag, beta):
    response = editor_client.post(
        toggle_url(flag, beta),
        {
            "enabled": "true",
            "revision": setting(flag, beta).revision,
            "next": "https://evil.example/",
        },
    )
    assert response["Location"] == reverse("flag_detail", args=[flag.application.key, flag.key])


@pytest.mark.parametrize(
    ("who", "env_name", "status"),
    [
        ("viewer", "beta", 403),
        ("outsider", "beta", 403),
        ("editor", "production", 403),
    ],
)
def test_a_forced_toggle_without_permission_gets_403_and_changes_nothing(
    request, who, env_name, status, flag, envs, htmx
):
    client = request.getfixturevalue(f"{who}_client")
    env = request.getfixturevalue(env_name)
    before = state()
    data = {"enabled": "true", "revision": setting(flag, env).revision, "confirm": "yes"}
    assert client.post(toggle_url(flag, env), data).status_code == status
    response = client.post(toggle_url(flag, env), data, headers=htmx)
    assert response.status_code == status
    if who != "outsider":  # people who may read get the switch back as the server has it
        assert 'aria-checked="false"' in response.content.decode()
    assert state() == before


def test_anonymous_users_are_sent_to_the_login_page(client, flag, beta):
    response = client.post(toggle_url(flag, beta), {"enabled": "true"})
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert setting(flag, beta).enabled is False


# --- every other write endpoint: the permission matrix ----------------------------------------


def _write_endpoints(flag, beta, production):
    app = flag.application.key
    attr = FlagAttribute.objects.get(flag=flag, name="pct")
    return {
        "create flag": (
            reverse("flag_create", args=[app]),
            {"key": "new-flag", "name": "New", "kind": "boolean"},
        ),
        "edit flag": (reverse("flag_edit", args=[app, flag.key]), {"name": "Renamed"}),
        "archive flag": (reverse("flag_archive", args=[app, flag.key]), {}),
        "add attribute": (
            reverse("flag_attribute_create", args=[app, flag.key]),
            {"name": "extra", "type": "string"},
        ),
        "edit attribute": (
            reverse("flag_attribute_edit", args=[app, flag.key, attr.pk]),
            {"name": "pct", "type": "number", "maximum": "5"},
        ),
        "remove attribute": (reverse("flag_attribute_delete", args=[app, flag.key, attr.pk]), {}),
        "save beta values": (
            reverse("flag_setting_save", args=[app, flag.key, beta.key]),
            {"env-beta-revision": setting(flag, beta).revision, "env-beta-attr__pct": "3"},
        ),
        "save production values": (
            reverse("flag_setting_save", args=[app, flag.key, production.key]),
            {
                "env-production-revision": setting(flag, production).revision,
                "env-production-attr__pct": "3",
            },
        ),
        "save beta version": (reverse("version_create", args=[app, beta.key]), {"message": "m"}),
        "save production version": (
            reverse("version_create", args=[app, production.key]),
            {"message": "m"},
        ),
    }


# Removing the attribute would erase a value in protected production, and archiving would take
# the flag out of production's next version: admins only.
EDITOR_ALLOWED = {
    "create flag",
    "edit flag",
    "add attribute",
    "edit attribute",
    "save beta values",
    "save beta version",
}


@pytest.fixture
def prepared(flag, beta, production):
    services.attribute_save(actor=None, flag=flag, name="pct", type="number")
    for env in (beta, production):
        services.config_version_create(actor=None, environment=env, message="with the flag")
    for env in (beta, production):  # an unsaved change in each environment
        services.flag_setting_update(
            actor=None,
            flag=flag,
            environment=env,
            expected_revision=setting(flag, env).revision,
            attribute_values={"pct": 1},
        )
    return flag


@pytest.mark.parametrize("who", ["viewer", "outsider", "editor", "admin"])
@pytest.mark.parametrize(
    "endpoint",
    [
        "create flag",
        "edit flag",
        "archive flag",
        "add attribute",
        "edit attribute",
        "remove attribute",
        "save beta values",
        "save production values",
        "save beta version",
        "save production version",
    ],
)
def test_permission_matrix(request, who, endpoint, prepared, beta, production):
    client = request.getfixturevalue(f"{who}_client")
    url, data = _write_endpoints(prepared, beta, production)[endpoint]
    before = state()
    response = client.post(url, data)
    allowed = who == "admin" or (who == "editor" and endpoint in EDITOR_ALLOWED)
    if allowed:
        assert response.status_code == 302, response.content.decode()[:2000]
        assert state() != before
    else:
        assert response.status_code == 403
        assert state() == before


@pytest.mark.parametrize(
    "url_name", ["flag_list", "versions", "short_term", "deployments", "rollbacks"]
)
def test_outsiders_cannot_even_read(outsider_client, app, url_name):
    assert outsider_client.get(reverse(url_name, args=[app.key])).status_code == 403


# --- forms: errors at the field --------------------------------------------------------------


def test_a_bad_flag_key_is_shown_next_to_the_field_and_nothing_is_written(editor_client, app, envs):
    before = state()
    response = editor_client.post(
        reverse("flag_create", args=[app.key]), {"key": "Bad Key!", "name": "x", "kind": "boolean"}
    )
    html = response.content.decode()
    assert response.status_code == 422
    key_field = re.search(
        r'<div class="field has-error">\s*<label for="id_key">.*?</ul>', html, re.S
    )
    assert key_field and "Lowercase letter first" in key_field.group(0)
    assert state() == before


def test_a_duplicate_key_is_shown_at_the_key_field(editor_client, app, flag):
    response = editor_client.post(
        reverse("flag_create", args=[app.key]), {"key": flag.key, "name": "x", "kind": "boolean"}
    )
    assert response.status_code == 422
    assert "already exists in Checkout" in response.content.decode()


def test_a_value_outside_its_range_is_shown_at_its_field(editor_client, prepared, beta):
    url = reverse("flag_setting_save", args=[prepared.application.key, prepared.key, beta.key])
    before = state()
    response = editor_client.post(
        url, {"env-beta-revision": setting(prepared, beta).revision, "env-beta-attr__pct": "abc"}
    )
    assert response.status_code == 422
    assert "Enter a number." in response.content.decode()
    services.attribute_save(
        actor=None,
        flag=prepared,
        attribute=FlagAttribute.objects.get(name="pct"),
        name="pct",
        type="number",
        maximum=10,
    )
    before = state()
    response = editor_client.post(
        url, {"env-beta-revision": setting(prepared, beta).revision, "env-beta-attr__pct": "11"}
    )
    html = response.content.decode()
    assert response.status_code == 422
    assert re.search(r'has-error">\s*<label for="id_env-beta-attr__pct">', html)
    assert "must be at most 10" in html
    assert state() == before


def test_a_conflicting_save_is_refused_showing_who_changed_what(
    editor_client, admin_user, prepared, beta, htmx
):
    url = reverse("flag_setting_save", args=[prepared.application.key, prepared.key, beta.key])
    opened = setting(prepared, beta).revision
    services.flag_setting_update(
        actor=admin_user,
        flag=prepared,
        environment=beta,
        expected_revision=opened,
        attribute_values={"pct": 7},
    )
    before = state()
    response = editor_client.post(
        url, {"env-beta-revision": opened, "env-beta-attr__pct": "2"}, headers=htmx
    )
    html = response.content.decode()
    assert response.status_code == 409
    assert "<html" not in html
    assert "admin changed" in html and "attribute_values.pct" in html and "1 → 7" in html
    assert 'value="2"' in html  # the user's own value is kept
    assert (
        f'value="{setting(prepared, beta).revision}"' in html
    )  # saving again is a deliberate overwrite
    assert state() == before


# --- versions --------------------------------------------------------------------------------


def test_the_versions_page_shows_unsaved_changes_and_saves_a_version(editor_client, prepared, beta):
    app = prepared.application.key
    page = editor_client.get(reverse("versions", args=[app]), {"env": "beta"}).content.decode()
    assert "Unsaved changes in Beta" in page and prepared.key in page
    assert '<td class="path">attribute_values.pct</td>' in page
    response = editor_client.post(
        reverse("version_create", args=[app, "beta"]), {"message": "pct to 1"}
    )
    version = ConfigVersion.objects.filter(environment=beta).latest("number")
    # Saving leads on to deploying it: the diff against the live version, then Confirm.
    assert response["Location"] == reverse("version_deploy", args=[app, "beta", version.number])
    deploy = editor_client.get(response["Location"]).content.decode()
    assert "nothing deployed yet" in deploy and prepared.key in deploy
    detail = editor_client.get(reverse("version_detail", args=[app, "beta", version.number]))
    assert "Changes since version 2" in detail.content.decode()


def test_saving_an_unchanged_version_says_so(editor_client, app, beta, flag):
    url = reverse("version_create", args=[app.key, beta.key])
    editor_client.post(url, {"message": "adds the flag"})
    response = editor_client.post(url, {"message": ""}, follow=True)
    assert "Nothing changed since version 2" in response.content.decode()


def test_any_two_versions_can_be_compared(viewer_client, app, beta, flag):
    services.flag_set_enabled(actor=None, flag=flag, environment=beta, enabled=True)  # v2
    services.flag_set_enabled(actor=None, flag=flag, environment=beta, enabled=False)  # v3
    services.flag_set_enabled(actor=None, flag=flag, environment=beta, enabled=True)  # v4
    html = viewer_client.get(
        reverse("version_detail", args=[app.key, beta.key, 4]), {"against": 2}
    ).content.decode()
    assert "Changes since version 2" in html and "No differences." in html
    html = viewer_client.get(
        reverse("version_detail", args=[app.key, beta.key, 4])
    ).content.decode()
    assert "Changes since version 3" in html and '<td class="path">enabled</td>' in html
    assert (
        viewer_client.get(reverse("version_detail", args=[app.key, beta.key, 99])).status_code
        == 404
    )


def test_the_flag_page_shows_history_and_versions(viewer_client, flag, beta, editor):
    services.flag_set_enabled(actor=editor, flag=flag, environment=beta, enabled=True)
    html = viewer_client.get(
        reverse("flag_detail", args=[flag.application.key, flag.key])
    ).content.decode()
    assert "Flag toggled" in html and "editor" in html
    assert f"Enable {flag.key}" in html  # the version's message
    assert "Your role can read these values but not change them." in html


def test_a_toggle_on_the_flag_page_refreshes_the_values_forms_revision(editor_client, flag, beta):
    page = reverse("flag_detail", args=[flag.application.key, flag.key])
    response = editor_client.post(
        toggle_url(flag, beta),
        {"enabled": "true", "revision": setting(flag, beta).revision},
        headers={"HX-Request": "true", "HX-Current-URL": f"http://testserver{page}?env=beta"},
    )
    html = response.content.decode()
    revision = setting(flag, beta).revision
    assert 'id="id_env-beta-revision" hx-swap-oob="true"' in html
    assert f'name="env-beta-revision" value="{revision}"' in html


def test_saving_values_over_htmx_refreshes_the_switch_and_shows_the_message(
    editor_client, prepared, beta
):
    url = reverse("flag_setting_save", args=[prepared.application.key, prepared.key, beta.key])
    response = editor_client.post(
        url,
        {"env-beta-revision": setting(prepared, beta).revision, "env-beta-attr__pct": "4"},
        headers={"HX-Request": "true"},
        follow=True,
    )
    html = response.content.decode()
    revision = setting(prepared, beta).revision
    switch = re.search(rf'<form id="switch-{prepared.pk}-{beta.pk}"[^>]*>.*?</form>', html, re.S)
    assert switch and 'hx-swap-oob="true"' in switch.group(0)
    assert f'name="revision" value="{revision}"' in switch.group(0)
    assert "Review and save a version to make them live." in html


def test_editing_a_flag_keeps_its_deactivated_owner(editor_client, app, flag):
    departed = get_user_model().objects.create_user("departed", is_active=False)
    flag.owner = departed
    flag.save(update_fields=["owner"])
    url = reverse("flag_edit", args=[app.key, flag.key])
    page = editor_client.get(url).content.decode()
    assert '<option value="departed" selected>departed (inactive)</option>' in page
    response = editor_client.post(url, {"name": "Renamed", "owner": "departed"})
    assert response.status_code == 302
    flag.refresh_from_db()
    assert (flag.name, flag.owner_id) == ("Renamed", departed.pk)

"""Pages: Settings → API keys (who may do what), rules on the flag page, sparklines, the
short-term page's "last evaluated", and the create_api_key command."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from flagdash.audit.models import AuditEvent
from flagdash.evaluation import counters, services
from flagdash.evaluation.counters import tally
from flagdash.evaluation.demo import ensure_demo_api_key
from flagdash.evaluation.models import ApiKey
from flagdash.flags import documents
from flagdash.flags.models import FlagSetting
from flagdash.flags.services import latest_version
from tests.evaluation.conftest import deploy, post
from tests.factories import make_flag

pytestmark = pytest.mark.django_db
KEYS = "/settings/api-keys/"


def test_outsider_sees_no_keys(outsider_client, beta):
    assert outsider_client.get(KEYS).status_code == 403


def test_viewer_sees_prefixes_but_cannot_create_or_revoke(viewer_client, beta):
    key, plaintext = services.api_key_create(actor=None, environment=beta, name="web")
    page = viewer_client.get(KEYS)
    assert page.status_code == 200
    assert key.prefix in page.content.decode()
    assert plaintext not in page.content.decode()
    assert "Create a key" not in page.content.decode()
    response = viewer_client.post(KEYS, {"environment": beta.pk, "name": "x"})
    assert response.status_code == 403
    assert viewer_client.post(reverse("api_key_revoke", args=[key.pk])).status_code == 403
    assert ApiKey.objects.count() == 1


def test_editor_cannot_create_keys(editor_client, beta):
    assert editor_client.post(KEYS, {"environment": beta.pk, "name": "x"}).status_code == 403


def test_admin_creates_a_key_shown_once_and_audited_without_it(admin_client, beta):
    response = admin_client.post(KEYS, {"environment": beta.pk, "name": "checkout-web"})
    assert response.status_code == 201
    html = response.content.decode()
    key = ApiKey.objects.get()
    start = html.index('id="new-key"')
    plaintext = html[start:].split('value="', 1)[1].split('"', 1)[0]
    assert services.key_hash(plaintext) == key.key_hash
    assert response["Cache-Control"].startswith("max-age=0")
    assert plaintext not in admin_client.get(KEYS).content.decode()
    event = AuditEvent.objects.get(action="api_key.created")
    assert plaintext not in json.dumps(event.after) and key.key_hash not in json.dumps(event.after)
    assert event.environment_id == beta.pk


def test_the_page_gives_the_base_url_providers_take_and_a_copy_button_for_a_new_key(
    admin_client, beta
):
    html = admin_client.get(KEYS).content.decode()
    # OpenFeature's OFREP providers take the server's base URL and add /ofrep/v1/… themselves.
    assert '<code class="mono" id="ofrep-base-url">http://testserver</code>' in html
    assert "POST http://testserver/ofrep/v1/evaluate/flags</code>" in html
    created = admin_client.post(KEYS, {"environment": beta.pk, "name": "checkout-web"})
    assert 'data-copy="#new-key"' in created.content.decode()


def test_duplicate_name_is_an_error_at_the_field(admin_client, beta):
    services.api_key_create(actor=None, environment=beta, name="web")
    response = admin_client.post(KEYS, {"environment": beta.pk, "name": "web"})
    assert response.status_code == 422
    assert "already has an active key named" in response.content.decode()
    assert ApiKey.objects.count() == 1


def test_admin_revokes_after_confirmation(admin_client, beta):
    key, _ = services.api_key_create(actor=None, environment=beta, name="web")
    url = reverse("api_key_revoke", args=[key.pk])
    assert "Revoke “web”?" in admin_client.get(url).content.decode()
    assert admin_client.post(url).status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert AuditEvent.objects.filter(action="api_key.revoked").count() == 1


def test_create_api_key_command_prints_only_the_key(beta):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", "checkout", "beta", "--name", "ci", stdout=out, stderr=err)
    plaintext = out.getvalue().strip()
    assert services.KEY_PATTERN.match(plaintext)
    assert ApiKey.objects.get(name="ci").key_hash == services.key_hash(plaintext)
    assert plaintext not in err.getvalue()


def test_create_api_key_command_refuses_an_unknown_environment(beta):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No environment 'staging'"):
        call_command("create_api_key", "checkout", "staging")


def test_demo_key_is_created_once(settings, tmp_path, beta):
    settings.VAR_DIR = tmp_path
    first = ensure_demo_api_key()
    second = ensure_demo_api_key()
    assert first.plaintext == second.plaintext
    assert ApiKey.objects.count() == 1
    assert (tmp_path / "demo_api_key").read_text().strip() == first.plaintext[4:]
    assert ApiKey.objects.get().key_hash == services.key_hash(first.plaintext)


# --- rules on the flag page ---------------------------------------------------------------


def _save_url(flag, env):
    return reverse("flag_setting_save", args=["checkout", flag.key, env.key])


def test_rules_are_saved_audited_and_put_in_the_next_version(editor_client, flag, beta):
    setting = FlagSetting.objects.get(flag=flag, environment=beta)
    rules = [
        {
            "conditions": [{"attribute": "country", "operator": "equals", "value": "SV"}],
            "serve": {"variant": "on"},
        }
    ]
    response = editor_client.post(
        _save_url(flag, beta),
        {"env-beta-revision": setting.revision, "env-beta-rules": json.dumps(rules)},
    )
    assert response.status_code == 302
    setting.refresh_from_db()
    assert setting.rules == [{"match": "all", **rules[0]}]
    event = AuditEvent.objects.filter(action="setting.updated").latest("id")
    assert event.after["rules"] == setting.rules
    version = deploy(beta).version
    assert documents.load(version.document)["flags"][flag.key]["rules"] == setting.rules
    page = editor_client.get(reverse("flag_detail", args=["checkout", flag.key]))
    assert "country equals “SV” → on" in page.content.decode()


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            '[{"conditions": [{"attribute": "a", "operator": "equals", "value": 1}], '
            '"serve": {"variant": "maybe"}}]',
            "unknown variant",
        ),
        (
            '[{"conditions": [{"attribute": "a", "operator": "matches", "value": "(["}], '
            '"serve": {"variant": "on"}}]',
            "Not a valid regular expression",
        ),
        (
            '[{"conditions": [{"attribute": "a", "operator": "equals", "value": 1}], '
            '"serve": {"split": [{"variant": "on", "weight": 10}, '
            '{"variant": "off", "weight": 10}]}}]',
            "add up to 20, not 100",
        ),
        ("[{not json", "Not valid JSON"),
    ],
)
def test_invalid_rules_show_an_error_at_the_field_and_change_nothing(
    editor_client, flag, beta, rules, message
):
    setting = FlagSetting.objects.get(flag=flag, environment=beta)
    response = editor_client.post(
        _save_url(flag, beta), {"env-beta-revision": setting.revision, "env-beta-rules": rules}
    )
    assert response.status_code == 422
    html = response.content.decode()
    field = html[html.index('for="id_env-beta-rules"') :]
    assert message in field[: field.index("</div>")]
    setting.refresh_from_db()
    assert setting.rules == []


def test_viewer_cannot_save_rules(viewer_client, flag, beta):
    setting = FlagSetting.objects.get(flag=flag, environment=beta)
    response = viewer_client.post(
        _save_url(flag, beta), {"env-beta-revision": setting.revision, "env-beta-rules": "[]"}
    )
    assert response.status_code == 403


def test_renaming_away_a_variant_a_rule_serves_is_refused(editor_client, app, beta):
    colors = make_flag(
        app,
        "colors",
        kind="multivariant",
        value_type="string",
        variants=[{"name": "red", "value": "r"}, {"name": "blue", "value": "b"}],
        default_variant="red",
    )
    from tests.evaluation.conftest import set_values

    set_values(
        colors,
        beta,
        rules=[
            {
                "conditions": [{"attribute": "a", "operator": "equals", "value": 1}],
                "serve": {"variant": "blue"},
            }
        ],
    )
    setting = FlagSetting.objects.get(flag=colors, environment=beta)
    response = editor_client.post(
        _save_url(colors, beta),
        {
            "env-beta-revision": setting.revision,
            "env-beta-variant_0_name": "red",
            "env-beta-variant_0_value": "r",
            "env-beta-variant_1_name": "navy",
            "env-beta-variant_1_value": "b",
            "env-beta-default_variant": "red",
            "env-beta-rules": json.dumps(setting.rules),
        },
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "unknown variant &#x27;blue&#x27;" in html
    # Shown again with the two rows sent plus two empty ones, and a resubmission of that form
    # (empty rows included) does not grow it further.
    assert 'name="env-beta-variant_3_name"' in html
    assert 'name="env-beta-variant_4_name"' not in html
    again = editor_client.post(
        _save_url(colors, beta),
        {
            "env-beta-revision": setting.revision,
            "env-beta-variant_0_name": "red",
            "env-beta-variant_0_value": "r",
            "env-beta-variant_1_name": "navy",
            "env-beta-variant_1_value": "b",
            "env-beta-variant_2_name": "",
            "env-beta-variant_2_value": "",
            "env-beta-variant_3_name": "",
            "env-beta-variant_3_value": "",
            "env-beta-default_variant": "red",
            "env-beta-rules": json.dumps(setting.rules),
        },
    ).content.decode()
    assert 'name="env-beta-variant_3_name"' in again
    assert 'name="env-beta-variant_4_name"' not in again


# --- evaluations on pages -----------------------------------------------------------------


def test_flag_page_shows_the_sparkline_in_a_fixed_number_of_queries(
    viewer_client, api, served, beta, beta_key, django_assert_max_num_queries
):
    url = reverse("flag_detail", args=["checkout", "new-checkout"])
    viewer_client.get(url)  # the session and the like settle
    with CaptureQueriesContext(connection) as before:
        assert "not evaluated over OFREP" in viewer_client.get(url).content.decode()
    budget = len(before.captured_queries)
    assert budget <= 30
    for i in range(50):
        post(
            api,
            "/ofrep/v1/evaluate/flags/new-checkout",
            {"context": {"targetingKey": f"{i}"}},
            beta_key,
        )
    counters.store(tally.take())
    with django_assert_max_num_queries(budget):
        html = viewer_client.get(url).content.decode()
    assert "<polyline" in html
    assert "50 evaluations in Beta over 7 days" in html


def test_short_term_page_says_last_evaluated_or_unknown(
    viewer_client, api, served, beta, beta_key, app
):
    make_flag(app, "promo", short_term=True)
    served["bool"].short_term = True
    served["bool"].save(update_fields=["short_term"])
    post(api, "/ofrep/v1/evaluate/flags/new-checkout", {}, beta_key)
    counters.store(tally.take())
    html = viewer_client.get(reverse("short_term", args=["checkout"])).content.decode()
    assert "Last evaluated" in html
    row_new = html[html.index(">new-checkout<") :]
    assert "just now</time>" in row_new[: row_new.index("</tr>")]
    row_promo = html[html.index(">promo<") :]
    assert "unknown" in row_promo[: row_promo.index("</tr>")]


def test_a_flag_without_rules_has_no_rules_entry_in_its_version(flag, beta):
    """Versions saved before rules existed compare unchanged (no "rules": [] appears)."""
    version = deploy(beta).version
    assert version == latest_version(beta)
    assert "rules" not in documents.load(version.document)["flags"][flag.key]


def test_the_flag_page_says_whether_values_are_a_draft_saved_or_live(editor_client, flag, beta):
    from flagdash.flags import services as flag_services

    url = reverse("flag_detail", args=["checkout", flag.key]) + "?env=beta"

    def marker() -> str:
        html = editor_client.get(url).content.decode()
        start = html.index(f'id="draft-state-{beta.pk}"')
        return " ".join(html[start : html.index("</p>", start)].split())

    live = deploy(beta, "first").version.number
    assert f"Live:</strong> Beta serves these values (v{live})" in marker()

    setting = FlagSetting.objects.get(flag=flag, environment=beta)
    rule = {
        "name": "Salvador",
        "match": "all",
        "conditions": [{"attribute": "country", "operator": "equals", "value": "SV"}],
        "serve": {"variant": "on"},
    }
    flag_services.flag_setting_update(
        actor=None, flag=flag, environment=beta, expected_revision=setting.revision, rules=[rule]
    )
    assert (
        "Draft:</strong> these values are not in a saved version of Beta "
        f"(they differ from v{live})" in marker()
    )

    saved = flag_services.config_version_create(actor=None, environment=beta, message="second")
    assert (
        f"Saved in v{saved.number}, not live yet:</strong> Beta serves v{live} until "
        f"v{saved.number} has been deployed" in marker()
    )

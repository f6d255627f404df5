"""Azure App Configuration through azure-appconfiguration, unchanged, against the wire-level fake:
what flagdash writes, and how a rollout steps, completes and rolls back (the engine on a clock the
test moves)."""

from __future__ import annotations

import pytest

from flagdash.backends.azure_appconfig import (
    FEATURE_FLAG_CONTENT_TYPE,
    AzureAppConfigBackend,
    document_entry,
)
from flagdash.backends.base import backend_for
from flagdash.backends.models import AzureRollout, AzureSettingState
from flagdash.deployments import services as deployment_services
from flagdash.deployments.models import EventType
from tests.backends.azure.conftest import (
    LABEL,
    deploy,
    flag_values,
    set_flag,
    targeting_percentage,
)
from tests.deployments.conftest import reload, run_due

pytestmark = pytest.mark.django_db

KEY = ".appconfig.featureflag/promo-banner"


def percentages(d):
    return list(
        d.events.filter(type=EventType.PERCENTAGE)
        .order_by("id")
        .values_list("percentage", flat=True)
    )


# --- push ------------------------------------------------------------------------------------


def test_a_push_writes_one_feature_flag_setting_per_flag_with_label_and_content_type(
    clock, azure, staging, promo, checkout_button, at_once
):
    set_flag(promo, staging, enabled=True)
    d = deploy(staging, at_once)
    run_due(clock)
    assert reload(d).state == "complete"

    items = {kv.key: kv for kv in azure.items()}
    assert set(items) == {KEY, ".appconfig.featureflag/checkout-button"}
    for kv in items.values():
        assert kv.label == LABEL
        assert kv.content_type == FEATURE_FLAG_CONTENT_TYPE
        assert kv.tags["managed-by"] == "flagdash"
    values = flag_values(azure)
    assert values["promo-banner"] == {
        "id": "promo-banner",
        "description": "Show the banner",
        "display_name": "Promo banner",
        "enabled": True,
        "conditions": {"client_filters": []},
    }
    assert values["checkout-button"] == {
        "id": "checkout-button",
        "description": "",
        "display_name": "Checkout button",
        "enabled": False,
        "conditions": {"client_filters": []},
        "variants": [
            {"name": "blue", "configuration_value": "#0000ff"},
            {"name": "green", "configuration_value": "#00ff00"},
        ],
        "allocation": {"default_when_enabled": "blue", "seed": "flagdash/checkout-button"},
    }
    # the SDK really sent the pinned API version, signed (the fake checks every signature)
    assert azure.api_versions == {"2023-11-01"}
    assert azure.count(status=401) == 0


def test_render_is_what_start_writes(azure, staging, promo, azure_connection):
    backend = backend_for(azure_connection)
    assert isinstance(backend, AzureAppConfigBackend)
    document = {
        "flags": {
            "promo-banner": {
                "name": "Promo",
                "description": "d",
                "kind": "boolean",
                "enabled": True,
                "attribute_values": {"max": 3, "colour": "red"},
            }
        }
    }
    (rendered,) = backend.render(document)
    assert rendered["key"] == KEY and rendered["label"] == LABEL
    assert rendered["content_type"] == FEATURE_FLAG_CONTENT_TYPE
    assert rendered["value"]["telemetry"] == {
        "enabled": False,
        "metadata": {"colour": '"red"', "max": "3"},
    }
    assert document_entry(rendered["value"])["attribute_values"] == {"max": 3, "colour": "red"}


def test_invalid_flag_ids_are_refused_before_any_call(azure, azure_connection):
    from flagdash.backends.base import PermanentBackendError

    backend = backend_for(azure_connection)
    with pytest.raises(PermanentBackendError) as err:
        backend.render({"flags": {"a:b": {"kind": "boolean"}, "ok": {"kind": "boolean"}}})
    assert err.value.details == ["'a:b': a feature flag id cannot be empty or contain ':' or '%'."]
    with pytest.raises(PermanentBackendError) as err:
        backend.render({"flags": {"big": {"kind": "boolean", "description": "x" * 11_000}}})
    assert "10,240 bytes per key-value" in err.value.details[0]
    assert azure.count() == 0


# --- a gradual enable ------------------------------------------------------------------------


def test_a_gradual_enable_steps_the_targeting_percentage_on_the_plans_schedule(
    clock, azure, staging, promo, linear
):
    set_flag(promo, staging, enabled=True)
    d = deploy(staging, linear)
    run_due(clock)
    d = reload(d)
    assert (d.state, d.percentage) == ("deploying", 25)
    value = flag_values(azure)["promo-banner"]
    assert value["enabled"] is True and targeting_percentage(value) == 25

    seen = [25]
    for _ in range(3):
        clock.tick(59)
        run_due(clock)
        assert targeting_percentage(flag_values(azure)["promo-banner"]) == seen[-1]  # not yet
        clock.tick(1)
        run_due(clock)
        value = flag_values(azure)["promo-banner"]
        seen.append(targeting_percentage(value) or 100)
    assert seen == [25, 50, 75, 100]
    assert value["conditions"]["client_filters"] == []  # at 100 % the filter is gone
    writes = [w for w in azure.writes if w.key == KEY]
    assert len(writes) == 4  # one write per step, none repeated
    assert azure.count() == 5  # and one list of the label's flags before the first

    clock.tick(60)  # the 4-minute rollout is over: the 2-minute bake starts
    run_due(clock)
    d = reload(d)
    assert d.state == "baking" and d.percentage == 100
    clock.tick(119)
    run_due(clock)
    assert reload(d).state == "baking"  # the bake is observed
    clock.tick(1)
    run_due(clock)
    d = reload(d)
    assert d.state == "complete"
    assert percentages(d) == [25, 50, 75, 100]
    assert len([w for w in azure.writes if w.key == KEY]) == 4  # the bake wrote nothing
    rollout = AzureRollout.objects.get(deployment_id=d.pk)
    assert rollout.applied_percentage == 100 and rollout.completed_at is not None
    assert d.backend_data["gradual"] == {"promo-banner": "enable"}


def test_a_rollout_resumed_after_its_plan_ended_still_bakes_in_full_at_100_percent(
    clock, azure, staging, promo, linear
):
    set_flag(promo, staging, enabled=True)
    d = deploy(staging, linear)
    run_due(clock)
    assert reload(d).percentage == 25
    clock.tick(600)  # no worker for 10 minutes: the 4-minute plan and its 2-minute bake are over
    run_due(clock)
    d = reload(d)
    assert (d.state, d.percentage) == ("baking", 100)  # 100 % written only now: bake from here
    assert targeting_percentage(flag_values(azure)["promo-banner"]) is None
    clock.tick(119)
    run_due(clock)
    assert reload(d).state == "baking"
    clock.tick(1)
    run_due(clock)
    assert reload(d).state == "complete"


def test_repeating_start_and_status_writes_nothing_twice_and_never_goes_back(
    clock, azure, staging, promo, linear
):
    from flagdash.deployments.engine import build_spec

    set_flag(promo, staging, enabled=True)
    d = deploy(staging, linear)
    run_due(clock)
    clock.tick(60)
    run_due(clock)
    d = reload(d)
    assert d.percentage == 50
    writes = len(azure.writes)
    calls = azure.count()

    backend = backend_for(staging.backend)
    spec = build_spec(d)
    again = backend.start(spec, clock.now)  # as after a crash before the engine recorded it
    assert again.backend_ref == d.backend_ref
    status = backend.status(spec, clock.now)
    assert (status.state, status.percentage) == ("deploying", 50)
    early = backend.status(spec, clock.now - __import__("datetime").timedelta(seconds=90))
    assert early.percentage == 50  # an older clock does not move it back
    assert len(azure.writes) == writes and azure.count() == calls
    assert targeting_percentage(flag_values(azure)["promo-banner"]) == 50


def test_flags_whose_entries_did_not_change_are_not_rewritten(
    clock, azure, staging, promo, checkout_button, at_once
):
    set_flag(promo, staging, enabled=True)
    deploy(staging, at_once)
    run_due(clock)
    etag = azure.get(".appconfig.featureflag/checkout-button", LABEL).etag
    set_flag(promo, staging, enabled=False)
    d = deploy(staging, at_once)
    run_due(clock)
    assert reload(d).state == "complete"
    assert flag_values(azure)["promo-banner"]["enabled"] is False
    assert azure.get(".appconfig.featureflag/checkout-button", LABEL).etag == etag


# --- rollback, removal, restore ----------------------------------------------------------------


def test_a_manual_rollback_mid_rollout_restores_the_previous_settings(
    clock, azure, staging, promo, checkout_button, linear, at_once
):
    deploy(staging, at_once, "v2: everything off")
    run_due(clock)
    before = flag_values(azure)
    set_flag(promo, staging, enabled=True)
    set_flag(checkout_button, staging, enabled=True, default_variant="green")
    d = deploy(staging, linear, "v3")
    run_due(clock)
    clock.tick(60)
    run_due(clock)
    assert reload(d).percentage == 50
    assert targeting_percentage(flag_values(azure)["promo-banner"]) == 50

    deployment_services.deployment_rollback(actor=None, deployment=reload(d), reason="errors up")
    run_due(clock)
    d = reload(d)
    assert d.state == "rolled_back"
    assert flag_values(azure) == before
    clock.tick(600)
    run_due(clock)  # nothing steps a rolled-back rollout again
    assert flag_values(azure) == before


def test_a_flag_removed_from_the_version_is_deleted(
    clock, azure, staging, promo, checkout_button, at_once, app
):
    deploy(staging, at_once)
    run_due(clock)
    assert azure.get(KEY, LABEL) is not None
    from flagdash.flags import services as flag_services

    flag_services.flag_set_archived(actor=None, flag=promo, archived=True)
    d = deploy(staging, at_once, "promo archived")
    run_due(clock)
    assert reload(d).state == "complete"
    assert azure.get(KEY, LABEL) is None
    assert azure.get(".appconfig.featureflag/checkout-button", LABEL) is not None
    state = AzureSettingState.objects.get(key=KEY)
    assert state.etag == "" and state.digest == "absent"


def test_restoring_an_earlier_version_writes_its_settings_again(
    clock, azure, staging, promo, at_once
):
    set_flag(promo, staging, enabled=True)
    first = deploy(staging, at_once, "promo on")
    run_due(clock)
    assert flag_values(azure)["promo-banner"]["enabled"] is True
    set_flag(promo, staging, enabled=False, attribute_values={})
    deploy(staging, at_once, "promo off")
    run_due(clock)
    assert flag_values(azure)["promo-banner"]["enabled"] is False

    restore = deployment_services.version_restore(
        actor=None, environment=staging, version=reload(first).version, reason="back to on"
    )
    run_due(clock)
    restore = reload(restore)
    assert restore.state == "complete" and restore.kind == "restore"
    assert flag_values(azure)["promo-banner"]["enabled"] is True


def test_current_maps_the_settings_back_to_flagdash_documents(
    clock, azure, staging, promo, checkout_button, at_once, azure_connection
):
    backend = backend_for(azure_connection)
    assert backend.current("checkout", "staging") is None
    set_flag(promo, staging, enabled=True)
    set_flag(checkout_button, staging, enabled=True, default_variant="green")
    deploy(staging, at_once)
    run_due(clock)
    current = backend.current("checkout", "staging")
    assert current["flags"]["promo-banner"] == {
        "name": "Promo banner",
        "description": "Show the banner",
        "enabled": True,
        "kind": "boolean",
        "attribute_values": {},
    }
    button = current["flags"]["checkout-button"]
    assert button["enabled"] is True and button["default_variant"] == "green"
    assert button["variants"] == [
        {"name": "blue", "value": "#0000ff"},
        {"name": "green", "value": "#00ff00"},
    ]


def test_a_linear_20_percent_every_6_minutes_rollout_costs_one_list_and_a_write_per_step(
    clock, azure, staging, promo
):
    """Polls between steps and during the 30-minute bake make no Azure requests."""
    from flagdash.deployments.models import DeploymentStrategy

    strategy = DeploymentStrategy.objects.get(name="AppConfig.Linear20PercentEvery6Minutes")
    set_flag(promo, staging, enabled=True)
    d = deploy(staging, strategy)
    azure.reset_calls()
    polls = 0
    for _ in range(60 * 2 + 2):  # an hour, every 30 s (DEPLOYMENT_POLL_MAX_SECONDS)
        polls += len(run_due(clock))
        if reload(d).state == "complete":
            break
        clock.tick(30)
    d = reload(d)
    assert d.state == "complete"
    assert percentages(d) == [20, 40, 60, 80, 100]
    assert polls > 60  # the engine looked often…
    assert azure.count("GET") == 1 and azure.count("PUT") == 5  # …Azure saw 6 requests
    assert azure.count() == 6

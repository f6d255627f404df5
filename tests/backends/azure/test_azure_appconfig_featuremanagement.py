"""Microsoft's own evaluator as an independent check: the settings flagdash wrote to the fake are
read back, handed to ``featuremanagement.FeatureManager`` (2.2.0) and must agree with flagdash on
on, off, variants and the share of targeting ids inside a rollout (±2 points over 10,000 ids).

Microsoft's targeting hash is not flagdash's sticky hash; what must agree is the share."""

from __future__ import annotations

import pytest
from featuremanagement import FeatureManager
from featuremanagement._models import FeatureFlag

from flagdash.flags import services as flag_services
from tests.backends.azure.conftest import (
    deploy,
    feature_management,
    flag_values,
    set_flag,
    targeting_percentage,
)
from tests.deployments.conftest import reload, run_due
from tests.factories import make_strategy

pytestmark = pytest.mark.django_db

USERS = [f"user-{n}" for n in range(10_000)]


@pytest.fixture
def tens(db):
    """10 % more every minute over 10 minutes, no bake."""
    return make_strategy("azure-tens", duration_minutes=10, growth_factor=10, final_bake_minutes=0)


def manager(fake) -> FeatureManager:
    return FeatureManager(feature_management(fake))


def share_enabled(fm: FeatureManager, flag: str) -> float:
    return 100 * sum(fm.is_enabled(flag, user) for user in USERS) / len(USERS)


def step_to(clock, d, percentage: float) -> None:
    """Move the clock a minute at a time until the engine has stepped to ``percentage``."""
    run_due(clock)
    for _ in range(20):
        if reload(d).percentage >= percentage:
            break
        clock.tick(60)
        run_due(clock)
    assert reload(d).percentage == percentage


def test_microsoft_agrees_a_flag_is_on_and_another_is_off(
    clock, azure, staging, promo, checkout_button, at_once
):
    set_flag(promo, staging, enabled=True)
    deploy(staging, at_once)
    run_due(clock)
    fm = manager(azure)
    assert sorted(fm.list_feature_flag_names()) == ["checkout-button", "promo-banner"]
    assert all(fm.is_enabled("promo-banner", user) for user in USERS[:500])
    assert fm.is_enabled("promo-banner")  # no user at all: on is on
    assert not any(fm.is_enabled("checkout-button", user) for user in USERS[:500])
    assert fm.get_variant("checkout-button", "user-1") is None  # off: the app's own default


def test_microsoft_serves_the_default_variant_of_an_enabled_multivariant_flag(
    clock, azure, staging, checkout_button, at_once
):
    set_flag(checkout_button, staging, enabled=True, default_variant="green")
    deploy(staging, at_once)
    run_due(clock)
    fm = manager(azure)
    variants = {fm.get_variant("checkout-button", user).configuration for user in USERS[:500]}
    assert variants == {"#00ff00"}  # flagdash serves the default variant's value to everyone
    assert fm.get_variant("checkout-button", "user-1").name == "green"


def test_a_gradual_enable_at_30_percent_reaches_30_percent_of_ids_for_microsoft(
    clock, azure, staging, promo, tens
):
    set_flag(promo, staging, enabled=True)
    d = deploy(staging, tens)
    step_to(clock, d, 30)
    assert targeting_percentage(flag_values(azure)["promo-banner"]) == 30
    fm = manager(azure)
    at_30 = {user for user in USERS if fm.is_enabled("promo-banner", user)}
    assert abs(100 * len(at_30) / len(USERS) - 30) <= 2

    step_to(clock, d, 40)
    fm = manager(azure)
    at_40 = {user for user in USERS if fm.is_enabled("promo-banner", user)}
    assert abs(100 * len(at_40) / len(USERS) - 40) <= 2
    assert at_30 <= at_40  # sticky: nobody who had it loses it

    step_to(clock, d, 100)  # the last step, 9 minutes in
    clock.tick(60)  # the 10-minute duration is over; no bake
    run_due(clock)
    assert reload(d).state == "complete"
    assert share_enabled(manager(azure), "promo-banner") == 100


def test_a_gradual_disable_at_30_percent_turns_30_percent_of_ids_off_for_microsoft(
    clock, azure, staging, promo, tens, at_once
):
    set_flag(promo, staging, enabled=True)
    deploy(staging, at_once)
    run_due(clock)
    set_flag(promo, staging, enabled=False)
    d = deploy(staging, tens)
    step_to(clock, d, 30)
    assert abs(share_enabled(manager(azure), "promo-banner") - 70) <= 2
    step_to(clock, d, 100)
    assert flag_values(azure)["promo-banner"]["enabled"] is False
    assert share_enabled(manager(azure), "promo-banner") == 0


def test_a_new_default_variant_at_30_percent_reaches_30_percent_of_ids_for_microsoft(
    clock, azure, staging, checkout_button, tens, at_once
):
    set_flag(checkout_button, staging, enabled=True)  # blue
    deploy(staging, at_once)
    run_due(clock)
    set_flag(
        checkout_button,
        staging,
        variants=[{"name": "blue", "value": "#0000ff"}, {"name": "green", "value": "#00ff00"}],
        default_variant="green",
    )
    d = deploy(staging, tens)
    step_to(clock, d, 30)
    fm = manager(azure)
    colours = [fm.get_variant("checkout-button", user).configuration for user in USERS]
    assert abs(100 * colours.count("#00ff00") / len(USERS) - 30) <= 2
    assert set(colours) == {"#0000ff", "#00ff00"}
    step_to(clock, d, 100)
    fm = manager(azure)
    assert {fm.get_variant("checkout-button", u).configuration for u in USERS[:500]} == {"#00ff00"}
    assert "percentile" not in flag_values(azure)["checkout-button"]["allocation"]


def test_a_changed_value_of_the_default_variant_is_split_under_a_previous_name(
    clock, azure, staging, checkout_button, tens, at_once
):
    set_flag(checkout_button, staging, enabled=True)
    deploy(staging, at_once)
    run_due(clock)
    set_flag(
        checkout_button,
        staging,
        variants=[{"name": "blue", "value": "#0000cc"}, {"name": "green", "value": "#00ff00"}],
    )
    d = deploy(staging, tens)
    step_to(clock, d, 30)
    value = flag_values(azure)["checkout-button"]
    assert {"name": "blue~previous", "configuration_value": "#0000ff"} in value["variants"]
    fm = manager(azure)
    colours = [fm.get_variant("checkout-button", user).configuration for user in USERS]
    assert abs(100 * colours.count("#0000cc") / len(USERS) - 30) <= 2


def test_attribute_values_ride_in_telemetry_metadata_which_microsoft_tolerates(
    clock, azure, staging, promo, at_once
):
    flag_services.attribute_save(actor=None, flag=promo, name="maxItems", type="number")
    flag_services.attribute_save(actor=None, flag=promo, name="regions", type="string_list")
    set_flag(promo, staging, enabled=True, attribute_values={"maxItems": 5, "regions": ["eu"]})
    deploy(staging, at_once)
    run_due(clock)
    value = flag_values(azure)["promo-banner"]
    assert value["telemetry"] == {
        "enabled": False,
        "metadata": {"maxItems": "5", "regions": '["eu"]'},
    }
    parsed = FeatureFlag.convert_from_json(value)  # Microsoft's parser accepts it
    assert parsed.telemetry.enabled is False
    assert parsed.telemetry.metadata == {"maxItems": "5", "regions": '["eu"]'}
    evaluated = []
    fm = FeatureManager(feature_management(azure), on_feature_evaluated=evaluated.append)
    assert fm.is_enabled("promo-banner", "user-1")
    assert evaluated == []  # telemetry is off: nothing is sent anywhere


def test_a_multivariant_flag_turned_off_gradually_keeps_the_old_variant_for_the_rest(
    clock, azure, staging, checkout_button, tens, at_once
):
    set_flag(checkout_button, staging, enabled=True, default_variant="green")
    deploy(staging, at_once)
    run_due(clock)
    set_flag(checkout_button, staging, enabled=False, default_variant="blue")
    d = deploy(staging, tens)
    step_to(clock, d, 30)
    fm = manager(azure)
    variants = [fm.get_variant("checkout-button", user) for user in USERS]
    green = sum(1 for v in variants if v is not None and v.configuration == "#00ff00")
    assert {v.configuration for v in variants if v is not None} == {"#00ff00"}
    assert abs(100 * green / len(USERS) - 70) <= 2  # 30 % have the new version: off
    step_to(clock, d, 100)
    fm = manager(azure)
    assert all(fm.get_variant("checkout-button", user) is None for user in USERS[:500])


def test_a_removed_flag_that_was_on_turns_off_gradually_then_is_deleted(
    clock, azure, staging, promo, checkout_button, tens, at_once
):
    set_flag(promo, staging, enabled=True)
    deploy(staging, at_once)
    run_due(clock)
    flag_services.flag_set_archived(actor=None, flag=promo, archived=True)
    d = deploy(staging, tens, "promo removed")
    step_to(clock, d, 30)
    assert abs(share_enabled(manager(azure), "promo-banner") - 70) <= 2
    step_to(clock, d, 90)
    assert "promo-banner" in flag_values(azure)
    step_to(clock, d, 100)
    assert "promo-banner" not in flag_values(azure)
    assert not manager(azure).is_enabled("promo-banner", "user-1")  # unknown: off

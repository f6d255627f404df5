"""The independent client: OpenFeature's Python SDK with the OFREP provider, against a live
flagdash, gets what the OFREP specification says."""

from __future__ import annotations

import pytest
from openfeature import api as openfeature
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from tests.evaluation.conftest import new_key

pytestmark = pytest.mark.django_db(transaction=True)


def _client(live_server, key: str):
    provider = OFREPProvider(
        base_url=live_server.url, headers_factory=lambda: {"Authorization": f"Bearer {key}"}
    )
    openfeature.set_provider(provider, domain=key[:16])
    return openfeature.get_client(domain=key[:16])


@pytest.fixture
def client(live_server, served, beta):
    return _client(live_server, new_key(beta))


def test_sdk_reads_boolean_string_number_and_object_flags(client):
    ctx = EvaluationContext(targeting_key="user-1", attributes={"email": "bob@shop.test"})
    boolean = client.get_boolean_details("new-checkout", False, ctx)
    assert (boolean.value, boolean.reason, boolean.variant) == (True, Reason.DEFAULT, "on")
    string = client.get_string_details("button-color", "none", ctx)
    assert (string.value, string.variant, string.reason) == ("#00f", "blue", Reason.DEFAULT)
    number = client.get_float_details("discount-rate", 0.5, ctx)
    assert (number.value, number.error_code, number.reason) == (1.0, None, Reason.STATIC)
    assert isinstance(number.value, float)
    integer = client.get_integer_details("max-items", 0, ctx)
    assert (integer.value, integer.error_code) == (250, None)
    obj = client.get_object_details("banner", {}, ctx)
    assert obj.value == {"text": "Sale", "percent": 20}
    assert obj.flag_metadata["flagdash.version"] == 2


def test_sdk_targeting_match_split_and_disabled(client):
    staff = client.get_boolean_details(
        "new-checkout", True, EvaluationContext("u1", {"email": "ann@example.com"})
    )
    assert (staff.value, staff.reason, staff.variant) == (False, Reason.TARGETING_MATCH, "off")
    variants = set()
    for i in range(40):
        split = client.get_string_details(
            "button-color", "none", EvaluationContext(f"user-{i}", {"country": "CA"})
        )
        assert split.reason == Reason.SPLIT
        variants.add(split.variant)
    assert variants == {"blue", "green"}
    disabled = client.get_boolean_details("old-flow", True, EvaluationContext("u1"))
    assert (disabled.value, disabled.reason, disabled.variant) == (False, Reason.DISABLED, "off")


def test_sdk_unknown_flag_falls_back_with_flag_not_found(client):
    details = client.get_boolean_details("no-such-flag", True, EvaluationContext("u1"))
    assert details.value is True
    assert details.error_code == ErrorCode.FLAG_NOT_FOUND
    assert details.reason == Reason.ERROR


def test_sdk_split_without_targeting_key_reports_it(client):
    details = client.get_string_details(
        "button-color", "fallback", EvaluationContext(attributes={"country": "US"})
    )
    assert details.value == "fallback"
    assert details.error_code == ErrorCode.TARGETING_KEY_MISSING


def test_sdk_with_a_wrong_key_gets_defaults_and_a_general_error(live_server, served):
    client = _client(live_server, "fdk_" + "A" * 40)
    details = client.get_boolean_details("new-checkout", False, EvaluationContext("u1"))
    assert details.value is False
    assert details.error_code == ErrorCode.GENERAL
    assert details.reason == Reason.ERROR


def test_sdk_type_mismatch_is_caught_by_the_client(client):
    details = client.get_integer_details("button-color", 7, EvaluationContext("u1"))
    assert details.value == 7
    assert details.error_code == ErrorCode.TYPE_MISMATCH

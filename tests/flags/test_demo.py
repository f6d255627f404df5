"""The demo `make run` seeds: the printed curl gets a real, enabled answer; the story holds."""

from __future__ import annotations

import json
import re
import shlex

import pytest
from django.core.management import call_command
from django.test import Client

from flagdash.deployments.models import Deployment, DeploymentState
from flagdash.evaluation import services as key_services
from flagdash.evaluation.snapshot import holder
from flagdash.flags.models import Environment

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded(settings, tmp_path, capsys) -> str:
    """Seed the demo as `make run` does; return what seed_demo printed."""
    settings.VAR_DIR = tmp_path
    settings.FLAGDASH_DEMO_PASSWORD = "demo-password-for-tests"
    settings.OFREP_REFRESH_SECONDS = 0
    holder.reset()
    call_command("seed_demo")
    yield capsys.readouterr().out
    holder.reset()


def run_printed_curl(output: str) -> dict:
    """Send, through the test client, exactly the request of the printed curl line."""
    line = next(line.strip() for line in output.splitlines() if line.strip().startswith("curl "))
    words = shlex.split(line)
    url = next(w for w in words if w.startswith("http://"))
    headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
    body = words[words.index("-d") + 1]
    assert words[words.index("-X") + 1] == "POST"
    path = re.sub(r"^http://[^/]+", "", url)
    response = Client().post(
        path,
        data=body,
        content_type=headers["Content-Type"],
        headers={"Authorization": headers["Authorization"]},
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_the_printed_curl_gets_the_flag_on_by_a_targeting_rule_in_beta(seeded):
    answer = run_printed_curl(seeded)
    assert answer["key"] == "allow-bitcoin-at-checkout"
    assert (answer["value"], answer["variant"], answer["reason"]) == (
        True,
        "on",
        "TARGETING_MATCH",
    )
    assert answer["metadata"]["bitcoin-discount-percentage"] == 10


def test_beta_targets_the_flag_and_production_keeps_it_off(seeded):
    client = Client()
    keys = {}
    for environment in Environment.objects.filter(application__key="checkout"):
        _, keys[environment.key] = key_services.api_key_create(
            actor=None, environment=environment, name="test"
        )
    holder.reset()

    def ask(environment: str, context: dict) -> dict:
        response = client.post(
            "/ofrep/v1/evaluate/flags/allow-bitcoin-at-checkout",
            data=json.dumps({"context": context}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {keys[environment]}"},
        )
        return response.json()

    elsewhere = ask("beta", {"targetingKey": "user-42", "country": "US"})
    assert (elsewhere["value"], elsewhere["reason"]) == (False, "TARGETING_MATCH")
    split = {
        ask("beta", {"targetingKey": f"u{i}", "appVersion": "2.5.0"})["reason"] for i in range(5)
    }
    assert split == {"SPLIT"}
    off = ask("production", {"targetingKey": "user-42", "country": "SV"})
    assert (off["value"], off["variant"], off["reason"]) == (False, "off", "DISABLED")


def test_the_rest_of_the_story_is_intact(seeded):
    production = Environment.objects.get(application__key="checkout", key="production")
    rolled_back = Deployment.objects.get(environment=production, state=DeploymentState.ROLLED_BACK)
    assert "fraud-check-v2" in rolled_back.message
    assert rolled_back.events.filter(type="rollback_requested").exists()
    rollout = Deployment.objects.exclude(
        state__in=[DeploymentState.COMPLETE, DeploymentState.ROLLED_BACK]
    ).get(environment=production)
    assert rollout.message == "Enable promo-banner"
    assert rollout.strategy.name == "Demo: 10 % per minute"


def test_seeding_again_keeps_the_key_and_the_answer(seeded, capsys):
    call_command("seed_demo")
    again = capsys.readouterr().out
    assert "already present" in again
    printed_key = re.compile(r"fdk_[A-Za-z0-9_-]{40}")
    assert printed_key.findall(again)[0] == printed_key.findall(seeded)[0]
    assert run_printed_curl(again)["reason"] == "TARGETING_MATCH"

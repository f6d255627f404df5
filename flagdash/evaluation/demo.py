"""The demo API key of `make run`: checkout/beta, its plaintext kept under var/ like the demo
password (the database holds only its hash), the same key on every run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from flagdash.env import secret_from_file
from flagdash.evaluation import services
from flagdash.evaluation.models import ApiKey
from flagdash.flags.models import Environment

DEMO_APPLICATION = "checkout"
DEMO_ENVIRONMENT = "beta"
DEMO_FLAG = "allow-bitcoin-at-checkout"


@dataclass(frozen=True)
class DemoKey:
    plaintext: str | None  # None: revoked (or no checkout/beta): nothing to print
    note: str


def demo_key_path() -> Path:
    return Path(settings.VAR_DIR) / "demo_api_key"


def ensure_demo_api_key() -> DemoKey:
    """Create the demo key once; later runs find it by its hash (idempotent)."""
    environment = Environment.objects.filter(
        application__key=DEMO_APPLICATION, key=DEMO_ENVIRONMENT
    ).first()
    if environment is None:
        return DemoKey(None, f"no {DEMO_APPLICATION}/{DEMO_ENVIRONMENT} environment")
    path = demo_key_path()
    plaintext = services.KEY_PREFIX + secret_from_file(path, nbytes=30)
    existing = ApiKey.objects.filter(key_hash=services.key_hash(plaintext)).first()
    if existing is not None:
        if existing.revoked_at is not None:
            return DemoKey(None, f"the demo key was revoked; delete {path} for a new one")
        return DemoKey(plaintext, f"from {path}")
    services.api_key_create(
        actor=None,
        environment=environment,
        name=f"Demo key {plaintext[:12]}",
        plaintext=plaintext,
    )
    return DemoKey(plaintext, f"created, kept in {path}")


def curl_example(base_url: str, plaintext: str) -> str:
    return (
        f"curl -s -X POST {base_url}/ofrep/v1/evaluate/flags/{DEMO_FLAG} "
        f"-H 'Authorization: Bearer {plaintext}' -H 'Content-Type: application/json' "
        """-d '{"context": {"targetingKey": "user-42", "country": "SV"}}'"""
    )

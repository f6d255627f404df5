"""Automatic rollback on an alarm: the webhook's secret, its signature, its payloads, the action.

The secret is never stored: it is derived from SECRET_KEY and a random salt kept on the
environment. Rotating it stores a new salt, which invalidates the old secret at once.

A delivery (``flagdash.deployments.hooks``) is verified here (HMAC-SHA256 of
``"<timestamp>.<body>"``, a timestamp within five minutes, constant-time comparison), read as
Alertmanager's webhook or a small generic JSON, accepted once (``AlarmDelivery``), and a firing
alarm rolls back the environment's deployment (``alarm_fire``). See docs/alarms.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from flagdash.accounts import permissions
from flagdash.audit.models import Action
from flagdash.audit.services import audit_record
from flagdash.core import context
from flagdash.deployments import services
from flagdash.deployments.models import (
    ACTIVE_STATES,
    AlarmDelivery,
    Deployment,
    DeploymentKind,
    DeploymentState,
    RollbackTrigger,
)
from flagdash.flags.models import Environment


def alarm_secret(environment: Environment) -> str | None:
    """The environment's current webhook secret, or None if none was ever issued."""
    if not environment.alarm_secret_salt:
        return None
    return salted_hmac(
        "flagdash.alarm-webhook",
        f"{environment.pk}:{environment.alarm_secret_salt}",
        algorithm="sha256",
    ).hexdigest()


@transaction.atomic(durable=True)
def alarm_secret_rotate(*, actor: Any, environment: Environment) -> str:
    """Issue a new webhook secret (admins only); returns it so it can be shown once."""
    if actor is not None:
        permissions.require_admin(actor)
    env = (
        Environment.objects.select_for_update(of=("self",))
        .select_related("application")
        .get(pk=environment.pk)
    )
    had_secret = bool(env.alarm_secret_salt)
    env.alarm_secret_salt = secrets.token_hex(32)
    env.alarm_secret_rotated_at = timezone.now()
    env.save(update_fields=["alarm_secret_salt", "alarm_secret_rotated_at"])
    audit_record(
        actor=actor,
        action=Action.ALARM_SECRET_ROTATED,
        target_type="environment",
        target_id=env.pk,
        target_repr=f"{env.application.key}/{env.key}",
        application=env.application_id,
        environment=env,
        before={"alarm_secret": "set" if had_secret else "none"},
        after={"alarm_secret": "rotated", "rotated_at": env.alarm_secret_rotated_at.isoformat()},
    )
    return alarm_secret(env) or ""


# --- signing -----------------------------------------------------------------------------------

TIMESTAMP_TOLERANCE_SECONDS = 300
DELIVERY_RETENTION = dt.timedelta(days=1)
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
_ALARM_LOCK_KEY = 0x616C6172  # "alar": one PostgreSQL advisory lock per environment


class AlarmAuthError(Exception):
    """The request is not signed, or not signed right; ``code`` says which (the message too)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


BAD_SIGNATURE = (
    "The signature does not match. Sign “<timestamp>.<raw body>” with HMAC-SHA256 and the "
    "environment's alarm secret (Settings → environment), and check the address."
)


def alarm_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 a sender puts in ``X-Flagdash-Signature: sha256=<hex>``."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def alarm_signature_verify(
    *,
    environment: Environment | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: dt.datetime | None = None,
) -> str:
    """Check a delivery's headers; returns the signature (lowercase hex) or raises AlarmAuthError.

    An unknown environment and one without a secret fail exactly like a wrong signature, after
    the same work, so the answer does not tell which environments exist.
    """
    if not timestamp or not signature:
        raise AlarmAuthError(
            "unsigned",
            "Sign the request: send X-Flagdash-Timestamp (Unix seconds) and "
            "X-Flagdash-Signature: sha256=<hex HMAC-SHA256 of “<timestamp>.<body>”>.",
        )
    timestamp = timestamp.strip()
    if not _TIMESTAMP.match(timestamp):
        raise AlarmAuthError(
            "bad_timestamp", "X-Flagdash-Timestamp must be the time in whole Unix seconds."
        )
    now = now or timezone.now()
    if abs(now.timestamp() - int(timestamp)) > TIMESTAMP_TOLERANCE_SECONDS:
        raise AlarmAuthError(
            "stale_timestamp",
            "X-Flagdash-Timestamp is more than 5 minutes away from the server's clock: sign each "
            "request when you send it, and check the sender's clock.",
        )
    match = _SIGNATURE.match(signature.strip())
    given = match.group(1).lower() if match else ""
    secret = alarm_secret(environment) if environment is not None else None
    # Without a secret, compare against a throwaway one: same work, same answer.
    expected = alarm_signature(secret or secrets.token_hex(32), timestamp, body)
    if not hmac.compare_digest(expected, given) or secret is None:
        raise AlarmAuthError("bad_signature", BAD_SIGNATURE)
    return given


# --- payloads ----------------------------------------------------------------------------------


class AlarmBusy(Exception):
    """Another alarm for the same environment is being handled and did not finish in time."""


ALARM_LOCK_WAIT_SECONDS = 15


class AlarmPayloadError(Exception):
    """The body is JSON but neither Alertmanager's webhook nor flagdash's generic alarm."""


@dataclass(frozen=True)
class AlarmNotice:
    """What one delivery says: the alarms firing (with a reason each) and those resolved."""

    format: str  # "alertmanager" or "generic"
    firing: tuple[tuple[str, str], ...]  # (alarm name, reason)
    resolved: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys([name for name, _ in self.firing] + list(self.resolved)))


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def _text(value: str, limit: int) -> str:
    """One clean line: control characters (NUL included) become spaces; at most ``limit``."""
    text = " ".join(_CONTROL.sub(" ", value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AlarmPayloadError(message)


GENERIC_FIELDS = ("alarm", "state", "message", "environment")
STATES = ("firing", "resolved")


def _parse_generic(data: dict[str, Any], environment: Environment) -> AlarmNotice:
    unknown = sorted(set(data) - set(GENERIC_FIELDS))
    _expect(
        not unknown,
        f"Unknown field “{unknown[0] if unknown else ''}”: a generic alarm has only "
        "“alarm”, “state”, “message” and “environment”.",
    )
    name: Any = data.get("alarm")
    _expect(isinstance(name, str) and bool(_text(name, 200)), "“alarm” must be a non-empty string.")
    state = data.get("state")
    _expect(state in STATES, "“state” must be “firing” or “resolved”.")
    message = data.get("message", "")
    _expect(isinstance(message, str), "“message” must be a string.")
    if "environment" in data:
        claimed = data["environment"]
        here = (environment.key, f"{environment.application.key}/{environment.key}")
        _expect(
            isinstance(claimed, str) and claimed in here,
            f"“environment” must match the address ({here[1]}) or be left out.",
        )
    name = _text(name, 200)
    if state == "resolved":
        return AlarmNotice("generic", (), (name,))
    return AlarmNotice("generic", ((name, _text(message, 900) or f"{name} is firing"),), ())


def _parse_alertmanager(data: dict[str, Any]) -> AlarmNotice:
    _expect(
        data.get("version") == "4",
        "Only Alertmanager's webhook version “4” is understood (send “version”: “4”).",
    )
    _expect(data.get("status") in STATES, "“status” must be “firing” or “resolved”.")
    alerts: Any = data.get("alerts")
    _expect(
        isinstance(alerts, list) and bool(alerts) and all(isinstance(a, dict) for a in alerts),
        "“alerts” must be a non-empty list of alert objects.",
    )
    firing: dict[str, str] = {}
    resolved: list[str] = []
    for number, alert in enumerate(alerts, start=1):
        where = f"alerts[{number - 1}]"
        status = alert.get("status")
        _expect(status in STATES, f"{where}.status must be “firing” or “resolved”.")
        labels = alert.get("labels")
        _expect(
            isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values()),
            f"{where}.labels must be an object of strings.",
        )
        annotations = alert.get("annotations", {})
        _expect(
            isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values()),
            f"{where}.annotations must be an object of strings.",
        )
        name = _text(labels.get("alertname", ""), 200) or "unnamed alert"
        if status == "resolved":
            resolved.append(name)
            continue
        severity = _text(labels.get("severity", ""), 40)
        summary = _text(annotations.get("summary", "") or annotations.get("description", ""), 300)
        reason = name + (f" ({severity})" if severity else "") + (f": {summary}" if summary else "")
        firing.setdefault(name, reason)
    return AlarmNotice(
        "alertmanager",
        tuple(firing.items()),
        tuple(dict.fromkeys(n for n in resolved if n not in firing)),
    )


def alarm_payload_parse(data: Any, *, environment: Environment) -> AlarmNotice:
    """Read Alertmanager's webhook (version 4) or ``{"alarm", "state", "message"}``."""
    _expect(isinstance(data, dict), "The body must be a JSON object.")
    if "alerts" in data:
        return _parse_alertmanager(data)
    if "alarm" in data:
        return _parse_generic(data, environment)
    raise AlarmPayloadError(
        "Send Alertmanager's webhook JSON (version 4, with “alerts”) or a generic alarm: "
        '{"alarm": "<name>", "state": "firing" or "resolved", "message": "..."}.'
    )


# --- acting on an alarm ------------------------------------------------------------------------


class Outcome(models.TextChoices):
    ROLLING_BACK = "rolling_back", "Rolling back the active deployment"
    RESTORING = "restoring", "Restoring the version before the last deployment"
    ALREADY_ROLLING_BACK = "already_rolling_back", "A rollback is already under way"
    NOTHING_TO_RESTORE = "nothing_to_restore", "The deployment has no earlier version"
    NO_ACTIVE_DEPLOYMENT = "no_active_deployment", "Nothing to roll back"
    IGNORED = "ignored", "Resolved: nothing to do"


@dataclass(frozen=True)
class AlarmOutcome:
    outcome: str
    alarm: str
    environment: str
    message: str
    deployment_id: int | None = None
    alarms: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "deployment": self.deployment_id,
            "alarm": self.alarm,
            "alarms": list(self.alarms or (self.alarm,)),
            "environment": self.environment,
            "message": self.message,
        }


@dataclass(frozen=True)
class _Decision:
    outcome: str
    deployment: Deployment | None
    message: str


def _decide(environment_id: int, now: dt.datetime) -> _Decision:
    """What a firing alarm should do to the environment now (reads only)."""
    env = Environment.objects.get(pk=environment_id)
    active = (
        Deployment.objects.filter(environment_id=env.pk, state__in=ACTIVE_STATES)
        .select_related("version")
        .first()
    )
    if active is not None:
        if active.kind == DeploymentKind.RESTORE:
            return _Decision(
                Outcome.ALREADY_ROLLING_BACK,
                active,
                f"Deployment #{active.pk} is already restoring an earlier version.",
            )
        if active.state == DeploymentState.ROLLING_BACK or active.rollback_requested_at:
            return _Decision(
                Outcome.ALREADY_ROLLING_BACK,
                active,
                f"Deployment #{active.pk} is already rolling back.",
            )
        return _Decision(
            Outcome.ROLLING_BACK,
            active,
            f"Rolling back deployment #{active.pk} (v{active.version.number}).",
        )
    queued_restore = (
        Deployment.objects.filter(
            environment_id=env.pk, kind=DeploymentKind.RESTORE, state=DeploymentState.QUEUED
        )
        .order_by("-priority", "created_at", "id")
        .first()
    )
    if queued_restore is not None:
        return _Decision(
            Outcome.ALREADY_ROLLING_BACK,
            queued_restore,
            f"Deployment #{queued_restore.pk}, a rollback, is about to start.",
        )
    latest = (
        Deployment.objects.filter(environment_id=env.pk, state=DeploymentState.COMPLETE)
        .order_by("-finished_at", "-id")
        .first()
    )
    if (
        latest is not None
        and latest.kind == DeploymentKind.DEPLOY
        and latest.finished_at is not None
        and env.live_version_id == latest.version_id
    ):
        bake = max(0, int(latest.plan.get("final_bake_minutes") or 0))
        if latest.finished_at >= now - dt.timedelta(minutes=bake):
            return _Decision(
                Outcome.RESTORING,
                latest,
                f"Deployment #{latest.pk} completed {bake} minutes ago or less: restoring the "
                "version before it.",
            )
    return _Decision(
        Outcome.NO_ACTIVE_DEPLOYMENT,
        None,
        "No deployment is rolling out, and none completed within its bake time: nothing to roll "
        "back.",
    )


def _error_codes(exc: ValidationError) -> set[str]:
    errors = exc.error_dict.values() if hasattr(exc, "error_dict") else [exc.error_list]
    return {e.code or "" for group in errors for e in group}


@contextmanager
def _one_alarm_at_a_time(environment_id: int) -> Iterator[None]:
    """Serialise alarms for one environment from deciding to acting (PostgreSQL).

    Two alert groups firing together must not both queue a restore of the same deployment. The
    decision and the rollback are separate transactions, so a transaction lock cannot span them;
    a session-level advisory lock can. SQLite (the local demo) serialises writers itself.
    """
    if connection.vendor != "postgresql":
        yield
        return
    deadline = time.monotonic() + ALARM_LOCK_WAIT_SECONDS
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_ALARM_LOCK_KEY, environment_id])
            if cursor.fetchone()[0]:
                break
            if time.monotonic() >= deadline:
                raise AlarmBusy
            time.sleep(0.05)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_ALARM_LOCK_KEY, environment_id])


def _env_label(environment: Environment) -> str:
    return f"{environment.application.key}/{environment.key}"


@transaction.atomic(durable=True)
def _record_received(
    environment: Environment,
    outcome: AlarmOutcome,
    *,
    state: str,
    reason: str,
    payload_format: str,
) -> None:
    audit_record(
        actor=None,
        actor_name=f"alarm {outcome.alarm}",
        action=Action.ALARM_RECEIVED,
        target_type="environment",
        target_id=environment.pk,
        target_repr=outcome.environment,
        application=environment.application_id,
        environment=environment,
        after={
            "alarm": outcome.alarm,
            "alarms": list(outcome.alarms or (outcome.alarm,)),
            "state": state,
            "format": payload_format,
            "reason": reason,
            "outcome": outcome.outcome,
            "deployment": outcome.deployment_id,
        },
    )


def alarm_fire(
    *,
    environment: Environment,
    alarm_name: str,
    reason: str,
    now: dt.datetime | None = None,
    alarms: tuple[str, ...] = (),
    payload_format: str = "generic",
) -> AlarmOutcome:
    """A firing alarm for an environment: roll back what it may have caused, and record it.

    - a deployment rolling out or baking (not already rolling back) is rolled back;
    - otherwise the latest complete deployment, if it is still live and finished within its
      final bake time, is rolled back by restoring the version before it (at the front of the
      queue);
    - otherwise nothing happens.

    The decision is read first and ``deployment_rollback`` (its own durable transaction, which
    locks and checks again) acts on it; if the deployment moved on in between, the decision is
    taken again. An ALARM_RECEIVED audit event records the alarm and the outcome.
    """
    now = now or timezone.now()
    alarm_name = _text(alarm_name, 200) or "unnamed alarm"
    reason = _text(reason, 1000) or f"{alarm_name} is firing"
    label = _env_label(environment)
    with context.override_source("alarm"), _one_alarm_at_a_time(environment.pk):
        for _attempt in range(3):
            decision = _decide(environment.pk, now)
            target = decision.deployment
            if target is None or decision.outcome not in (Outcome.ROLLING_BACK, Outcome.RESTORING):
                break
            try:
                carrier = services.deployment_rollback(
                    actor=None,
                    deployment=target,
                    reason=reason,
                    trigger=RollbackTrigger.ALARM,
                    alarm_name=alarm_name,
                )
            except ValidationError as exc:
                if "nothing_to_restore" in _error_codes(exc):
                    decision = _Decision(
                        Outcome.NOTHING_TO_RESTORE,
                        target,
                        f"Deployment #{target.pk} was the first in {environment.name}: there is "
                        "no earlier version to go back to.",
                    )
                    break
                continue  # it moved on (completed, rolled back, replaced): look again
            if carrier.pk != target.pk:
                decision = _Decision(
                    Outcome.RESTORING,
                    carrier,
                    f"Deployment #{carrier.pk} restores v{carrier.version.number}, the version "
                    f"before deployment #{target.pk}.",
                )
            else:
                decision = _Decision(
                    Outcome.ROLLING_BACK,
                    carrier,
                    f"Deployment #{carrier.pk} (v{carrier.version.number}) is rolling back.",
                )
            break
        else:
            raise RuntimeError(f"alarm {alarm_name}: {label} kept changing; try again")
        outcome = AlarmOutcome(
            outcome=str(decision.outcome),
            alarm=alarm_name,
            environment=label,
            message=decision.message,
            deployment_id=decision.deployment.pk if decision.deployment else None,
            alarms=alarms or (alarm_name,),
        )
        _record_received(
            environment, outcome, state="firing", reason=reason, payload_format=payload_format
        )
    return outcome


def alarm_resolved(
    *, environment: Environment, alarm_names: tuple[str, ...], payload_format: str = "generic"
) -> AlarmOutcome:
    """Resolved alarms change nothing (a rollback is not undone); they are recorded."""
    names = tuple(_text(n, 200) for n in alarm_names if _text(n, 200)) or ("unnamed alarm",)
    outcome = AlarmOutcome(
        outcome=str(Outcome.IGNORED),
        alarm=names[0],
        environment=_env_label(environment),
        message="Resolved alarms change nothing: a rollback is not undone automatically.",
        alarms=names,
    )
    with context.override_source("alarm"):
        _record_received(
            environment, outcome, state="resolved", reason="", payload_format=payload_format
        )
    return outcome


def alarm_receive(*, environment: Environment, notice: AlarmNotice) -> AlarmOutcome:
    """Act on one delivery: its firing alarms together (the first one named), else record."""
    if notice.firing:
        first, _ = notice.firing[0]
        return alarm_fire(
            environment=environment,
            alarm_name=first,
            reason="; ".join(reason for _, reason in notice.firing),
            alarms=tuple(name for name, _ in notice.firing),
            payload_format=notice.format,
        )
    return alarm_resolved(
        environment=environment, alarm_names=notice.resolved, payload_format=notice.format
    )


# --- deliveries: refusing a replay -------------------------------------------------------------


class AlarmReplayed(Exception):
    """This exact signed request was accepted before."""


def _delivery_digest(environment: Environment, signature: str) -> str:
    return hashlib.sha256(f"{environment.pk}:{signature.lower()}".encode()).hexdigest()


def alarm_webhook_deliver(
    *, environment: Environment, signature: str, notice: AlarmNotice
) -> AlarmOutcome:
    """Accept one verified delivery once: claim its signature, act, then note the outcome.

    The claim commits first, so a second copy of the request (even a concurrent one) is refused.
    If acting fails, the claim is given back so the sender's retry of the same request works.
    """
    try:
        with transaction.atomic(durable=True):
            delivery = AlarmDelivery.objects.create(
                digest=_delivery_digest(environment, signature),
                environment=environment,
                alarm_names=notice.names,
            )
    except IntegrityError as exc:
        raise AlarmReplayed from exc
    try:
        outcome = alarm_receive(environment=environment, notice=notice)
    except BaseException:
        AlarmDelivery.objects.filter(pk=delivery.pk).delete()
        raise
    AlarmDelivery.objects.filter(pk=delivery.pk).update(
        outcome=outcome.outcome, deployment_id=outcome.deployment_id
    )
    return outcome


def alarm_deliveries_prune(now: dt.datetime | None = None) -> int:
    """Forget deliveries older than a day (replays that old fail the timestamp check anyway)."""
    cutoff = (now or timezone.now()) - DELIVERY_RETENTION
    deleted, _ = AlarmDelivery.objects.filter(received_at__lt=cutoff).delete()
    return deleted

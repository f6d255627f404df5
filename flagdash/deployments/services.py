"""Writes that start, stop and roll back deployments, and manage strategies.

Each public function is one durable transaction that checks permission, validates, writes,
records the audit event, and asks a worker to act after commit. The state machine that moves a
deployment afterwards is ``flagdash.deployments.engine``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from flagdash.accounts import permissions
from flagdash.audit.models import Action
from flagdash.audit.services import audit_record
from flagdash.core.errors import field_error
from flagdash.deployments import engine, predefined
from flagdash.deployments.models import (
    ACTIVE_STATES,
    OPEN_STATES,
    Deployment,
    DeploymentKind,
    DeploymentState,
    DeploymentStrategy,
    EventType,
    GrowthType,
    RollbackTrigger,
)
from flagdash.flags.models import ConfigVersion, Environment

S = DeploymentState
DEFAULT_STRATEGY = "AppConfig.AllAtOnce"
RESTORE_STRATEGY = "flagdash.Immediate"


def _check(actor: Any, check: Any, *args: Any) -> None:
    if actor is not None:
        check(actor, *args)


def _actor_name(actor: Any) -> str:
    return actor.get_username() if actor is not None else "flagdash"


def strategy_by_name(name: str) -> DeploymentStrategy:
    try:
        return DeploymentStrategy.objects.get(name=name)
    except DeploymentStrategy.DoesNotExist:
        if name not in predefined.NAMES:
            raise
    predefined.ensure_predefined(DeploymentStrategy)
    return DeploymentStrategy.objects.get(name=name)


def default_strategy(environment: Environment) -> DeploymentStrategy:
    if environment.default_strategy_id:
        return DeploymentStrategy.objects.get(pk=environment.default_strategy_id)
    return strategy_by_name(DEFAULT_STRATEGY)


def active_deployment(environment: Environment) -> Deployment | None:
    return Deployment.objects.filter(environment=environment, state__in=ACTIVE_STATES).first()


def last_complete(environment: Environment) -> Deployment | None:
    return (
        Deployment.objects.filter(environment=environment, state=S.COMPLETE)
        .order_by("-finished_at", "-id")
        .first()
    )


# --- creating deployments --------------------------------------------------------------------


def enqueue(
    *,
    actor: Any,
    environment: Environment,
    version: ConfigVersion,
    strategy: DeploymentStrategy | None = None,
    message: str = "",
    kind: str = DeploymentKind.DEPLOY,
    restores: Deployment | None = None,
    priority: int = 0,
    actor_name: str | None = None,
) -> Deployment:
    """Queue a deployment inside the caller's transaction (which has locked the environment)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("enqueue must run inside the caller's transaction")
    if version.environment_id != environment.pk:
        raise field_error("version", "That version belongs to another environment.", "invalid")
    strategy = strategy or default_strategy(environment)
    now = timezone.now()
    d = Deployment.objects.create(
        environment=environment,
        version=version,
        strategy=strategy,
        plan=strategy.snapshot(),
        kind=kind,
        restores=restores,
        priority=priority,
        message=message[:500],
        backend_kind=environment.backend.kind,
        created_by=actor,
        created_by_name=actor_name or _actor_name(actor),
        created_at=now,
        next_step_at=now,
    )
    d = Deployment.objects.select_related(
        "environment__application", "version", "previous_version"
    ).get(pk=d.pk)
    label = "Rollback to" if kind == DeploymentKind.RESTORE else "Deploy"
    engine.record_event(
        d,
        EventType.QUEUED,
        f"{label} v{version.number} with {strategy.name}" + (f": {message}" if message else ""),
        triggered_by=d.created_by_name,
    )
    engine.audit_transition(
        d,
        None,
        actor=actor,
        actor_name=actor_name,
        extra={"message": d.message, "kind": kind},
    )
    engine.schedule_advance(d.pk)
    return d


def _lock_environment(environment: Environment) -> Environment:
    return (
        Environment.objects.select_for_update()
        .select_related("application", "backend")
        .get(pk=environment.pk)
    )


@transaction.atomic(durable=True)
def deployment_create(
    *,
    actor: Any,
    environment: Environment,
    version: ConfigVersion,
    strategy: DeploymentStrategy | None = None,
    message: str = "",
) -> Deployment:
    """Deploy a saved version to its environment with a strategy (default: the environment's)."""
    _check(actor, permissions.require_edit_environment, environment)
    env = _lock_environment(environment)
    if env.live_version_id == version.pk and active_deployment(env) is None:
        raise field_error(
            "version", f"Version {version.number} is already live in {env.name}.", "already_live"
        )
    message = (message or version.message or "").strip()
    return enqueue(
        actor=actor, environment=env, version=version, strategy=strategy, message=message
    )


# --- stopping and rolling back ---------------------------------------------------------------


def _clean_reason(reason: Any, *, required: bool) -> str:
    if reason is not None and not isinstance(reason, str):
        raise field_error("reason", "Must be text.", "wrong_type")
    reason = (reason or "").strip()
    if required and not reason:
        raise field_error("reason", "Say why you roll back: it goes in the audit log.", "required")
    if len(reason) > 1000:
        raise field_error("reason", "At most 1000 characters.", "too_long")
    if "\x00" in reason:
        raise field_error("reason", "Contains a NUL character.", "invalid")
    return reason


def _request_rollback(
    d: Deployment,
    *,
    actor: Any,
    reason: str,
    trigger: str,
    alarm_name: str = "",
    now: dt.datetime,
) -> Deployment:
    old = d.state
    d.rollback_requested_at = now
    d.rollback_reason = reason
    d.rollback_trigger = trigger
    d.rollback_by = actor
    d.rollback_by_name = _actor_name(actor) if trigger == RollbackTrigger.USER else ""
    d.alarm_name = alarm_name[:200]
    d.next_step_at = now
    d.save(
        update_fields=[
            "rollback_requested_at",
            "rollback_reason",
            "rollback_trigger",
            "rollback_by",
            "rollback_by_name",
            "alarm_name",
            "next_step_at",
        ]
    )
    who = engine._trigger_label(d)
    engine.record_event(
        d, EventType.ROLLBACK_REQUESTED, reason, percentage=d.percentage, triggered_by=who
    )
    audit_record(
        actor=actor,
        actor_name=None if actor is not None else who,
        action=Action.DEPLOYMENT_ROLLBACK_REQUESTED,
        target_type="deployment",
        target_id=d.pk,
        target_repr=engine.deployment_repr(d),
        application=d.environment.application_id,
        environment=d.environment_id,
        before={"state": old},
        after={
            "state": d.state,
            "reason": reason,
            "trigger": trigger,
            **({"alarm": alarm_name} if alarm_name else {}),
        },
    )
    engine.schedule_advance(d.pk)
    return d


def _restore_previous(
    d: Deployment, *, actor: Any, reason: str, trigger: str, alarm_name: str = ""
) -> Deployment:
    """Roll back a completed deployment: deploy the version it replaced, at once."""
    if d.previous_version is None:
        raise field_error(
            "reason",
            f"Deployment #{d.pk} was the first in {d.environment.name}: there is no earlier "
            "version to go back to.",
            "nothing_to_restore",
        )
    label = f"alarm {alarm_name}" if trigger == RollbackTrigger.ALARM else _actor_name(actor)
    restore = enqueue(
        actor=actor,
        environment=d.environment,
        version=d.previous_version,
        strategy=strategy_by_name(RESTORE_STRATEGY),
        message=f"Rollback of #{d.pk}: {reason}",
        kind=DeploymentKind.RESTORE,
        restores=d,
        priority=1,
        actor_name=None if actor is not None else label,
    )
    Deployment.objects.filter(pk=restore.pk).update(
        rollback_reason=reason,
        rollback_trigger=trigger,
        rollback_by=actor,
        rollback_by_name=_actor_name(actor) if trigger == RollbackTrigger.USER else "",
        alarm_name=alarm_name[:200],
    )
    restore.refresh_from_db()
    return restore


@transaction.atomic(durable=True)
def deployment_rollback(
    *,
    actor: Any,
    deployment: Deployment,
    reason: str,
    trigger: str = RollbackTrigger.USER,
    alarm_name: str = "",
) -> Deployment:
    """Roll back a deployment.

    Deploying or baking: the rollout is stopped and the previous version served again. Complete
    and still live: the previous version is deployed at once, recorded as a rollback. Returns
    the deployment that carries the rollback.
    """
    environment = deployment.environment
    _check(actor, permissions.require_edit_environment, environment)
    reason = _clean_reason(reason, required=trigger == RollbackTrigger.USER)
    env = _lock_environment(environment)
    d = engine._locked(deployment.pk)
    now = timezone.now()
    if d.state in (S.DEPLOYING, S.BAKING):
        if d.rollback_requested_at:
            raise field_error("reason", f"Deployment #{d.pk} is already rolling back.", "pending")
        return _request_rollback(
            d, actor=actor, reason=reason, trigger=trigger, alarm_name=alarm_name, now=now
        )
    if d.state == S.COMPLETE:
        pending = (
            Deployment.objects.filter(restores=d, state__in=OPEN_STATES).order_by("id").first()
        )
        if pending is not None:
            raise field_error(
                "reason",
                f"Deployment #{pending.pk} is already rolling back v{d.version.number}.",
                "pending",
            )
        if env.live_version_id != d.version_id or active_deployment(env) is not None:
            raise field_error(
                "reason",
                f"v{d.version.number} is no longer what {env.name} serves: roll back the "
                "current deployment instead, or roll back to a version from its page.",
                "not_live",
            )
        return _restore_previous(
            d, actor=actor, reason=reason, trigger=trigger, alarm_name=alarm_name
        )
    raise field_error(
        "reason",
        f"Deployment #{d.pk} is {d.get_state_display().lower()}: there is nothing to roll back.",
        "not_rollbackable",
    )


@transaction.atomic(durable=True)
def deployment_cancel(*, actor: Any, deployment: Deployment) -> Deployment:
    """Take a queued deployment out of the queue before it starts."""
    _check(actor, permissions.require_edit_environment, deployment.environment)
    _lock_environment(deployment.environment)
    d = engine._locked(deployment.pk)
    if d.state != S.QUEUED:
        raise field_error(
            "state", f"Deployment #{d.pk} has already started: roll it back instead.", "started"
        )
    d.state = S.CANCELLED
    d.finished_at = timezone.now()
    d.next_step_at = None
    d.save(update_fields=["state", "finished_at", "next_step_at"])
    engine.record_event(d, EventType.CANCELLED, triggered_by=_actor_name(actor))
    engine.audit_transition(d, S.QUEUED, actor=actor)
    engine.wake_queue(d.environment_id, timezone.now())
    return d


@transaction.atomic(durable=True)
def deployment_retry(
    *, actor: Any, deployment: Deployment, overwrite_drift: bool = False
) -> Deployment:
    """Deploy a failed deployment's version again, with the same strategy, as a new deployment.

    ``overwrite_drift``: the deployment failed because the backend's copy was changed outside
    flagdash, and the person chose to overwrite those changes with this version.
    """
    _check(actor, permissions.require_edit_environment, deployment.environment)
    env = _lock_environment(deployment.environment)
    d = engine._locked(deployment.pk)
    if d.state != S.FAILED:
        raise field_error(
            "state",
            f"Deployment #{d.pk} is {d.get_state_display().lower()}: only a failed deployment "
            "can be tried again.",
            "not_failed",
        )
    if overwrite_drift and not d.drifted:
        raise field_error(
            "state",
            f"Deployment #{d.pk} did not fail because of changes made outside flagdash.",
            "no_drift",
        )
    strategy = DeploymentStrategy.objects.filter(pk=d.strategy_id).first()
    note = " (overwriting changes made outside flagdash)" if overwrite_drift else ""
    retry = enqueue(
        actor=actor,
        environment=env,
        version=d.version,
        strategy=strategy,
        message=f"Retry of #{d.pk}{note}" + (f": {d.message}" if d.message else ""),
    )
    if overwrite_drift:
        Deployment.objects.filter(pk=retry.pk).update(overwrite_drift=True)
        retry.overwrite_drift = True
    return retry


@transaction.atomic(durable=True)
def version_restore(
    *, actor: Any, environment: Environment, version: ConfigVersion, reason: str
) -> Deployment:
    """Roll back to version N: a new deployment of that version, recorded as a rollback.

    A rollout in progress is stopped first (with the same reason); the restore then runs at once.
    """
    _check(actor, permissions.require_edit_environment, environment)
    reason = _clean_reason(reason, required=True)
    env = _lock_environment(environment)
    if version.environment_id != env.pk:
        raise field_error("version", "That version belongs to another environment.", "invalid")
    active = active_deployment(env)
    if env.live_version_id == version.pk and active is None:
        raise field_error(
            "version", f"Version {version.number} is already live in {env.name}.", "already_live"
        )
    now = timezone.now()
    if active is not None and not active.rollback_requested_at:
        _request_rollback(
            engine._locked(active.pk),
            actor=actor,
            reason=f"Rolling back to v{version.number}: {reason}",
            trigger=RollbackTrigger.USER,
            now=now,
        )
    restore = enqueue(
        actor=actor,
        environment=env,
        version=version,
        strategy=strategy_by_name(RESTORE_STRATEGY),
        message=f"Roll back to v{version.number}: {reason}",
        kind=DeploymentKind.RESTORE,
        restores=last_complete(env),
        priority=1,
    )
    Deployment.objects.filter(pk=restore.pk).update(
        rollback_reason=reason,
        rollback_trigger=RollbackTrigger.USER,
        rollback_by=actor,
        rollback_by_name=_actor_name(actor),
    )
    restore.refresh_from_db()
    return restore


# --- strategies ------------------------------------------------------------------------------


def _strategy_values(
    *,
    name: Any,
    description: Any,
    duration_minutes: Any,
    growth_type: Any,
    growth_factor: Any,
    final_bake_minutes: Any,
) -> dict[str, Any]:
    errors: dict[str, ValidationError] = {}
    if not isinstance(name, str) or not name.strip():
        errors["name"] = ValidationError("Give the strategy a name.", code="required")
    else:
        name = name.strip()
        if len(name) > 64 or "\n" in name or "\x00" in name:
            errors["name"] = ValidationError("A single line of at most 64 characters.", "invalid")
        elif name.startswith(("AppConfig.", "flagdash.")):
            errors["name"] = ValidationError(
                "Names starting with “AppConfig.” or “flagdash.” are reserved.", code="reserved"
            )
    if not isinstance(description, str) or len(description) > 500:
        errors["description"] = ValidationError("At most 500 characters.", code="too_long")

    def whole(value: Any, field: str, low: int, high: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            errors[field] = ValidationError(
                f"A whole number of minutes from {low} to {high}.", code="out_of_range"
            )
            return None
        return value

    duration = whole(duration_minutes, "duration_minutes", 0, 1440)
    bake = whole(final_bake_minutes, "final_bake_minutes", 0, 1440)
    if growth_type not in GrowthType.values:
        errors["growth_type"] = ValidationError("Choose linear or exponential.", "invalid_choice")
    if (
        isinstance(growth_factor, bool)
        or not isinstance(growth_factor, int | float)
        or not 1 <= growth_factor <= 100
    ):
        errors["growth_factor"] = ValidationError("A number from 1 to 100.", code="out_of_range")
    if errors:
        raise ValidationError(errors)
    return {
        "name": name,
        "description": description.strip(),
        "duration_minutes": duration,
        "growth_type": growth_type,
        "growth_factor": float(growth_factor),
        "final_bake_minutes": bake,
    }


@transaction.atomic(durable=True)
def strategy_save(
    *,
    actor: Any,
    name: str,
    duration_minutes: int,
    growth_type: str,
    growth_factor: float,
    final_bake_minutes: int,
    description: str = "",
    strategy: DeploymentStrategy | None = None,
) -> DeploymentStrategy:
    """Add a strategy, or change one of ours (AWS's predefined ones are read-only)."""
    _check(actor, permissions.require_admin)
    values = _strategy_values(
        name=name,
        description=description,
        duration_minutes=duration_minutes,
        growth_type=growth_type,
        growth_factor=growth_factor,
        final_bake_minutes=final_bake_minutes,
    )
    if strategy is not None:
        strategy = DeploymentStrategy.objects.select_for_update().get(pk=strategy.pk)
        if strategy.predefined:
            raise field_error("name", f"{strategy.name} is predefined and cannot change.", "fixed")
    duplicate = DeploymentStrategy.objects.filter(name=values["name"])
    if strategy is not None:
        duplicate = duplicate.exclude(pk=strategy.pk)
    if duplicate.exists():
        raise field_error("name", f"A strategy named “{values['name']}” exists.", "duplicate")
    before = strategy.snapshot() if strategy is not None else None
    target = strategy or DeploymentStrategy()
    for key, value in values.items():
        setattr(target, key, value)
    try:
        with transaction.atomic():
            target.save()
    except IntegrityError as exc:
        raise field_error("name", "A strategy with that name exists.", "duplicate") from exc
    audit_record(
        actor=actor,
        action=Action.STRATEGY_UPDATED if before else Action.STRATEGY_CREATED,
        target_type="strategy",
        target_id=target.pk,
        target_repr=target.name,
        before=before,
        after={**target.snapshot(), "description": target.description},
    )
    return target

"""The deployment state machine: claim a due deployment, act on its backend, record the result.

``deployment_advance`` is the only function that moves a deployment between states after it was
created. It runs in three steps, and no transaction stays open across a backend call:

1. **claim** (short transaction): lock the row with ``SKIP LOCKED``, check it is due and nobody
   holds its lease, take the lease; a queued deployment at the head of its environment's queue
   becomes ``deploying`` here, a requested rollback becomes ``rolling_back``.
2. **act** (no transaction): start, poll or stop the rollout through the backend interface.
3. **record** (short transaction): if the lease is still ours, store the state, the events and
   the audit events, and when to act next (``next_step_at``); a terminal state hands the
   environment to the next queued deployment.

A worker that dies between 1 and 3 leaves an expired lease: the reconciler (Celery beat) finds the
deployment due and the next worker repeats step 2, which backends make idempotent. So a lost
message, a restarted broker or a killed worker delays a rollout but never loses or doubles it.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from flagdash.audit.models import Action
from flagdash.audit.services import audit_record
from flagdash.backends.base import (
    BackendBusy,
    BackendError,
    DeploymentSpec,
    DriftError,
    PermanentBackendError,
    RolloutStatus,
    StartResult,
    TransientBackendError,
    backend_for,
)
from flagdash.core.canonical import canonical_json, sha256_hex
from flagdash.deployments.models import (
    ACTIVE_STATES,
    OPEN_STATES,
    Deployment,
    DeploymentEvent,
    DeploymentKind,
    DeploymentState,
    EventType,
    RollbackTrigger,
)
from flagdash.flags import documents
from flagdash.flags.models import ConfigVersion, Environment

logger = logging.getLogger(__name__)

S = DeploymentState
STATE_ACTIONS = {
    S.QUEUED: Action.DEPLOYMENT_QUEUED,
    S.DEPLOYING: Action.DEPLOYMENT_STARTED,
    S.BAKING: Action.DEPLOYMENT_BAKING,
    S.COMPLETE: Action.DEPLOYMENT_COMPLETED,
    S.ROLLING_BACK: Action.DEPLOYMENT_ROLLING_BACK,
    S.ROLLED_BACK: Action.DEPLOYMENT_ROLLED_BACK,
    S.FAILED: Action.DEPLOYMENT_FAILED,
    S.CANCELLED: Action.DEPLOYMENT_CANCELLED,
}
# The engine's "now" while it advances a deployment, so events carry the time it acted at.
_acting_at: contextvars.ContextVar[dt.datetime | None] = contextvars.ContextVar(
    "deployment_acting_at", default=None
)
QUEUE_RECHECK_SECONDS = 30  # a waiting deployment looks again even if no nudge arrives
# The longest wait a backend's Retry-After can impose on the next attempt (seconds).
RETRY_AFTER_MAX_SECONDS = 300.0
# Keys of Deployment.backend_data that flagdash writes itself (not the backend's).
FLAGDASH_DATA_KEYS = ("drift", "error_details")


def lease_seconds() -> int:
    return int(settings.DEPLOYMENT_LEASE_SECONDS)


def max_attempts() -> int:
    return int(settings.DEPLOYMENT_MAX_ATTEMPTS)


def poll_bounds() -> tuple[float, float]:
    return float(settings.DEPLOYMENT_POLL_MIN_SECONDS), float(settings.DEPLOYMENT_POLL_MAX_SECONDS)


# --- recording helpers (inside a transaction) -------------------------------------------------


def deployment_repr(d: Deployment) -> str:
    env = d.environment
    return f"{env.application.key}/{env.key} #{d.pk} v{d.version.number}"


def record_event(
    d: Deployment,
    type: str,
    message: str = "",
    *,
    percentage: float | None = None,
    triggered_by: str = "flagdash",
    occurred_at: dt.datetime | None = None,
) -> DeploymentEvent:
    return DeploymentEvent.objects.create(
        deployment=d,
        type=type,
        message=message[:1000],
        percentage=percentage,
        triggered_by=triggered_by[:150],
        occurred_at=occurred_at or _acting_at.get() or timezone.now(),
    )


def audit_transition(
    d: Deployment,
    old_state: str | None,
    *,
    actor: Any = None,
    actor_name: str | None = None,
    action: Action | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    after: dict[str, Any] = {
        "state": d.state,
        "version": d.version.number,
        "percentage": d.percentage,
        "strategy": d.plan.get("name"),
    }
    if d.previous_version_id:
        after["previous_version"] = d.previous_version.number if d.previous_version else None
    if d.error:
        after["error"] = d.error
    if d.rollback_reason and d.state in (S.ROLLING_BACK, S.ROLLED_BACK):
        after["reason"] = d.rollback_reason
    if d.alarm_name and d.state in (S.ROLLING_BACK, S.ROLLED_BACK):
        after["alarm"] = d.alarm_name
    after.update(extra or {})
    audit_record(
        actor=actor,
        actor_name=actor_name if actor is None and actor_name is not None else None,
        action=action or STATE_ACTIONS[S(d.state)],
        target_type="deployment",
        target_id=d.pk,
        target_repr=deployment_repr(d),
        application=d.environment.application_id,
        environment=d.environment_id,
        before={"state": old_state} if old_state else None,
        after=after,
    )


_quiet: contextvars.ContextVar[bool] = contextvars.ContextVar("deployment_quiet", default=False)


@contextlib.contextmanager
def without_nudges() -> Iterator[None]:
    """Send no messages to workers (replaying history on a past clock: nothing is due)."""
    token = _quiet.set(True)
    try:
        yield
    finally:
        _quiet.reset(token)


def schedule_advance(deployment_id: int, at: dt.datetime | None = None) -> None:
    """After commit, ask a worker to advance the deployment (at ``at``, or now)."""
    if _quiet.get():
        return

    def send() -> None:
        from flagdash.deployments.tasks import deployment_advance_task

        delay = 0.0 if at is None else max(0.0, (at - timezone.now()).total_seconds())
        deployment_advance_task.apply_async((deployment_id,), countdown=delay)

    transaction.on_commit(send, robust=True)


def _locked_with_environment(deployment_id: int) -> Deployment:
    """Lock the deployment's environment, then the deployment: the order every writer uses."""
    env_id = Deployment.objects.values_list("environment_id", flat=True).get(pk=deployment_id)
    Environment.objects.select_for_update().filter(pk=env_id).first()
    return _locked(deployment_id)


def _locked(deployment_id: int) -> Deployment:
    return (
        Deployment.objects.select_for_update(of=("self",))
        .select_related("environment__application", "version", "previous_version", "restores")
        .get(pk=deployment_id)
    )


def next_in_queue(environment_id: int) -> Deployment | None:
    return (
        Deployment.objects.filter(environment_id=environment_id, state=S.QUEUED)
        .order_by("-priority", "created_at", "id")
        .first()
    )


def wake_queue(environment_id: int, now: dt.datetime) -> None:
    """Inside a transaction: make the head of the environment's queue due now."""
    head = next_in_queue(environment_id)
    if head is not None:
        Deployment.objects.filter(pk=head.pk).update(next_step_at=now, waiting_reason="")
        schedule_advance(head.pk)


# --- 1. claim --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    deployment: Deployment
    token: str


def _claim(deployment_id: int, now: dt.datetime) -> Claim | None:
    env_id = (
        Deployment.objects.filter(pk=deployment_id).values_list("environment_id", flat=True).first()
    )
    if env_id is None:
        return None
    with transaction.atomic():
        # Lock order everywhere: environment, then deployment.
        env = Environment.objects.select_for_update().get(pk=env_id)
        d = (
            Deployment.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("environment__application", "version", "previous_version", "restores")
            .filter(pk=deployment_id)
            .first()
        )
        if d is None or d.state not in OPEN_STATES:
            return None
        if d.lease_until is not None and d.lease_until > now:
            return None  # another worker is acting on it
        if d.next_step_at is None or d.next_step_at > now:
            return None  # not due: a later message or the reconciler will come back
        if d.state == S.QUEUED and not _start_if_first(d, env, now):
            return None
        if d.rollback_requested_at and d.state in (S.DEPLOYING, S.BAKING):
            old = d.state
            d.waiting_reason = ""
            d.state = S.ROLLING_BACK
            d.save(update_fields=["state", "waiting_reason"])
            record_event(
                d,
                EventType.ROLLBACK_STARTED,
                d.rollback_reason,
                percentage=d.percentage,
                triggered_by=_trigger_label(d),
            )
            audit_transition(d, old, actor_name=_trigger_label(d))
        token = secrets.token_hex(16)
        d.lease_token = token
        d.lease_until = now + dt.timedelta(seconds=lease_seconds())
        d.save(update_fields=["lease_token", "lease_until"])
        return Claim(d, token)


def _start_if_first(d: Deployment, env: Environment, now: dt.datetime) -> bool:
    """Move a queued deployment to deploying if its environment is free and it is next."""
    active = (
        Deployment.objects.filter(environment_id=env.pk, state__in=ACTIVE_STATES)
        .only("id", "state")
        .first()
    )
    head = next_in_queue(env.pk)
    if active is not None or (head is not None and head.pk != d.pk):
        blocker: Deployment = active or head  # type: ignore[assignment]
        reason = (
            f"Waiting for deployment #{blocker.pk} ({blocker.get_state_display().lower()})"
            if active
            else f"Waiting for deployment #{blocker.pk}, ahead in the queue"
        )
        if d.waiting_reason != reason:
            record_event(d, EventType.WAITING, reason)
        d.waiting_reason = reason
        d.next_step_at = now + dt.timedelta(seconds=QUEUE_RECHECK_SECONDS)
        d.save(update_fields=["waiting_reason", "next_step_at"])
        return False
    d.state = S.DEPLOYING
    d.started_at = now
    d.previous_version_id = env.live_version_id
    d.waiting_reason = ""
    d.save(update_fields=["state", "started_at", "previous_version", "waiting_reason"])
    d.refresh_from_db(fields=["previous_version"])
    prev = f" (replacing v{d.previous_version.number})" if d.previous_version else ""
    record_event(d, EventType.STARTED, f"Deploying v{d.version.number}{prev} with {d.plan['name']}")
    audit_transition(d, S.QUEUED, actor_name="flagdash")
    return True


def _trigger_label(d: Deployment) -> str:
    if d.rollback_trigger == RollbackTrigger.ALARM:
        return f"alarm {d.alarm_name}"
    if d.rollback_trigger == RollbackTrigger.BACKEND:
        return f"backend ({d.alarm_name})" if d.alarm_name else "backend"
    return d.rollback_by_name or "flagdash"


# --- 2. act ----------------------------------------------------------------------------------


def build_spec(d: Deployment) -> DeploymentSpec:
    env = d.environment
    previous = d.previous_version
    restored = d.restores
    native_revert = restored is not None and restored.previous_version_id == d.version_id
    return DeploymentSpec(
        deployment_id=d.pk,
        environment_id=env.pk,
        application_key=env.application.key,
        environment_key=env.key,
        version_id=d.version_id,
        version_number=d.version.number,
        document=documents.load(d.version.document),
        previous_version_id=previous.pk if previous else None,
        previous_version_number=previous.number if previous else None,
        previous_document=documents.load(previous.document) if previous else None,
        plan=d.rollout_plan(),
        strategy=dict(d.plan),
        started_at=d.started_at or d.created_at,
        description=d.message,
        backend_ref=d.backend_ref,
        backend_data=dict(d.backend_data),
        is_restore=d.kind == DeploymentKind.RESTORE,
        # A native revert (AWS's Allow-Revert) brings back what was there before the restored
        # deployment: offered only when that is exactly the version this restore deploys.
        restores_backend_ref=restored.backend_ref if restored and native_revert else "",
        restores_backend_data=dict(restored.backend_data) if restored and native_revert else {},
        overwrite_drift=d.overwrite_drift,
    )


@dataclass(frozen=True)
class Outcome:
    started: StartResult | None
    status: RolloutStatus


class LeaseLost(Exception):
    """Another worker took the deployment over while this one was at the backend."""


def _act(claim: Claim, now: dt.datetime) -> Outcome:
    d = claim.deployment
    backend = backend_for(d.environment.backend)
    spec = build_spec(d)
    if d.state == S.ROLLING_BACK:
        # Even without a backend reference: a worker may have died after starting the rollout
        # and before recording it. Stopping what was never started is a no-op for backends.
        return Outcome(None, backend.stop(spec, now))
    started = None
    if not d.backend_ref:
        started = backend.start(spec, now)
        _persist_start(claim, started)
        spec = _with_start(spec, started)
    return Outcome(started, backend.status(spec, now))


def _persist_start(claim: Claim, started: StartResult) -> None:
    """Record the backend's reference as soon as the rollout exists, before anything else can
    fail: a rollback or a failure later in this step must be able to stop it."""
    with transaction.atomic():
        d = _locked(claim.deployment.pk)
        if d.lease_token != claim.token:
            raise LeaseLost
        d.backend_ref = started.backend_ref
        d.backend_data = {**d.backend_data, **started.backend_data}
        d.save(update_fields=["backend_ref", "backend_data"])
    claim.deployment.backend_ref = started.backend_ref
    claim.deployment.backend_data = d.backend_data


def _with_start(spec: DeploymentSpec, started: StartResult) -> DeploymentSpec:
    from dataclasses import replace

    return replace(
        spec,
        backend_ref=started.backend_ref,
        backend_data={**spec.backend_data, **started.backend_data},
    )


# --- 3. record -------------------------------------------------------------------------------


def _next_poll(status: RolloutStatus) -> float:
    low, high = poll_bounds()
    wanted = high if status.next_check_in is None else status.next_check_in
    return min(high, max(low, wanted))


def _record(claim: Claim, outcome: Outcome, now: dt.datetime) -> str:
    with transaction.atomic():
        d = _locked_with_environment(claim.deployment.pk)
        if d.lease_token != claim.token:
            logger.warning("deployment %s: lease lost before recording; another worker acts", d.pk)
            return "lease-lost"
        status = outcome.status
        if outcome.started is not None and outcome.started.message:
            record_event(d, EventType.BACKEND, outcome.started.message, triggered_by="backend")
        if status.backend_data is not None:
            # The backend's own data is replaced; what flagdash noted about a failure stays.
            kept = {k: d.backend_data[k] for k in FLAGDASH_DATA_KEYS if k in d.backend_data}
            d.backend_data = {**status.backend_data, **kept}
        for event in status.events:
            record_event(
                d,
                EventType.BACKEND,
                f"{event.kind}: {event.message}" if event.message else event.kind,
                percentage=event.percentage,
                triggered_by=event.triggered_by,
                occurred_at=event.occurred_at,
            )
        old_state = d.state
        percentage = max(0.0, min(100.0, float(status.percentage)))
        if percentage != d.percentage and status.state in ("deploying", "baking", "complete"):
            record_event(d, EventType.PERCENTAGE, percentage=percentage)
        d.percentage = percentage
        _apply_state(d, status, now)
        d.attempts = 0
        d.waiting_reason = ""
        d.lease_token = ""
        d.lease_until = None
        if d.is_terminal:
            d.next_step_at = None
        elif d.rollback_requested_at and d.state in (S.DEPLOYING, S.BAKING):
            d.next_step_at = now  # a rollback arrived while we were acting
        else:
            d.next_step_at = now + dt.timedelta(seconds=_next_poll(status))
        d.save()
        if d.state != old_state:
            audit_transition(d, old_state, actor_name=_actor_for(d))
            _after_rollback(d, old_state, now)
        if d.is_terminal:
            wake_queue(d.environment_id, now)
        elif d.next_step_at is not None:
            schedule_advance(d.pk, d.next_step_at)
        return d.state


def _actor_for(d: Deployment) -> str:
    if d.state in (S.ROLLING_BACK, S.ROLLED_BACK):
        return _trigger_label(d)
    return "flagdash"


def _apply_state(d: Deployment, status: RolloutStatus, now: dt.datetime) -> None:
    new = status.state
    env = d.environment
    if new == "baking" and d.state == S.DEPLOYING:
        d.state = S.BAKING
        d.bake_started_at = now
        minutes = d.plan.get("final_bake_minutes", 0)
        record_event(d, EventType.BAKE_STARTED, f"100 % reached; baking for {minutes} min")
    elif new == "complete" and d.state in (S.DEPLOYING, S.BAKING) and d.rollback_requested_at:
        # A rollback was accepted while we were at the backend: it wins over completing. The
        # deployment stays active and due now; the next claim stops it at the backend.
        pass
    elif new == "complete" and d.state in (S.DEPLOYING, S.BAKING):
        d.state = S.COMPLETE
        d.finished_at = now
        d.percentage = 100.0
        record_event(d, EventType.COMPLETED, f"v{d.version.number} is live", percentage=100.0)
        env.live_version_id = d.version_id
        env.save(update_fields=["live_version"])
    elif new == "rolling_back" and d.state in (S.DEPLOYING, S.BAKING):
        _mark_backend_rollback(d, status, now)
        d.state = S.ROLLING_BACK
        record_event(d, EventType.ROLLBACK_STARTED, status.message, triggered_by=_trigger_label(d))
    elif new == "rolled_back" and d.state == S.ROLLING_BACK and d.error:
        d.state = S.FAILED  # the failed rollout is stopped: now it is over
        d.finished_at = now
        d.percentage = 0.0
        restored = f"v{d.previous_version.number}" if d.previous_version else "nothing"
        record_event(
            d,
            EventType.BACKEND,
            f"Stopped at the backend: {restored} is served to everyone again",
            percentage=0.0,
        )
    elif new == "rolled_back" and d.state in ACTIVE_STATES:
        if not d.rollback_requested_at:
            _mark_backend_rollback(d, status, now)
        d.state = S.ROLLED_BACK
        d.finished_at = now
        d.percentage = 0.0
        restored = f"v{d.previous_version.number}" if d.previous_version else "nothing"
        record_event(
            d,
            EventType.ROLLED_BACK,
            f"Rolled back: {restored} is served again",
            percentage=0.0,
            triggered_by=_trigger_label(d),
        )
    elif new == "failed":
        _fail(d, status.message or "The backend reported a failure.", now)


def _after_rollback(d: Deployment, old_state: str, now: dt.datetime) -> None:
    """A rollback took effect (a rollout stopped, or a restore completed): the working state and
    the queue must not bring the bad change back."""
    if d.state == S.ROLLED_BACK and old_state in ACTIVE_STATES:
        bad, good = d.version, d.previous_version
    elif d.state == S.COMPLETE and d.kind == DeploymentKind.RESTORE and d.previous_version:
        bad, good = d.previous_version, d.version
    else:
        return
    if good is not None and bad.pk == good.pk:
        return
    from flagdash.flags.services import working_state_follow_rollback

    by = _trigger_label(d) if d.state == S.ROLLED_BACK else (d.created_by_name or "flagdash")
    reset = working_state_follow_rollback(environment=d.environment, bad=bad, good=good, by=by)
    if reset:
        restored = f"v{good.number}" if good else "nothing"
        record_event(
            d,
            EventType.NOTE,
            f"Working state of {', '.join(reset)} set back to what {restored} serves",
        )
    _rebase_queued(d, bad, good, now)


def _rebase_queued(
    d: Deployment, bad: ConfigVersion, good: ConfigVersion | None, now: dt.datetime
) -> None:
    """Queued deployments built on the rolled-back version lose its change, keep their own.

    Each one that carries the bad change (same entry as ``bad`` for a flag the rollback
    changed) gets a new version: its own document with those flags as ``good`` has them. A
    queued deployment has not started, so pointing it at another version is safe; the event
    log and the audit log say so. One with nothing of its own left is cancelled.
    """
    from flagdash.flags.services import latest_version, save_version

    good_flags = documents.load(good.document)["flags"] if good else {}
    good_digests = good.flag_digests if good else {}
    changed = {
        key
        for key in set(bad.flag_digests) | set(good_digests)
        if bad.flag_digests.get(key) != good_digests.get(key)
    }
    queued = (
        Deployment.objects.select_for_update(of=("self",))
        .filter(environment_id=d.environment_id, state=S.QUEUED, kind=DeploymentKind.DEPLOY)
        .select_related("version", "previous_version", "environment__application")
        .order_by("created_at", "id")
    )
    for q in queued:
        digests = q.version.flag_digests
        carried = sorted(k for k in changed if digests.get(k) == bad.flag_digests.get(k))
        if not carried:
            continue
        document = documents.load(q.version.document)
        for key in carried:
            if key in good_flags:
                document["flags"][key] = good_flags[key]
            else:
                document["flags"].pop(key, None)
        keys = ", ".join(carried)
        digest = sha256_hex(canonical_json(document))
        if good is not None and digest == good.sha256:
            q.state = S.CANCELLED
            q.finished_at = now
            q.next_step_at = None
            q.save(update_fields=["state", "finished_at", "next_step_at"])
            record_event(
                q,
                EventType.CANCELLED,
                f"Built on v{bad.number}, which #{d.pk} rolled back: without its change to "
                f"{keys}, nothing of this deployment's own was left to deploy.",
            )
            audit_transition(q, S.QUEUED, actor_name="flagdash", extra={"rolled_back_by": d.pk})
            continue
        latest = latest_version(d.environment)
        old = q.version
        if latest is not None and latest.sha256 == digest:
            version = latest
        else:
            version = save_version(
                None,
                d.environment,
                document,
                f"v{old.number} without the change to {keys} rolled back by #{d.pk}"[:500],
                latest,
            )
        q.version = version
        q.save(update_fields=["version"])
        record_event(
            q,
            EventType.NOTE,
            f"Built on v{bad.number}, which #{d.pk} rolled back: now deploys v{version.number}, "
            f"which is v{old.number} without the rolled-back change to {keys}.",
        )
        audit_record(
            actor=None,
            actor_name="flagdash",
            action=Action.DEPLOYMENT_REBASED,
            target_type="deployment",
            target_id=q.pk,
            target_repr=deployment_repr(q),
            application=q.environment.application_id,
            environment=q.environment_id,
            before={"version": old.number},
            after={"version": version.number, "rolled_back_by": d.pk, "flags": carried},
        )


def _mark_backend_rollback(d: Deployment, status: RolloutStatus, now: dt.datetime) -> None:
    """The backend rolled back on its own (AWS: a CloudWatch alarm fired)."""
    d.rollback_requested_at = d.rollback_requested_at or now
    by = status.rolled_back_by
    if by.startswith("alarm:"):
        d.rollback_trigger = RollbackTrigger.ALARM
        d.alarm_name = by.removeprefix("alarm:")[:200]
    else:
        d.rollback_trigger = RollbackTrigger.BACKEND
        d.alarm_name = by[:200]
    d.rollback_reason = d.rollback_reason or status.message or "Rolled back by the backend"


def _fail(d: Deployment, message: str, now: dt.datetime) -> None:
    d.state = S.FAILED
    d.error = message
    d.finished_at = now
    record_event(d, EventType.FAILED, message, percentage=d.percentage)


def _record_error(claim: Claim, exc: BaseException, now: dt.datetime) -> str:
    """A backend call failed: retry later with backoff, or fail.

    Transient errors are retried with exponential backoff, or after the wait the backend asked
    for if that is longer (``retry_delay``). A rollout that has not reached the
    backend gives up after DEPLOYMENT_MAX_ATTEMPTS; one that has (it has a backend reference)
    and a rollback never give up: giving up would not stop what the backend is doing.

    Failing is not final at once: the deployment first goes to ``rolling_back`` (with its
    ``error``) so the backend is asked, with the same lease and retries as any rollback, to
    serve the previous version to everyone again; it becomes ``failed`` when the backend has
    done so, and only then does the environment's next deployment start. A rollback that fails
    for good is ``failed`` at once.
    """
    with transaction.atomic():
        d = _locked_with_environment(claim.deployment.pk)
        if d.lease_token != claim.token:
            return "lease-lost"
        old_state = d.state
        message = exc.message if isinstance(exc, BackendError) else f"Internal error: {exc!r}"
        permanent = isinstance(exc, PermanentBackendError)
        rolling_back = d.state == S.ROLLING_BACK
        if isinstance(exc, PermanentBackendError) and exc.details:
            d.backend_data = {**d.backend_data, "error_details": exc.details[:100]}
        if isinstance(exc, DriftError):
            d.backend_data = {**d.backend_data, "drift": True}
        d.attempts += 1
        persistent = rolling_back or bool(d.backend_ref)
        if not permanent and not persistent and d.attempts >= max_attempts():
            message = f"Gave up after {d.attempts} attempts: {message}"
            permanent = True
        d.lease_token = ""
        d.lease_until = None
        if permanent and rolling_back:
            if d.error and isinstance(exc, DriftError):
                # Stopped, except what someone changed outside flagdash: left as it is.
                record_event(d, EventType.BACKEND, message, triggered_by="backend")
                message = d.error
            elif d.error:
                message = f"{d.error} Stopping it at the backend failed too: {message}"
            elif d.rollback_requested_at:
                message = f"Rollback failed: {message}"
            _fail(d, message, now)
            d.next_step_at = None
            d.save()
            audit_transition(d, old_state, actor_name="flagdash")
            wake_queue(d.environment_id, now)
            return d.state
        if permanent:
            # Serve the previous version to everyone again before calling it failed.
            d.error = message
            d.attempts = 0
            d.state = S.ROLLING_BACK
            d.waiting_reason = ""
            d.next_step_at = now
            record_event(d, EventType.FAILED, message, percentage=d.percentage)
            d.save()
            audit_transition(d, old_state, actor_name="flagdash")
            schedule_advance(d.pk)
            return "failing"
        delay = retry_delay(d.attempts, exc)
        d.next_step_at = now + dt.timedelta(seconds=delay)
        of = "" if persistent else f" of {max_attempts()}"
        record_event(
            d,
            EventType.RETRY,
            f"{message} — retrying in {delay:g} s (attempt {d.attempts}{of})",
        )
        d.save()
        schedule_advance(d.pk, d.next_step_at)
        return "retry"


def retry_delay(attempts: int, exc: BaseException) -> float:
    """Seconds until the next attempt after ``attempts`` failed ones in a row.

    Exponential backoff from 1 s, capped at DEPLOYMENT_RETRY_MAX_SECONDS; but never sooner than
    the backend asked (``TransientBackendError.retry_in``, a 429's Retry-After), which is bounded
    by RETRY_AFTER_MAX_SECONDS rather than by DEPLOYMENT_RETRY_MAX_SECONDS: a throttled service
    must be given the wait it asked for even when flagdash's own backoff is shorter (1 s in fast
    setups), but a bogus header must not park a deployment for hours.
    """
    delay = min(float(settings.DEPLOYMENT_RETRY_MAX_SECONDS), 2.0 ** max(0, attempts - 1))
    asked = getattr(exc, "retry_in", None) if isinstance(exc, TransientBackendError) else None
    if asked is not None and asked > 0:
        delay = max(delay, min(float(asked), RETRY_AFTER_MAX_SECONDS))
    return delay


def _record_busy(claim: Claim, exc: BackendBusy, now: dt.datetime) -> str:
    """The backend runs a deployment flagdash did not start: wait for it, visibly."""
    with transaction.atomic():
        d = _locked_with_environment(claim.deployment.pk)
        if d.lease_token != claim.token:
            return "lease-lost"
        if d.waiting_reason != exc.message[:300]:
            record_event(d, EventType.WAITING, exc.message, triggered_by="backend")
        d.waiting_reason = exc.message[:300]
        d.lease_token = ""
        d.lease_until = None
        low, high = poll_bounds()
        d.next_step_at = now + dt.timedelta(seconds=min(high, max(low, exc.retry_in)))
        d.save()
        schedule_advance(d.pk, d.next_step_at)
        return "waiting"


# --- the entry points ------------------------------------------------------------------------


def deployment_advance(deployment_id: int, *, now: dt.datetime | None = None) -> str:
    """Advance one deployment by one step if it is due. Returns what happened (for logs)."""
    now = now or timezone.now()
    token = _acting_at.set(now)
    try:
        return _advance(deployment_id, now)
    finally:
        _acting_at.reset(token)


def _advance(deployment_id: int, now: dt.datetime) -> str:
    claim = _claim(deployment_id, now)
    if claim is None:
        return "skipped"
    try:
        outcome = _act(claim, now)
    except LeaseLost:
        logger.warning(
            "deployment %s: lease lost after starting; another worker acts", deployment_id
        )
        return "lease-lost"
    except BackendBusy as exc:
        logger.info("deployment %s: backend busy: %s", deployment_id, exc.message)
        return _record_busy(claim, exc, now)
    except TransientBackendError as exc:
        logger.warning("deployment %s: transient backend error: %s", deployment_id, exc.message)
        result = _record_error(claim, exc, now)
    except PermanentBackendError as exc:
        logger.error("deployment %s: backend refused: %s", deployment_id, exc.message)
        result = _record_error(claim, exc, now)
    except Exception as exc:  # a bug or an unexpected library error: retried, then failed
        logger.exception("deployment %s: unexpected error", deployment_id)
        result = _record_error(claim, exc, now)
    else:
        return _record(claim, outcome, now)
    return result


def due_deployments(now: dt.datetime, *, grace_seconds: float = 0, limit: int = 200) -> list[int]:
    """Open deployments whose next step is due and that nobody holds."""
    cutoff = now - dt.timedelta(seconds=grace_seconds)
    return list(
        Deployment.objects.filter(state__in=OPEN_STATES, next_step_at__lte=cutoff)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
        .order_by("next_step_at")
        .values_list("id", flat=True)[:limit]
    )

"""The built-in backend: flagdash serves the deployed versions itself (over OFREP).

It keeps, per environment, a stable version served to everyone and, during a gradual rollout, a
candidate version served to the share of targeting keys the plan has reached. Which keys those
are is decided by ``sticky_bucket``: a stable hash of the targeting key and the flag key, so a
key that sees the new version at 20 % still sees it at 30 %, and flags split independently.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from django.core.cache import cache
from django.db import transaction

from flagdash.backends.base import (
    Backend,
    CheckResult,
    DeploymentSpec,
    PermanentBackendError,
    RolloutStatus,
    StartResult,
    register,
)
from flagdash.backends.models import BackendKind, LocalRollout, LocalServedState


def sticky_bucket(targeting_key: str, flag_key: str, salt: str = "") -> float:
    """A number in [0, 100) that never changes for a (targeting key, flag key, salt) triple.

    SHA-256 of ``"{flag_key}/{targeting_key}"`` (or ``"{salt}:{flag_key}/{targeting_key}"``
    when a salt is given), first 8 bytes big-endian, scaled to 0–100. It depends on nothing
    but these strings, so every process on every machine, before and after a restart, puts a
    key in the same bucket.

    - Gradual rollouts (no salt): a key gets the new version when its bucket is below the
      rollout's ``p`` %, so raising ``p`` only adds keys.
    - Percentage splits of targeting rules (salt ``"split"``): a key gets the variant whose
      cumulative weight range holds its bucket. The salt keeps the split independent of the
      rollout, so the keys that already see a new version are not all in the first variant.
    """
    text = f"{salt}:{flag_key}/{targeting_key}" if salt else f"{flag_key}/{targeting_key}"
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


# Every process that evaluates flags keeps a compiled copy of what is served; a change here
# replaces this cache token (after commit) so the copies reload within about a second.
SERVED_TOKEN_CACHE_KEY = "local-served-token"  # noqa: S105 (a cache key name)


def mark_served_changed() -> None:
    """After the current transaction commits, tell evaluating processes to reload."""

    def bump() -> None:
        cache.set(SERVED_TOKEN_CACHE_KEY, secrets.token_hex(8), timeout=None)

    # robust: a cache that is down is logged, and evaluators still resync from the database.
    transaction.on_commit(bump, robust=True)


def _served(environment_id: int) -> LocalServedState:
    state, _ = LocalServedState.objects.select_for_update().get_or_create(
        environment_id=environment_id
    )
    return state


@register
class LocalBackend(Backend):
    kind = BackendKind.LOCAL
    self_driven = True

    def render(self, document: dict[str, Any]) -> dict[str, Any]:
        """The built-in store serves flagdash's own document unchanged."""
        if not isinstance(document.get("flags"), dict):
            raise PermanentBackendError("The version has no flags object.")
        return document

    def start(self, spec: DeploymentSpec, now: dt.datetime) -> StartResult:
        self.render(spec.document)
        with transaction.atomic():
            rollout, created = LocalRollout.objects.get_or_create(
                deployment_id=spec.deployment_id,
                defaults={
                    "environment_id": spec.environment_id,
                    "version_id": spec.version_id,
                    "previous_version_id": spec.previous_version_id,
                    "started_at": now,
                },
            )
            if created:
                served = _served(spec.environment_id)
                served.candidate_version_id = spec.version_id
                served.candidate_percentage = spec.plan.at(0).percentage
                served.deployment_id = spec.deployment_id
                served.save()
                mark_served_changed()
        return StartResult(
            backend_ref=f"local-{rollout.deployment_id}",
            backend_data={"started_at": rollout.started_at.isoformat()},
        )

    def _rollout(self, spec: DeploymentSpec) -> LocalRollout:
        try:
            return LocalRollout.objects.select_for_update().get(deployment_id=spec.deployment_id)
        except LocalRollout.DoesNotExist:
            raise PermanentBackendError(
                f"The built-in store has no rollout for deployment {spec.deployment_id}."
            ) from None

    def status(self, spec: DeploymentSpec, now: dt.datetime) -> RolloutStatus:
        with transaction.atomic():
            rollout = self._rollout(spec)
            if rollout.stopped_at is not None:
                return RolloutStatus("rolled_back", 0.0)
            point = spec.plan.at((now - rollout.started_at).total_seconds())
            served = _served(spec.environment_id)
            if served.deployment_id == spec.deployment_id:
                if point.state == "complete":
                    served.stable_version_id = spec.version_id
                    served.candidate_version_id = None
                    served.candidate_percentage = 0
                    served.deployment_id = None
                    rollout.completed_at = rollout.completed_at or now
                    rollout.save(update_fields=["completed_at"])
                    served.save()
                    mark_served_changed()
                elif served.candidate_percentage != point.percentage:
                    served.candidate_percentage = point.percentage
                    served.save()
                    mark_served_changed()
        return RolloutStatus(point.state, point.percentage, next_check_in=point.next_change_in)

    def stop(self, spec: DeploymentSpec, now: dt.datetime) -> RolloutStatus:
        with transaction.atomic():
            rollout = (
                LocalRollout.objects.select_for_update()
                .filter(deployment_id=spec.deployment_id)
                .first()
            )
            if rollout is None:  # never started: nothing is served, nothing to stop
                return RolloutStatus("rolled_back", 0.0)
            if rollout.stopped_at is None:
                rollout.stopped_at = now
                rollout.save(update_fields=["stopped_at"])
                served = _served(spec.environment_id)
                if served.deployment_id == spec.deployment_id:
                    served.candidate_version_id = None
                    served.candidate_percentage = 0
                    served.deployment_id = None
                elif served.stable_version_id == spec.version_id:
                    served.stable_version_id = spec.previous_version_id
                served.save()
                mark_served_changed()
        return RolloutStatus("rolled_back", 0.0)

    def check(self) -> CheckResult:
        return CheckResult(True, "The built-in store is part of flagdash: nothing to connect to.")

    def current(self, application_key: str, environment_key: str) -> dict[str, Any] | None:
        from flagdash.flags.documents import load

        state = (
            LocalServedState.objects.select_related("stable_version")
            .filter(environment__application__key=application_key, environment__key=environment_key)
            .first()
        )
        if state is None or state.stable_version is None:
            return None
        return load(state.stable_version.document)

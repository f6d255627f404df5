"""Reads for the deployment and rollback pages, each in a fixed number of queries."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import DateTimeField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404

from flagdash.accounts.permissions import can_edit_environment
from flagdash.deployments.models import (
    ACTIVE_STATES,
    OPEN_STATES,
    UI_POLL_MAX_MS,
    Deployment,
    DeploymentEvent,
    DeploymentKind,
    DeploymentState,
    RollbackTrigger,
)
from flagdash.flags import documents
from flagdash.flags.documents import FlagDiff
from flagdash.flags.models import Application, ConfigVersion, Environment

S = DeploymentState
ROLLBACK_WINDOW = dt.timedelta(days=7)

# Versions carry their whole document; list pages only need the number.
_NO_DOCUMENTS = (
    "version__document",
    "version__flag_digests",
    "previous_version__document",
    "previous_version__flag_digests",
)


def _deployments() -> QuerySet[Deployment]:
    return Deployment.objects.select_related(
        "environment", "version", "previous_version", "strategy"
    ).defer(*_NO_DOCUMENTS)


# --- the deployments page --------------------------------------------------------------------


def environments_with_live_version(application: Application) -> list[Environment]:
    """The application's environments in order, each with its live version and last completion."""
    last_complete = (
        Deployment.objects.filter(environment=OuterRef("pk"), state=S.COMPLETE)
        .order_by("-finished_at", "-id")
        .values("pk")[:1]
    )
    return list(
        Environment.objects.filter(application=application)
        .select_related("live_version")
        .defer("live_version__document", "live_version__flag_digests")
        .annotate(last_complete_id=Subquery(last_complete))
        .order_by("position", "id")
    )


@dataclass
class EnvironmentPanel:
    """What one environment is doing now."""

    environment: Environment
    can_edit: bool
    active: Deployment | None = None
    queue: list[Deployment] = field(default_factory=list)
    live_deployment: Deployment | None = None  # the completed deployment it serves (rollbackable)

    @property
    def polling(self) -> bool:
        return self.active is not None or bool(self.queue)

    @property
    def poll_ms(self) -> int:
        """The card asks again when the soonest of its deployments may have moved."""
        open_ones = [d for d in (self.active, *self.queue) if d is not None]
        return min((d.ui_poll_ms() for d in open_ones), default=UI_POLL_MAX_MS)


def environment_panels(environments: list[Environment], user: Any) -> list[EnvironmentPanel]:
    """One panel per environment: its active deployment, its queue, what it serves. 1 query."""
    last_ids = [getattr(e, "last_complete_id", None) for e in environments]
    env_ids = [e.pk for e in environments]
    rows = list(
        _deployments()
        .filter(
            Q(environment_id__in=env_ids, state__in=OPEN_STATES)
            | Q(pk__in=[pk for pk in last_ids if pk])
        )
        .order_by("-priority", "created_at", "id")
    )
    panels = []
    for env in environments:
        panel = EnvironmentPanel(env, can_edit_environment(user, env))
        for d in rows:
            if d.environment_id != env.pk:
                continue
            d.environment = env
            if d.state in ACTIVE_STATES:
                panel.active = d
            elif d.state == S.QUEUED:
                panel.queue.append(d)
            elif d.pk == getattr(env, "last_complete_id", None):  # annotated above
                panel.live_deployment = d
        live = panel.live_deployment
        if live is not None and (
            panel.active is not None or env.live_version_id != live.version_id
        ):
            panel.live_deployment = None
        panels.append(panel)
    return panels


def recent_deployments(
    application: Application,
    environment: Environment | None,
    page_number: str | None,
    per_page: int,
) -> Page[Deployment]:
    """All deployments of the application (or one environment), newest first. 2 queries."""
    qs = _deployments().filter(environment__application=application)
    if environment is not None:
        qs = qs.filter(environment=environment)
    return Paginator(qs.order_by("-created_at", "-id"), per_page).get_page(page_number)


# --- one deployment --------------------------------------------------------------------------


def deployment_of(application: Application, pk: int) -> Deployment:
    """A deployment of this application (404 otherwise), with what its pages show."""
    return get_object_or_404(
        Deployment.objects.select_related(
            "environment__application",
            "environment__live_version",
            "version",
            "previous_version",
            "strategy",
            "restores__version",
        ).defer(
            *_NO_DOCUMENTS,
            "environment__live_version__document",
            "environment__live_version__flag_digests",
            "restores__version__document",
            "restores__version__flag_digests",
        ),
        pk=pk,
        environment__application=application,
    )


def events_of(deployment: Deployment) -> list[DeploymentEvent]:
    return list(deployment.events.order_by("occurred_at", "id"))


def restored_by(deployment: Deployment) -> list[Deployment]:
    """Restores that rolled this deployment back (a later deployment of an earlier version)."""
    return list(
        Deployment.objects.filter(restores=deployment)
        .select_related("version")
        .defer("version__document", "version__flag_digests")
        .order_by("-created_at", "-id")
    )


def is_live(deployment: Deployment) -> bool:
    """Complete and still what its environment serves, with nothing running: rollbackable."""
    env = deployment.environment
    return (
        deployment.state == S.COMPLETE
        and env.live_version_id == deployment.version_id
        and not Deployment.objects.filter(environment=env, state__in=ACTIVE_STATES).exists()
        and not Deployment.objects.filter(restores=deployment, state__in=OPEN_STATES).exists()
    )


def can_stop(deployment: Deployment) -> bool:
    return deployment.state in (S.DEPLOYING, S.BAKING) and deployment.rollback_requested_at is None


def trigger_label(deployment: Deployment) -> str:
    """Who or what asked for the rollback."""
    if deployment.rollback_trigger == RollbackTrigger.ALARM:
        return f"alarm {deployment.alarm_name}" if deployment.alarm_name else "an alarm"
    if deployment.rollback_trigger == RollbackTrigger.BACKEND:
        return f"the backend ({deployment.alarm_name})" if deployment.alarm_name else "the backend"
    return deployment.rollback_by_name or deployment.created_by_name or "flagdash"


# --- the rollbacks page ----------------------------------------------------------------------


def rollbacks_of(application: Application) -> QuerySet[Deployment]:
    """Rollouts that were (or are being) rolled back, and restores of earlier versions.

    A rollout whose rollback was asked for counts from that moment, before the engine has
    moved it to rolling back (and also if the rollback then failed).
    """
    return (
        Deployment.objects.filter(environment__application=application)
        .filter(
            Q(state__in=(S.ROLLING_BACK, S.ROLLED_BACK))
            | Q(rollback_requested_at__isnull=False)
            | Q(kind=DeploymentKind.RESTORE)
        )
        .annotate(
            rolled_back_at=Coalesce(
                "rollback_requested_at", "created_at", output_field=DateTimeField()
            )
        )
        .order_by("-rolled_back_at", "-id")
    )


@dataclass
class RollbackRow:
    deployment: Deployment
    bad_version: ConfigVersion | None  # what was served and taken away
    restored_version: ConfigVersion | None  # what is served instead
    trigger: str
    reason: str
    when: dt.datetime
    live_for: dt.timedelta | None  # how long the bad version was served
    still_live: bool  # the rollback has not finished: live_for is counted up to now
    diff: list[FlagDiff]

    @property
    def environment(self) -> Environment:
        return self.deployment.environment

    @property
    def is_restore(self) -> bool:
        return self.deployment.kind == DeploymentKind.RESTORE


def _load(version: ConfigVersion | None) -> dict[str, Any] | None:
    return documents.load(version.document) if version is not None else None


def rollback_row(d: Deployment, now: dt.datetime, *, with_diff: bool = True) -> RollbackRow:
    """Describe one rollback; ``with_diff=False`` where the documents were not loaded."""
    if d.kind == DeploymentKind.RESTORE:
        replaced = d.restores
        bad = d.previous_version or (replaced.version if replaced is not None else None)
        restored: ConfigVersion | None = d.version
        began = replaced.started_at if replaced is not None else None
    else:
        bad = d.version
        restored = d.previous_version
        began = d.started_at
    ended = d.finished_at  # the restore or the rollback finished (or gave up)
    live_for = ((ended or now) - began) if began is not None else None
    return RollbackRow(
        deployment=d,
        bad_version=bad,
        restored_version=restored,
        trigger=trigger_label(d),
        reason=d.rollback_reason,
        when=d.rollback_requested_at or d.created_at,
        live_for=live_for if live_for is None or live_for >= dt.timedelta() else dt.timedelta(),
        still_live=ended is None,
        diff=documents.document_diff(_load(bad), _load(restored)) if with_diff else [],
    )


def rollback_page(
    application: Application,
    environment: Environment | None,
    page_number: str | None,
    per_page: int,
    now: dt.datetime,
) -> tuple[Page[Deployment], list[RollbackRow]]:
    """A page of rollbacks, newest first, each with its diff. 2 queries."""
    qs = rollbacks_of(application).select_related(
        "environment", "version", "previous_version", "restores__version"
    )
    if environment is not None:
        qs = qs.filter(environment=environment)
    page = Paginator(qs, per_page).get_page(page_number)
    return page, [rollback_row(d, now) for d in page.object_list]


def latest_rollback(application: Application, now: dt.datetime) -> RollbackRow | None:
    """The application's most recent rollback in the last seven days, if any. 1 query."""
    since = now - ROLLBACK_WINDOW
    d = (
        rollbacks_of(application)
        .filter(
            Q(rollback_requested_at__gte=since)
            | Q(rollback_requested_at__isnull=True, created_at__gte=since)
        )
        .select_related("environment", "version", "previous_version", "restores__version")
        .defer(
            *_NO_DOCUMENTS,
            "restores__version__document",
            "restores__version__flag_digests",
        )
        .first()
    )
    return rollback_row(d, now, with_diff=False) if d is not None else None

"""Reads for the flag pages: filtered, sorted, paginated, with a fixed number of queries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.core.paginator import Page, Paginator
from django.db.models import Prefetch, Q, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from flagdash.accounts.permissions import can_edit_environment
from flagdash.audit.models import AuditEvent
from flagdash.deployments.charts import format_percentage, format_seconds
from flagdash.deployments.models import (
    ACTIVE_STATES,
    OPEN_STATES,
    Deployment,
    DeploymentState,
    DeploymentStrategy,
    GrowthType,
)
from flagdash.flags.models import (
    Application,
    ConfigVersion,
    Environment,
    Flag,
    FlagAttribute,
    FlagSetting,
    Tag,
)

User = get_user_model()

SORTS = {
    "key": ("key",),
    "-key": ("-key",),
    "updated": ("updated_at", "key"),
    "-updated": ("-updated_at", "key"),
    "created": ("created_at", "key"),
    "-created": ("-created_at", "key"),
    "remove_by": ("remove_by", "key"),
    "-remove_by": ("-remove_by", "key"),
}
SORT_LABELS = {
    "key": "Key (A–Z)",
    "-key": "Key (Z–A)",
    "-updated": "Recently changed",
    "updated": "Least recently changed",
    "-created": "Newest",
    "created": "Oldest",
    "remove_by": "Remove-by (soonest)",
    "-remove_by": "Remove-by (latest)",
}


@dataclass(frozen=True)
class FlagFilters:
    q: str = ""
    short_term: str = ""  # "" | "yes" | "no"
    tag: str = ""
    owner: str = ""
    archived: str = ""  # "" (active) | "only" | "all"
    sort: str = "key"

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> FlagFilters:
        def pick(name: str, allowed: Sequence[str]) -> str:
            value = query.get(name, "")
            return value if value in allowed else ""

        return cls(
            q=query.get("q", "").strip()[:100],
            short_term=pick("short_term", ("yes", "no")),
            tag=query.get("tag", "").strip()[:32],
            owner=query.get("owner", "").strip()[:150],
            archived=pick("archived", ("only", "all")),
            sort=query.get("sort", "key") if query.get("sort") in SORTS else "key",
        )

    @property
    def active(self) -> bool:
        return any((self.q, self.short_term, self.tag, self.owner, self.archived))


def application_by_key(app_key: str) -> Application:
    return get_object_or_404(Application, key=app_key)


def environments_of(application: Application) -> list[Environment]:
    return list(application.environments.select_related("backend").order_by("position", "id"))


def environment_by_key(application: Application, env_key: str) -> Environment:
    return get_object_or_404(
        Environment.objects.select_related("application", "backend"),
        application=application,
        key=env_key,
    )


def flag_by_key(application: Application, flag_key: str) -> Flag:
    return get_object_or_404(
        Flag.objects.select_related("application", "owner").prefetch_related("tags"),
        application=application,
        key=flag_key,
    )


def flag_queryset(application: Application, filters: FlagFilters) -> QuerySet[Flag]:
    qs = Flag.objects.filter(application=application)
    if filters.archived == "only":
        qs = qs.filter(archived_at__isnull=False)
    elif filters.archived != "all":
        qs = qs.filter(archived_at__isnull=True)
    if filters.q:
        qs = qs.filter(
            Q(key__icontains=filters.q)
            | Q(name__icontains=filters.q)
            | Q(description__icontains=filters.q)
        )
    if filters.short_term:
        qs = qs.filter(short_term=filters.short_term == "yes")
    if filters.tag:
        qs = qs.filter(tags__name=filters.tag)
    if filters.owner:
        qs = qs.filter(owner__username=filters.owner)
    return qs.order_by(*SORTS[filters.sort])


# --- rollouts beside the switches ------------------------------------------------------------


ROLLOUT_LABELS = {
    DeploymentState.QUEUED: "queued",
    DeploymentState.BAKING: "baking",
    DeploymentState.ROLLING_BACK: "rolling back",
}


@dataclass(frozen=True)
class Rollout:
    """An open deployment that changes one flag, as the switch beside it shows it."""

    deployment: Deployment

    @property
    def state(self) -> str:
        return self.deployment.state

    @property
    def label(self) -> str:
        d = self.deployment
        if d.state == DeploymentState.DEPLOYING:
            return f"rolling out {format_percentage(d.percentage)}"
        return ROLLOUT_LABELS.get(DeploymentState(d.state), d.get_state_display().lower())

    @property
    def title(self) -> str:
        d = self.deployment
        return f"Deployment #{d.pk} of v{d.version.number} ({d.strategy.name})"


_ROLLOUT_FIELDS = (
    *("id", "environment_id", "version_id", "previous_version_id", "strategy_id", "state"),
    *("percentage", "kind", "priority", "created_at", "next_step_at"),
    *("version__id", "version__number", "version__flag_digests"),
    *("previous_version__id", "previous_version__flag_digests"),
    *("strategy__id", "strategy__name"),
    *("environment__id", "environment__live_version_id"),
    *("environment__live_version__id", "environment__live_version__flag_digests"),
)


def open_deployments(environments: Sequence[Environment]) -> dict[int, list[Deployment]]:
    """The open deployments of these environments, by environment, the running one first.

    One query however many environments and flags: each deployment comes with the per-flag
    digests of its version and of what it replaces (to tell which flags it changes).
    """
    by_env: dict[int, list[Deployment]] = {env.pk: [] for env in environments}
    if not by_env:
        return by_env
    rows = (
        Deployment.objects.filter(environment_id__in=list(by_env), state__in=OPEN_STATES)
        .select_related("version", "previous_version", "strategy", "environment__live_version")
        .only(*_ROLLOUT_FIELDS)
    )
    for d in sorted(
        rows, key=lambda d: (d.state not in ACTIVE_STATES, -d.priority, d.created_at, d.pk)
    ):
        by_env[d.environment_id].append(d)
    return by_env


def _changes_flag(d: Deployment, flag_key: str) -> bool:
    """Whether deploying ``d`` changes this flag (against what it replaces, or what is live)."""
    base = d.previous_version if d.previous_version_id else d.environment.live_version
    old = base.flag_digests.get(flag_key) if base is not None else None
    return bool(d.version.flag_digests.get(flag_key) != old)


def rollout_of(flag: Flag, deployments: Sequence[Deployment]) -> Rollout | None:
    """The first open deployment (running, then the queue) that changes this flag."""
    for d in deployments:
        if _changes_flag(d, flag.key):
            return Rollout(d)
    return None


def rollout_for(flag: Flag, environment: Environment) -> Rollout | None:
    """One switch's rollout (1 query)."""
    return rollout_of(flag, open_deployments([environment])[environment.pk])


def blocking_deployment(d: Deployment) -> Deployment | None:
    """What a queued deployment waits for: the running one, else the one ahead in the queue."""
    others = [o for o in open_deployments([d.environment])[d.environment_id] if o.pk != d.pk]
    if others and others[0].state in ACTIVE_STATES:
        return others[0]
    mine = (-d.priority, d.created_at, d.pk)
    ahead = [o for o in others if (-o.priority, o.created_at, o.pk) < mine]
    return ahead[0] if ahead else None


def flag_ref(application: Application, flag_key: str) -> Flag:
    """A flag by key, without its tags and owner (for fragments that poll)."""
    return get_object_or_404(
        Flag.objects.only("id", "key", "application_id", "archived_at"),
        application=application,
        key=flag_key,
    )


def strategy_schedule(strategy: DeploymentStrategy) -> str:
    """A strategy's schedule in words: "50 % every 30 s, 1 min bake"."""
    plan = strategy.plan()
    steps = plan.percentages()
    if len(steps) == 1:
        rollout = "all at once"
    elif strategy.growth_type == GrowthType.EXPONENTIAL:
        rollout = (
            f"{format_percentage(steps[0])} doubling every {format_seconds(plan.step_interval())}"
        )
    else:
        rollout = f"{format_percentage(steps[0])} every {format_seconds(plan.step_interval())}"
    bake = (
        f"{format_seconds(plan.final_bake_seconds)} bake" if plan.final_bake_seconds else "no bake"
    )
    return f"{rollout}, {bake}"


def strategy_label(strategy: DeploymentStrategy) -> str:
    return f"{strategy.name} — {strategy_schedule(strategy)}"


def strategies() -> list[DeploymentStrategy]:
    """Every strategy, AWS's predefined ones first (the model's ordering)."""
    return list(DeploymentStrategy.objects.all())


# --- the flag list ---------------------------------------------------------------------------


@dataclass
class Cell:
    environment: Environment
    setting: FlagSetting | None
    can_edit: bool
    rollout: Rollout | None = None


@dataclass
class FlagRow:
    flag: Flag
    cells: list[Cell] = field(default_factory=list)

    @property
    def overdue(self) -> bool:
        return bool(self.flag.remove_by and self.flag.remove_by < timezone.localdate())


def flag_rows(
    flags: Sequence[Flag] | Page[Flag], environments: Sequence[Environment], user: Any
) -> list[FlagRow]:
    """Pair each flag with its setting in every environment (settings must be prefetched), and
    with the open deployment that changes it there, if any (1 query for all rows)."""
    editable = {env.pk: can_edit_environment(user, env) for env in environments}
    deployments = open_deployments(environments)
    rows = []
    for flag in flags:
        by_env = {s.environment_id: s for s in flag.settings.all()}
        rows.append(
            FlagRow(
                flag=flag,
                cells=[
                    Cell(
                        env,
                        by_env.get(env.pk),
                        editable[env.pk],
                        rollout_of(flag, deployments[env.pk]),
                    )
                    for env in environments
                ],
            )
        )
    return rows


def with_row_data(qs: QuerySet[Flag]) -> QuerySet[Flag]:
    return qs.select_related("owner").prefetch_related(
        "tags",
        Prefetch(
            "settings",
            queryset=FlagSetting.objects.only(
                "id", "flag_id", "environment_id", "enabled", "revision"
            ),
        ),
    )


def flag_page(
    application: Application, filters: FlagFilters, page_number: Any, per_page: int
) -> Page[Flag]:
    paginator = Paginator(with_row_data(flag_queryset(application, filters)), per_page)
    return paginator.get_page(page_number)


def flag_row(flag: Flag, environments: Sequence[Environment], user: Any) -> FlagRow:
    fresh = with_row_data(Flag.objects.filter(pk=flag.pk)).get()
    return flag_rows([fresh], environments, user)[0]


def filter_choices(application: Application) -> dict[str, Any]:
    return {
        "tags": list(Tag.objects.filter(application=application).values_list("name", flat=True)),
        "owners": list(
            User.objects.filter(owned_flags__application=application)
            .distinct()
            .order_by("username")
            .values_list("username", flat=True)
        ),
        "sorts": SORT_LABELS,
    }


def settings_of(flag: Flag, environments: Sequence[Environment]) -> list[FlagSetting]:
    by_env = {
        s.environment_id: s
        for s in FlagSetting.objects.filter(flag=flag).select_related("updated_by")
    }
    return [by_env[e.pk] for e in environments if e.pk in by_env]


def attributes_of(flag: Flag) -> list[FlagAttribute]:
    return list(FlagAttribute.objects.filter(flag=flag).order_by("position", "id"))


def flag_history(flag: Flag, limit: int = 20) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(flag=flag).select_related("environment").order_by("-id")[:limit]
    )


def versions_of(environment: Environment, limit: int | None = None) -> QuerySet[ConfigVersion]:
    """Newest first, without the documents (lists never show them; load one by number)."""
    qs = (
        ConfigVersion.objects.filter(environment=environment)
        .defer("document", "flag_digests")
        .order_by("-number")
    )
    return qs[:limit] if limit else qs


def version_by_number(environment: Environment, number: int) -> ConfigVersion:
    return get_object_or_404(
        ConfigVersion.objects.select_related("environment__application"),
        environment=environment,
        number=number,
    )


def active_users() -> QuerySet[Any]:
    return User.objects.filter(is_active=True).order_by("username")


def today() -> dt.date:
    return timezone.localdate()

"""Reads of the short-term lifecycle: each flag's status and why, with a fixed number of queries.

Statuses, in order of precedence (a flag shows the first that applies; the others are listed in
its explanation):

1. ``overdue``: past its remove-by date (the day after it, in the server's time zone).
2. ``ready`` (to remove): the same value in every environment — fully off, or fully on (for a
   multi-variant flag: one variant for everyone) with no targeting rules and no rollout under
   way — unchanged for at least ``LIFECYCLE_READY_DAYS`` days.
3. ``unused``: the last code scan found no reference to it, or it has not been evaluated for
   ``LIFECYCLE_READY_DAYS`` days where flagdash serves it (only when every environment serving
   it is on the built-in backend and none of them has its flag definitions fetched by flagd
   clients: evaluations elsewhere are unknown, never guessed).

flagd and in-process providers download an environment's definitions (the flagd export) and
evaluate by themselves, so flagdash sees when they fetched, not what they evaluated: for a flag
served in such an environment, the last evaluation is the last one seen over OFREP, or
"unknown" when there is none, with a note naming the environment and its last fetch.
4. ``active``: none of these.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count
from django.utils import timezone

from flagdash.accounts import permissions
from flagdash.backends.models import BackendKind
from flagdash.deployments.models import Deployment, DeploymentKind, DeploymentState
from flagdash.evaluation.models import EnvironmentFetch, FetchKind, FlagLastEvaluated
from flagdash.flags import documents
from flagdash.flags import selectors as flag_selectors
from flagdash.flags.models import Application, Environment, Flag
from flagdash.flags.selectors import Rollout
from flagdash.lifecycle import served
from flagdash.lifecycle.models import (
    Cleanup,
    CleanupAction,
    CodeReference,
    CodeReferenceScan,
    ServedFlagState,
)

User = get_user_model()

OVERDUE, READY, UNUSED, ACTIVE = "overdue", "ready", "unused", "active"
STATUSES = (OVERDUE, READY, UNUSED, ACTIVE)
STATUS_LABELS = {
    OVERDUE: "overdue",
    READY: "ready to remove",
    UNUSED: "unused",
    ACTIVE: "active",
}
SORTS = {
    "remove_by": "Remove-by (soonest)",
    "-remove_by": "Remove-by (latest)",
    "age": "Oldest first",
    "-age": "Newest first",
    "unchanged": "Unchanged longest",
}
BACKEND_NAMES = dict(BackendKind.choices)


def ready_days() -> int:
    return int(settings.LIFECYCLE_READY_DAYS)


def status_rules(days: int | None = None) -> dict[str, str]:
    """The rule behind each status, as the legend and the hover text say it."""
    n = ready_days() if days is None else days
    return {
        OVERDUE: "Past its remove-by date.",
        READY: (
            "The same value in every environment — fully off, or fully on (one variant for "
            f"everyone, no targeting rules) — unchanged for at least {n} days."
        ),
        UNUSED: (
            "No reference in the last code scan, or not evaluated for "
            f"{n} days where flagdash serves it (evaluations elsewhere are unknown)."
        ),
        ACTIVE: "None of the above: referenced in code and in use, or not settled yet.",
    }


# --- one flag's row --------------------------------------------------------------------------


@dataclass
class EnvState:
    environment: Environment
    state: ServedFlagState | None
    rollout: Rollout | None = None

    @property
    def label(self) -> str:
        if self.state is not None:
            return self.state.label
        # Served values change when a deployment completes; until then an open one brings it.
        return "being deployed" if self.rollout is not None else "not deployed"

    @property
    def css(self) -> str:
        if self.state is None:
            return "none"
        if self.state.label == "off":
            return "off"
        return "targeted" if not self.state.uniform else "on"

    @property
    def backend_kind(self) -> str:
        return self.environment.backend.kind


@dataclass
class Row:
    flag: Flag
    envs: list[EnvState]
    now: dt.datetime
    today: dt.date
    unchanged_since: dt.datetime | None = None
    last_evaluated: dt.datetime | None = None
    evaluation: str = "unknown"  # "known" | "never" | "unknown"
    evaluation_note: str = ""
    flagd_fetched: dt.datetime | None = None  # last flagd fetch where the flag is served
    references: int | None = None  # None: no scan of this application yet
    status: str = ACTIVE
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def age_days(self) -> int:
        return max(0, (self.now - self.flag.created_at).days)

    @property
    def unchanged_days(self) -> int | None:
        if self.unchanged_since is None:
            return None
        return max(0, (self.now - self.unchanged_since).days)

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]

    @property
    def explanation(self) -> str:
        """Why this status (the hover text): the deciding rule first, then the others."""
        first = self.reasons.get(self.status, "")
        others = [text for code, text in self.reasons.items() if code != self.status]
        if others:
            return first + " Also: " + " ".join(others)
        return first


def _days(delta: dt.timedelta) -> str:
    days = delta.days
    return f"{days} day{'s' if days != 1 else ''}"


def _ago(delta: dt.timedelta) -> str:
    """A short duration for people: days, else hours, else minutes."""
    seconds = max(0, int(delta.total_seconds()))
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return "moments"


def _evaluate(
    row: Row,
    last_by_env: Mapping[int, dt.datetime],
    days: int,
    fetched: Mapping[int, dt.datetime] | None = None,
) -> str | None:
    """Fill the row's evaluation fields; return the unused-by-evaluation reason, if any.

    ``fetched``: per environment, when flagd clients last fetched its flag definitions.
    """
    fetched = fetched or {}
    serving = [e for e in row.envs if e.state is not None]
    local = [e for e in serving if e.backend_kind == BackendKind.LOCAL]
    cloud = [e for e in serving if e.backend_kind != BackendKind.LOCAL]
    known = [last_by_env[e.environment.pk] for e in row.envs if e.environment.pk in last_by_env]
    row.last_evaluated = max(known) if known else None
    if not serving:
        row.evaluation = "known" if known else "unknown"
        row.evaluation_note = "Not deployed to any environment."
        return None
    if not local:
        row.evaluation = "known" if known else "unknown"
        where = ", ".join(f"{e.environment.name} ({BACKEND_NAMES[e.backend_kind]})" for e in cloud)
        row.evaluation_note = f"Served only by {where}: flagdash cannot see its evaluations."
        return None
    by_flagd = [e for e in local if e.environment.pk in fetched]
    if by_flagd:
        row.flagd_fetched = max(fetched[e.environment.pk] for e in by_flagd)
        ages = {e.environment.pk: _ago(row.now - fetched[e.environment.pk]) for e in by_flagd}
        where = ", ".join(
            f"{e.environment.name} (last fetched {ages[e.environment.pk]} ago)" for e in by_flagd
        )
        flagd_note = (
            f"flagd clients fetch the flags of {where} and evaluate them themselves: "
            "flagdash cannot see those evaluations."
        )
        if row.last_evaluated is not None:
            row.evaluation = "known"
            row.evaluation_note = f"Last evaluated over OFREP. {flagd_note}"
        else:
            row.evaluation = "unknown"
            row.evaluation_note = f"No evaluation over OFREP recorded. {flagd_note}"
        return None  # flagd clients may evaluate it: no evidence it is unused
    names = ", ".join(e.environment.name for e in local)
    if row.last_evaluated is not None:
        row.evaluation = "known"
        row.evaluation_note = f"Last evaluated over OFREP (served by flagdash in {names})."
    else:
        row.evaluation = "never"
        row.evaluation_note = f"No evaluation over OFREP recorded (served by flagdash in {names})."
    if cloud:
        return None  # applications may read it from the cloud: no evidence it is unused
    window = dt.timedelta(days=days)
    if row.last_evaluated is not None:
        idle = row.now - row.last_evaluated
        if idle >= window:
            return f"Not evaluated for {_days(idle)} (at least {days})."
        return None
    served_for = row.now - min(e.state.served_since for e in local if e.state is not None)
    if served_for >= window:
        return f"Never evaluated in the {_days(served_for)} flagdash has served it."
    return None


def _decide(row: Row, scan: CodeReferenceScan | None, unused_eval: str | None, days: int) -> None:
    flag, reasons = row.flag, row.reasons
    if flag.remove_by is not None and flag.remove_by < row.today:
        late = (row.today - flag.remove_by).days
        days_ago = f"{late} day{'s' if late != 1 else ''} ago"
        reasons[OVERDUE] = f"Remove-by date {flag.remove_by.isoformat()} passed {days_ago}."
    serving = [e.state for e in row.envs]
    if row.envs and all(s is not None for s in serving):
        uniforms = {s.uniform for s in serving if s is not None}
        settled = len(uniforms) == 1 and "" not in uniforms
        rolling = [e for e in row.envs if e.rollout is not None]
        if settled and not rolling and row.unchanged_since is not None:
            unchanged = row.now - row.unchanged_since
            if unchanged >= dt.timedelta(days=days):
                value = row.envs[0].label
                what = "Off" if value == "off" else f"Serving {value}"
                reasons[READY] = (
                    f"{what} in every environment, unchanged for {_days(unchanged)} "
                    f"(at least {days})."
                )
    unused = []
    if scan is not None and not row.references:
        commit = f" at {scan.short_commit}" if scan.commit else ""
        unused.append(f"No reference in the last code scan ({scan.scanned_at:%Y-%m-%d}{commit}).")
    if unused_eval:
        unused.append(unused_eval)
    if unused:
        reasons[UNUSED] = " ".join(unused)
    for code in (OVERDUE, READY, UNUSED):
        if code in reasons:
            row.status = code
            break
    else:
        row.status = ACTIVE
        refs = (
            "no code scan yet"
            if scan is None
            else f"{row.references} reference{'s' if row.references != 1 else ''} in code"
        )
        if row.evaluation == "known" and row.last_evaluated is not None:
            seen = f"last evaluated {_ago(row.now - row.last_evaluated)} ago"
        else:
            seen = "evaluations unknown" if row.evaluation == "unknown" else "not evaluated yet"
        reasons[ACTIVE] = f"In use or changing: {refs}, {seen}."


@dataclass
class Lifecycle:
    """Every short-term flag of an application with its status (before filtering)."""

    application: Application
    environments: list[Environment]
    rows: list[Row]
    scan: CodeReferenceScan | None
    days: int

    def counts(self, rows: Sequence[Row] | None = None) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for row in self.rows if rows is None else rows:
            counts[row.status] += 1
        return counts


def short_term_flags(
    application: Application,
    *,
    environments: Sequence[Environment] | None = None,
    now: dt.datetime | None = None,
    flags: Sequence[Flag] | None = None,
) -> Lifecycle:
    """Every short-term, non-archived flag of the application with its status.

    A fixed number of queries whatever the number of flags: environments, flags (with owner
    and tags), the served-state refresh (two when nothing new was deployed), served states, open
    deployments, the scan, reference counts, last evaluations and last flagd fetches.
    """
    now = now or timezone.now()
    today = timezone.localdate(now)
    days = ready_days()
    envs = (
        list(environments)
        if environments is not None
        else flag_selectors.environments_of(application)
    )
    if flags is None:
        flags = list(
            Flag.objects.filter(application=application, short_term=True, archived_at=None)
            .select_related("owner")
            .prefetch_related("tags")
            .order_by("key")
        )
    served.refresh(envs, now=now)
    states = served.states_for(envs)
    deployments = flag_selectors.open_deployments(envs)
    scan = CodeReferenceScan.objects.filter(application=application).first()
    ref_counts: dict[str, int] = {}
    if scan is not None:
        ref_counts = dict(
            CodeReference.objects.filter(scan=scan)
            .values("flag_key")
            .annotate(n=Count("id"))
            .order_by()
            .values_list("flag_key", "n")
        )
    keys = [f.key for f in flags]
    last: dict[str, dict[int, dt.datetime]] = {}
    for env_id, key, at in FlagLastEvaluated.objects.filter(
        environment_id__in=[e.pk for e in envs], flag_key__in=keys
    ).values_list("environment_id", "flag_key", "last_evaluated_at"):
        last.setdefault(key, {})[env_id] = at
    fetched = dict(
        EnvironmentFetch.objects.filter(
            environment_id__in=[e.pk for e in envs], kind=FetchKind.FLAGD
        ).values_list("environment_id", "last_at")
    )
    rows = []
    for flag in flags:
        env_states = [
            EnvState(
                env,
                states.get((env.pk, flag.key)),
                flag_selectors.rollout_of(flag, deployments[env.pk]),
            )
            for env in envs
        ]
        row = Row(flag=flag, envs=env_states, now=now, today=today)
        sinces = [e.state.since for e in env_states if e.state is not None]
        row.unchanged_since = max(sinces) if sinces else None
        row.references = ref_counts.get(flag.key, 0) if scan is not None else None
        unused_eval = _evaluate(row, last.get(flag.key, {}), days, fetched)
        _decide(row, scan, unused_eval, days)
        rows.append(row)
    return Lifecycle(application, envs, rows, scan, days)


# --- filters, sorting ------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    status: str = ""
    owner: str = ""
    tag: str = ""
    sort: str = "remove_by"

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filters:
        status = query.get("status", "")
        sort = query.get("sort", "remove_by")
        return cls(
            status=status if status in STATUSES else "",
            owner=query.get("owner", "").strip()[:150],
            tag=query.get("tag", "").strip()[:32],
            sort=sort if sort in SORTS else "remove_by",
        )

    @property
    def active(self) -> bool:
        return bool(self.status or self.owner or self.tag)


def _far(row: Row) -> dt.date:
    return row.flag.remove_by or dt.date.max


def filtered(lifecycle: Lifecycle, filters: Filters) -> tuple[list[Row], dict[str, int]]:
    """(rows matching every filter, sorted; counts per status among rows matching the owner
    and tag filters — so the counts say what each status filter would show)."""
    rows = [
        r
        for r in lifecycle.rows
        if (
            not filters.owner
            or (r.flag.owner is not None and r.flag.owner.username == filters.owner)
        )
        and (not filters.tag or any(t.name == filters.tag for t in r.flag.tags.all()))
    ]
    counts = lifecycle.counts(rows)
    if filters.status:
        rows = [r for r in rows if r.status == filters.status]
    if filters.sort == "remove_by":
        rows.sort(key=lambda r: (_far(r), r.flag.key))
    elif filters.sort == "-remove_by":
        rows.sort(key=lambda r: (r.flag.remove_by is None, -_far(r).toordinal(), r.flag.key))
    elif filters.sort == "age":
        rows.sort(key=lambda r: (r.flag.created_at, r.flag.key))
    elif filters.sort == "-age":
        rows.sort(key=lambda r: (r.flag.created_at, r.flag.key), reverse=True)
    elif filters.sort == "unchanged":
        rows.sort(key=lambda r: (r.unchanged_since is None, r.unchanged_since or r.now, r.flag.key))
    return rows, counts


def filter_choices(application: Application) -> dict[str, Any]:
    """Owners and tags of the application's short-term flags (two queries)."""
    base = Flag.objects.filter(application=application, short_term=True, archived_at=None)
    return {
        "owners": list(
            User.objects.filter(owned_flags__in=base)
            .distinct()
            .order_by("username")
            .values_list("username", flat=True)
        ),
        "tags": list(
            base.filter(tags__isnull=False)
            .values_list("tags__name", flat=True)
            .distinct()
            .order_by("tags__name")
        ),
        "sorts": SORTS,
    }


# --- code references on the flag page ---------------------------------------------------------

REFERENCES_SHOWN = 200


@dataclass
class FileReferences:
    path: str
    lines: list[CodeReference]


@dataclass
class FlagReferences:
    scan: CodeReferenceScan | None
    files: list[FileReferences]
    total: int
    shown: int


def references_of(flag: Flag) -> FlagReferences:
    """The last scan's references to one flag, grouped by file (three queries at most)."""
    scan = CodeReferenceScan.objects.filter(application_id=flag.application_id).first()
    if scan is None:
        return FlagReferences(None, [], 0, 0)
    qs = CodeReference.objects.filter(scan=scan, flag_key=flag.key)
    refs = list(qs.order_by("path", "line")[: REFERENCES_SHOWN + 1])
    total = len(refs) if len(refs) <= REFERENCES_SHOWN else qs.count()
    refs = refs[:REFERENCES_SHOWN]
    files: list[FileReferences] = []
    for ref in refs:
        if not files or files[-1].path != ref.path:
            files.append(FileReferences(ref.path, []))
        files[-1].lines.append(ref)
    return FlagReferences(scan, files, total, len(refs))


# --- where an archived flag is still served ---------------------------------------------------


@dataclass(frozen=True)
class ServedNote:
    environment: Environment
    text: str
    deployment: Deployment | None = None


def archived_but_served(flag: Flag) -> list[ServedNote]:
    """For an archived flag: the environments that still serve it, and why (a fixed number of
    queries: the environments' live versions, the archive's steps, recent rollbacks)."""
    if flag.archived_at is None:
        return []
    envs = list(
        Environment.objects.filter(application_id=flag.application_id)
        .select_related("live_version")
        .defer("live_version__document")
        .order_by("position", "id")
    )
    serving = [
        e for e in envs if e.live_version is not None and flag.key in e.live_version.flag_digests
    ]
    if not serving:
        return []
    cleanup = (
        Cleanup.objects.filter(flags=flag, action=CleanupAction.ARCHIVE)
        .order_by("-created_at", "-id")
        .first()
    )
    steps = (
        {s.environment_id: s for s in cleanup.steps.select_related("deployment")}
        if cleanup is not None
        else {}
    )
    rollbacks: dict[int, Deployment] = {}
    for restore in (
        Deployment.objects.filter(
            environment__in=serving,
            kind=DeploymentKind.RESTORE,
            state=DeploymentState.COMPLETE,
            finished_at__gte=flag.archived_at,
        )
        .select_related("version")
        .order_by("finished_at", "id")
    ):
        rollbacks[restore.environment_id] = restore  # the latest per environment wins
    notes = []
    for env in serving:
        step = steps.get(env.pk)
        rollback = rollbacks.get(env.pk)
        d: Deployment | None = step.deployment if step is not None else None
        if rollback is not None and (d is None or rollback.pk != d.pk):
            notes.append(
                ServedNote(
                    env,
                    f"Archived, but still served in {env.name} since rollback #{rollback.pk} "
                    f"(v{rollback.version.number}).",
                    rollback,
                )
            )
        elif d is not None and d.state in (
            DeploymentState.QUEUED,
            DeploymentState.DEPLOYING,
            DeploymentState.BAKING,
        ):
            notes.append(
                ServedNote(
                    env,
                    f"Still served in {env.name} until deployment #{d.pk} completes "
                    f"({d.get_state_display().lower()}).",
                    d,
                )
            )
        elif d is not None:
            notes.append(
                ServedNote(
                    env,
                    f"Archived, but still served in {env.name}: deployment #{d.pk}, which "
                    f"removes it, is {d.get_state_display().lower()}.",
                    d,
                )
            )
        else:
            notes.append(
                ServedNote(
                    env,
                    f"Archived, but still served in {env.name}: it was archived without a "
                    "deployment that takes it out. Restore it and archive it again to do so.",
                )
            )
    return notes


# --- the archive confirmation -----------------------------------------------------------------


@dataclass
class PlannedChange:
    environment: Environment
    current: str  # what it serves now (live version), or "not deployed"
    removed: bool  # a new version leaves it out
    consequence: str  # what the backend does
    strategy: str
    can_edit: bool
    turns_off: bool  # served on (for someone) now: applications fall back to their default


@dataclass
class FlagPlan:
    flag: Flag
    changes: list[PlannedChange]
    references: int | None
    reference_files: list[str]
    # (environment name, when) of OFREP evaluations within LIFECYCLE_READY_DAYS: applications
    # still ask for the flag, whatever the code scan says.
    evaluated: list[tuple[str, dt.datetime]] = field(default_factory=list)

    @property
    def blocked(self) -> list[str]:
        return [c.environment.name for c in self.changes if c.removed and not c.can_edit]

    @property
    def turns_off_in(self) -> list[str]:
        return [c.environment.name for c in self.changes if c.removed and c.turns_off]


def backend_consequence(environment: Environment, key: str, restore: bool = False) -> str:
    kind = environment.backend.kind
    options = environment.backend.options or {}
    if kind == BackendKind.AWS_APPCONFIG:
        profile = options.get("configuration_profile_id") or options.get("profile_id") or ""
        where = f" (configuration profile {profile})" if profile else ""
        return (
            f"AWS AppConfig: the flag {'comes back into' if restore else 'leaves'} the "
            f"feature-flag document{where}; a new hosted version is deployed."
        )
    if kind == BackendKind.AZURE_APPCONFIG:
        label = options.get("label")
        where = f"label {label}" if label else "no label"
        verb = "is written again" if restore else "is deleted"
        return (
            f"Azure App Configuration: the setting .appconfig.featureflag/{key} ({where}) {verb}."
        )
    if restore:
        return "Built-in store: flagdash serves it over OFREP again."
    return (
        "Built-in store: flagdash stops serving it over OFREP (FLAG_NOT_FOUND: applications "
        "fall back to the default value in their code)."
    )


def archive_plan(
    application: Application, flags: Sequence[Flag], user: Any, *, restore: bool = False
) -> list[FlagPlan]:
    """What archiving (or restoring) these flags would do, per flag and environment."""
    from flagdash.deployments import services as deployment_services
    from flagdash.flags import services as flag_services

    envs = flag_selectors.environments_of(application)
    served.refresh(envs)
    states = served.states_for(envs)
    bases = {}
    for env in envs:
        base = flag_services.deploy_base(env)
        bases[env.pk] = set(documents.load(base.document)["flags"]) if base else set()
    strategies = {env.pk: deployment_services.default_strategy(env).name for env in envs}
    scan = CodeReferenceScan.objects.filter(application=application).first()
    ref_paths: dict[str, list[str]] = {}
    if scan is not None:
        for key, path in CodeReference.objects.filter(
            scan=scan, flag_key__in=[f.key for f in flags]
        ).values_list("flag_key", "path"):
            ref_paths.setdefault(key, []).append(path)
    evaluated: dict[str, list[tuple[str, dt.datetime]]] = {}
    if not restore:
        since = timezone.now() - dt.timedelta(days=ready_days())
        names = {env.pk: env.name for env in envs}
        for env_id, key, at in (
            FlagLastEvaluated.objects.filter(
                environment_id__in=list(names),
                flag_key__in=[f.key for f in flags],
                last_evaluated_at__gte=since,
            )
            .order_by("-last_evaluated_at")
            .values_list("environment_id", "flag_key", "last_evaluated_at")
        ):
            evaluated.setdefault(key, []).append((names[env_id], at))
    plans = []
    restorable: dict[int, set[int]] = {}
    if restore:
        for flag in flags:
            cleanup = (
                Cleanup.objects.filter(flags=flag, action=CleanupAction.ARCHIVE)
                .order_by("-created_at", "-id")
                .first()
            )
            restorable[flag.pk] = (
                {s.environment_id for s in cleanup.steps.all()} if cleanup is not None else set()
            )
    for flag in flags:
        changes = []
        for env in envs:
            state = states.get((env.pk, flag.key))
            if restore:
                removed = env.pk in restorable.get(flag.pk, set()) and flag.key not in bases[env.pk]
            else:
                removed = flag.key in bases[env.pk]
            changes.append(
                PlannedChange(
                    environment=env,
                    current=state.label if state is not None else "not deployed",
                    removed=removed,
                    consequence=backend_consequence(env, flag.key, restore)
                    if removed
                    else (
                        "Not served there: nothing changes." if not restore else "Nothing changes."
                    ),
                    strategy=strategies[env.pk],
                    can_edit=permissions.can_edit_environment(user, env),
                    turns_off=state is not None and state.label != "off",
                )
            )
        refs: int | None = None
        files: list[str] = []
        if scan is not None:
            paths = ref_paths.get(flag.key, [])
            refs = len(paths)
            files = sorted(set(paths))
        plans.append(FlagPlan(flag, changes, refs, files, evaluated.get(flag.key, [])))
    return plans


def flags_by_keys(application: Application, keys: Sequence[str], *, archived: bool) -> list[Flag]:
    """The application's flags with these keys (archived or not), sorted by key."""
    return list(
        Flag.objects.filter(
            application=application, key__in=list(keys)[:500], archived_at__isnull=not archived
        )
        .select_related("owner", "application")
        .order_by("key")
    )

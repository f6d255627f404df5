"""What each environment serves for each flag, and since when, derived from deployments.

An environment serves its live version: the version of its last completed deployment (a
rollback to an earlier version is a completed deployment too). Folding the completed deployments
of an environment in order, and comparing each flag's *served value* (enabled, attribute values,
variants, default variant, rules — not its name, description or remove-by date) with what the
environment served before, tells since when each flag has served what it serves now.

``refresh`` keeps ``ServedFlagState`` up to date incrementally: a cursor per environment
remembers the last deployment folded in, so a page load reads only deployments completed since
(usually none), never the whole history. ``Timeline`` is the fold itself, used by ``refresh``
and by the chart's backfill (``snapshots.py``), which replays history week by week.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from flagdash.core.canonical import canonical_json, sha256_hex
from flagdash.deployments.models import Deployment, DeploymentState
from flagdash.flags import documents
from flagdash.flags.models import ConfigVersion, Environment
from flagdash.lifecycle.models import ServedFlagState, ServedStateCursor


@dataclass(frozen=True)
class Served:
    """One flag's value in one environment's live version."""

    digest: str
    uniform: str  # "" when rules target part of the users
    label: str
    since: dt.datetime
    served_since: dt.datetime


def served_value(entry: dict[str, Any]) -> tuple[str, str, str]:
    """(digest, uniform, label) of one version entry.

    ``uniform`` identifies the value *everyone* gets: "off" for a disabled flag (its off value:
    false, or the default variant of a multi-variant flag), the value with its attribute values
    for an enabled flag without rules; empty for an enabled flag with targeting rules.
    """
    enabled = bool(entry.get("enabled"))
    rules = list(entry.get("rules") or [])
    values = dict(entry.get("attribute_values") or {})
    variants = entry.get("variants")
    default = entry.get("default_variant") or ""
    digest = sha256_hex(
        canonical_json(
            {
                "enabled": enabled,
                "attribute_values": values,
                "variants": variants,
                "default_variant": default,
                "rules": rules,
            }
        )
    )
    if variants is not None:  # multi-variant
        chosen = next((v for v in variants if v.get("name") == default), None)
        value = chosen.get("value") if chosen else None
        label = default or "?"
        everyone: Any = ["variant", default, value, values]
    else:
        label = "on"
        everyone = ["on", values]
    if not enabled:
        return digest, sha256_hex(canonical_json(["off"])), "off"
    if rules:
        return digest, "", f"{label} · {len(rules)} rule{'s' if len(rules) != 1 else ''}"
    return digest, sha256_hex(canonical_json(everyone)), label


class Timeline:
    """Per (environment id, flag key): what is served and since when, folded over versions."""

    def __init__(self, states: dict[tuple[int, str], Served] | None = None) -> None:
        self.states: dict[tuple[int, str], Served] = dict(states or {})

    def apply(self, environment_id: int, document: dict[str, Any] | None, at: dt.datetime) -> None:
        """From ``at`` on, the environment serves ``document`` (None: nothing)."""
        flags = (document or {}).get("flags") or {}
        for key in [k for (env, k) in self.states if env == environment_id and k not in flags]:
            del self.states[(environment_id, key)]
        for key, entry in flags.items():
            digest, uniform, label = served_value(entry)
            old = self.states.get((environment_id, key))
            if old is None:
                self.states[(environment_id, key)] = Served(digest, uniform, label, at, at)
            elif old.digest != digest:
                self.states[(environment_id, key)] = replace(
                    old, digest=digest, uniform=uniform, label=label, since=at
                )
            elif old.label != label:  # same value, clearer label (nothing served changed)
                self.states[(environment_id, key)] = replace(old, label=label)


def completed_deployments(environment_ids: Iterable[int]) -> Any:
    """Completed deployments of these environments in the order they went live."""
    return (
        Deployment.objects.filter(
            environment_id__in=list(environment_ids), state=DeploymentState.COMPLETE
        )
        .exclude(finished_at=None)
        .order_by("finished_at", "id")
    )


def _cursor_filter(cursors: Sequence[ServedStateCursor]) -> Q:
    condition = Q(pk__in=[])
    for c in cursors:
        mine = Q(environment_id=c.environment_id)
        if c.finished_at is not None:
            mine &= Q(finished_at__gt=c.finished_at) | Q(
                finished_at=c.finished_at, id__gt=c.deployment_id or 0
            )
        condition |= mine
    return condition


def refresh(environments: Sequence[Environment], *, now: dt.datetime | None = None) -> None:
    """Bring ``ServedFlagState`` of these environments up to date.

    A fixed number of queries when nothing new completed (the usual page load): the cursors and
    one query for newer deployments. Otherwise it reads each newly deployed version once.
    Concurrent refreshes of an environment are serialised by its cursor row lock.
    """
    if not environments:
        return
    now = now or timezone.now()
    ids = [e.pk for e in environments]
    live = {e.pk: e.live_version_id for e in environments}
    existing = {
        c.environment_id: c for c in ServedStateCursor.objects.filter(environment_id__in=ids)
    }
    missing = [ServedStateCursor(environment_id=i) for i in ids if i not in existing]
    if missing:
        ServedStateCursor.objects.bulk_create(missing, ignore_conflicts=True)
        existing = {
            c.environment_id: c for c in ServedStateCursor.objects.filter(environment_id__in=ids)
        }
    cursors = list(existing.values())
    pending = (
        completed_deployments(ids)
        .filter(_cursor_filter(cursors))
        .values_list("id", "environment_id", "finished_at", "version_id")
    )
    pending_list = list(pending)
    stale = [c for c in cursors if live[c.environment_id] != c.live_version_id]
    if not pending_list and not stale:
        return
    with transaction.atomic():
        locked = {
            c.environment_id: c
            for c in ServedStateCursor.objects.select_for_update().filter(environment_id__in=ids)
        }
        # Someone may have refreshed while we waited for the lock: read again under it.
        pending_list = list(
            completed_deployments(ids)
            .filter(_cursor_filter(list(locked.values())))
            .values_list("id", "environment_id", "finished_at", "version_id")
        )
        changed_envs = {env for _, env, _, _ in pending_list} | {
            c.environment_id for c in locked.values() if live[c.environment_id] != c.live_version_id
        }
        if not changed_envs:
            return
        rows = ServedFlagState.objects.filter(environment_id__in=changed_envs)
        timeline = Timeline(
            {
                (r.environment_id, r.flag_key): Served(
                    r.digest, r.uniform, r.label, r.since, r.served_since
                )
                for r in rows
            }
        )
        before = dict(timeline.states)
        version_ids = {v for _, _, _, v in pending_list}
        docs = {
            pk: documents.load(text)
            for pk, text in ConfigVersion.objects.filter(pk__in=version_ids)
            .values_list("pk", "document")
            .iterator(chunk_size=50)
        }
        for pk, env_id, finished_at, version_id in pending_list:
            timeline.apply(env_id, docs[version_id], finished_at)
            cursor = locked[env_id]
            cursor.finished_at, cursor.deployment_id = finished_at, pk
            cursor.live_version_id = version_id
        for env_id in changed_envs:
            cursor = locked[env_id]
            live_id = live[env_id]
            if cursor.live_version_id != live_id:
                # The live version changed without a completed deployment (the environment's
                # backend was switched and starts empty): serve what it says, from now.
                text = (
                    ConfigVersion.objects.filter(pk=live_id)
                    .values_list("document", flat=True)
                    .first()
                    if live_id is not None
                    else None
                )
                timeline.apply(env_id, documents.load(text) if text else None, now)
                cursor.live_version_id = live[env_id]
        _save(timeline, before, changed_envs)
        ServedStateCursor.objects.bulk_update(
            [locked[e] for e in changed_envs], ["finished_at", "deployment_id", "live_version_id"]
        )


def _save(timeline: Timeline, before: dict[tuple[int, str], Served], envs: Iterable[int]) -> None:
    envs = set(envs)
    gone: dict[int, list[str]] = {}
    for env_id, key in before:
        if env_id in envs and (env_id, key) not in timeline.states:
            gone.setdefault(env_id, []).append(key)
    for env_id, keys in gone.items():  # one DELETE per environment that lost flags
        ServedFlagState.objects.filter(environment_id=env_id, flag_key__in=keys).delete()
    changed = [(k, s) for k, s in timeline.states.items() if k[0] in envs and before.get(k) != s]
    if changed:
        ServedFlagState.objects.bulk_create(
            [
                ServedFlagState(
                    environment_id=env_id,
                    flag_key=key,
                    digest=s.digest,
                    uniform=s.uniform,
                    label=s.label,
                    since=s.since,
                    served_since=s.served_since,
                )
                for (env_id, key), s in changed
            ],
            update_conflicts=True,
            unique_fields=["environment", "flag_key"],
            update_fields=["digest", "uniform", "label", "since", "served_since"],
            batch_size=1000,
        )


def states_for(environments: Sequence[Environment]) -> dict[tuple[int, str], ServedFlagState]:
    """The served state of every flag in these environments (one query)."""
    return {
        (s.environment_id, s.flag_key): s
        for s in ServedFlagState.objects.filter(environment_id__in=[e.pk for e in environments])
    }

"""Writes of the short-term lifecycle: storing a code scan, archiving and restoring flags.

Each public function is one durable transaction that checks the actor's permission, validates,
writes, audits inside the same transaction and leaves side effects (deployment nudges) to
after the commit. ``actor=None`` is a trusted system caller (a management command, the demo).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from flagdash.accounts import permissions
from flagdash.audit.models import Action
from flagdash.audit.services import AuditEntry, audit_record, audit_record_many
from flagdash.core.canonical import canonical_json, sha256_hex
from flagdash.core.errors import field_error
from flagdash.deployments import services as deployment_services
from flagdash.deployments.models import Deployment
from flagdash.flags import documents
from flagdash.flags import services as flag_services
from flagdash.flags.models import Application, ConfigVersion, Environment, Flag, FlagSetting
from flagdash.lifecycle import scanner
from flagdash.lifecycle.models import (
    Cleanup,
    CleanupAction,
    CleanupStep,
    CodeReference,
    CodeReferenceScan,
    ScanSource,
)

COMMIT_PATTERN = re.compile(r"^[0-9a-f]{7,64}$")
MAX_ERRORS = 20
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
EARLIEST_SCAN = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
# What str.splitlines() breaks a line at: a path or an excerpt holding one is refused (422).
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
# Dropped from uploaded paths and excerpts: the other C0 and C1 controls, and the bidi
# embeddings, overrides, isolates and marks that can make a line display in an order other
# than its logical one (Trojan Source, CVE-2021-42574).
STRIPPED_CHARS = re.compile(
    "[\x01-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _check(actor: Any, check: Any, *args: Any) -> None:
    if actor is not None:
        check(actor, *args)


def _actor_name(actor: Any) -> str:
    return actor.get_username() if actor is not None else "flagdash"


# --- code references -------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanUpload:
    """A validated scan, ready to store (from the command or the API)."""

    scanned_at: dt.datetime
    commit: str
    files_scanned: int
    skipped_binary: int
    skipped_large: int
    duration_ms: int
    listing: str
    references: tuple[scanner.Reference, ...]


def _valid_path(path: str) -> str | None:
    """Why a reference's path is refused, or None."""
    if not path:
        return "The path is empty."
    if len(path) > scanner.MAX_PATH_CHARS:
        return f"At most {scanner.MAX_PATH_CHARS} characters (this is {len(path)})."
    if "\x00" in path or not LINE_BREAKS.isdisjoint(path):
        return "A path is one line without NUL characters."
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", path):
        return "Give the path relative to the scanned directory (not absolute)."
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "The path has an empty, “.” or “..” part."
    return None


def _strip_controls(text: str) -> str:
    """``text`` without bidi controls and control characters (tabs become spaces). NUL and
    line breaks are left in, for the checks that refuse them."""
    return STRIPPED_CHARS.sub("", text.replace("\t", " "))


def clean_scan_upload(
    application: Application,
    *,
    references: Sequence[Mapping[str, Any]],
    files_scanned: int,
    commit: str | None = None,
    scanned_at: dt.datetime | None = None,
    duration_ms: int = 0,
    skipped_binary: int = 0,
    skipped_large: int = 0,
    listing: str = "",
    now: dt.datetime | None = None,
) -> ScanUpload:
    """Check what a scan says against the application (raises ValidationError: nothing is
    stored). Types are the caller's business (the API answers 400 for those); this judges
    values: every flag must be one of the application's (archived ones count), paths relative,
    lines from 1, excerpts one line of at most 200 characters, no reference twice."""
    now = now or timezone.now()
    errors: dict[str, list[ValidationError]] = {}

    def error(field: str, message: str, code: str) -> None:
        if sum(len(v) for v in errors.values()) < MAX_ERRORS:
            errors.setdefault(field, []).append(ValidationError(message, code=code))

    commit = (commit or "").strip().lower()
    if commit and not COMMIT_PATTERN.match(commit):
        error("commit", "A commit is 7 to 64 hexadecimal characters (a git SHA).", "invalid")
    if scanned_at is not None and scanned_at > now + FUTURE_TOLERANCE:
        error("scanned_at", "The scan cannot have run in the future.", "in_future")
    elif scanned_at is not None and scanned_at < EARLIEST_SCAN:
        error("scanned_at", "The scan cannot have run before 2000-01-01.", "too_early")
    for name, value in (
        ("files_scanned", files_scanned),
        ("duration_ms", duration_ms),
        ("skipped_binary", skipped_binary),
        ("skipped_large", skipped_large),
    ):
        if value < 0 or value > 2**31 - 1:
            error(name, "A whole number from 0 to 2147483647.", "out_of_range")
    if listing not in ("", "git", "walk"):
        error("listing", "One of “git”, “walk” or empty.", "invalid_choice")
    if len(references) > scanner.MAX_REFERENCES:
        error(
            "references",
            f"At most {scanner.MAX_REFERENCES:,} references per scan (got {len(references):,}).",
            "too_many",
        )
    known = set(Flag.objects.filter(application=application).values_list("key", flat=True))
    seen: set[tuple[str, str, int]] = set()
    paths: set[str] = set()
    cleaned: list[scanner.Reference] = []
    for i, ref in enumerate(references[: scanner.MAX_REFERENCES]):
        where = f"references[{i}]"
        flag, line = ref["flag"], ref["line"]
        # Bidi controls and other invisible control characters are dropped before anything
        # is judged or stored, so no path or excerpt can reorder what is shown around it
        # (Trojan Source); line breaks are refused below (a reference is one line).
        path = _strip_controls(ref["path"])
        excerpt = _strip_controls(ref.get("excerpt") or "")
        bad = False
        if flag not in known:
            error(f"{where}.flag", f"{application.name} has no flag “{flag[:64]}”.", "unknown_flag")
            bad = True
        problem = _valid_path(path)
        if problem:
            error(f"{where}.path", problem, "invalid_path")
            bad = True
        if line < 1 or line > 2**31 - 1:
            error(f"{where}.line", "Lines are numbered from 1.", "out_of_range")
            bad = True
        if len(excerpt) > scanner.MAX_EXCERPT_CHARS:
            error(
                f"{where}.excerpt",
                f"At most {scanner.MAX_EXCERPT_CHARS} characters (this is {len(excerpt)}).",
                "too_long",
            )
            bad = True
        elif "\x00" in excerpt or not LINE_BREAKS.isdisjoint(excerpt):
            error(f"{where}.excerpt", "An excerpt is one line without NUL characters.", "invalid")
            bad = True
        if bad:
            continue
        if (flag, path, line) in seen:
            error(where, f"{flag} at {path}:{line} is listed twice.", "duplicate")
            continue
        seen.add((flag, path, line))
        paths.add(path)
        cleaned.append(scanner.Reference(path=path, line=line, flag=flag, excerpt=excerpt))
    if not errors and files_scanned < len(paths):
        error(
            "files_scanned",
            f"The references are in {len(paths)} files but files_scanned says {files_scanned}.",
            "inconsistent",
        )
    if errors:
        raise ValidationError(errors)
    return ScanUpload(
        scanned_at=scanned_at or now,
        commit=commit,
        files_scanned=files_scanned,
        skipped_binary=skipped_binary,
        skipped_large=skipped_large,
        duration_ms=duration_ms,
        listing=listing,
        references=tuple(sorted(cleaned)),
    )


def _scan_summary(scan: CodeReferenceScan | None) -> dict[str, Any] | None:
    if scan is None:
        return None
    return {
        "scanned_at": scan.scanned_at.isoformat(),
        "commit": scan.commit,
        "files_scanned": scan.files_scanned,
        "references": scan.reference_count,
        "source": scan.source,
    }


@transaction.atomic(durable=True)
def code_scan_store(
    *,
    actor: Any,
    application: Application,
    upload: ScanUpload,
    source: str,
    uploaded_by_name: str = "",
) -> CodeReferenceScan:
    """Replace the application's code references with this scan's (audited)."""
    _check(actor, permissions.require_edit_flags)
    if source not in ScanSource.values:
        raise ValueError(f"unknown scan source {source!r}")
    app = Application.objects.select_for_update().get(pk=application.pk)
    previous = CodeReferenceScan.objects.filter(application=app).first()
    before = _scan_summary(previous)
    if previous is not None:
        CodeReference.objects.filter(scan=previous).delete()
        previous.delete()
    scan = CodeReferenceScan.objects.create(
        application=app,
        scanned_at=upload.scanned_at,
        commit=upload.commit,
        files_scanned=upload.files_scanned,
        skipped_binary=upload.skipped_binary,
        skipped_large=upload.skipped_large,
        duration_ms=upload.duration_ms,
        listing=upload.listing,
        source=source,
        uploaded_by=actor,
        uploaded_by_name=(uploaded_by_name or _actor_name(actor))[:200],
        reference_count=len(upload.references),
    )
    CodeReference.objects.bulk_create(
        (
            CodeReference(scan=scan, flag_key=r.flag, path=r.path, line=r.line, excerpt=r.excerpt)
            for r in upload.references
        ),
        batch_size=2000,
    )
    per_flag: dict[str, int] = {}
    for r in upload.references:
        per_flag[r.flag] = per_flag.get(r.flag, 0) + 1
    audit_record(
        actor=actor,
        actor_name=None if actor is not None else scan.uploaded_by_name,
        action=Action.CODE_SCAN_UPLOADED,
        target_type="code_scan",
        target_id=scan.pk,
        target_repr=f"{app.key} code references",
        application=app,
        before=before,
        after={**(_scan_summary(scan) or {}), "flags": dict(sorted(per_flag.items()))},
    )
    return scan


# --- archive and restore ---------------------------------------------------------------------


@dataclass(frozen=True)
class CleanupResult:
    cleanup: Cleanup
    flags: list[Flag]
    deployments: list[Deployment]


def _lock_environments(application: Application) -> list[Environment]:
    """Every environment of the application, locked in id order (no deadlock between two
    cleanups), then returned in page order."""
    locked = [
        flag_services.lock_environment(env) for env in application.environments.order_by("id")
    ]
    return sorted(locked, key=lambda e: (e.position, e.pk))


def _lock_flags(application: Application, flags: Sequence[Flag]) -> list[Flag]:
    if not flags:
        raise field_error("flags", "Choose at least one flag.", "required")
    locked = list(
        Flag.objects.select_for_update(of=("self",))
        .select_related("application", "owner")
        .prefetch_related("tags")  # for the audit snapshots, in one query
        .filter(pk__in={f.pk for f in flags})
        .order_by("pk")
    )
    for flag in locked:
        if flag.application_id != application.pk:
            raise field_error(
                "flags", f"{flag.key} is not a flag of {application.name}.", "invalid"
            )
    return sorted(locked, key=lambda f: f.key)


def _protected_environments_using(
    flags: Sequence[Flag], environments: Sequence[Environment]
) -> dict[int, list[Environment]]:
    """Per flag id, the protected environments where it is on or in the latest saved version
    (``flag_services.protected_environments_using`` for many flags at once: one query for
    the settings and one per protected environment, however many flags)."""
    protected = [env for env in environments if env.protected]
    if not protected:
        return {}
    keys = {flag.pk: flag.key for flag in flags}
    in_latest: dict[int, set[str]] = {}
    for env in protected:
        latest = flag_services.latest_version(env)
        in_latest[env.pk] = set(documents.load(latest.document)["flags"]) if latest else set()
    settings = FlagSetting.objects.filter(flag__in=flags, environment__in=protected)
    using = {
        (flag_id, env_id)
        for flag_id, env_id, enabled in settings.values_list("flag_id", "environment_id", "enabled")
        if enabled or keys[flag_id] in in_latest[env_id]
    }
    found: dict[int, list[Environment]] = {}
    for flag in flags:
        for env in protected:
            if (flag.pk, env.pk) in using:
                found.setdefault(flag.pk, []).append(env)
    return found


def _cleanup_record(
    actor: Any, application: Application, action: str, flags: list[Flag], keys: list[str]
) -> Cleanup:
    """The Cleanup row of one archive or restore, linked to its flags."""
    cleanup = Cleanup.objects.create(
        application=application,
        action=action,
        flag_keys=keys,
        actor=actor,
        actor_name=_actor_name(actor),
    )
    cleanup.flags.set(flags)
    return cleanup


def _mark_archived(actor: Any, flags: Sequence[Flag], *, archived: bool) -> None:
    """``flag_services.mark_archived`` for many flags: one UPDATE and one batch of audit
    events. The caller has locked the flags and checked their state and permissions."""
    before = {flag.pk: flag_services.flag_snapshot(flag) for flag in flags}
    now = timezone.now()
    Flag.objects.filter(pk__in=[f.pk for f in flags]).update(
        archived_at=now if archived else None, updated_at=now
    )
    for flag in flags:
        flag.archived_at = now if archived else None
        flag.updated_at = now
    audit_record_many(
        actor=actor,
        entries=[
            AuditEntry(
                action=Action.FLAG_ARCHIVED if archived else Action.FLAG_RESTORED,
                target_type="flag",
                target_id=flag.pk,
                target_repr=f"{flag.application.key}/{flag.key}",
                application=flag.application,
                flag=flag,
                before=before[flag.pk],
                after=flag_services.flag_snapshot(flag),
            )
            for flag in flags
        ],
    )


def _base_document(environment: Environment) -> tuple[ConfigVersion | None, dict[str, Any]]:
    base = flag_services.deploy_base(environment)
    document = documents.load(base.document) if base else documents.empty_document(environment)
    return base, document


def _version_for(
    actor: Any, environment: Environment, document: dict[str, Any], message: str
) -> ConfigVersion:
    """Save ``document`` as the environment's next version (or reuse the latest saved one if
    it is exactly that, as a toggle does)."""
    latest = flag_services.latest_version(environment)
    if latest is not None and latest.sha256 == sha256_hex(canonical_json(document)):
        return latest
    return flag_services.save_version(actor, environment, document, message, latest)


def _names(keys: Sequence[str]) -> str:
    return ", ".join(keys) if len(keys) <= 3 else f"{', '.join(keys[:3])} and {len(keys) - 3} more"


@transaction.atomic(durable=True)
def flags_archive(*, actor: Any, application: Application, flags: Sequence[Flag]) -> CleanupResult:
    """Archive flags and take them out of every environment that serves them.

    For each environment whose next served version (``deploy_base``: what it will serve once
    its open deployments have run) holds any of the flags, a version without them is saved and
    deployed with the environment's default strategy; unsaved edits of other flags are not
    shipped. Editors may do it; where a protected environment serves or uses a flag, admins
    only. All-or-nothing: one refused flag or environment and nothing changes.
    """
    _check(actor, permissions.require_edit_flags)
    environments = _lock_environments(application)
    locked = _lock_flags(application, flags)
    already = [f.key for f in locked if f.archived_at is not None]
    if already:
        raise field_error("flags", f"Already archived: {', '.join(already)}.", "no_change")
    keys = [f.key for f in locked]
    plans: list[tuple[Environment, ConfigVersion | None, dict[str, Any], list[str]]] = []
    for env in environments:
        base, document = _base_document(env)
        present = [k for k in keys if k in document["flags"]]
        if present:
            plans.append((env, base, document, present))
    if actor is not None:
        blocked: dict[str, list[str]] = {}
        for env, _, _, present in plans:
            if not permissions.can_edit_environment(actor, env):
                for key in present:
                    blocked.setdefault(key, []).append(env.name)
        using = _protected_environments_using(locked, environments)
        for flag in locked:
            for env in using.get(flag.pk, []):
                if not permissions.can_admin(actor) and env.name not in blocked.get(flag.key, []):
                    blocked.setdefault(flag.key, []).append(env.name)
        if blocked:
            where = "; ".join(f"{k} in {', '.join(v)}" for k, v in sorted(blocked.items()))
            raise PermissionDenied(
                f"Only admins can archive a flag live in a protected environment ({where})."
            )
    _mark_archived(actor, locked, archived=True)
    cleanup = _cleanup_record(actor, application, CleanupAction.ARCHIVE, locked, keys)
    deployments = []
    message = f"Archive {_names(keys)}"
    for env, base, document, present in plans:
        for key in present:
            del document["flags"][key]
        version = _version_for(actor, env, document, message)
        deployment = deployment_services.enqueue(
            actor=actor, environment=env, version=version, message=message
        )
        CleanupStep.objects.create(
            cleanup=cleanup, environment=env, base_version=base, version=version,
            deployment=deployment,
        )  # fmt: skip
        deployments.append(deployment)
    return CleanupResult(cleanup, locked, deployments)


def _last_archive_steps(flags: Sequence[Flag]) -> dict[int, list[CleanupStep]]:
    """Per flag id, the steps of the last cleanup that archived it (two queries in all)."""
    links = Cleanup.flags.through.objects.filter(
        flag__in=flags, cleanup__action=CleanupAction.ARCHIVE
    ).order_by("flag_id", "-cleanup__created_at", "-cleanup_id")
    last: dict[int, int] = {}
    for flag_id, cleanup_id in links.values_list("flag_id", "cleanup_id"):
        last.setdefault(flag_id, cleanup_id)
    steps: dict[int, list[CleanupStep]] = {}
    for step in CleanupStep.objects.filter(cleanup_id__in=set(last.values())).select_related(
        "base_version"
    ):
        steps.setdefault(step.cleanup_id, []).append(step)
    return {flag_id: steps.get(cleanup_id, []) for flag_id, cleanup_id in last.items()}


@transaction.atomic(durable=True)
def flags_restore(*, actor: Any, application: Application, flags: Sequence[Flag]) -> CleanupResult:
    """Bring archived flags back: to the list, and to every environment their archive took
    them out of, with the values those environments were going to serve then.

    Environments that serve a flag again already (a rollback of the archive brought it back)
    are left alone. Needs the same permissions as archiving.
    """
    _check(actor, permissions.require_edit_flags)
    environments = _lock_environments(application)
    locked = _lock_flags(application, flags)
    active = [f.key for f in locked if f.archived_at is None]
    if active:
        raise field_error("flags", f"Not archived: {', '.join(active)}.", "no_change")
    by_env = {env.pk: env for env in environments}
    entries: dict[int, dict[str, dict[str, Any]]] = {}  # env id → key → entry to bring back
    loaded: dict[int, dict[str, Any]] = {}  # version id → its flags
    archive_steps = _last_archive_steps(locked)
    for flag in locked:
        for step in archive_steps.get(flag.pk, []):
            base = step.base_version
            if base is None or step.environment_id not in by_env:
                continue
            if base.pk not in loaded:
                loaded[base.pk] = documents.load(base.document)["flags"]
            entry = loaded[base.pk].get(flag.key)
            if entry is not None:
                entries.setdefault(step.environment_id, {})[flag.key] = entry
    plans = []
    for env in environments:
        wanted = entries.get(env.pk)
        if not wanted:
            continue
        base, document = _base_document(env)
        missing = {k: e for k, e in wanted.items() if k not in document["flags"]}
        if missing:
            plans.append((env, base, document, missing))
    if actor is not None:
        refused = [
            env.name for env, _, _, _ in plans if not permissions.can_edit_environment(actor, env)
        ]
        if refused:
            raise PermissionDenied(
                f"Restoring brings the flag back to {', '.join(refused)} (protected): only admins "
                "can do that."
            )
    _mark_archived(actor, locked, archived=False)
    keys = [f.key for f in locked]
    cleanup = _cleanup_record(actor, application, CleanupAction.RESTORE, locked, keys)
    deployments = []
    message = f"Restore {_names(keys)}"
    for env, base, document, missing in plans:
        document["flags"].update(missing)
        document["flags"] = dict(sorted(document["flags"].items()))
        version = _version_for(actor, env, document, message)
        deployment = deployment_services.enqueue(
            actor=actor, environment=env, version=version, message=message
        )
        CleanupStep.objects.create(
            cleanup=cleanup, environment=env, base_version=base, version=version,
            deployment=deployment,
        )  # fmt: skip
        deployments.append(deployment)
    return CleanupResult(cleanup, locked, deployments)

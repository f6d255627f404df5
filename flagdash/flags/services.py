"""Every write to applications, environments, flags, settings and versions.

Each public function is one durable transaction: it checks the actor's permission, validates,
writes, and records the audit event inside the same transaction. ``actor=None`` means a trusted
system caller (a management command or the demo seeder); web and API callers always pass the user.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from flagdash.accounts import permissions
from flagdash.audit.models import Action, AuditEvent
from flagdash.audit.services import audit_record
from flagdash.backends.models import BackendConnection, BackendKind
from flagdash.core.canonical import canonical_json, sha256_hex
from flagdash.core.diff import Change, diff
from flagdash.core.errors import field_error
from flagdash.deployments import services as deployment_services
from flagdash.deployments.models import Deployment, DeploymentState
from flagdash.evaluation import rules as targeting
from flagdash.evaluation.rules import BOOLEAN_VARIANTS
from flagdash.flags import documents, validation
from flagdash.flags.models import (
    Application,
    ConfigVersion,
    Environment,
    Flag,
    FlagAttribute,
    FlagKind,
    FlagSetting,
    Tag,
    ValueType,
    attribute_name_validator,
    key_validator,
    tag_validator,
)

User = get_user_model()
MAX_TAGS = 20


class _Unset:
    """A field the caller did not send (PATCH): keep the stored value, merged under the lock."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


# --- errors ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeSince:
    """One save that happened after the revision a user was editing."""

    actor_name: str
    occurred_at: dt.datetime
    revision: int | None
    changes: list[Change]


@dataclass
class RevisionConflict(Exception):
    """Someone saved the setting after the revision the caller started from."""

    setting: FlagSetting
    expected_revision: int
    changes_since: list[ChangeSince] = field(default_factory=list)

    def __str__(self) -> str:
        who = sorted({c.actor_name or "someone" for c in self.changes_since}) or ["someone"]
        return (
            f"{', '.join(who)} changed {self.setting.flag.key} in {self.setting.environment.name} "
            f"since you opened it (revision {self.expected_revision} → {self.setting.revision}). "
            "Nothing was saved: review their change and save again."
        )

    @property
    def code(self) -> str:
        return "revision_conflict"


# --- helpers ---------------------------------------------------------------------------------


def _check(actor: Any, check: Callable[..., None], *args: Any) -> None:
    if actor is not None:
        check(actor, *args)


def _validate_key(key: str, field_name: str = "key") -> None:
    try:
        key_validator(key)
    except ValidationError as exc:
        raise ValidationError({field_name: exc}) from exc


def _clean_text(value: Any, field_name: str, *, limit: int, required: bool = False) -> str:
    if value is not None and not isinstance(value, str):
        raise field_error(field_name, "Must be text.", "wrong_type")
    value = (value or "").strip()
    if required and not value:
        raise field_error(field_name, "This field is required.", "required")
    if len(value) > limit:
        raise field_error(
            field_name, f"At most {limit} characters (this is {len(value)}).", "too_long"
        )
    if "\x00" in value:
        raise field_error(field_name, "Contains a NUL character.", "invalid")
    return value


def _clean_name(value: str, field_name: str = "name", limit: int = 64) -> str:
    value = _clean_text(value, field_name, limit=limit, required=True)
    if "\n" in value or "\r" in value:
        raise field_error(field_name, "A name is a single line.", "invalid")
    return value


def flag_snapshot(flag: Flag) -> dict[str, Any]:
    return {
        "key": flag.key,
        "name": flag.name,
        "description": flag.description,
        "kind": flag.kind,
        "value_type": flag.value_type,
        "short_term": flag.short_term,
        "owner": flag.owner.get_username() if flag.owner_id and flag.owner else None,
        "remove_by": flag.remove_by.isoformat() if flag.remove_by else None,
        "tags": sorted(t.name for t in flag.tags.all()),
        "archived": flag.archived_at is not None,
    }


def setting_snapshot(setting: FlagSetting) -> dict[str, Any]:
    snapshot: dict[str, Any] = {
        "enabled": setting.enabled,
        "attribute_values": dict(setting.attribute_values),
        "revision": setting.revision,
    }
    if setting.flag.is_multivariant:
        snapshot["variants"] = list(setting.variants)
        snapshot["default_variant"] = setting.default_variant
    if setting.rules:
        snapshot["rules"] = list(setting.rules)
    return snapshot


def attribute_snapshot(attr: FlagAttribute) -> dict[str, Any]:
    return {"name": attr.name, **documents.attribute_definition(attr)}


def builtin_backend() -> BackendConnection:
    backend, _ = BackendConnection.objects.get_or_create(
        name="Built-in", defaults={"kind": BackendKind.LOCAL}
    )
    return backend


def _tags(application: Application, names: Iterable[str]) -> list[Tag]:
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise field_error("tags", "Tags are a list of names.", "wrong_type")
    cleaned = sorted({n.strip().lower() for n in names if n and n.strip()})
    if len(cleaned) > MAX_TAGS:
        raise field_error("tags", f"At most {MAX_TAGS} tags.", "too_many")
    for name in cleaned:
        try:
            tag_validator(name)
        except ValidationError as exc:
            raise field_error("tags", f"“{name}”: {exc.messages[0]}", "invalid_tag") from exc
    existing = {t.name: t for t in Tag.objects.filter(application=application, name__in=cleaned)}
    missing = [Tag(application=application, name=n) for n in cleaned if n not in existing]
    if missing:
        Tag.objects.bulk_create(missing, ignore_conflicts=True)
        existing = {
            t.name: t for t in Tag.objects.filter(application=application, name__in=cleaned)
        }
    return [existing[n] for n in cleaned]


def _same_owner(flag: Flag, owner: Any) -> bool:
    """Whether ``owner`` names the flag's current owner (who may have been deactivated since)."""
    if flag.owner_id is None or flag.owner is None:
        return False
    if isinstance(owner, User):
        return owner.pk == flag.owner_id
    return isinstance(owner, str) and owner == flag.owner.get_username()


def _owner(owner: Any) -> Any:
    if owner is None or owner == "":
        return None
    if isinstance(owner, User):
        return owner
    if not isinstance(owner, str) or "\x00" in owner or len(owner) > 150:
        raise field_error("owner", "Give the owner's username.", "wrong_type")
    found = User.objects.filter(username=owner, is_active=True).first()
    if found is None:
        raise field_error("owner", f"No active user named “{owner}”.", "unknown_user")
    return found


def _default_variants(value_type: str) -> tuple[list[dict[str, Any]], str]:
    defaults: dict[str, list[dict[str, Any]]] = {
        ValueType.STRING: [
            {"name": "control", "value": "control"},
            {"name": "treatment", "value": "treatment"},
        ],
        ValueType.INTEGER: [{"name": "zero", "value": 0}, {"name": "one", "value": 1}],
        ValueType.FLOAT: [{"name": "zero", "value": 0.0}, {"name": "one", "value": 1.0}],
        ValueType.OBJECT: [{"name": "empty", "value": {}}],
    }
    variants = defaults[value_type]
    return variants, variants[0]["name"]


# --- applications and environments ----------------------------------------------------------


@transaction.atomic(durable=True)
def application_create(*, actor: Any, key: str, name: str, description: str = "") -> Application:
    _check(actor, permissions.require_admin)
    _validate_key(key)
    name = _clean_name(name, limit=100)
    description = _clean_text(description, "description", limit=1024)
    if Application.objects.filter(key=key).exists():
        raise field_error("key", f"An application with key “{key}” already exists.", "duplicate")
    try:
        with transaction.atomic():
            app = Application.objects.create(key=key, name=name, description=description)
    except IntegrityError as exc:
        raise field_error(
            "key", f"An application with key “{key}” already exists.", "duplicate"
        ) from exc
    audit_record(
        actor=actor,
        action=Action.APPLICATION_CREATED,
        target_type="application",
        target_id=app.pk,
        target_repr=app.key,
        application=app,
        after={"key": key, "name": name, "description": description},
    )
    return app


def _environment_snapshot(env: Environment) -> dict[str, Any]:
    return {
        "key": env.key,
        "name": env.name,
        "protected": env.protected,
        "position": env.position,
        "backend": env.backend.name,
        "default_strategy": env.default_strategy.name if env.default_strategy else None,
    }


@transaction.atomic(durable=True)
def environment_create(
    *,
    actor: Any,
    application: Application,
    key: str,
    name: str,
    protected: bool = False,
    backend: BackendConnection | None = None,
) -> Environment:
    _check(actor, permissions.require_admin)
    _validate_key(key)
    name = _clean_name(name)
    if Environment.objects.filter(application=application, key=key).exists():
        raise field_error(
            "key", f"{application.name} already has an environment “{key}”.", "duplicate"
        )
    position = (
        Environment.objects.filter(application=application).aggregate(m=Max("position"))["m"] or 0
    ) + 1
    try:
        with transaction.atomic():
            env = Environment.objects.create(
                application=application,
                key=key,
                name=name,
                protected=protected,
                position=position,
                backend=backend or builtin_backend(),
                default_strategy=deployment_services.strategy_by_name(
                    deployment_services.DEFAULT_STRATEGY
                ),
            )
    except IntegrityError as exc:
        raise field_error(
            "key", f"{application.name} already has an environment “{key}”.", "duplicate"
        ) from exc
    flags = list(Flag.objects.filter(application=application))
    FlagSetting.objects.bulk_create(
        [
            FlagSetting(
                flag=f,
                environment=env,
                **_initial_variants(f),
            )
            for f in flags
        ]
    )
    audit_record(
        actor=actor,
        action=Action.ENVIRONMENT_CREATED,
        target_type="environment",
        target_id=env.pk,
        target_repr=f"{application.key}/{env.key}",
        application=application,
        environment=env,
        after=_environment_snapshot(env),
    )
    # Version 1 is the environment's starting point: every flag, all off.
    save_version(actor, env, documents.working_document(env), "Environment created", None)
    return env


def _initial_variants(flag: Flag) -> dict[str, Any]:
    """New settings of a multi-variant flag copy the variants of its first environment."""
    if not flag.is_multivariant:
        return {}
    first = FlagSetting.objects.filter(flag=flag).order_by("environment__position").first()
    if first is not None:
        return {"variants": first.variants, "default_variant": first.default_variant}
    variants, default = _default_variants(flag.value_type)
    return {"variants": variants, "default_variant": default}


@transaction.atomic(durable=True)
def environment_update(
    *,
    actor: Any,
    environment: Environment,
    name: str,
    protected: bool,
    default_strategy: Any = UNSET,
) -> Environment:
    _check(actor, permissions.require_admin)
    env = (
        Environment.objects.select_for_update(of=("self",))
        .select_related("backend", "default_strategy", "application")
        .get(pk=environment.pk)
    )
    before = _environment_snapshot(env)
    env.name = _clean_name(name)
    env.protected = bool(protected)
    if default_strategy is not UNSET:
        if default_strategy is None:
            raise field_error("default_strategy", "Choose a default strategy.", "required")
        env.default_strategy = default_strategy
    env.save(update_fields=["name", "protected", "default_strategy"])
    after = _environment_snapshot(env)
    if before != after:
        audit_record(
            actor=actor,
            action=Action.ENVIRONMENT_UPDATED,
            target_type="environment",
            target_id=env.pk,
            target_repr=f"{env.application.key}/{env.key}",
            application=env.application_id,
            environment=env,
            before=before,
            after=after,
        )
    return env


# --- flags -----------------------------------------------------------------------------------


def _refuse_if_archived(flag: Flag, field_name: str = "archived") -> None:
    if flag.archived_at is not None:
        raise field_error(
            field_name, f"{flag.key} is archived and read-only; restore it first.", "archived"
        )


def protected_environments_using(flag: Flag) -> list[Environment]:
    """Protected environments where the flag is on, or is in the latest saved version."""
    found = []
    settings = FlagSetting.objects.filter(flag=flag, environment__protected=True).select_related(
        "environment"
    )
    for setting in settings:
        latest = latest_version(setting.environment)
        in_version = latest is not None and flag.key in documents.load(latest.document)["flags"]
        if setting.enabled or in_version:
            found.append(setting.environment)
    return found


@transaction.atomic(durable=True)
def flag_create(
    *,
    actor: Any,
    application: Application,
    key: str,
    name: str,
    description: str = "",
    kind: str = FlagKind.BOOLEAN,
    value_type: str | None = None,
    short_term: bool = False,
    owner: Any = None,
    remove_by: dt.date | None = None,
    tags: Sequence[str] = (),
    variants: list[dict[str, Any]] | None = None,
    default_variant: str = "",
) -> Flag:
    """Create a flag, disabled in every environment of its application."""
    _check(actor, permissions.require_edit_flags)
    _validate_key(key)
    errors: dict[str, ValidationError] = {}
    name = _clean_name(name)
    description = _clean_text(description, "description", limit=1024)
    if kind not in FlagKind.values:
        errors["kind"] = ValidationError("Choose boolean or multi-variant.", code="invalid_choice")
    if kind == FlagKind.BOOLEAN:
        value_type = ValueType.BOOLEAN
    elif value_type is None or value_type not in (
        ValueType.STRING,
        ValueType.INTEGER,
        ValueType.FLOAT,
        ValueType.OBJECT,
    ):
        errors["value_type"] = ValidationError(
            "A multi-variant flag serves strings, integers, floats or JSON objects.",
            code="invalid_choice",
        )
    if errors or value_type is None:
        raise ValidationError(errors)
    if kind == FlagKind.MULTIVARIANT:
        if variants is None:
            variants, default_variant = _default_variants(value_type)
        first = variants[0] if isinstance(variants, list) and variants else None
        fallback = first.get("name", "") if isinstance(first, Mapping) else ""
        variants, default_variant = validation.validate_variants(
            value_type, variants, default_variant or fallback
        )
    if Flag.objects.filter(application=application, key=key).exists():
        raise field_error(
            "key", f"A flag with key “{key}” already exists in {application.name}.", "duplicate"
        )
    owner_user = _owner(owner)
    tag_objs = _tags(application, tags)
    try:
        with transaction.atomic():
            flag = Flag.objects.create(
                application=application,
                key=key,
                name=name,
                description=description,
                kind=kind,
                value_type=value_type,
                short_term=short_term,
                owner=owner_user,
                remove_by=remove_by,
            )
    except IntegrityError as exc:
        raise field_error(
            "key", f"A flag with key “{key}” already exists in {application.name}.", "duplicate"
        ) from exc
    flag.tags.set(tag_objs)
    extra = (
        {"variants": variants, "default_variant": default_variant}
        if kind == FlagKind.MULTIVARIANT
        else {}
    )
    FlagSetting.objects.bulk_create(
        [
            FlagSetting(flag=flag, environment=env, updated_by=actor if actor else None, **extra)
            for env in application.environments.all()
        ]
    )
    audit_record(
        actor=actor,
        action=Action.FLAG_CREATED,
        target_type="flag",
        target_id=flag.pk,
        target_repr=f"{application.key}/{flag.key}",
        application=application,
        flag=flag,
        after=flag_snapshot(flag),
    )
    return flag


@transaction.atomic(durable=True)
def flag_update(
    *,
    actor: Any,
    flag: Flag,
    name: str = UNSET,
    description: str = UNSET,
    short_term: bool = UNSET,
    owner: Any = UNSET,
    remove_by: dt.date | None = UNSET,
    tags: Sequence[str] = UNSET,
) -> Flag:
    """Edit a flag's definition (its key and kind never change); UNSET fields stay as they are."""
    _check(actor, permissions.require_edit_flags)
    flag = (
        Flag.objects.select_for_update(of=("self",))
        .select_related("application", "owner")
        .get(pk=flag.pk)
    )
    _refuse_if_archived(flag)
    before = flag_snapshot(flag)
    if name is not UNSET:
        flag.name = _clean_name(name)
    if description is not UNSET:
        flag.description = _clean_text(description, "description", limit=1024)
    if short_term is not UNSET:
        flag.short_term = bool(short_term)
    if owner is not UNSET and not _same_owner(flag, owner):
        flag.owner = _owner(owner)  # a new owner must be active; a departed one is kept as is
    if remove_by is not UNSET:
        if remove_by is not None and not isinstance(remove_by, dt.date):
            raise field_error("remove_by", "Must be a date (YYYY-MM-DD).", "wrong_type")
        flag.remove_by = remove_by
    flag.save(
        update_fields=["name", "description", "short_term", "owner", "remove_by", "updated_at"]
    )
    if tags is not UNSET:
        flag.tags.set(_tags(flag.application, tags))
    after = flag_snapshot(flag)
    if before != after:
        audit_record(
            actor=actor,
            action=Action.FLAG_UPDATED,
            target_type="flag",
            target_id=flag.pk,
            target_repr=f"{flag.application.key}/{flag.key}",
            application=flag.application,
            flag=flag,
            before=before,
            after=after,
        )
    return flag


@transaction.atomic(durable=True)
def flag_set_archived(*, actor: Any, flag: Flag, archived: bool) -> Flag:
    """Archive (hide, leave out of new versions) or restore a flag, without deploying anything.

    The dashboard and the API archive through ``flagdash.lifecycle.services.flags_archive``,
    which also saves and deploys a version without the flag in every environment serving it.
    """
    _check(actor, permissions.require_edit_flags)
    locked = lock_flag(flag)
    if (locked.archived_at is not None) == archived:
        state = "archived" if archived else "active"
        raise field_error("archived", f"{flag.key} is already {state}.", "no_change")
    if actor is not None and archived:
        protected = protected_environments_using(locked)
        if protected and not permissions.can_admin(actor):
            names = ", ".join(e.name for e in protected)
            raise PermissionDenied(
                f"{flag.key} is in use in {names} (protected): only admins can archive it."
            )
    return mark_archived(actor=actor, flag=locked, archived=archived)


def lock_flag(flag: Flag) -> Flag:
    """The flag's row, locked until the caller's transaction ends."""
    return (
        Flag.objects.select_for_update(of=("self",))
        .select_related("application", "owner")
        .get(pk=flag.pk)
    )


def mark_archived(*, actor: Any, flag: Flag, archived: bool) -> Flag:
    """Inside the caller's transaction, on a flag it has locked (``lock_flag``): set or clear
    ``archived_at`` and audit it. Callers check permissions first."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("mark_archived must run inside the caller's transaction")
    if (flag.archived_at is not None) == archived:
        state = "archived" if archived else "active"
        raise field_error("archived", f"{flag.key} is already {state}.", "no_change")
    before = flag_snapshot(flag)
    flag.archived_at = timezone.now() if archived else None
    flag.save(update_fields=["archived_at", "updated_at"])
    audit_record(
        actor=actor,
        action=Action.FLAG_ARCHIVED if archived else Action.FLAG_RESTORED,
        target_type="flag",
        target_id=flag.pk,
        target_repr=f"{flag.application.key}/{flag.key}",
        application=flag.application,
        flag=flag,
        before=before,
        after=flag_snapshot(flag),
    )
    return flag


# --- attributes ------------------------------------------------------------------------------


def _protected_envs_with_value(flag: Flag, name: str) -> list[str]:
    return [
        s.environment.name
        for s in FlagSetting.objects.filter(flag=flag, environment__protected=True).select_related(
            "environment"
        )
        if name in s.attribute_values
    ]


@transaction.atomic(durable=True)
def attribute_save(
    *,
    actor: Any,
    flag: Flag,
    name: str,
    type: str,
    description: str = "",
    required: bool = False,
    pattern: str = "",
    enum: Sequence[Any] = (),
    minimum: int | None = None,
    maximum: int | None = None,
    attribute: FlagAttribute | None = None,
) -> FlagAttribute:
    """Add an attribute, or change one (values already set must still satisfy it)."""
    _check(actor, permissions.require_edit_flags)
    flag = Flag.objects.select_for_update().select_related("application").get(pk=flag.pk)
    _refuse_if_archived(flag, "name")
    try:
        attribute_name_validator(name)
    except ValidationError as exc:
        raise ValidationError({"name": exc}) from exc
    description = _clean_text(description, "description", limit=1024)
    enum = [e for e in enum if e != ""]
    validation.validate_attribute_definition(
        type=type, pattern=pattern, enum=list(enum), minimum=minimum, maximum=maximum
    )
    others = FlagAttribute.objects.filter(flag=flag)
    if attribute is not None:
        others = others.exclude(pk=attribute.pk)
    if others.filter(name=name).exists():
        raise field_error("name", f"{flag.key} already has an attribute “{name}”.", "duplicate")
    if attribute is None and others.count() >= validation.MAX_ATTRIBUTES:
        raise field_error(
            "name", f"A flag has at most {validation.MAX_ATTRIBUTES} attributes.", "too_many"
        )
    before = attribute_snapshot(attribute) if attribute is not None else None
    attr = attribute or FlagAttribute(
        flag=flag, position=(others.aggregate(m=Max("position"))["m"] or 0) + 1
    )
    old_name = attr.name if attribute is not None else name
    attr.name, attr.type, attr.description, attr.required = name, type, description, required
    attr.pattern, attr.enum, attr.minimum, attr.maximum = pattern, list(enum), minimum, maximum
    # Every value already set must satisfy the new definition; renames carry values along.
    # Locked: a concurrent values save must not be overwritten with a reused revision.
    settings = list(
        FlagSetting.objects.select_for_update(of=("self",))
        .filter(flag=flag)
        .select_related("environment")
    )
    changed: list[FlagSetting] = []
    for setting in settings:
        values = dict(setting.attribute_values)
        if old_name != name and old_name in values:
            values[name] = values.pop(old_name)
        if name in values:
            try:
                validation.validate_attribute_value(attr, values[name])
            except ValidationError as exc:
                raise field_error(
                    "type",
                    f"The value in {setting.environment.name} no longer fits: {exc.messages[0]} "
                    "Change that value first.",
                    "existing_value_invalid",
                ) from exc
        if values != setting.attribute_values:
            if setting.environment.protected:
                _check(actor, permissions.require_edit_environment, setting.environment)
            setting.attribute_values = values
            setting.revision += 1
            changed.append(setting)
    attr.save()
    if changed:
        FlagSetting.objects.bulk_update(changed, ["attribute_values", "revision"])
    after = attribute_snapshot(attr)
    if before != after:
        audit_record(
            actor=actor,
            action=Action.ATTRIBUTE_UPDATED if before else Action.ATTRIBUTE_CREATED,
            target_type="attribute",
            target_id=attr.pk,
            target_repr=f"{flag.application.key}/{flag.key}.{attr.name}",
            application=flag.application,
            flag=flag,
            before=before,
            after=after,
        )
    return attr


@transaction.atomic(durable=True)
def attribute_delete(*, actor: Any, attribute: FlagAttribute) -> None:
    """Remove an attribute and its values everywhere (admins only where protected values exist)."""
    _check(actor, permissions.require_edit_flags)
    attr = FlagAttribute.objects.select_related("flag__application").get(pk=attribute.pk)
    flag = attr.flag
    _refuse_if_archived(flag, "name")
    if actor is not None and _protected_envs_with_value(flag, attr.name):
        permissions.require_admin(actor)
    changed = []
    for setting in FlagSetting.objects.select_for_update().filter(flag=flag):
        if attr.name in setting.attribute_values:
            values = dict(setting.attribute_values)
            values.pop(attr.name)
            setting.attribute_values = values
            setting.revision += 1
            changed.append(setting)
    if changed:
        FlagSetting.objects.bulk_update(changed, ["attribute_values", "revision"])
    before = attribute_snapshot(attr)
    attr_id = attr.pk
    attr.delete()
    audit_record(
        actor=actor,
        action=Action.ATTRIBUTE_DELETED,
        target_type="attribute",
        target_id=attr_id,
        target_repr=f"{flag.application.key}/{flag.key}.{before['name']}",
        application=flag.application,
        flag=flag,
        before=before,
    )


# --- settings (per environment) --------------------------------------------------------------


def _locked_setting(flag: Flag, environment: Environment) -> FlagSetting:
    return (
        FlagSetting.objects.select_for_update(of=("self",))
        .select_related("flag__application", "environment")
        .get(flag=flag, environment=environment)
    )


def changes_since(setting: FlagSetting, revision: int) -> list[ChangeSince]:
    """The audited saves of ``setting`` after ``revision``, oldest first."""
    events = (
        AuditEvent.objects.filter(
            target_type="setting",
            target_id=str(setting.pk),
            action__in=[Action.SETTING_UPDATED, Action.FLAG_TOGGLED],
        )
        .order_by("-id")
        .only("actor_name", "occurred_at", "before", "after")[:20]
    )
    found = []
    for event in events:
        after_rev = (event.after or {}).get("revision")
        if isinstance(after_rev, int) and after_rev <= revision:
            break
        found.append(
            ChangeSince(
                actor_name=event.actor_name,
                occurred_at=event.occurred_at,
                revision=after_rev,
                changes=[c for c in diff(event.before, event.after) if c.path != "revision"],
            )
        )
    return list(reversed(found))


def _check_revision(setting: FlagSetting, expected_revision: int | None) -> None:
    if expected_revision is not None and expected_revision != setting.revision:
        raise RevisionConflict(
            setting, expected_revision, changes_since(setting, expected_revision)
        )


def _audit_setting(
    actor: Any, action: Action, setting: FlagSetting, before: dict[str, Any], after: dict[str, Any]
) -> None:
    audit_record(
        actor=actor,
        action=action,
        target_type="setting",
        target_id=setting.pk,
        target_repr=f"{setting.flag.application.key}/{setting.flag.key}@{setting.environment.key}",
        application=setting.flag.application,
        environment=setting.environment,
        flag=setting.flag,
        before=before,
        after=after,
    )


@dataclass(frozen=True)
class ToggleResult:
    setting: FlagSetting
    version: ConfigVersion
    deployment: Deployment | None = None


@transaction.atomic(durable=True)
def flag_set_enabled(
    *,
    actor: Any,
    flag: Flag,
    environment: Environment,
    enabled: bool,
    expected_revision: int | None = None,
    deploy: bool = True,
) -> ToggleResult:
    """Turn a flag on or off in one environment, save that as a new version and deploy it.

    The version changes only this flag's ``enabled`` (other flags' unsaved edits stay unsaved).
    It is deployed with the environment's default strategy (queued behind a running deployment).
    """
    _check(actor, permissions.require_edit_environment, environment)
    environment = lock_environment(environment)
    setting = _locked_setting(flag, environment)
    if setting.flag.archived_at is not None:
        raise field_error("enabled", f"{flag.key} is archived; restore it first.", "archived")
    _check_revision(setting, expected_revision)
    if setting.enabled == enabled:
        state = "on" if enabled else "off"
        raise field_error(
            "enabled", f"{flag.key} is already {state} in {environment.name}.", "no_change"
        )
    attributes = list(setting.flag.attributes.all())
    if enabled:
        validation.validate_attribute_values(attributes, setting.attribute_values, enabled=True)
    before = setting_snapshot(setting)
    setting.enabled = enabled
    setting.revision += 1
    setting.updated_by = actor
    setting.save(update_fields=["enabled", "revision", "updated_by", "updated_at"])
    _audit_setting(actor, Action.FLAG_TOGGLED, setting, before, setting_snapshot(setting))

    latest = latest_version(environment)
    base = deploy_base(environment)
    document = documents.load(base.document) if base else documents.empty_document(environment)
    entry = document["flags"].get(flag.key) or documents.flag_entry(
        setting.flag, setting, attributes
    )
    entry["enabled"] = enabled
    document["flags"][flag.key] = entry
    if latest is not None and latest.sha256 == sha256_hex(canonical_json(document)):
        version = latest  # already saved (not deployed yet): deploy that version
    else:
        version = save_version(
            actor,
            setting.environment,
            document,
            f"{'Enable' if enabled else 'Disable'} {flag.key}",
            latest,
        )
    deployment = None
    if deploy:
        deployment = deployment_services.enqueue(
            actor=actor, environment=environment, version=version, message=version.message
        )
    return ToggleResult(setting=setting, version=version, deployment=deployment)


@transaction.atomic(durable=True)
def flag_setting_update(
    *,
    actor: Any,
    flag: Flag,
    environment: Environment,
    expected_revision: int,
    attribute_values: Mapping[str, Any] | None = None,
    enabled: bool | None = None,
    variants: list[dict[str, Any]] | None = None,
    default_variant: str | None = None,
    rules: list[Any] | None = None,
) -> FlagSetting:
    """Save a flag's values in one environment (the working state; a version saves it later).

    ``rules`` are the environment's targeting rules (``flagdash.evaluation.rules``); they must
    name the flag's variants (``on``/``off`` for boolean flags), so they are checked against the
    variants being saved. ``None`` keeps a field as it is, read under the row lock. ``enabled``
    is normally left alone: the dashboard changes it only through ``flag_set_enabled``, which
    saves a version.
    """
    _check(actor, permissions.require_edit_environment, environment)
    setting = _locked_setting(flag, environment)
    flag = setting.flag
    if flag.archived_at is not None:
        raise field_error("enabled", f"{flag.key} is archived; restore it first.", "archived")
    _check_revision(setting, expected_revision)
    if enabled is None:
        enabled = setting.enabled
    if attribute_values is None:
        attribute_values = setting.attribute_values
    if variants is None:
        variants = setting.variants
    if default_variant is None:
        default_variant = setting.default_variant
    if rules is None:
        rules = setting.rules
    errors: dict[str, list[ValidationError]] = {}
    values: dict[str, Any] = {}
    try:
        values = validation.validate_attribute_values(
            flag.attributes.all(), attribute_values, enabled=enabled
        )
    except ValidationError as exc:
        errors.update(exc.error_dict)
    if flag.is_multivariant:
        try:
            variants, default_variant = validation.validate_variants(
                flag.value_type, variants, default_variant
            )
        except ValidationError as exc:
            errors.update(exc.error_dict)
    if "variants" not in errors and not any(k.startswith("variants.") for k in errors):
        names = [v["name"] for v in variants] if flag.is_multivariant else list(BOOLEAN_VARIANTS)
        try:
            rules = targeting.validate_rules(rules, variant_names=names)
        except ValidationError as exc:
            errors.update(exc.error_dict)
    if errors:
        raise ValidationError(errors)
    before = setting_snapshot(setting)
    setting.enabled = bool(enabled)
    setting.attribute_values = values
    setting.rules = rules
    if flag.is_multivariant:
        setting.variants, setting.default_variant = variants, default_variant
    unchanged = {**setting_snapshot(setting), "revision": before["revision"]} == before
    if unchanged:
        return setting
    setting.revision += 1
    setting.updated_by = actor
    setting.save()
    _audit_setting(actor, Action.SETTING_UPDATED, setting, before, setting_snapshot(setting))
    return setting


# --- versions --------------------------------------------------------------------------------


def latest_version(environment: Environment) -> ConfigVersion | None:
    return ConfigVersion.objects.filter(environment=environment).order_by("-number").first()


def deploy_base(environment: Environment) -> ConfigVersion | None:
    """What the environment will serve once its open deployments have run: the version of the
    last one to run (queued ones in queue order, else the running one), else the live version.

    A toggle builds on it, so it never ships again a version that was rolled back, nor one that
    was only saved after something was deployed. Deployments being rolled back do not count.
    """
    open_ones = (
        Deployment.objects.filter(
            environment=environment,
            state__in=[DeploymentState.QUEUED, DeploymentState.DEPLOYING, DeploymentState.BAKING],
            rollback_requested_at__isnull=True,
        )
        .select_related("version")
        .order_by("-priority", "created_at", "id")
    )
    queued = [d for d in open_ones if d.state == DeploymentState.QUEUED]
    running = [d for d in open_ones if d.state != DeploymentState.QUEUED]
    if queued or running:
        return (queued or running)[-1].version
    if environment.live_version_id is not None:
        return ConfigVersion.objects.get(pk=environment.live_version_id)
    # Nothing deployed yet: the newest saved version, unless it was rolled back.
    latest = latest_version(environment)
    if (
        latest is None
        or Deployment.objects.filter(version=latest, state=DeploymentState.ROLLED_BACK).exists()
    ):
        return None
    return latest


def _serves(setting: FlagSetting, entry: dict[str, Any]) -> bool:
    """Does the working setting hold exactly the values of this version entry?"""
    return (
        setting.enabled == entry.get("enabled")
        and dict(setting.attribute_values) == dict(entry.get("attribute_values") or {})
        and list(setting.variants) == list(entry.get("variants") or [])
        and setting.default_variant == (entry.get("default_variant") or "")
    )


def working_state_follow_rollback(
    *, environment: Environment, bad: ConfigVersion, good: ConfigVersion | None, by: str
) -> list[str]:
    """After a rollback from ``bad`` to ``good``, put the working state back where it was.

    Inside the caller's transaction (the deployment engine's, which holds the environment
    lock). Only settings still holding what ``bad`` deployed are reset to what ``good`` serves
    (off when ``good`` did not have the flag); a setting edited since keeps the edit. So the
    switches show what is served, and the next toggle does not ship the bad change again.
    Returns the flag keys reset; each reset is audited.
    """
    bad_flags = documents.load(bad.document)["flags"]
    good_flags = documents.load(good.document)["flags"] if good else {}
    good_digests = good.flag_digests if good else {}
    changed = [k for k in bad_flags if bad.flag_digests.get(k) != good_digests.get(k)]
    if not changed:
        return []
    reset = []
    settings = (
        FlagSetting.objects.select_for_update(of=("self",))
        .filter(environment=environment, flag__key__in=changed, flag__archived_at__isnull=True)
        .select_related("flag__application", "environment")
        .order_by("flag__key")
    )
    for setting in settings:
        key = setting.flag.key
        if not _serves(setting, bad_flags[key]):
            continue
        before = setting_snapshot(setting)
        good_entry = good_flags.get(key)
        if good_entry is None:
            setting.enabled = False
        else:
            setting.enabled = bool(good_entry.get("enabled"))
            setting.attribute_values = dict(good_entry.get("attribute_values") or {})
            if setting.flag.is_multivariant:
                setting.variants = list(good_entry.get("variants") or setting.variants)
                setting.default_variant = good_entry.get("default_variant") or ""
        setting.revision += 1
        setting.save()
        after = {**setting_snapshot(setting), "reason": f"rollback of v{bad.number} by {by}"}
        audit_record(
            actor=None,
            actor_name="flagdash",
            action=Action.SETTING_UPDATED,
            target_type="setting",
            target_id=setting.pk,
            target_repr=f"{environment.application.key}/{key}@{environment.key}",
            application=environment.application_id,
            environment=environment,
            flag=setting.flag,
            before=before,
            after=after,
        )
        reset.append(key)
    return reset


def lock_environment(environment: Environment) -> Environment:
    """Serialise version numbering per environment (lock order: environment, then settings)."""
    return (
        Environment.objects.select_for_update(of=("self",))
        .select_related("application", "backend")
        .get(pk=environment.pk)
    )


def save_version(
    actor: Any,
    environment: Environment,
    document: dict[str, Any],
    message: str,
    latest: ConfigVersion | None,
) -> ConfigVersion:
    text = canonical_json(document)
    digest = sha256_hex(text)
    if latest is not None and latest.sha256 == digest:
        raise field_error(
            "message", f"Nothing changed since version {latest.number}.", "no_changes"
        )
    version = ConfigVersion.objects.create(
        environment=environment,
        number=(latest.number if latest else 0) + 1,
        document=text,
        sha256=digest,
        author=actor,
        author_name=actor.get_username() if actor is not None else "flagdash",
        message=message,
        flag_digests=documents.flag_digests(document),
    )
    audit_record(
        actor=actor,
        action=Action.VERSION_CREATED,
        target_type="version",
        target_id=version.pk,
        target_repr=f"{environment.application.key}/{environment.key} v{version.number}",
        application=environment.application_id,
        environment=environment,
        before={"number": latest.number, "sha256": latest.sha256} if latest else None,
        after={
            "number": version.number,
            "sha256": digest,
            "message": message,
            "flags": len(document["flags"]),
        },
    )
    return version


@transaction.atomic(durable=True)
def config_version_create(*, actor: Any, environment: Environment, message: str) -> ConfigVersion:
    """Save the environment's whole working state as a new immutable version."""
    _check(actor, permissions.require_edit_environment, environment)
    env = lock_environment(environment)
    message = _clean_text(message, "message", limit=500)
    latest = latest_version(env)
    return save_version(actor, env, documents.working_document(env), message, latest)

"""Writes and checks for backend connections: pointing an environment at a backend, testing a
connection before saving it, and creating AWS AppConfig resources.

Each environment that deploys to a cloud has a connection of its own (its AppConfig environment
id or its Azure label is part of the connection); environments on the built-in store share the
built-in connection. Connections hold only non-secret settings.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from flagdash.accounts import permissions
from flagdash.audit.models import Action
from flagdash.audit.services import audit_record
from flagdash.backends import aws_appconfig
from flagdash.backends.base import BackendError, CheckResult, PermanentBackendError, backend_for
from flagdash.backends.local import mark_served_changed
from flagdash.backends.models import BackendConnection, BackendKind, LocalServedState
from flagdash.core.errors import field_error
from flagdash.deployments.models import OPEN_STATES, Deployment
from flagdash.flags.models import Environment

logger = logging.getLogger(__name__)


def connection_check(*, actor: Any, kind: str, options: dict[str, Any]) -> CheckResult:
    """Try a connection's settings (saved or not) against the backend; never raises."""
    permissions.require_admin(actor)
    connection = BackendConnection(name="(being checked)", kind=kind, options=options)
    try:
        backend = backend_for(connection)
    except PermanentBackendError as exc:
        return CheckResult(False, exc.message)
    try:
        return backend.check()
    except Exception as exc:  # check() promises not to raise; a bug must not break the page
        logger.exception("the %s connection check raised", kind)
        return CheckResult(False, f"The check itself failed ({exc.__class__.__name__}).")


def aws_monitors(connection: BackendConnection) -> tuple[list[str], str]:
    """The CloudWatch alarms an AWS environment watches during rollouts, or why not known."""
    try:
        return aws_appconfig.AwsAppConfigBackend(connection).monitors(), ""
    except BackendError as exc:
        return [], exc.message


def aws_provision(
    *,
    actor: Any,
    region: str,
    endpoint_url: str,
    application_name: str,
    profile_name: str,
    environment_name: str,
    application_id: str = "",
    configuration_profile_id: str = "",
) -> dict[str, str]:
    """Create (or find by name) the AppConfig application, feature-flag profile and environment.

    Returns the connection options. Raises ``BackendError`` with AWS's message on failure.
    """
    permissions.require_admin(actor)
    options: dict[str, str] = aws_appconfig.provision(
        region=region,
        endpoint_url=endpoint_url,
        application_name=application_name,
        profile_name=profile_name,
        environment_name=environment_name,
        application_id=application_id,
        configuration_profile_id=configuration_profile_id,
    )
    return options


def _connection_name(environment: Environment) -> str:
    return f"env-{environment.pk}: {environment.application.key}/{environment.key}"[:100]


def _describe(connection: BackendConnection) -> dict[str, Any]:
    return {
        "connection": connection.name,
        "kind": connection.kind,
        "options": dict(sorted((connection.options or {}).items())),
    }


@transaction.atomic(durable=True)
def environment_connect(
    *, actor: Any, environment: Environment, kind: str, options: dict[str, Any]
) -> Environment:
    """Point an environment at a backend (admins only; never while a deployment is open).

    A new target serves nothing flagdash deployed, so the environment's live version is
    forgotten: the next deployment pushes a whole version there.
    """
    permissions.require_admin(actor)
    if kind not in BackendKind.values:
        raise field_error("kind", f"Unknown backend kind “{kind}”.", "invalid_choice")
    env = (
        Environment.objects.select_for_update(of=("self",))
        .select_related("backend", "application", "live_version")
        .get(pk=environment.pk)
    )
    busy = Deployment.objects.filter(environment=env, state__in=OPEN_STATES).order_by("id").first()
    if busy is not None:
        raise field_error(
            "kind",
            f"Deployment #{busy.pk} is {busy.get_state_display().lower()} in {env.name}: wait "
            "for it to finish, or stop or cancel it, before changing the backend.",
            "deployment_open",
        )
    old = env.backend
    before = _describe(old)
    options = dict(options) if kind != BackendKind.LOCAL else {}
    if before["kind"] == kind and before["options"] == dict(sorted(options.items())):
        return env
    if kind == BackendKind.LOCAL:
        from flagdash.flags.services import builtin_backend

        target = builtin_backend()
    else:
        name = _connection_name(env)
        target = BackendConnection.objects.select_for_update().filter(
            name=name
        ).first() or BackendConnection(name=name)
        target.kind = kind
        target.options = options
        target.save()
    live_before = env.live_version.number if env.live_version else None
    env.backend = target
    env.live_version = None
    env.save(update_fields=["backend", "live_version"])
    # The built-in store stops serving what it served for this environment (when it leaves it)
    # and starts empty (when it takes it back): the next deployment fills it.
    LocalServedState.objects.filter(environment=env).update(
        stable_version=None,
        candidate_version=None,
        candidate_percentage=0,
        deployment_id=None,
        updated_at=timezone.now(),
    )
    mark_served_changed()
    if old.pk != target.pk and old.kind != BackendKind.LOCAL and not old.environments.exists():
        old.delete()
    audit_record(
        actor=actor,
        action=Action.ENVIRONMENT_BACKEND_CHANGED,
        target_type="environment",
        target_id=env.pk,
        target_repr=f"{env.application.key}/{env.key}",
        application=env.application_id,
        environment=env,
        before={**before, "live_version": live_before},
        after={**_describe(target), "live_version": None},
    )
    return env

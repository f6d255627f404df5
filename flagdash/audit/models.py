"""The audit log: append-only, hash-chained, one row per mutation.

Rows are written only by ``flagdash.audit.services.audit_record`` inside the transaction of the
change they describe. Foreign keys carry no database constraint and are never cascaded, so
deleting a user or an application can never rewrite history; the names are copied too.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F
from django.db.models.functions import Upper
from django.utils import timezone


class Action(models.TextChoices):
    APPLICATION_CREATED = "application.created", "Application created"
    APPLICATION_UPDATED = "application.updated", "Application updated"
    ENVIRONMENT_CREATED = "environment.created", "Environment created"
    ENVIRONMENT_UPDATED = "environment.updated", "Environment updated"
    ENVIRONMENT_BACKEND_CHANGED = "environment.backend_changed", "Backend changed"
    FLAG_CREATED = "flag.created", "Flag created"
    FLAG_UPDATED = "flag.updated", "Flag edited"
    FLAG_ARCHIVED = "flag.archived", "Flag archived"
    FLAG_RESTORED = "flag.restored", "Flag restored"
    FLAG_TOGGLED = "flag.toggled", "Flag toggled"
    SETTING_UPDATED = "setting.updated", "Values edited"
    ATTRIBUTE_CREATED = "attribute.created", "Attribute added"
    ATTRIBUTE_UPDATED = "attribute.updated", "Attribute changed"
    ATTRIBUTE_DELETED = "attribute.deleted", "Attribute removed"
    VERSION_CREATED = "version.created", "Version saved"
    DEPLOYMENT_QUEUED = "deployment.queued", "Deployment queued"
    DEPLOYMENT_STARTED = "deployment.started", "Deployment started"
    DEPLOYMENT_BAKING = "deployment.baking", "Deployment baking"
    DEPLOYMENT_COMPLETED = "deployment.completed", "Deployment complete"
    DEPLOYMENT_ROLLBACK_REQUESTED = "deployment.rollback_requested", "Rollback requested"
    DEPLOYMENT_ROLLING_BACK = "deployment.rolling_back", "Rolling back"
    DEPLOYMENT_ROLLED_BACK = "deployment.rolled_back", "Rolled back"
    DEPLOYMENT_FAILED = "deployment.failed", "Deployment failed"
    DEPLOYMENT_CANCELLED = "deployment.cancelled", "Deployment cancelled"
    DEPLOYMENT_REBASED = "deployment.rebased", "Deployment rebased after a rollback"
    ALARM_RECEIVED = "alarm.received", "Alarm received"
    ALARM_SECRET_ROTATED = "environment.alarm_secret_rotated", "Alarm secret rotated"
    STRATEGY_CREATED = "strategy.created", "Strategy created"
    STRATEGY_UPDATED = "strategy.updated", "Strategy changed"
    USER_CREATED = "user.created", "User created"
    USER_ROLE_CHANGED = "user.role_changed", "Role changed"
    USER_PASSWORD_SET = "user.password_set", "Password set"
    API_TOKEN_CREATED = "api_token.created", "API token created"
    API_TOKEN_REVOKED = "api_token.revoked", "API token revoked"
    API_KEY_CREATED = "api_key.created", "Environment API key created"
    API_KEY_REVOKED = "api_key.revoked", "Environment API key revoked"
    CODE_SCAN_UPLOADED = "code_scan.uploaded", "Code references scanned"
    LOGIN = "auth.login", "Logged in"
    LOGOUT = "auth.logout", "Logged out"
    LOGIN_FAILED = "auth.login_failed", "Login failed"


class Source(models.TextChoices):
    WEB = "web", "Web"
    API = "api", "API"
    WORKER = "worker", "Worker"
    CLI = "cli", "Command line"
    ALARM = "alarm", "Alarm"
    SYSTEM = "system", "System"


class AuditEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=40, choices=Action.choices)
    target_type = models.CharField(max_length=40)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    application = models.ForeignKey(
        "flags.Application",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    environment = models.ForeignKey(
        "flags.Environment",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    flag = models.ForeignKey(
        "flags.Flag",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["flag", "-id"], name="audit_flag_id"),
            models.Index(fields=["actor", "-id"], name="audit_actor_id"),
            models.Index(fields=["action", "-id"], name="audit_action_id"),
            models.Index(fields=["environment", "-id"], name="audit_env_id"),
            models.Index(fields=["application", "-id"], name="audit_app_id"),
            models.Index(fields=["target_type", "target_id", "-id"], name="audit_target_id"),
            models.Index(fields=["request_id"], name="audit_request_id"),
            models.Index(fields=["source", "-id"], name="audit_source_id"),
            # the audit log's actor filter is case-insensitive (actor_name__iexact)
            models.Index(Upper("actor_name"), F("id").desc(), name="audit_actor_name_id"),
        ]

    def __str__(self) -> str:
        return f"#{self.id} {self.action} {self.target_repr}"

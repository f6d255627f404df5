"""Deployment strategies, deployments and their event log.

A deployment is the record of one version going to one environment. Its ``state`` moves only
through ``flagdash.deployments.engine``; the database enforces that an environment has at most
one active deployment.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from flagdash.backends.base import RolloutPlan


class GrowthType(models.TextChoices):
    LINEAR = "linear", "Linear"
    EXPONENTIAL = "exponential", "Exponential"


class DeploymentStrategy(models.Model):
    name = models.CharField(max_length=64, unique=True)
    description = models.CharField(max_length=500, blank=True)
    duration_minutes = models.PositiveIntegerField(
        validators=[MaxValueValidator(1440)],
        help_text="How long the rollout takes to reach 100 % (0–1440 minutes).",
    )
    growth_type = models.CharField(max_length=16, choices=GrowthType.choices)
    growth_factor = models.FloatField(
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Percent of targets per step (linear) or the first step of a doubling series "
        "(exponential), 1–100.",
    )
    final_bake_minutes = models.PositiveIntegerField(
        validators=[MaxValueValidator(1440)],
        help_text="How long to watch for alarms at 100 % before the deployment is complete.",
    )
    predefined = models.BooleanField(default=False, help_text="One of AWS AppConfig's own.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-predefined", "name"]
        verbose_name_plural = "deployment strategies"

    def __str__(self) -> str:
        return self.name

    def plan(self) -> RolloutPlan:
        return RolloutPlan(
            duration_seconds=self.duration_minutes * 60,
            growth_type=self.growth_type,
            growth_factor=self.growth_factor,
            final_bake_seconds=self.final_bake_minutes * 60,
        )

    def snapshot(self) -> dict[str, object]:
        return {
            "name": self.name,
            "duration_minutes": self.duration_minutes,
            "growth_type": self.growth_type,
            "growth_factor": self.growth_factor,
            "final_bake_minutes": self.final_bake_minutes,
        }


class DeploymentState(models.TextChoices):
    QUEUED = "queued", "Queued"
    DEPLOYING = "deploying", "Deploying"
    BAKING = "baking", "Baking"
    COMPLETE = "complete", "Complete"
    ROLLING_BACK = "rolling_back", "Rolling back"
    ROLLED_BACK = "rolled_back", "Rolled back"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATES = (DeploymentState.DEPLOYING, DeploymentState.BAKING, DeploymentState.ROLLING_BACK)
TERMINAL_STATES = (
    DeploymentState.COMPLETE,
    DeploymentState.ROLLED_BACK,
    DeploymentState.FAILED,
    DeploymentState.CANCELLED,
)
OPEN_STATES = (DeploymentState.QUEUED, *ACTIVE_STATES)
# Pages that show an open deployment poll for it: never faster than MIN, never slower than MAX,
# and SLACK after the engine's next step (the time a worker takes to act and record).
UI_POLL_MIN_MS = 500
UI_POLL_MAX_MS = 5000
UI_POLL_SLACK_MS = 300


class DeploymentKind(models.TextChoices):
    DEPLOY = "deploy", "Deployment"
    RESTORE = "restore", "Rollback to an earlier version"


class RollbackTrigger(models.TextChoices):
    USER = "user", "A person"
    ALARM = "alarm", "An alarm"
    BACKEND = "backend", "The backend"


class Deployment(models.Model):
    environment = models.ForeignKey(
        "flags.Environment", on_delete=models.PROTECT, related_name="deployments"
    )
    version = models.ForeignKey("flags.ConfigVersion", on_delete=models.PROTECT, related_name="+")
    previous_version = models.ForeignKey(
        "flags.ConfigVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="What the environment served when this deployment started.",
    )
    strategy = models.ForeignKey(
        DeploymentStrategy, on_delete=models.PROTECT, related_name="deployments"
    )
    plan = models.JSONField(help_text="The strategy as it was when the deployment was created.")
    kind = models.CharField(
        max_length=16, choices=DeploymentKind.choices, default=DeploymentKind.DEPLOY
    )
    restores = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="restored_by",
        help_text="For a rollback to an earlier version: the deployment it replaces.",
    )
    priority = models.SmallIntegerField(default=0, help_text="Rollbacks jump the queue.")
    state = models.CharField(
        max_length=16, choices=DeploymentState.choices, default=DeploymentState.QUEUED
    )
    percentage = models.FloatField(default=0)
    message = models.CharField(max_length=500, blank=True)
    backend_kind = models.CharField(max_length=32)
    backend_ref = models.CharField(max_length=200, blank=True)
    backend_data = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    waiting_reason = models.CharField(max_length=300, blank=True)
    overwrite_drift = models.BooleanField(
        default=False,
        help_text="Overwrite what was changed at the backend outside flagdash (a person chose to).",
    )

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    bake_started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    rollback_requested_at = models.DateTimeField(null=True, blank=True)
    rollback_reason = models.CharField(max_length=1000, blank=True)
    rollback_trigger = models.CharField(max_length=16, choices=RollbackTrigger.choices, blank=True)
    rollback_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rollback_by_name = models.CharField(max_length=150, blank=True)
    alarm_name = models.CharField(max_length=200, blank=True)

    # The engine's bookkeeping: when to act next, and who is acting now.
    next_step_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Transient failures in a row.")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment"],
                condition=Q(state__in=["deploying", "baking", "rolling_back"]),
                name="deployment_one_active_per_environment",
            ),
            models.CheckConstraint(
                condition=Q(percentage__gte=0) & Q(percentage__lte=100),
                name="deployment_percentage_range",
            ),
        ]
        indexes = [
            models.Index(fields=["environment", "-created_at"], name="deployment_env_created"),
            models.Index(fields=["state", "next_step_at"], name="deployment_state_due"),
            models.Index(
                fields=["environment", "priority", "created_at"],
                condition=Q(state="queued"),
                name="deployment_queue",
            ),
        ]

    def __str__(self) -> str:
        return f"deployment #{self.pk} of v{self.version_id} to env {self.environment_id}"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def drifted(self) -> bool:
        """Failed because the backend's copy was changed outside flagdash."""
        return self.state in (
            DeploymentState.FAILED,
            DeploymentState.ROLLING_BACK,
        ) and bool(self.backend_data.get("drift"))

    @property
    def error_details(self) -> list[str]:
        return list(self.backend_data.get("error_details") or [])

    @property
    def is_rollback(self) -> bool:
        return self.kind == DeploymentKind.RESTORE or self.state in (
            DeploymentState.ROLLING_BACK,
            DeploymentState.ROLLED_BACK,
        )

    def ui_poll_ms(self, now: dt.datetime | None = None) -> int:
        """How soon a page showing this deployment should ask again, in milliseconds.

        Soon (half a second) when the engine is about to act: a queued deployment at the head
        of its queue, a requested rollback, a step due now. Otherwise a little after the
        engine's next step, but never more than ``UI_POLL_MAX_MS`` apart, so a long bake
        costs a request every few seconds and an alarm's rollback still shows promptly.
        """
        if self.next_step_at is None:
            return UI_POLL_MAX_MS
        now = now or timezone.now()
        until = (self.next_step_at - now).total_seconds() * 1000 + UI_POLL_SLACK_MS
        return int(min(UI_POLL_MAX_MS, max(UI_POLL_MIN_MS, until)))

    def rollout_plan(self) -> RolloutPlan:
        """The schedule self-driven backends follow (sped up by DEPLOYMENT_CLOCK_SPEED)."""
        minute = 60 / float(settings.DEPLOYMENT_CLOCK_SPEED)
        return RolloutPlan(
            duration_seconds=round(int(self.plan["duration_minutes"]) * minute),
            growth_type=str(self.plan["growth_type"]),
            growth_factor=float(self.plan["growth_factor"]),
            final_bake_seconds=round(int(self.plan["final_bake_minutes"]) * minute),
        )


class EventType(models.TextChoices):
    QUEUED = "queued", "Queued"
    WAITING = "waiting", "Waiting"
    STARTED = "started", "Started"
    PERCENTAGE = "percentage", "Percentage"
    BAKE_STARTED = "bake_started", "Bake started"
    COMPLETED = "completed", "Completed"
    ROLLBACK_REQUESTED = "rollback_requested", "Rollback requested"
    ROLLBACK_STARTED = "rollback_started", "Rollback started"
    ROLLED_BACK = "rolled_back", "Rolled back"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    RETRY = "retry", "Retrying"
    BACKEND = "backend", "Backend"
    NOTE = "note", "Note"


class DeploymentEvent(models.Model):
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="events")
    occurred_at = models.DateTimeField(default=timezone.now)
    type = models.CharField(max_length=24, choices=EventType.choices)
    percentage = models.FloatField(null=True, blank=True)
    message = models.CharField(max_length=1000, blank=True)
    triggered_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        indexes = [models.Index(fields=["deployment", "occurred_at"], name="deployment_event_time")]

    def __str__(self) -> str:
        return f"{self.type} at {self.occurred_at:%H:%M:%S}"


class AlarmDelivery(models.Model):
    """One accepted request on the alarm webhook, kept a day so the same request is not replayed.

    ``digest`` is the SHA-256 of the environment and the request's signature: the signature
    covers the timestamp and the body, so a second delivery of the same signed request has the
    same digest and is refused. Requests older than five minutes are refused anyway, so a day of
    history is plenty (``alarms.alarm_deliveries_prune``).
    """

    digest = models.CharField(max_length=64, unique=True)
    environment = models.ForeignKey(
        "flags.Environment", on_delete=models.CASCADE, related_name="alarm_deliveries"
    )
    received_at = models.DateTimeField(default=timezone.now)
    alarm_names = models.JSONField(default=list, blank=True)
    outcome = models.CharField(max_length=32, blank=True)
    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "alarm deliveries"
        indexes = [models.Index(fields=["received_at"], name="alarm_delivery_received")]

    def __str__(self) -> str:
        return f"alarm delivery {self.digest[:12]} ({self.outcome or 'received'})"

"""Where a version goes when it is deployed.

A connection holds only non-secret settings (region, ids, endpoint, label). Credentials come
from the process environment or the cloud SDK's default chain, never from the database.
"""

from __future__ import annotations

from django.db import models


class BackendKind(models.TextChoices):
    LOCAL = "local", "Built-in"
    AWS_APPCONFIG = "aws_appconfig", "AWS AppConfig"
    AZURE_APPCONFIG = "azure_appconfig", "Azure App Configuration"


class BackendConnection(models.Model):
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=32, choices=BackendKind.choices, default=BackendKind.LOCAL)
    options = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class LocalServedState(models.Model):
    """What the built-in backend serves for one environment (read by OFREP evaluation).

    ``stable_version`` is served to everyone; during a gradual rollout ``candidate_version`` is
    served to the targeting keys whose sticky hash falls under ``candidate_percentage``.
    """

    environment = models.OneToOneField(
        "flags.Environment", on_delete=models.CASCADE, related_name="local_state"
    )
    stable_version = models.ForeignKey(
        "flags.ConfigVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    candidate_version = models.ForeignKey(
        "flags.ConfigVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    candidate_percentage = models.FloatField(default=0)
    deployment_id = models.BigIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return (
            f"env {self.environment_id}: v{self.stable_version_id} + {self.candidate_percentage}%"
        )


class LocalRollout(models.Model):
    """One rollout the built-in backend started: at most one per deployment (idempotent start)."""

    deployment_id = models.BigIntegerField(unique=True)
    environment = models.ForeignKey(
        "flags.Environment", on_delete=models.CASCADE, related_name="local_rollouts"
    )
    version = models.ForeignKey("flags.ConfigVersion", on_delete=models.PROTECT, related_name="+")
    previous_version = models.ForeignKey(
        "flags.ConfigVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    started_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"local rollout of deployment {self.deployment_id}"


class AwsAppConfigDeployment(models.Model):
    """What the AWS AppConfig backend asked AWS for on behalf of one flagdash deployment.

    Written before each AWS call that creates something, so a start repeated after a crash looks
    for what the interrupted attempt did instead of doing it twice: the hosted version (found by
    ``version_label``) and the AWS deployment. The rows of one configuration profile also tell
    which hosted versions flagdash wrote (for any flagdash environment sharing the profile), so
    a version written by someone else is seen as drift and not overwritten silently.
    """

    deployment_id = models.BigIntegerField(unique=True)
    region = models.CharField(max_length=32)
    application_id = models.CharField(max_length=64)
    configuration_profile_id = models.CharField(max_length=128)
    environment_id = models.CharField(max_length=64)
    version_label = models.CharField(max_length=64)
    version_number = models.PositiveIntegerField(null=True, blank=True)
    start_requested_at = models.DateTimeField(null=True, blank=True)
    aws_deployment_number = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["region", "application_id", "configuration_profile_id", "version_number"],
                name="aws_deployment_profile",
            ),
            models.Index(
                fields=["region", "application_id", "configuration_profile_id", "version_label"],
                name="aws_deployment_label",
            ),
        ]

    def __str__(self) -> str:
        return f"AWS AppConfig deployment for #{self.deployment_id} ({self.version_label})"


class AzureSettingState(models.Model):
    """What flagdash last wrote, or read and verified, for one Azure App Configuration setting.

    One row per store (connection and endpoint), key and label. ``etag`` is the setting's ETag
    after flagdash's last write ("" when flagdash deleted it); a different ETag in Azure means
    someone changed the setting outside flagdash. ``digest`` is the SHA-256 of the content type
    and canonical value flagdash wrote (``absent`` when deleted), and ``pending_digest`` the one
    it is about to write: if a worker dies between Azure's answer and this row's update, the
    next attempt finds ``pending_digest`` in Azure and knows the write was its own.
    """

    connection = models.ForeignKey(
        BackendConnection, on_delete=models.CASCADE, related_name="azure_settings"
    )
    endpoint = models.CharField(max_length=255)
    key = models.CharField(max_length=1024)
    label = models.CharField(max_length=255, blank=True)
    etag = models.CharField(max_length=128, blank=True)
    digest = models.CharField(max_length=64)
    pending_digest = models.CharField(max_length=64, blank=True)
    deployment_id = models.BigIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "endpoint", "label", "key"], name="azure_setting_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.key} [{self.label or 'no label'}] {self.etag or 'deleted'}"


class AzureRollout(models.Model):
    """One rollout flagdash drives in Azure App Configuration: at most one per deployment.

    ``started_at`` anchors the plan's schedule (set once the first step is written, so a repeated
    ``start`` never restarts it); ``applied_percentage`` is the step written last, so a repeated
    ``status`` never writes a step twice or goes back; the final bake counts from ``full_at``.
    """

    deployment_id = models.BigIntegerField(unique=True)
    connection = models.ForeignKey(
        BackendConnection, on_delete=models.CASCADE, related_name="azure_rollouts"
    )
    endpoint = models.CharField(max_length=255)
    label = models.CharField(max_length=255, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    applied_percentage = models.FloatField(default=0)
    full_at = models.DateTimeField(null=True, blank=True, help_text="When 100 % was written.")
    message = models.CharField(max_length=1000, blank=True)
    overwritten = models.JSONField(default=list, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Azure rollout of deployment {self.deployment_id}"

"""Environment API keys and evaluation counts.

An ``ApiKey`` lets an application read one environment's flags over OFREP (and its flagd
export); only its SHA-256 is stored. ``EvaluationCount`` holds how many evaluations each flag
served, per environment, variant and minute; ``FlagLastEvaluated`` the last time each flag was
evaluated in each environment. ``EnvironmentFetch`` is when a client last downloaded an
environment's flag definitions to evaluate them itself (the flagd export: flagd and in-process
providers), which is not an evaluation of any flag. All three are written in batches (see
``counters.py``), never once per request; ``CountFlush`` remembers which batches moved from
Redis were stored, so none is counted twice.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ApiKey(models.Model):
    environment = models.ForeignKey(
        "flags.Environment", on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(
        max_length=12, help_text="The key's first characters, to tell keys apart."
    )
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["environment_id", "-created_at", "-id"]
        indexes = [models.Index(fields=["revoked_at"], name="apikey_revoked")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class EvaluationCount(models.Model):
    environment = models.ForeignKey("flags.Environment", on_delete=models.CASCADE, related_name="+")
    flag_key = models.CharField(max_length=64)
    variant = models.CharField(max_length=64)
    minute = models.DateTimeField(help_text="Start of the minute (UTC).")
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "flag_key", "variant", "minute"], name="evalcount_unique"
            )
        ]
        indexes = [
            models.Index(
                fields=["environment", "flag_key", "minute"], name="evalcount_flag_minute"
            ),
            models.Index(fields=["minute"], name="evalcount_minute"),
        ]

    def __str__(self) -> str:
        return f"{self.flag_key}@{self.environment_id} {self.variant} {self.minute:%Y-%m-%d %H:%M}"


class FlagLastEvaluated(models.Model):
    environment = models.ForeignKey("flags.Environment", on_delete=models.CASCADE, related_name="+")
    flag_key = models.CharField(max_length=64)
    last_evaluated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "flag_key"], name="lastevaluated_unique")
        ]

    def __str__(self) -> str:
        return f"{self.flag_key}@{self.environment_id} {self.last_evaluated_at:%Y-%m-%d %H:%M}"


class FetchKind(models.TextChoices):
    FLAGD = "flagd", "flagd flag definitions"


class EnvironmentFetch(models.Model):
    """When a client last fetched an environment's flag definitions to evaluate them itself."""

    environment = models.ForeignKey("flags.Environment", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=FetchKind.choices, default=FetchKind.FLAGD)
    last_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "kind"], name="environmentfetch_unique")
        ]

    def __str__(self) -> str:
        return f"{self.kind}@{self.environment_id} {self.last_at:%Y-%m-%d %H:%M}"


class CountFlush(models.Model):
    """One batch of counts moved from Redis and stored (written in the same transaction).

    A batch whose hashes are still in Redis after being stored (the delete failed) is then only
    deleted, never stored twice. Rows older than a day are pruned.
    """

    token = models.CharField(max_length=32, unique=True)
    flushed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"flush {self.token} at {self.flushed_at:%Y-%m-%d %H:%M:%S}"

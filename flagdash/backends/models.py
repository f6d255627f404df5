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

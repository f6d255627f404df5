"""Short-term flags: code references, what each environment serves and since when, cleanups,
weekly status snapshots and the digest's bookkeeping.

- ``CodeReferenceScan`` / ``CodeReference``: the last scan of an application's source (one per
  application; a new scan replaces it) and every place it found a flag key.
- ``ServedFlagState``: per environment and flag, what the live version serves and since when,
  kept up to date by folding completed deployments in order (``served.py``). It answers "how
  long has this flag been unchanged" without reading every version ever deployed.
- ``Cleanup`` / ``CleanupStep``: one archive or restore of one or more flags, and the version
  and deployment it made per environment (so the flag page can say what became of them).
- ``StatusSnapshot``: counts per status per application and week, for the chart.
- ``DigestDelivery``: which owner got which week's digest (written once the mail went out;
  checked under a per-owner lock before sending, so at most one per week).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ScanSource(models.TextChoices):
    CLI = "cli", "manage.py scan_code_refs"
    API = "api", "API upload"


class CodeReferenceScan(models.Model):
    application = models.OneToOneField(
        "flags.Application", on_delete=models.CASCADE, related_name="code_scan"
    )
    scanned_at = models.DateTimeField(help_text="When the scan ran (as its uploader says).")
    uploaded_at = models.DateTimeField(default=timezone.now)
    commit = models.CharField(max_length=64, blank=True)
    files_scanned = models.PositiveIntegerField(default=0)
    skipped_binary = models.PositiveIntegerField(default=0)
    skipped_large = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(default=0)
    listing = models.CharField(
        max_length=16, blank=True, help_text="git (git ls-files) or walk (.gitignore rules)."
    )
    source = models.CharField(max_length=8, choices=ScanSource.choices)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    uploaded_by_name = models.CharField(max_length=200, blank=True)
    reference_count = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"scan of {self.application_id} at {self.scanned_at:%Y-%m-%d %H:%M}"

    @property
    def short_commit(self) -> str:
        return self.commit[:12]


class CodeReference(models.Model):
    scan = models.ForeignKey(CodeReferenceScan, on_delete=models.CASCADE, related_name="references")
    flag_key = models.CharField(max_length=64)
    path = models.CharField(max_length=1024)
    line = models.PositiveIntegerField()
    excerpt = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["path", "line", "flag_key"]
        indexes = [models.Index(fields=["scan", "flag_key"], name="coderef_scan_flag")]

    def __str__(self) -> str:
        return f"{self.flag_key} at {self.path}:{self.line}"


class ServedFlagState(models.Model):
    """What one environment's live version serves for one flag, and since when."""

    environment = models.ForeignKey("flags.Environment", on_delete=models.CASCADE, related_name="+")
    flag_key = models.CharField(max_length=64)
    digest = models.CharField(
        max_length=64, help_text="sha256 of what is served (values, variants, rules)."
    )
    uniform = models.CharField(
        max_length=64,
        blank=True,
        help_text="sha256 of the value everyone gets; empty when rules target some users.",
    )
    label = models.CharField(max_length=100, help_text="on, off, a variant; '· rules'.")
    since = models.DateTimeField(help_text="When this environment started serving this value.")
    served_since = models.DateTimeField(help_text="Served continuously (any value) since.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "flag_key"], name="served_state_unique")
        ]

    def __str__(self) -> str:
        return f"{self.flag_key}@{self.environment_id}: {self.label} since {self.since:%Y-%m-%d}"


class ServedStateCursor(models.Model):
    """How far ``ServedFlagState`` of one environment has been brought up to date."""

    environment = models.OneToOneField(
        "flags.Environment", on_delete=models.CASCADE, related_name="+"
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    deployment_id = models.BigIntegerField(null=True, blank=True)
    live_version_id = models.BigIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"env {self.environment_id} up to deployment {self.deployment_id}"


class CleanupAction(models.TextChoices):
    ARCHIVE = "archive", "Archive"
    RESTORE = "restore", "Restore"


class Cleanup(models.Model):
    application = models.ForeignKey(
        "flags.Application", on_delete=models.CASCADE, related_name="cleanups"
    )
    action = models.CharField(max_length=8, choices=CleanupAction.choices)
    flags = models.ManyToManyField("flags.Flag", related_name="cleanups")
    flag_keys = models.JSONField(default=list)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {', '.join(self.flag_keys)}"


class CleanupStep(models.Model):
    """The version one cleanup saved for one environment, and the deployment that ships it."""

    cleanup = models.ForeignKey(Cleanup, on_delete=models.CASCADE, related_name="steps")
    environment = models.ForeignKey("flags.Environment", on_delete=models.CASCADE, related_name="+")
    base_version = models.ForeignKey(
        "flags.ConfigVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="What the environment was going to serve: a restore brings back its entries.",
    )
    version = models.ForeignKey("flags.ConfigVersion", on_delete=models.PROTECT, related_name="+")
    deployment = models.ForeignKey(
        "deployments.Deployment", on_delete=models.PROTECT, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.cleanup_id} → env {self.environment_id} v{self.version_id}"


class StatusSnapshot(models.Model):
    """How many short-term flags had each status in one week (Monday's date)."""

    application = models.ForeignKey("flags.Application", on_delete=models.CASCADE, related_name="+")
    week = models.DateField(help_text="The Monday the week starts on.")
    overdue = models.PositiveIntegerField(default=0)
    ready = models.PositiveIntegerField(default=0)
    unused = models.PositiveIntegerField(default=0)
    active = models.PositiveIntegerField(default=0)
    estimated = models.BooleanField(
        default=False,
        help_text="Rebuilt from deployment history (no code scans or evaluations of the past: "
        "'unused' cannot be told and counts as active).",
    )
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["application_id", "week"]
        constraints = [
            models.UniqueConstraint(fields=["application", "week"], name="status_snapshot_unique")
        ]

    def __str__(self) -> str:
        return f"{self.application_id} week of {self.week}"

    @property
    def total(self) -> int:
        return self.overdue + self.ready + self.unused + self.active


class DigestDelivery(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    week = models.DateField(help_text="The Monday of the week the digest is for.")
    sent_at = models.DateTimeField(default=timezone.now)
    flag_count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "week"], name="digest_once_per_week")
        ]

    def __str__(self) -> str:
        return f"digest for {self.owner_id}, week of {self.week}"

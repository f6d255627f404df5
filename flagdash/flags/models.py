"""Applications, environments, flags, their attributes, per-environment settings and versions.

Models hold data and invariants the database can enforce; the rules that span rows
(constraints on values, revisions, audit) live in ``services.py``.
"""

from __future__ import annotations

from django.conf import settings as conf  # not 'settings': Flag.settings is a relation
from django.core.validators import MaxLengthValidator, RegexValidator
from django.db import models
from django.db.models import Q

KEY_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
KEY_HELP = (
    "Lowercase letter first, then lowercase letters, digits, '-' or '_'; at most 64 characters. "
    "Valid unchanged in AWS AppConfig, Azure App Configuration and OFREP."
)
key_validator = RegexValidator(KEY_PATTERN, KEY_HELP, code="invalid_key")
ATTRIBUTE_NAME_PATTERN = r"^[a-z][a-zA-Z0-9_-]{0,63}$"
attribute_name_validator = RegexValidator(
    ATTRIBUTE_NAME_PATTERN,
    "Letter first (lowercase), then letters, digits, '-' or '_'; at most 64 characters.",
    code="invalid_name",
)
TAG_PATTERN = r"^[a-z0-9][a-z0-9_.:-]{0,31}$"
tag_validator = RegexValidator(
    TAG_PATTERN,
    "Tags are lowercase letters, digits, '.', ':', '-' or '_'; at most 32 characters.",
    code="invalid_tag",
)


class Application(models.Model):
    key = models.CharField(
        max_length=64, unique=True, validators=[key_validator], help_text=KEY_HELP
    )
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, validators=[MaxLengthValidator(1024)])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class Environment(models.Model):
    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="environments"
    )
    key = models.CharField(max_length=64, validators=[key_validator], help_text=KEY_HELP)
    name = models.CharField(max_length=64)
    position = models.PositiveIntegerField(default=0)
    protected = models.BooleanField(
        default=False, help_text="Only admins can change it, after a confirmation."
    )
    backend = models.ForeignKey(
        "backends.BackendConnection", on_delete=models.PROTECT, related_name="environments"
    )
    default_strategy = models.ForeignKey(
        "deployments.DeploymentStrategy",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Used by toggles and preselected when deploying.",
    )
    live_version = models.ForeignKey(
        "flags.ConfigVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The version the environment serves to everyone (set by the deployment engine).",
    )
    # The alarm webhook's secret is derived from SECRET_KEY and this salt; only the salt is
    # stored. Rotating the secret means a new salt.
    alarm_secret_salt = models.CharField(max_length=64, blank=True)
    alarm_secret_rotated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["application_id", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["application", "key"], name="environment_key_unique")
        ]

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=32, validators=[tag_validator])

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["application", "name"], name="tag_unique")]

    def __str__(self) -> str:
        return self.name


class FlagKind(models.TextChoices):
    BOOLEAN = "boolean", "Boolean"
    MULTIVARIANT = "multivariant", "Multi-variant"


class ValueType(models.TextChoices):
    """The type of a flag's served value (OFREP): boolean flags serve booleans."""

    BOOLEAN = "boolean", "Boolean"
    STRING = "string", "String"
    INTEGER = "integer", "Integer"
    FLOAT = "float", "Float"
    OBJECT = "object", "JSON object"


class Flag(models.Model):
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="flags")
    key = models.CharField(max_length=64, validators=[key_validator], help_text=KEY_HELP)
    name = models.CharField(max_length=64)
    description = models.TextField(blank=True, validators=[MaxLengthValidator(1024)])
    kind = models.CharField(max_length=16, choices=FlagKind.choices, default=FlagKind.BOOLEAN)
    value_type = models.CharField(
        max_length=16, choices=ValueType.choices, default=ValueType.BOOLEAN
    )
    short_term = models.BooleanField(
        default=False, help_text="A release or time-boxed flag that should be removed later."
    )
    owner = models.ForeignKey(
        conf.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_flags",
    )
    remove_by = models.DateField(null=True, blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="flags")
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(fields=["application", "key"], name="flag_key_unique"),
            models.CheckConstraint(
                condition=Q(kind="boolean", value_type="boolean")
                | (Q(kind="multivariant") & ~Q(value_type="boolean")),
                name="flag_kind_matches_value_type",
            ),
        ]
        indexes = [
            models.Index(fields=["application", "archived_at", "key"], name="flag_app_active_key"),
            models.Index(fields=["application", "remove_by"], name="flag_app_remove_by"),
            models.Index(fields=["application", "-updated_at"], name="flag_app_updated"),
            models.Index(fields=["application", "-created_at"], name="flag_app_created"),
        ]

    def __str__(self) -> str:
        return self.key

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @property
    def is_multivariant(self) -> bool:
        return self.kind == FlagKind.MULTIVARIANT


class AttributeType(models.TextChoices):
    STRING = "string", "String"
    NUMBER = "number", "Number"
    BOOLEAN = "boolean", "Boolean"
    STRING_LIST = "string_list", "List of strings"
    NUMBER_LIST = "number_list", "List of numbers"
    DATE = "date", "Date"


class FlagAttribute(models.Model):
    """A typed value a flag carries when enabled, with an optional constraint (as in AWS)."""

    flag = models.ForeignKey(Flag, on_delete=models.CASCADE, related_name="attributes")
    name = models.CharField(max_length=64, validators=[attribute_name_validator])
    type = models.CharField(max_length=16, choices=AttributeType.choices)
    description = models.CharField(max_length=1024, blank=True)
    required = models.BooleanField(
        default=False, help_text="A value must be set before the flag can be enabled."
    )
    pattern = models.CharField(
        max_length=1024, blank=True, help_text="Regular expression (strings and string lists)."
    )
    enum = models.JSONField(
        default=list, blank=True, help_text="Allowed values (strings and string lists)."
    )
    minimum = models.BigIntegerField(null=True, blank=True)
    maximum = models.BigIntegerField(null=True, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["flag_id", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["flag", "name"], name="attribute_name_unique")
        ]

    def __str__(self) -> str:
        return f"{self.flag_id}:{self.name}"


class FlagSetting(models.Model):
    """The working state of one flag in one environment."""

    flag = models.ForeignKey(Flag, on_delete=models.CASCADE, related_name="settings")
    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="flag_settings"
    )
    enabled = models.BooleanField(default=False)
    attribute_values = models.JSONField(default=dict, blank=True)
    variants = models.JSONField(default=list, blank=True)
    default_variant = models.CharField(max_length=64, blank=True)
    # Targeting rules, evaluated in order (see flagdash/evaluation/rules.py for the shape).
    # Kept on the setting, not in a table of their own: they are edited, revision-checked,
    # audited and saved into versions together with the rest of the working state.
    rules = models.JSONField(default=list, blank=True)
    revision = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        conf.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["flag", "environment"], name="setting_unique")
        ]
        indexes = [models.Index(fields=["environment", "flag"], name="setting_env_flag")]

    def __str__(self) -> str:
        return f"{self.flag_id}@{self.environment_id} r{self.revision}"


class ConfigVersion(models.Model):
    """An immutable snapshot of one environment's whole flag configuration."""

    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    document = models.TextField(help_text="Canonical JSON; sha256 is computed over these bytes.")
    sha256 = models.CharField(max_length=64)
    author = models.ForeignKey(
        conf.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author_name = models.CharField(max_length=150, blank=True)
    message = models.CharField(max_length=500, blank=True)
    flag_digests = models.JSONField(
        default=dict,
        blank=True,
        help_text="Flag key → sha256 of its entry, so pages compare versions without the document.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["environment_id", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "number"], name="version_number_unique")
        ]

    def __str__(self) -> str:
        return f"{self.environment_id} v{self.number}"

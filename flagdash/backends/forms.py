"""The form that points an environment at a backend: the built-in store, AWS AppConfig or Azure
App Configuration, with each kind's non-secret settings.

Field names carry the kind (``aws_region``, ``azure_endpoint``) so one form serves every kind and
works without JavaScript; only the chosen kind's fields are required. ``options()`` gives the
connection's ``options`` in the shape the backend modules read.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.validators import RegexValidator, URLValidator

from flagdash.backends.endpoints import EndpointNotAllowed, check_endpoint
from flagdash.backends.models import BackendKind

AWS_ID = RegexValidator(
    r"^[a-z0-9]{4,7}$", "AWS AppConfig ids are 4–7 lowercase letters or digits."
)
AWS_REGION = RegexValidator(
    r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$", "A region looks like eu-west-1 or us-gov-west-1."
)
AWS_NAME = RegexValidator(r"^[^\n\r]{1,64}$", "1–64 characters on one line.")
ENV_VAR = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
    "The name of an environment variable (letters, digits and _), not the secret itself.",
)
DEFAULT_AZURE_CONNECTION_STRING_ENV = "AZURE_APPCONFIG_CONNECTION_STRING"
LABEL_FORBIDDEN = re.compile(r"[*,\\\x00-\x1f]")

AWS_SETUP_CHOICES = [
    ("existing", "Use existing AppConfig resources (enter their ids)"),
    ("create", "Create them in AWS (enter names; existing ones with those names are reused)"),
]


class EndpointField(forms.URLField):
    """An http(s) URL: https for real services, http allowed for local fakes and emulators."""

    default_validators = [URLValidator(schemes=["https", "http"])]

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("assume_scheme", "https")
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> str:
        return str(super().to_python(value)).rstrip("/")


class BackendForm(forms.Form):
    kind = forms.ChoiceField(
        choices=BackendKind.choices,
        widget=forms.RadioSelect,
        label="Where versions of this environment are deployed",
    )

    # AWS AppConfig
    aws_region = forms.CharField(
        required=False, max_length=32, label="Region", validators=[AWS_REGION]
    )
    aws_setup = forms.ChoiceField(
        choices=AWS_SETUP_CHOICES,
        initial="existing",
        required=False,
        widget=forms.RadioSelect,
        label="AppConfig resources",
    )
    aws_application_id = forms.CharField(
        required=False, max_length=7, label="Application id", validators=[AWS_ID]
    )
    aws_configuration_profile_id = forms.CharField(
        required=False,
        max_length=7,
        label="Configuration profile id",
        validators=[AWS_ID],
        help_text="A feature-flag profile (type AWS.AppConfig.FeatureFlags, hosted).",
    )
    aws_environment_id = forms.CharField(
        required=False, max_length=7, label="Environment id", validators=[AWS_ID]
    )
    aws_application_name = forms.CharField(
        required=False, max_length=64, label="Application name", validators=[AWS_NAME]
    )
    aws_profile_name = forms.CharField(
        required=False, max_length=64, label="Feature-flag profile name", validators=[AWS_NAME]
    )
    aws_environment_name = forms.CharField(
        required=False, max_length=64, label="Environment name", validators=[AWS_NAME]
    )
    aws_endpoint_url = EndpointField(
        required=False,
        max_length=300,
        label="Endpoint URL (optional)",
        help_text="Leave empty for AWS itself; set it for a VPC endpoint or a local fake.",
    )

    # Azure App Configuration
    azure_endpoint = EndpointField(
        required=False,
        max_length=300,
        label="Store endpoint",
        help_text="e.g. https://mystore.azconfig.io",
    )
    azure_label = forms.CharField(
        required=False,
        max_length=255,
        label="Label",
        help_text="The label that stands for this environment in the store (empty: no label).",
    )
    azure_connection_string_env = forms.CharField(
        required=False,
        max_length=128,
        label="Connection string variable",
        validators=[ENV_VAR],
        help_text="The name of the environment variable of flagdash's web and worker processes "
        "that holds the store's connection string. When it is not set, flagdash signs in with "
        "DefaultAzureCredential (managed identity, workload identity, az login).",
    )

    def clean_azure_label(self) -> str:
        label = self.cleaned_data.get("azure_label") or ""
        if LABEL_FORBIDDEN.search(label):
            raise forms.ValidationError(
                "A label cannot contain *, a comma, a backslash or control characters.",
                code="invalid",
            )
        return label

    def _require(self, *names: str) -> None:
        for name in names:
            if not self.cleaned_data.get(name) and name not in self.errors:
                label = self.fields[name].label or name
                self.add_error(name, forms.ValidationError(f"{label} is required.", "required"))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        for name, field_kind in (
            ("aws_endpoint_url", BackendKind.AWS_APPCONFIG),
            ("azure_endpoint", BackendKind.AZURE_APPCONFIG),
        ):
            url = data.get(name)
            if kind == field_kind and url and name not in self.errors:
                try:
                    check_endpoint(url, field_kind)
                except EndpointNotAllowed as exc:
                    self.add_error(name, forms.ValidationError(str(exc), code="not_allowed"))
        if kind == BackendKind.AWS_APPCONFIG:
            self._require("aws_region")
            if (data.get("aws_setup") or "existing") == "create":
                self._require("aws_environment_name")
                if not data.get("aws_application_id"):
                    self._require("aws_application_name")
                if not data.get("aws_configuration_profile_id"):
                    self._require("aws_profile_name")
            else:
                self._require(
                    "aws_application_id", "aws_configuration_profile_id", "aws_environment_id"
                )
        elif kind == BackendKind.AZURE_APPCONFIG:
            self._require("azure_endpoint")
        return data

    @property
    def creates_aws_resources(self) -> bool:
        return (
            self.cleaned_data.get("kind") == BackendKind.AWS_APPCONFIG
            and self.cleaned_data.get("aws_setup") == "create"
        )

    def options(self) -> dict[str, str]:
        """The connection's options for the chosen kind (only non-secret settings)."""
        data = self.cleaned_data
        kind = data["kind"]
        if kind == BackendKind.AWS_APPCONFIG:
            return {
                "region": data["aws_region"],
                "application_id": data.get("aws_application_id") or "",
                "configuration_profile_id": data.get("aws_configuration_profile_id") or "",
                "environment_id": data.get("aws_environment_id") or "",
                "endpoint_url": data.get("aws_endpoint_url") or "",
            }
        if kind == BackendKind.AZURE_APPCONFIG:
            return {
                "endpoint": data["azure_endpoint"],
                "label": data.get("azure_label") or "",
                "connection_string_env": data.get("azure_connection_string_env")
                or DEFAULT_AZURE_CONNECTION_STRING_ENV,
            }
        return {}

    def aws_names(self) -> dict[str, str]:
        data = self.cleaned_data
        return {
            "application_name": data.get("aws_application_name") or "",
            "profile_name": data.get("aws_profile_name") or "",
            "environment_name": data.get("aws_environment_name") or "",
        }


def initial_for(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """The form's initial values for a saved connection."""
    initial: dict[str, Any] = {"kind": kind, "aws_setup": "existing"}
    if kind == BackendKind.AWS_APPCONFIG:
        for key in ("region", "application_id", "configuration_profile_id", "environment_id"):
            initial[f"aws_{key}"] = options.get(key, "")
        initial["aws_endpoint_url"] = options.get("endpoint_url", "")
    elif kind == BackendKind.AZURE_APPCONFIG:
        initial["azure_endpoint"] = options.get("endpoint", "")
        initial["azure_label"] = options.get("label", "")
        initial["azure_connection_string_env"] = options.get(
            "connection_string_env", DEFAULT_AZURE_CONNECTION_STRING_ENV
        )
    else:
        initial["azure_connection_string_env"] = DEFAULT_AZURE_CONNECTION_STRING_ENV
    return initial

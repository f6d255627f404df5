"""Forms parse what a browser posts; services decide what is valid.

A service's ValidationError is mapped back onto the form's fields so the message appears next to
the field that caused it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.utils import ErrorDict

from flagdash.core.parsing import form_number, positive_int
from flagdash.evaluation.rules import BOOLEAN_VARIANTS
from flagdash.flags.models import (
    KEY_HELP,
    AttributeType,
    FlagAttribute,
    FlagKind,
    FlagSetting,
    ValueType,
)
from flagdash.flags.rule_builder import RuleBuilder

MAX_RULES_JSON = 100_000  # checked only when the JSON is what gets saved
MULTI_VALUE_TYPES = [(v, label) for v, label in ValueType.choices if v != ValueType.BOOLEAN]


def apply_service_errors(
    form: forms.Form, exc: ValidationError, field_for: Callable[[str], str | None] = lambda k: k
) -> None:
    """Attach a service's errors to the form: known fields at the field, others at the top."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for key, errors in exc.error_dict.items():
        name = field_for(key)
        target = name if name in form.fields else None
        for error in errors:
            form.add_error(target, error)


def split_lines(value: str) -> list[str]:
    return [line.strip() for line in value.replace(",", "\n").splitlines() if line.strip()]


class TagsField(forms.CharField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", 700)
        kwargs.setdefault("help_text", "Comma-separated, e.g. payments, release")
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        return split_lines(super().to_python(value) or "")


class OwnerField(forms.ChoiceField):
    """Active users, plus the current owner if they have left (kept until someone picks another)."""

    def __init__(self, usernames: Sequence[str], current: str = "", **kwargs: Any) -> None:
        choices = [("", "— nobody —"), *[(u, u) for u in usernames]]
        if current and current not in usernames:
            choices.append((current, f"{current} (inactive)"))
        super().__init__(choices=choices, required=False, **kwargs)


class FlagDefinitionForm(forms.Form):
    name = forms.CharField(max_length=64, help_text="A short human name (one line).")
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=1024
    )
    short_term = forms.BooleanField(
        required=False,
        label="Short-term flag",
        help_text="A release or time-boxed flag that should be removed once its job is done.",
    )
    remove_by = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Remove by"
    )
    tags = TagsField()

    def __init__(
        self, *args: Any, usernames: Sequence[str] = (), current_owner: str = "", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["owner"] = OwnerField(usernames, current_owner, label="Owner")


class FlagCreateForm(FlagDefinitionForm):
    key = forms.CharField(max_length=64, help_text=KEY_HELP)
    kind = forms.ChoiceField(choices=FlagKind.choices, initial=FlagKind.BOOLEAN)
    value_type = forms.ChoiceField(
        choices=MULTI_VALUE_TYPES,
        required=False,
        label="Value type",
        help_text="What a multi-variant flag serves (ignored for boolean flags).",
    )

    field_order = ["key", "name", "description", "kind", "value_type"]


class AttributeForm(forms.Form):
    name = forms.CharField(max_length=64)
    type = forms.ChoiceField(choices=AttributeType.choices)
    description = forms.CharField(max_length=1024, required=False)
    required = forms.BooleanField(
        required=False, help_text="A value must be set before the flag can be enabled."
    )
    pattern = forms.CharField(
        max_length=1024, required=False, help_text="Regular expression for strings, e.g. ^[A-Z]{3}$"
    )
    enum = forms.CharField(
        required=False,
        max_length=110_000,
        label="Allowed values",
        help_text="For strings: comma-separated or one per line.",
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    minimum = forms.IntegerField(required=False, help_text="For numbers (whole number).")
    maximum = forms.IntegerField(required=False)

    @classmethod
    def initial_for(cls, attr: FlagAttribute) -> dict[str, Any]:
        return {
            "name": attr.name,
            "type": attr.type,
            "description": attr.description,
            "required": attr.required,
            "pattern": attr.pattern,
            "enum": ", ".join(str(v) for v in attr.enum),
            "minimum": attr.minimum,
            "maximum": attr.maximum,
        }

    def service_kwargs(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["enum"] = split_lines(data.get("enum") or "")
        return data


class VersionForm(forms.Form):
    message = forms.CharField(
        max_length=500,
        required=False,
        help_text="What changed and why (shown in the version list and the audit log).",
    )


class DeployForm(forms.Form):
    """Deploy a saved version: a strategy, a message, and the live version the user reviewed.

    ``strategies`` are ``(name, label)`` pairs; the view resolves the chosen name. ``live`` is
    the number of the version the page compared against (0: nothing deployed): if another
    deployment changed it meanwhile, the diff the user confirmed is stale and nothing happens.
    """

    strategy = forms.ChoiceField(
        label="Deployment strategy",
        help_text="How fast targets get the new version, and how long flagdash watches for "
        "alarms at 100 % before the deployment is complete.",
        error_messages={
            "invalid_choice": "There is no strategy “%(value)s” (any more): choose one of the list."
        },
    )
    message = forms.CharField(
        max_length=500,
        required=False,
        help_text="Shown on the deployment and in the audit log (default: the version's message).",
    )
    live = forms.IntegerField(min_value=0, widget=forms.HiddenInput)

    def __init__(self, *args: Any, strategies: Sequence[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["strategy"].choices = list(strategies)  # type: ignore[attr-defined]


REASON_REQUIRED = "Say why you roll back: it goes in the audit log."


class VersionRollbackForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Recorded on the deployment, on the rollbacks page and in the audit log.",
        error_messages={"required": REASON_REQUIRED},
    )


def _rules_not_saved(builder: RuleBuilder) -> ValidationError:
    count = len(builder.summary)
    return ValidationError(
        f"Nothing was saved: the targeting rules have {count} problem{'s' if count != 1 else ''} "
        "(listed under Targeting rules).",
        code="invalid_rules",
    )


class SettingForm(forms.Form):
    """The values of one flag in one environment: enabled, attribute values, variants."""

    EXTRA_VARIANT_ROWS = 2

    revision = forms.IntegerField(widget=forms.HiddenInput, min_value=1)
    default_variant = forms.CharField(required=False, max_length=64, label="Default variant")
    rules = forms.CharField(
        required=False,
        strip=False,
        label="All rules as JSON",
        widget=forms.Textarea(attrs={"rows": 6, "class": "mono", "spellcheck": "false"}),
        help_text="If you change the JSON here, it replaces the rules above when you save (what "
        "you changed in the rules above is then dropped). Leave it as it is to save the rules "
        'above. A list, first match wins, e.g. [{"name": "Staff", "conditions": '
        '[{"attribute": "email", "operator": "ends_with", "value": "@example.com"}], '
        '"serve": {"variant": "on"}}] or "serve": {"split": [{"variant": "on", "weight": 20}, '
        '{"variant": "off", "weight": 80}]}. Empty: no rules.',
    )

    def __init__(
        self,
        *args: Any,
        setting: FlagSetting,
        attributes: Sequence[FlagAttribute],
        **kwargs: Any,
    ) -> None:
        self.setting = setting
        self.attributes = list(attributes)
        self.flag = setting.flag
        self.rearranging = False  # a builder button: re-render only (see rearrange_rules)
        kwargs.setdefault("initial", self._initial())
        kwargs.setdefault("prefix", f"env-{setting.environment.key}")
        super().__init__(*args, **kwargs)
        for attr in self.attributes:
            self.fields[self.attr_field(attr.name)] = self._field_for(attr)
        if self.flag.is_multivariant:
            rows = self._filled_variant_rows(len(setting.variants)) + self.EXTRA_VARIANT_ROWS
            for i in range(rows):
                self.fields[f"variant_{i}_name"] = forms.CharField(
                    required=False, max_length=64, label=f"Variant {i + 1} name"
                )
                self.fields[f"variant_{i}_value"] = forms.CharField(
                    required=False,
                    max_length=10_000,
                    label=f"Variant {i + 1} value",
                    widget=forms.Textarea(attrs={"rows": 1})
                    if self.flag.value_type == ValueType.OBJECT
                    else forms.TextInput(),
                )
        else:
            del self.fields["default_variant"]
        self.rule_builder = RuleBuilder(
            prefix=self.add_prefix(""),
            rules=setting.rules,
            variant_names=self.variant_options(),
            data=self.data if self.is_bound else None,
        )

    def rearrange_rules(self, action: str) -> None:
        """Apply a builder button (add, remove, move a row) for a re-render; nothing is checked
        or saved, so half-filled rows show no errors yet."""
        self.rule_builder.apply(action)
        self.rearranging = True

    def full_clean(self) -> None:
        if self.rearranging:
            self._errors = ErrorDict()
            self.cleaned_data = {}
            return
        super().full_clean()

    def variant_options(self) -> list[str]:
        """What a rule may serve: on/off, or the variants (as typed in this form, when posted)."""
        if not self.flag.is_multivariant:
            return list(BOOLEAN_VARIANTS)
        if not self.is_bound:
            return [v["name"] for v in self.setting.variants]
        names = []
        for i in self.data_variant_indexes():
            name = str(self.data.get(self.add_prefix(f"variant_{i}_name"), "")).strip()
            if name and name not in names:
                names.append(name)
        return names

    @staticmethod
    def attr_field(name: str) -> str:
        return f"attr__{name}"

    def _filled_variant_rows(self, saved: int) -> int:
        """Rows up to the last posted one with anything in it (or the saved variants).

        Re-showing a refused form must not grow: the empty rows it had are added again once.
        """
        posted = self.data_variant_indexes()
        if not posted:
            return saved
        filled = [
            i
            for i in posted
            if str(self.data.get(self.add_prefix(f"variant_{i}_name"), "")).strip()
            or str(self.data.get(self.add_prefix(f"variant_{i}_value"), "")).strip()
        ]
        return max(filled) + 1 if filled else 0

    def data_variant_indexes(self) -> list[int]:
        if not self.data:
            return []
        prefix = self.add_prefix("variant_")
        found = set()
        for key in self.data:
            if key.startswith(prefix) and key.endswith("_name"):
                middle = key[len(prefix) : -len("_name")]
                index = positive_int(middle) if middle != "0" else 0
                if index is not None and index < 50:
                    found.add(index)
        return sorted(found)

    def _initial(self) -> dict[str, Any]:
        s = self.setting
        initial: dict[str, Any] = {
            "revision": s.revision,
            "rules": json.dumps(s.rules, indent=2, ensure_ascii=False) if s.rules else "",
        }
        for name, value in s.attribute_values.items():
            initial[self.attr_field(name)] = self._display(value)
        if s.flag.is_multivariant:
            initial["default_variant"] = s.default_variant
            for i, variant in enumerate(s.variants):
                initial[f"variant_{i}_name"] = variant["name"]
                value = variant["value"]
                initial[f"variant_{i}_value"] = (
                    json.dumps(value) if isinstance(value, dict) else value
                )
        return initial

    @staticmethod
    def _display(value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(str(v) for v in value)
        if isinstance(value, bool):
            return "true" if value else "false"
        return value

    def _field_for(self, attr: FlagAttribute) -> forms.Field:
        label = attr.name
        help_text = attr.description
        common: dict[str, Any] = {"required": False, "label": label, "help_text": help_text}
        if attr.type == AttributeType.STRING and attr.enum:
            return forms.ChoiceField(
                choices=[("", "— not set —")] + [(v, v) for v in attr.enum], **common
            )
        if attr.type == AttributeType.STRING:
            return forms.CharField(max_length=1024, strip=False, **common)
        if attr.type == AttributeType.NUMBER:
            return forms.CharField(
                max_length=40, widget=forms.TextInput(attrs={"inputmode": "decimal"}), **common
            )
        if attr.type == AttributeType.BOOLEAN:
            return forms.ChoiceField(
                choices=[("", "— not set —"), ("true", "true"), ("false", "false")], **common
            )
        if attr.type == AttributeType.DATE:
            return forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), **common)
        common["help_text"] = (help_text + " " if help_text else "") + "One item per line."
        return forms.CharField(
            max_length=110_000, widget=forms.Textarea(attrs={"rows": 2}), **common
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        values: dict[str, Any] = {}
        for attr in self.attributes:
            name = self.attr_field(attr.name)
            raw = cleaned.get(name)
            if raw in (None, ""):
                continue
            try:
                values[attr.name] = self._convert(attr, raw)
            except ValidationError as exc:
                self.add_error(name, exc)
        cleaned["attribute_values"] = values
        if self.flag.is_multivariant:
            cleaned["variants"] = self._variants(cleaned)
        builder = self.rule_builder
        if builder.source == "json":
            rules = self._rules(cleaned.get("rules") or "")
            if rules is not None and builder.edited_both:
                self.add_error(
                    "rules",
                    ValidationError(
                        "You changed the rules both in the builder and here as JSON; nothing "
                        "was saved. Keep one: undo the JSON edits to save the builder's, or "
                        "reload the page and make your change in one place.",
                        code="edited_both",
                    ),
                )
            else:
                cleaned["rules"] = rules
        elif builder.source == "builder":
            cleaned["rules"], problems = builder.parse()
            if problems:
                self.add_error(None, _rules_not_saved(builder))
        else:
            cleaned["rules"] = None  # neither the rules nor their JSON were posted: keep them
        return cleaned

    def add_service_errors(self, exc: ValidationError) -> None:
        """A service's errors at their fields; rule errors at the builder's inputs."""
        builder = self.rule_builder
        if hasattr(exc, "error_dict") and "rules" in exc.error_dict and builder.source != "json":
            messages = [m for e in exc.error_dict["rules"] for m in e.messages]
            exc = ValidationError({k: v for k, v in exc.error_dict.items() if k != "rules"})
            builder.locate(self.variant_options())
            if not builder.summary:
                builder.add_general(messages)
            self.add_error(None, _rules_not_saved(builder))
        apply_service_errors(self, exc, self.field_for_service_key)

    def _rules(self, raw: str) -> Any:
        if not raw.strip():
            return []
        if len(raw) > MAX_RULES_JSON:
            self.add_error(
                "rules",
                ValidationError(f"At most {MAX_RULES_JSON} characters.", code="max_length"),
            )
            return None
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            self.add_error("rules", ValidationError(f"Not valid JSON: {exc}.", code="invalid_json"))
            return None

    @staticmethod
    def _convert(attr: FlagAttribute, raw: Any) -> Any:
        match attr.type:
            case AttributeType.NUMBER:
                return form_number(str(raw))
            case AttributeType.BOOLEAN:
                return raw == "true"
            case AttributeType.DATE:
                return raw.isoformat()
            case AttributeType.STRING_LIST:
                return [line for line in str(raw).splitlines() if line.strip()]
            case AttributeType.NUMBER_LIST:
                return [form_number(line) for line in str(raw).splitlines() if line.strip()]
        return raw

    def _variants(self, cleaned: dict[str, Any]) -> list[dict[str, Any]]:
        variants = []
        self._variant_rows: list[int] = []  # form row of each variant sent to the service
        i = 0
        while f"variant_{i}_name" in self.fields:
            name = (cleaned.get(f"variant_{i}_name") or "").strip()
            raw = cleaned.get(f"variant_{i}_value") or ""
            i += 1
            if not name and not raw.strip():
                continue
            value: Any = raw
            try:
                if self.flag.value_type == ValueType.OBJECT:
                    value = json.loads(raw or "null")
                elif self.flag.value_type in (ValueType.INTEGER, ValueType.FLOAT):
                    value = form_number(raw)
            except (ValueError, RecursionError, ValidationError):
                self.add_error(
                    f"variant_{i - 1}_value",
                    ValidationError(
                        "Enter valid JSON."
                        if self.flag.value_type == ValueType.OBJECT
                        else "Enter a number.",
                        code="wrong_type",
                    ),
                )
                continue
            variants.append({"name": name, "value": value})
            self._variant_rows.append(i - 1)
        return variants

    def field_for_service_key(self, key: str) -> str | None:
        if key.startswith("attribute_values."):
            return self.attr_field(key.split(".", 1)[1])
        if key.startswith("variants."):
            index = key.split(".", 1)[1]
            rows = getattr(self, "_variant_rows", [])
            position = positive_int(index) if index != "0" else 0
            if position is not None and position < len(rows):
                return f"variant_{rows[position]}_name"
            return None
        if key == "variants":
            return None
        return key

    def attribute_fields(self) -> list[forms.BoundField]:
        return [self[self.attr_field(a.name)] for a in self.attributes]

    def variant_rows(self) -> list[tuple[forms.BoundField, forms.BoundField]]:
        rows = []
        i = 0
        while f"variant_{i}_name" in self.fields:
            rows.append((self[f"variant_{i}_name"], self[f"variant_{i}_value"]))
            i += 1
        return rows

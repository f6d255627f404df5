"""The targeting-rule builder: an environment's rules as form inputs a person can fill in.

The rules keep their shape (``flagdash.evaluation.rules``); this module only turns them into
inputs and back. Every input is a plain form field, so the builder works without JavaScript:
buttons named ``rules_action`` re-render the form with a row added, removed or moved (nothing
is saved), and htmx sends the same buttons to the same view to swap only the rules fragment.

Naming scheme (``P`` is the form's prefix, e.g. ``env-beta-``; ``i``, ``j``, ``k`` count from 0)::

    P rule-TOTAL_FORMS                       how many rule cards were posted
    P rule-i-name                            the rule's name
    P rule-i-match                           "all" or "any" of the conditions
    P rule-i-cond-TOTAL_FORMS                how many condition rows rule i has
    P rule-i-cond-j-attribute                context attribute (email, targetingKey, $now, …)
    P rule-i-cond-j-operator                 equals, in, semver_gte, before, …
    P rule-i-cond-j-type                     text | number | boolean (equals and lists only)
    P rule-i-cond-j-value                    the value; a list: one per line or comma-separated
    P rule-i-serve                           "variant" or "split"
    P rule-i-variant                         the variant served
    P rule-i-split-TOTAL_FORMS               how many split rows rule i has
    P rule-i-split-k-variant / -weight       a split row (a row without a weight is left out)
    P rule-i-json                            a rule the builder cannot show exactly, as JSON
    P rules                                  every rule as JSON (the "Edit as JSON" escape hatch)
    P rules_base                             the JSON the page showed: if ``rules`` differs, it wins
    rules_action                             add_rule | remove_rule-i | move_up-i | move_down-i |
                                             add_condition-i | remove_condition-i-j |
                                             add_split-i | remove_split-i-k | refresh

A card whose name and condition rows are all empty is ignored, and so is an empty condition
row. A stored rule is shown in the builder only if reading the inputs back gives exactly the same
rule (same types, same texts); otherwise its card holds the rule as JSON, so saving the page
never changes a rule nobody touched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError

from flagdash.core.parsing import form_number
from flagdash.evaluation import rules as targeting
from flagdash.evaluation.rules import (
    DATES,
    EQUALITY,
    MAX_CONDITIONS,
    MAX_RULES,
    MEMBERSHIP,
    NUMERIC,
    SEMVER_OPS,
)
from flagdash.flags.validation import MAX_VARIANTS

ACTION_FIELD = "rules_action"
TOTAL = "TOTAL_FORMS"
DEFAULT_ATTRIBUTES = ("targetingKey", "$now")

OPERATOR_GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Text",
        (
            ("equals", "equals"),
            ("not_equals", "does not equal"),
            ("starts_with", "starts with"),
            ("ends_with", "ends with"),
            ("contains", "contains"),
            ("matches", "matches regex"),
        ),
    ),
    ("Lists", (("in", "is one of"), ("not_in", "is not one of"))),
    (
        "Numbers",
        (("lt", "< less than"), ("lte", "≤ at most"), ("gt", "> more than"), ("gte", "≥ at least")),
    ),
    (
        "Versions",
        (
            ("semver_eq", "version ="),
            ("semver_lt", "version <"),
            ("semver_lte", "version ≤"),
            ("semver_gt", "version >"),
            ("semver_gte", "version ≥"),
        ),
    ),
    ("Dates", (("before", "is before"), ("after", "is after"))),
)
VALUE_TYPES = (("text", "text"), ("number", "number"), ("boolean", "true / false"))
TYPED = (*EQUALITY, *MEMBERSHIP)  # the operators whose value may be text, number or boolean
# What an <input type="datetime-local" step="1"> sends: a UTC date-time without a zone.
DATETIME_LOCAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?")
_ACTION = re.compile(
    r"(?P<verb>add_rule|refresh)"
    r"|(?P<verb1>remove_rule|move_up|move_down|add_condition|add_split)-(?P<a>\d{1,3})"
    r"|(?P<verb2>remove_condition|remove_split)-(?P<b>\d{1,3})-(?P<c>\d{1,3})"
)
_PATH = re.compile(r"^(?:Rules|Rule \d+(?:, condition \d+)?): ")
_PLACEHOLDER_CONDITION = {"attribute": "a", "operator": "equals", "value": 1}
_KEY = re.compile(
    r"rule-(?P<rule>\d+)(?:-(?P<kind>cond|split)-(?P<row>\d+))?(?:-(?P<part>[a-z]+))?"
)
_CONDITION_PARTS = {"invalid_attribute": "attribute", "invalid_operator": "operator"}
_PART_LABELS = {
    "attribute": "attribute",
    "operator": "operator",
    "type": "compared as",
    "value": "value",
    "weight": "percentage",
    "name": "name",
    "match": "match",
    "conditions": "conditions",
    "variant": "variant served",
    "split": "percentage split",
    "json": "JSON",
}


# --- what the inputs hold ------------------------------------------------------------------


@dataclass
class RawCondition:
    attribute: str = ""
    operator: str = "equals"
    type: str = "text"
    value: str = ""

    def is_blank(self) -> bool:
        return not self.attribute.strip() and not self.value.strip()


@dataclass
class RawSplit:
    variant: str = ""
    weight: str = ""


@dataclass
class RawRule:
    name: str = ""
    match: str = "all"
    conditions: list[RawCondition] = field(default_factory=list)
    serve: str = "variant"
    variant: str = ""
    split: list[RawSplit] = field(default_factory=list)
    json: str | None = None  # set: the rule is edited as JSON in its card

    def is_blank(self) -> bool:
        if self.json is not None:
            return not self.json.strip()
        return not self.name.strip() and all(c.is_blank() for c in self.conditions)


def _typed(kind: str, raw: str) -> Any:
    if kind == "number":
        return form_number(raw)
    if kind == "boolean":
        text = raw.strip().lower()
        if text not in ("true", "false"):
            raise ValidationError("Enter true or false.", code="wrong_type")
        return text == "true"
    return raw


def list_items(raw: str) -> list[str]:
    """One item per line, or comma-separated on a single line (``SV, US``)."""
    lines = [line for line in raw.splitlines() if line.strip()]
    pieces = lines if len(lines) > 1 else raw.split(",")
    return [p.strip() for p in pieces if p.strip()]


def condition_value(operator: str, kind: str, raw: str) -> Any:
    """The value a condition row stands for, or ``ValidationError`` with a message for it."""
    if operator in EQUALITY:
        return _typed(kind, raw)
    if operator in MEMBERSHIP:
        values = []
        for item in list_items(raw):
            try:
                values.append(_typed(kind, item))
            except ValidationError as exc:
                raise ValidationError(
                    f"“{item}” is not {'a number' if kind == 'number' else 'true or false'}.",
                    code="wrong_type",
                ) from exc
        return values
    if operator in NUMERIC:
        return form_number(raw)
    if operator in SEMVER_OPS or operator in DATES:
        return raw.strip()
    return raw


def _show(value: Any) -> tuple[str, str]:
    """(type, text) of a scalar as the inputs show it."""
    if isinstance(value, bool):
        return "boolean", "true" if value else "false"
    if isinstance(value, str):
        return "text", value
    return "number", json.dumps(value)


def raw_condition(condition: Mapping[str, Any]) -> RawCondition:
    operator = str(condition.get("operator", "equals"))
    value = condition.get("value")
    kind = "text"
    if operator in MEMBERSHIP and isinstance(value, list):
        shown = [_show(v) for v in value]
        kind = shown[0][0] if shown else "text"
        text = "\n".join(t for _, t in shown)
    elif operator in TYPED or value is None or not isinstance(value, str):
        kind, text = _show(value) if value is not None else ("text", "")
        if operator not in TYPED:
            kind = "text"
    else:
        text = value
    return RawCondition(str(condition.get("attribute", "")), operator, kind, text)


def raw_rule(rule: Mapping[str, Any], variant_names: Sequence[str]) -> RawRule:
    """The inputs showing a stored rule; its JSON when the inputs could not show it exactly."""
    serve = rule.get("serve") or {}
    raw = RawRule(
        name=str(rule.get("name", "")),
        match=str(rule.get("match", "all")),
        conditions=[raw_condition(c) for c in rule.get("conditions", [])],
        variant=variant_names[0] if variant_names else "",
    )
    if "split" in serve:
        raw.serve = "split"
        raw.split = [
            RawSplit(str(p.get("variant", "")), json.dumps(p.get("weight"))) for p in serve["split"]
        ]
    else:
        raw.variant = str(serve.get("variant", ""))
        raw.split = default_split(variant_names)
    try:
        back, problems = rule_from_raw(raw)
    except (TypeError, ValueError, AttributeError):  # pragma: no cover - stored rules are valid
        back, problems = None, {"": ["?"]}
    if problems or _canonical(back) != _canonical(rule):
        return RawRule(json=json.dumps(rule, indent=2, ensure_ascii=False))
    return raw


def default_split(variant_names: Sequence[str]) -> list[RawSplit]:
    return [RawSplit(name, "") for name in variant_names[:2]] or [RawSplit()]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


Problems = dict[str, list[str]]  # input key (``rule-0-cond-1-value``) → messages


def rule_from_raw(raw: RawRule) -> tuple[dict[str, Any] | None, Problems]:
    """The rule a card stands for (``None``: an empty card) and what could not be read.

    Keys of the problems are relative to card 0 (``cond-1-value``, ``split-0-weight``, ``json``).
    """
    problems: Problems = {}
    if raw.is_blank():
        return None, problems
    if raw.json is not None:
        try:
            return json.loads(raw.json), problems
        except (ValueError, RecursionError) as exc:
            problems["json"] = [f"Not valid JSON: {exc}."]
            return None, problems
    conditions = []
    for j, row in enumerate(raw.conditions):
        if row.is_blank():
            continue
        try:
            value = condition_value(row.operator, row.type, row.value)
        except ValidationError as exc:
            problems[f"cond-{j}-value"] = exc.messages
            value = None
        conditions.append(
            {"attribute": row.attribute.strip(), "operator": row.operator, "value": value}
        )
    serve: dict[str, Any]
    if raw.serve == "split":
        parts = []
        for k, part in enumerate(raw.split):
            if not part.weight.strip():
                continue
            try:
                parts.append({"variant": part.variant, "weight": form_number(part.weight)})
            except ValidationError as exc:
                problems[f"split-{k}-weight"] = exc.messages
        if not parts and not any(k.startswith("split-") for k in problems):
            problems["split"] = ["Give at least one variant a percentage."]
        serve = {"split": parts}
    else:
        serve = {"variant": raw.variant}
    rule: dict[str, Any] = {
        "match": raw.match,
        "conditions": conditions,
        "serve": serve,
    }
    if raw.name.strip():
        rule = {"name": raw.name.strip(), **rule}
    return rule, problems


def attribute_names(rule_lists: Iterable[Any]) -> list[str]:
    """The context attributes the rules use, with targetingKey and $now, sorted."""
    names = set(DEFAULT_ATTRIBUTES)
    for rules in rule_lists:
        for rule in rules if isinstance(rules, list) else []:
            for condition in rule.get("conditions", []) if isinstance(rule, Mapping) else []:
                attribute = condition.get("attribute") if isinstance(condition, Mapping) else None
                if isinstance(attribute, str) and attribute:
                    names.add(attribute)
    return sorted(names, key=lambda n: (n not in DEFAULT_ATTRIBUTES, n.lower(), n))


# --- what the template shows -------------------------------------------------------------------


@dataclass
class Input:
    name: str  # the html name (with the form's prefix)
    id: str
    value: str
    errors: list[str] = field(default_factory=list)
    autofocus: bool = False

    @property
    def error_id(self) -> str:
        return f"{self.id}-errors"


@dataclass
class ConditionView:
    number: int
    attribute: Input
    operator: Input
    type: Input | None  # only for equals/does not equal and lists
    value: Input
    widget: str  # text | list | number | datetime
    remove: str  # the rules_action of its remove button
    legend: str


@dataclass
class SplitView:
    number: int
    variant: Input
    weight: Input
    remove: str
    options: list[str]


@dataclass
class RuleView:
    index: int
    number: int
    id: str
    name: Input
    match: Input
    conditions: list[ConditionView]
    conditions_id: str
    serve: Input
    variant: Input
    variant_options: list[str]
    split: list[SplitView]
    split_total: Input  # its value: the running total; its errors: the split's
    json: Input | None
    description: str
    errors: list[str]
    conditions_errors: list[str]
    cond_total: Input
    split_total_forms: Input
    can_add_condition: bool
    can_add_split: bool
    first: bool
    last: bool
    button_id: str  # ids of its buttons: {button_id}move-up, …add-condition, …add-split
    focus: str  # which of its buttons has the focus after a re-render ("" for none)


class RuleBuilder:
    """The rules of one environment as a list of cards, from the database or from a POST."""

    operator_groups = OPERATOR_GROUPS
    operator_names = frozenset(name for _, ops in OPERATOR_GROUPS for name, _ in ops)
    value_types = VALUE_TYPES
    semver_operators = SEMVER_OPS
    date_operators = DATES

    def __init__(
        self,
        *,
        prefix: str,
        rules: Sequence[Mapping[str, Any]],
        variant_names: Sequence[str],
        data: Mapping[str, Any] | None = None,
    ) -> None:
        self.prefix = prefix
        self.variant_names = list(variant_names)
        self.problems: Problems = {}  # full keys (rule-0-cond-1-value) → messages
        self.summary: list[tuple[str, str, str]] = []  # (where, message, id of the input)
        self.focus = ""
        self._parsed: list[tuple[int, dict[str, Any], list[int]]] = []
        data = data or {}
        self.posted = self.key(f"rule-{TOTAL}") in data
        json_key = self.key("rules")
        initial_json = json.dumps(list(rules), indent=2, ensure_ascii=False) if rules else ""
        if self.posted:
            self.cards = self._read(data)
        else:
            self.cards = [raw_rule(rule, self.variant_names) for rule in rules]
        if json_key in data:
            self.json_text = str(data.get(json_key, ""))
            self.json_base = str(data.get(self.key("rules_base"), initial_json))
            self.json_changed = not self.posted or _json_differs(self.json_text, self.json_base)
        else:
            self.json_text = self.json_base = initial_json
            self.json_changed = False

    # -- names ----------------------------------------------------------------------------

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def input(self, key: str, value: str) -> Input:
        return Input(
            name=self.key(key),
            id=f"id_{self.key(key)}",
            value=value,
            errors=self.problems.get(key, []),
            autofocus=bool(self.focus) and self.focus == key,
        )

    @property
    def source(self) -> str | None:
        """Where the rules to save come from: "json", "builder", or None (not posted: keep)."""
        if self.json_changed:
            return "json"
        return "builder" if self.posted else None

    @property
    def edited_both(self) -> bool:
        """Whether the cards were changed as well as the JSON since the page was shown.

        Saving one would silently drop the other's edits, so the form refuses and asks.
        """
        if not (self.posted and self.json_changed):
            return False
        rules, problems = self.parse(record=False)
        if problems:
            return True  # the cards hold something that is not what was shown
        return _json_differs(json.dumps(rules), self.json_base)

    # -- reading a POST ---------------------------------------------------------------------

    def _count(self, data: Mapping[str, Any], key: str, limit: int) -> int:
        raw = str(data.get(self.key(key), "0")).strip()
        return min(int(raw), limit) if raw.isascii() and raw.isdigit() and len(raw) < 6 else 0

    def _read(self, data: Mapping[str, Any]) -> list[RawRule]:
        def text(key: str, default: str = "") -> str:
            value = data.get(self.key(key), default)
            return value if isinstance(value, str) else default

        cards = []
        for i in range(self._count(data, f"rule-{TOTAL}", MAX_RULES + 1)):
            p = f"rule-{i}-"
            if self.key(p + "json") in data:
                cards.append(RawRule(json=text(p + "json")))
                continue
            cards.append(
                RawRule(
                    name=text(p + "name"),
                    match=text(p + "match", "all"),
                    conditions=[
                        RawCondition(
                            attribute=text(f"{p}cond-{j}-attribute"),
                            operator=text(f"{p}cond-{j}-operator", "equals"),
                            type=text(f"{p}cond-{j}-type", "text"),
                            value=text(f"{p}cond-{j}-value"),
                        )
                        for j in range(self._count(data, f"{p}cond-{TOTAL}", MAX_CONDITIONS + 1))
                    ],
                    serve=text(p + "serve", "variant"),
                    variant=text(p + "variant"),
                    split=[
                        RawSplit(text(f"{p}split-{k}-variant"), text(f"{p}split-{k}-weight"))
                        for k in range(self._count(data, f"{p}split-{TOTAL}", MAX_VARIANTS + 1))
                    ],
                )
            )
        return cards

    # -- actions (re-render with a row added, removed or moved; nothing is saved) ----------

    def apply(self, action: str) -> None:
        found = _ACTION.fullmatch(action or "")
        if not found:
            return
        verb = found["verb"] or found["verb1"] or found["verb2"]
        index = int(found["a"] or found["b"] or 0)
        cards = self.cards
        if verb == "add_rule":
            if len(cards) < MAX_RULES:
                cards.append(self.new_rule())
                self.focus = f"rule-{len(cards) - 1}-name"
            return
        if verb == "refresh" or index >= len(cards):
            return
        card = cards[index]
        if verb == "remove_rule":
            del cards[index]
            self.focus = "add-rule"
        elif verb in ("move_up", "move_down"):
            other = index - 1 if verb == "move_up" else index + 1
            if 0 <= other < len(cards):
                cards[index], cards[other] = cards[other], cards[index]
                direction = "up" if verb == "move_up" else "down"
                last = len(cards) - 1
                if (direction == "up" and other == 0) or (direction == "down" and other == last):
                    direction = "down" if direction == "up" else "up"
                self.focus = f"rule-{other}-move-{direction}"
        elif card.json is not None:
            return
        elif verb == "add_condition":
            if len(card.conditions) < MAX_CONDITIONS:
                card.conditions.append(RawCondition())
                self.focus = f"rule-{index}-cond-{len(card.conditions) - 1}-attribute"
        elif verb == "add_split":
            if len(card.split) < max(len(self.variant_names), 1):
                used = {row.variant for row in card.split}
                unused = [v for v in self.variant_names if v not in used]
                card.split.append(RawSplit(unused[0] if unused else "", ""))
                card.serve = "split"
                self.focus = f"rule-{index}-split-{len(card.split) - 1}-weight"
        elif verb == "remove_condition":
            row = int(found["c"])
            if row < len(card.conditions):
                del card.conditions[row]
                if not card.conditions:
                    card.conditions.append(RawCondition())
                self.focus = f"rule-{index}-add-condition"
        elif verb == "remove_split":
            row = int(found["c"])
            if row < len(card.split):
                del card.split[row]
                self.focus = f"rule-{index}-add-split"
        self._refresh_json()

    def new_rule(self) -> RawRule:
        return RawRule(
            conditions=[RawCondition()],
            variant=self.variant_names[0] if self.variant_names else "",
            split=default_split(self.variant_names),
        )

    def _refresh_json(self) -> None:
        """Keep the JSON view in step with the cards, unless someone is editing it."""
        if self.json_changed:
            return
        rules, problems = self.parse(record=False)
        if not problems:
            self.json_text = self.json_base = (
                json.dumps(rules, indent=2, ensure_ascii=False) if rules else ""
            )

    # -- parsing and errors -------------------------------------------------------------------

    def parse(self, *, record: bool = True) -> tuple[list[dict[str, Any]], Problems]:
        """The rules the cards stand for, and what could not be read (at its input)."""
        rules: list[dict[str, Any]] = []
        problems: Problems = {}
        parsed = []
        for i, card in enumerate(self.cards):
            rule, found = rule_from_raw(card)
            for key, messages in found.items():
                problems[f"rule-{i}-{key}"] = messages
            if rule is not None:
                rows = [j for j, c in enumerate(card.conditions) if not c.is_blank()]
                parsed.append((i, rule, rows))
                rules.append(rule)
        if record:
            self._parsed = parsed
            for key, messages in problems.items():
                self._add(key, messages)
            if not problems:
                self._refresh_json()
        return rules, problems

    def _add(self, key: str, messages: list[str]) -> None:
        self.problems.setdefault(key, []).extend(messages)
        found = _KEY.fullmatch(key)
        if not found:
            self.summary.extend(("Rules", m, self.problems_id) for m in messages)
            return
        where = f"Rule {int(found['rule']) + 1}"
        if found["row"] is not None:
            kind = "condition" if found["kind"] == "cond" else "split row"
            where += f", {kind} {int(found['row']) + 1}"
        if found["part"]:
            where += f", {_PART_LABELS.get(found['part'], found['part'])}"
        self.summary.extend((where, m, self._target_id(key)) for m in messages)

    def _target_id(self, key: str) -> str:
        found = _KEY.fullmatch(key)
        if found and not found["part"]:  # the card itself
            return f"rule-card-{self.key(key)}"
        if key.endswith("-split"):
            return f"id_{self.key(key)}-total"
        return f"id_{self.key(key)}"

    def locate(self, variant_names: Sequence[str]) -> None:
        """Put the rules' validation errors at the inputs they are about, every one of them.

        ``validate_rules`` (the service's check) stops at the first problem; here it runs on
        each condition and each rule shell alone, so all problems show at once.
        """
        before = len(self.summary)
        for i, rule, rows in self._parsed:
            card = self.cards[i]
            if card.json is not None:
                error = _first_error(
                    lambda r=rule: targeting.validate_rules([r], variant_names=variant_names)
                )
                if error:
                    self._add(f"rule-{i}-json", [error[1]])
                continue
            conditions = rule.get("conditions", []) if isinstance(rule, dict) else []
            for position, condition in enumerate(conditions):
                error = _first_error(
                    lambda c=condition: targeting.validate_rules(
                        [{"conditions": [c], "serve": {"variant": "_"}}], variant_names=["_"]
                    )
                )
                if error:
                    code, message = error
                    field = _CONDITION_PARTS.get(code, "value")
                    self._add(f"rule-{i}-cond-{rows[position]}-{field}", [message])
            shell = {**rule, "conditions": [_PLACEHOLDER_CONDITION] * len(conditions)}
            error = _first_error(
                lambda s=shell: targeting.validate_rules([s], variant_names=variant_names)
            )
            if error:
                code, message = error
                part = _rule_part(code, card)
                self._add(f"rule-{i}-{part}" if part else f"rule-{i}", [message])
        whole = _first_error(
            lambda: targeting.validate_rules(
                [r for _, r, _ in self._parsed], variant_names=variant_names
            )
        )
        if whole and len(self.summary) == before:
            self._add("rules", [whole[1]])

    def add_general(self, messages: Iterable[str]) -> None:
        for message in messages:
            self._add("rules", [message])

    # -- the view model ----------------------------------------------------------------------

    def rule_views(self) -> list[RuleView]:
        views = []
        last = len(self.cards) - 1
        for i, card in enumerate(self.cards):
            p = f"rule-{i}-"
            options = list(self.variant_names)
            if card.variant and card.variant not in options:
                options.append(card.variant)
            conditions = [self._condition_view(i, j, row) for j, row in enumerate(card.conditions)]
            split = []
            for k, row in enumerate(card.split):
                row_options = list(self.variant_names)
                if row.variant and row.variant not in row_options:
                    row_options.append(row.variant)
                split.append(
                    SplitView(
                        number=k + 1,
                        variant=self.input(f"{p}split-{k}-variant", row.variant),
                        weight=self.input(f"{p}split-{k}-weight", row.weight),
                        remove=f"remove_split-{i}-{k}",
                        options=row_options,
                    )
                )
            total = self.input(p + "split", _total(card.split))
            total.id = f"id_{self.key(p + 'split')}-total"
            views.append(
                RuleView(
                    index=i,
                    number=i + 1,
                    id=f"rule-card-{self.key(p[:-1])}",
                    name=self.input(p + "name", card.name),
                    match=self.input(p + "match", card.match),
                    conditions=conditions,
                    conditions_id=f"id_{self.key(p + 'conditions')}",
                    serve=self.input(p + "serve", card.serve),
                    variant=self.input(p + "variant", card.variant),
                    variant_options=options,
                    split=split,
                    split_total=total,
                    json=self.input(p + "json", card.json) if card.json is not None else None,
                    description=_describe(card.json) if card.json is not None else "",
                    errors=self.problems.get(p[:-1], []),
                    conditions_errors=self.problems.get(p + "conditions", []),
                    cond_total=self.input(f"{p}cond-{TOTAL}", str(len(card.conditions))),
                    split_total_forms=self.input(f"{p}split-{TOTAL}", str(len(card.split))),
                    can_add_condition=len(card.conditions) < MAX_CONDITIONS,
                    can_add_split=len(card.split) < max(len(self.variant_names), 1),
                    first=i == 0,
                    last=i == last,
                    button_id=f"id_{self.key(p)}",
                    focus=self.focus[len(p) :] if self.focus.startswith(p) else "",
                )
            )
        return views

    def _condition_view(self, i: int, j: int, row: RawCondition) -> ConditionView:
        p = f"rule-{i}-cond-{j}-"
        if row.operator in MEMBERSHIP:
            widget = "list"
        elif row.operator in NUMERIC:
            widget = "number"
        elif row.operator in DATES and (not row.value or DATETIME_LOCAL.fullmatch(row.value)):
            widget = "datetime"
        else:
            widget = "text"
        return ConditionView(
            number=j + 1,
            attribute=self.input(p + "attribute", row.attribute),
            operator=self.input(p + "operator", row.operator),
            type=self.input(p + "type", row.type) if row.operator in TYPED else None,
            value=self.input(p + "value", row.value),
            widget=widget,
            remove=f"remove_condition-{i}-{j}",
            legend=f"Condition {j + 1} of rule {i + 1}",
        )

    @property
    def total_forms(self) -> Input:
        return self.input(f"rule-{TOTAL}", str(len(self.cards)))

    @property
    def problems_id(self) -> str:
        return f"{self.key('rules')}-problems"

    @property
    def json_base_name(self) -> str:
        return self.key("rules_base")

    @property
    def add_rule_id(self) -> str:
        return f"id_{self.key('add-rule')}"

    @property
    def can_add_rule(self) -> bool:
        return len(self.cards) < MAX_RULES


def _first_error(check: Any) -> tuple[str, str] | None:
    """(code, message without its "Rule 1, condition 2: " prefix) of a failed check, or None."""
    try:
        check()
    except ValidationError as exc:
        errors = exc.error_dict.get("rules", []) if hasattr(exc, "error_dict") else [exc]
        for error in errors:
            message = _PATH.sub("", " ".join(error.messages))
            return error.code or "invalid", message[:1].upper() + message[1:]
    return None


def _rule_part(code: str, card: RawRule) -> str | None:
    if code == "invalid_name":
        return "name"
    if code == "invalid_match":
        return "match"
    if code in ("required", "too_many"):
        return "conditions"
    if code == "unknown_variant" and card.serve != "split":
        return "variant"
    if code in ("unknown_variant", "invalid_split", "split_not_100", "invalid_serve"):
        return "split" if card.serve == "split" else "variant"
    return None


def _total(rows: Sequence[RawSplit]) -> str:
    total = 0.0
    for row in rows:
        try:
            total += float(form_number(row.weight)) if row.weight.strip() else 0
        except ValidationError:
            continue
    return f"{total:g}"


def _describe(text: str) -> str:
    try:
        rule = json.loads(text)
        return targeting.describe(rule) if isinstance(rule, dict) else ""
    except Exception:  # a rule being typed: no sentence yet
        return ""


def _json_differs(text: str, base: str) -> bool:
    """Whether the JSON view was edited (reformatting it is not a change)."""

    def read(value: str) -> Any:
        if not value.strip():
            return []
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return ("unparsed", value.strip())

    return _canonical(read(text)) != _canonical(read(base))

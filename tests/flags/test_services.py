"""Flag services: validation writes nothing, permissions, versions, the revision conflict."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from flagdash.audit.models import Action, AuditEvent
from flagdash.audit.services import audit_verify_chain
from flagdash.flags import services
from flagdash.flags.models import ConfigVersion, Flag, FlagAttribute, FlagSetting
from tests.factories import make_environment, make_flag

pytestmark = pytest.mark.django_db


def counts():
    return (
        Flag.objects.count(),
        FlagSetting.objects.count(),
        FlagAttribute.objects.count(),
        ConfigVersion.objects.count(),
        AuditEvent.objects.count(),
    )


def setting(flag, env):
    return FlagSetting.objects.get(flag=flag, environment=env)


def test_creating_a_flag_gives_it_a_disabled_setting_in_every_environment(app, envs, editor):
    flag = services.flag_create(
        actor=editor,
        application=app,
        key="new-search",
        name="New search",
        tags=["Search", "search"],
    )
    assert [s.enabled for s in FlagSetting.objects.filter(flag=flag)] == [False, False]
    assert list(flag.tags.values_list("name", flat=True)) == ["search"]
    event = AuditEvent.objects.get(action=Action.FLAG_CREATED)
    assert event.actor == editor
    assert event.after["key"] == "new-search"
    assert event.flag_id == flag.pk


@pytest.mark.parametrize(
    ("kwargs", "field", "code"),
    [
        ({"key": "Bad Key"}, "key", "invalid_key"),
        ({"key": "9lives"}, "key", "invalid_key"),
        ({"key": "a" * 65}, "key", "invalid_key"),
        ({"key": "ok", "description": "x" * 1025}, "description", "too_long"),
        ({"key": "ok", "name": "two\nlines"}, "name", "invalid"),
        ({"key": "ok", "name": " "}, "name", "required"),
        ({"key": "ok", "tags": ["no spaces allowed"]}, "tags", "invalid_tag"),
        ({"key": "ok", "owner": "nobody"}, "owner", "unknown_user"),
        (
            {"key": "ok", "kind": "multivariant", "value_type": "boolean"},
            "value_type",
            "invalid_choice",
        ),
    ],
)
def test_bad_input_is_refused_at_the_field_and_nothing_is_written(app, envs, kwargs, field, code):
    kwargs.setdefault("name", "A flag")
    before = counts()
    with pytest.raises(ValidationError) as info:
        services.flag_create(actor=None, application=app, **kwargs)
    assert info.value.error_dict[field][0].code == code
    assert counts() == before


def test_a_duplicate_key_is_refused(app, envs, flag):
    before = counts()
    with pytest.raises(ValidationError) as info:
        services.flag_create(actor=None, application=app, key=flag.key, name="Again")
    assert info.value.error_dict["key"][0].code == "duplicate"
    assert "already exists" in info.value.error_dict["key"][0].message
    assert counts() == before


def test_a_viewer_cannot_create_flags_nor_an_editor_toggle_production(
    app, envs, viewer, editor, flag, production
):
    before = counts()
    with pytest.raises(PermissionDenied):
        services.flag_create(actor=viewer, application=app, key="x", name="x")
    with pytest.raises(PermissionDenied, match="protected"):
        services.flag_set_enabled(actor=editor, flag=flag, environment=production, enabled=True)
    assert counts() == before


def test_toggling_saves_a_version_with_only_that_change(app, beta, production, editor):
    first = make_flag(app, "first")
    second = make_flag(app, "second")
    services.attribute_save(actor=editor, flag=second, name="limit", type="number")
    services.config_version_create(actor=editor, environment=beta, message="both flags")  # v2
    services.flag_set_enabled(actor=editor, flag=first, environment=beta, enabled=True)  # v3
    # an unsaved edit of another flag must not ride along with the next toggle
    services.flag_setting_update(
        actor=editor,
        flag=second,
        environment=beta,
        expected_revision=1,
        attribute_values={"limit": 3},
    )
    result = services.flag_set_enabled(actor=editor, flag=first, environment=beta, enabled=False)
    document = json.loads(result.version.document)
    assert result.version.number == 4
    assert document["flags"]["first"]["enabled"] is False
    assert document["flags"]["second"]["attribute_values"] == {}
    toggles = AuditEvent.objects.filter(action=Action.FLAG_TOGGLED).order_by("id")
    assert [(e.before["enabled"], e.after["enabled"]) for e in toggles] == [
        (False, True),
        (True, False),
    ]
    assert AuditEvent.objects.filter(action=Action.VERSION_CREATED, environment=beta).count() == 4


def test_enabling_needs_the_required_attributes(app, beta, flag):
    services.attribute_save(
        actor=None,
        flag=flag,
        name="default-currency",
        type="string",
        enum=["USD", "BTC"],
        required=True,
    )
    before = counts()
    with pytest.raises(ValidationError) as info:
        services.flag_set_enabled(actor=None, flag=flag, environment=beta, enabled=True)
    assert info.value.error_dict["attribute_values.default-currency"][0].code == "required"
    assert counts() == before


def test_a_value_that_breaks_a_constraint_changes_nothing(app, beta, flag):
    services.attribute_save(
        actor=None, flag=flag, name="pct", type="number", minimum=0, maximum=100
    )
    before = counts()
    with pytest.raises(ValidationError) as info:
        services.flag_setting_update(
            actor=None,
            flag=flag,
            environment=beta,
            expected_revision=1,
            attribute_values={"pct": 150},
        )
    assert info.value.error_dict["attribute_values.pct"][0].code == "above_maximum"
    assert counts() == before
    assert setting(flag, beta).attribute_values == {}


def test_the_second_of_two_concurrent_edits_is_refused_with_what_changed(
    beta, flag, editor, admin_user
):
    services.attribute_save(actor=None, flag=flag, name="pct", type="number")
    opened = setting(flag, beta).revision  # both people open the page at this revision
    services.flag_setting_update(
        actor=editor,
        flag=flag,
        environment=beta,
        expected_revision=opened,
        attribute_values={"pct": 5},
    )
    before = counts()
    with pytest.raises(services.RevisionConflict) as info:
        services.flag_setting_update(
            actor=admin_user,
            flag=flag,
            environment=beta,
            expected_revision=opened,
            attribute_values={"pct": 9},
        )
    conflict = info.value
    assert "editor changed allow-bitcoin-at-checkout in Beta" in str(conflict)
    [change] = conflict.changes_since
    assert change.actor_name == "editor"
    assert [(c.path, c.old, c.new) for c in change.changes] == [("attribute_values.pct", None, 5)]
    assert counts() == before
    assert setting(flag, beta).attribute_values == {"pct": 5}


def test_a_stale_toggle_is_refused(beta, flag, editor):
    stale = setting(flag, beta).revision
    services.flag_set_enabled(actor=editor, flag=flag, environment=beta, enabled=True)
    with pytest.raises(services.RevisionConflict):
        services.flag_set_enabled(
            actor=editor, flag=flag, environment=beta, enabled=False, expected_revision=stale
        )
    assert setting(flag, beta).enabled is True


def test_saving_a_version_snapshots_the_working_state_and_refuses_an_identical_one(
    app, beta, flag, editor
):
    assert ConfigVersion.objects.get(environment=beta).message == "Environment created"
    version = services.config_version_create(actor=editor, environment=beta, message="first")
    document = json.loads(version.document)
    assert version.number == 2
    assert set(document["flags"]) == {flag.key}
    assert version.sha256 == hashlib.sha256(version.document.encode()).hexdigest()
    with pytest.raises(ValidationError) as info:
        services.config_version_create(actor=editor, environment=beta, message="again")
    assert info.value.error_dict["message"][0].code == "no_changes"
    assert ConfigVersion.objects.filter(environment=beta).count() == 2


def test_archived_flags_leave_new_versions_and_cannot_be_toggled(app, beta, flag, editor):
    services.config_version_create(actor=editor, environment=beta, message="with the flag")
    services.flag_set_archived(actor=editor, flag=flag, archived=True)
    version = services.config_version_create(actor=editor, environment=beta, message="")
    assert json.loads(version.document)["flags"] == {}
    with pytest.raises(ValidationError):
        services.flag_set_enabled(actor=editor, flag=flag, environment=beta, enabled=True)
    services.flag_set_archived(actor=editor, flag=flag, archived=False)
    assert list(
        AuditEvent.objects.filter(flag=flag).values_list("action", flat=True).order_by("id")
    )[-2:] == [Action.FLAG_ARCHIVED, Action.FLAG_RESTORED]


def test_renaming_an_attribute_carries_its_values_and_a_tighter_constraint_is_checked(
    beta, production, flag
):
    attribute = services.attribute_save(actor=None, flag=flag, name="pct", type="number")
    services.flag_setting_update(
        actor=None, flag=flag, environment=beta, expected_revision=1, attribute_values={"pct": 50}
    )
    services.attribute_save(
        actor=None, flag=flag, attribute=attribute, name="percent", type="number"
    )
    assert setting(flag, beta).attribute_values == {"percent": 50}
    with pytest.raises(ValidationError) as info:
        services.attribute_save(
            actor=None, flag=flag, attribute=attribute, name="percent", type="number", maximum=10
        )
    assert "Beta" in info.value.error_dict["type"][0].message
    attribute.refresh_from_db()
    assert attribute.maximum is None


def test_removing_an_attribute_with_production_values_needs_an_admin(
    beta, production, flag, editor, admin_user
):
    attribute = services.attribute_save(actor=None, flag=flag, name="pct", type="number")
    services.flag_setting_update(
        actor=None,
        flag=flag,
        environment=production,
        expected_revision=1,
        attribute_values={"pct": 1},
    )
    with pytest.raises(PermissionDenied):
        services.attribute_delete(actor=editor, attribute=attribute)
    services.attribute_delete(actor=admin_user, attribute=attribute)
    assert setting(flag, production).attribute_values == {}
    assert not FlagAttribute.objects.filter(pk=attribute.pk).exists()


def test_a_new_environment_gets_a_setting_for_every_flag(app, beta, flag):
    staging = make_environment(app, "staging", "Staging")
    assert setting(flag, staging).enabled is False
    assert staging.position > beta.position


def test_every_mutation_keeps_the_audit_chain_intact(
    app, beta, production, flag, editor, admin_user
):
    services.flag_set_enabled(actor=editor, flag=flag, environment=beta, enabled=True)
    services.flag_set_enabled(actor=admin_user, flag=flag, environment=production, enabled=True)
    services.environment_update(
        actor=admin_user, environment=beta, name="Beta (EU)", protected=False
    )
    checked, broken = audit_verify_chain()
    assert broken is None
    assert checked == AuditEvent.objects.count() > 5


def test_a_partial_edit_keeps_the_fields_it_does_not_name(app, envs, flag, editor):
    services.flag_update(actor=editor, flag=flag, tags=["payments"])
    services.flag_update(actor=editor, flag=flag, name="Bitcoin at checkout")
    flag.refresh_from_db()
    assert flag.name == "Bitcoin at checkout"
    assert list(flag.tags.values_list("name", flat=True)) == ["payments"]
    assert flag.short_term is True


@pytest.mark.parametrize(
    ("kwargs", "field", "code"),
    [
        ({"description": 5}, "description", "wrong_type"),
        ({"tags": "payments"}, "tags", "wrong_type"),
        ({"tags": [1, 2]}, "tags", "wrong_type"),
        ({"kind": "multivariant", "value_type": "string", "variants": []}, "variants", "required"),
        (
            {"kind": "multivariant", "value_type": "string", "variants": ["x"]},
            "variants.0",
            "invalid",
        ),
    ],
)
def test_wrong_python_types_are_field_errors_not_crashes(app, envs, kwargs, field, code):
    before = counts()
    with pytest.raises(ValidationError) as info:
        services.flag_create(actor=None, application=app, key="typed", name="Typed", **kwargs)
    assert info.value.error_dict[field][0].code == code
    assert counts() == before


def test_attribute_bounds_must_fit_in_64_bits(flag):
    with pytest.raises(ValidationError) as info:
        services.attribute_save(actor=None, flag=flag, name="big", type="number", maximum=2**63)
    assert info.value.error_dict["maximum"][0].code == "invalid"


def test_an_editor_archives_a_beta_only_flag_but_not_one_production_uses(
    app, beta, production, editor, admin_user
):
    in_production = make_flag(app, "in-production")
    services.config_version_create(actor=admin_user, environment=production, message="")
    beta_only = make_flag(app, "beta-only")  # created after production's latest version
    services.flag_set_archived(actor=editor, flag=beta_only, archived=True)
    with pytest.raises(PermissionDenied, match="Production"):
        services.flag_set_archived(actor=editor, flag=in_production, archived=True)
    services.flag_set_archived(actor=admin_user, flag=in_production, archived=True)


def test_an_archived_flag_is_read_only(app, beta, flag, editor):
    services.flag_set_archived(actor=editor, flag=flag, archived=True)
    before = counts()
    with pytest.raises(ValidationError) as info:
        services.flag_update(actor=editor, flag=flag, name="Renamed")
    assert info.value.error_dict["archived"][0].code == "archived"
    with pytest.raises(ValidationError):
        services.attribute_save(actor=editor, flag=flag, name="pct", type="number")
    assert counts() == before


def test_a_pattern_that_backtracks_forever_times_out_with_a_clear_error(beta, flag):
    services.attribute_save(actor=None, flag=flag, name="code", type="string", pattern="^(a|aa)+$")
    with pytest.raises(ValidationError) as info:
        services.flag_setting_update(
            actor=None,
            flag=flag,
            environment=beta,
            expected_revision=1,
            attribute_values={"code": "a" * 1000 + "b"},
        )
    assert info.value.error_dict["attribute_values.code"][0].code == "pattern_too_slow"


def test_object_variants_refuse_nul_characters_and_deep_nesting(app, envs):
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    for value, code in (({"text": "a\x00b"}, "invalid"), (deep, "too_deep")):
        with pytest.raises(ValidationError) as info:
            services.flag_create(
                actor=None,
                application=app,
                key="banner",
                name="Banner",
                kind="multivariant",
                value_type="object",
                variants=[{"name": "v", "value": value}],
            )
        assert info.value.error_dict["variants.0"][0].code == code


@pytest.mark.postgres
def test_postgresql_refuses_to_change_or_delete_a_saved_version(beta, flag):
    from django.db import DatabaseError, transaction

    version = services.config_version_create(actor=None, environment=beta, message="saved")
    for change in (
        lambda: ConfigVersion.objects.filter(pk=version.pk).update(document="{}"),
        lambda: ConfigVersion.objects.filter(pk=version.pk).update(flag_digests={}),
        lambda: ConfigVersion.objects.filter(pk=version.pk).delete(),
    ):
        with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
            change()
    version.refresh_from_db()
    assert version.message == "saved" and flag.key in version.flag_digests

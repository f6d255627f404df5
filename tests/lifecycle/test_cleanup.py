"""Archive and restore: versions and deployments per environment, the built-in store (OFREP),
permissions, audit, and a rollback that brings an archived flag back."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from flagdash.audit.models import Action, AuditEvent
from flagdash.deployments import services as deployment_services
from flagdash.deployments.models import Deployment, DeploymentState
from flagdash.flags import documents
from flagdash.flags.models import ConfigVersion, Flag
from flagdash.lifecycle import selectors, services
from flagdash.lifecycle.models import Cleanup, CleanupStep
from tests.evaluation.conftest import new_key, post
from tests.factories import make_flag
from tests.lifecycle.conftest import deploy_at, run, set_values

pytestmark = pytest.mark.django_db
ONE = "/ofrep/v1/evaluate/flags/"


@pytest.fixture
def live(app, beta, production, ofrep):
    """Two short-term flags and a permanent one, on in beta and production, deployed."""
    flags = {
        "promo": make_flag(app, "promo", short_term=True),
        "release": make_flag(app, "release", short_term=True),
        "kill-switch": make_flag(app, "kill-switch"),
    }
    for flag in flags.values():
        for env in (beta, production):
            set_values(flag, env, enabled=True)
    deploy_at(beta, None)
    deploy_at(production, None)
    return flags


def evaluate(client, key, flag_key):
    return post(client, ONE + flag_key, {"context": {"targetingKey": "user-1"}}, key)


def served_keys(environment) -> set[str]:
    environment.refresh_from_db()
    return set(documents.load(environment.live_version.document)["flags"])


def test_archiving_takes_the_flags_out_of_every_environment_served_by_flagdash(
    client, live, app, beta, production, admin_user
):
    beta_key, prod_key = new_key(beta), new_key(production)
    assert evaluate(client, beta_key, "promo").json()["value"] is True
    result = services.flags_archive(
        actor=admin_user, application=app, flags=[live["promo"], live["release"]]
    )
    assert {d.environment_id for d in result.deployments} == {beta.pk, production.pk}
    for d in result.deployments:
        assert d.strategy_id == d.environment.default_strategy_id  # the environment's default
        assert d.version.message == "Archive promo, release"
        assert run(d).state == DeploymentState.COMPLETE
    for env, key in ((beta, beta_key), (production, prod_key)):
        assert served_keys(env) == {"kill-switch"}
        for gone in ("promo", "release"):
            response = evaluate(client, key, gone)
            assert response.status_code == 404
            assert response.json()["errorCode"] == "FLAG_NOT_FOUND"
        assert evaluate(client, key, "kill-switch").json()["value"] is True
    assert Flag.objects.filter(archived_at__isnull=False).count() == 2


def test_restoring_brings_them_back_with_the_values_served_before(
    client, live, app, beta, production, admin_user
):
    beta_key = new_key(beta)
    set_values(live["promo"], beta, attribute_values={})  # unchanged values: no new revision
    for d in services.flags_archive(
        actor=admin_user, application=app, flags=[live["promo"]]
    ).deployments:
        run(d)
    assert evaluate(client, beta_key, "promo").status_code == 404
    flag = Flag.objects.get(key="promo")
    result = services.flags_restore(actor=admin_user, application=app, flags=[flag])
    assert {d.environment_id for d in result.deployments} == {beta.pk, production.pk}
    for d in result.deployments:
        assert d.version.message == "Restore promo"
        run(d)
    flag.refresh_from_db()
    assert flag.archived_at is None
    response = evaluate(client, beta_key, "promo")
    assert (response.status_code, response.json()["value"]) == (200, True)
    assert served_keys(production) == {"promo", "release", "kill-switch"}


def test_an_archive_ships_no_unrelated_unsaved_edits(live, app, beta, admin_user):
    set_values(live["kill-switch"], beta, enabled=False)  # saved, never deployed
    (d, _) = services.flags_archive(
        actor=admin_user, application=app, flags=[live["promo"]]
    ).deployments
    flags = documents.load(d.version.document)["flags"]
    assert "promo" not in flags
    assert flags["kill-switch"]["enabled"] is True  # what beta serves, not the draft


def test_an_environment_that_never_served_the_flag_gets_no_version(
    app, beta, production, editor, ofrep
):
    deploy_at(beta, None)
    deploy_at(production, None)
    fresh = make_flag(app, "fresh", short_term=True)  # in no deployed version
    set_values(fresh, beta, enabled=True)
    deploy_at(beta, None)
    versions = ConfigVersion.objects.count()
    result = services.flags_archive(actor=editor, application=app, flags=[fresh])
    assert [d.environment_id for d in result.deployments] == [beta.pk]
    assert ConfigVersion.objects.count() == versions + 1


def test_everything_is_audited_in_the_request_that_did_it(live, app, admin_user):
    before = AuditEvent.objects.count()
    services.flags_archive(actor=admin_user, application=app, flags=[live["promo"]])
    events = list(AuditEvent.objects.order_by("id")[before:])
    actions = [e.action for e in events]
    assert actions.count(Action.FLAG_ARCHIVED) == 1
    assert actions.count(Action.VERSION_CREATED) == 2
    assert actions.count(Action.DEPLOYMENT_QUEUED) == 2
    assert {e.request_id for e in events} == {events[0].request_id}
    assert all(e.actor_name == "admin" for e in events)


def test_a_viewer_cannot_archive_and_nothing_changes(live, app, viewer):
    versions, deployments = ConfigVersion.objects.count(), Deployment.objects.count()
    with pytest.raises(PermissionDenied):
        services.flags_archive(actor=viewer, application=app, flags=[live["promo"]])
    assert Flag.objects.get(key="promo").archived_at is None
    assert (ConfigVersion.objects.count(), Deployment.objects.count()) == (versions, deployments)
    assert not Cleanup.objects.exists()


def test_an_editor_cannot_archive_a_flag_live_in_a_protected_environment(
    live, app, editor, admin_user
):
    with pytest.raises(PermissionDenied, match="promo in Production"):
        services.flags_archive(actor=editor, application=app, flags=[live["promo"]])
    assert Flag.objects.get(key="promo").archived_at is None
    assert not Cleanup.objects.exists()
    assert services.flags_archive(actor=admin_user, application=app, flags=[live["promo"]])


def test_a_bulk_archive_is_all_or_nothing(live, app, admin_user):
    services.flags_archive(actor=admin_user, application=app, flags=[live["promo"]])
    versions = ConfigVersion.objects.count()
    with pytest.raises(ValidationError, match="Already archived: promo"):
        services.flags_archive(
            actor=admin_user,
            application=app,
            flags=[Flag.objects.get(key="promo"), live["release"]],
        )
    assert Flag.objects.get(key="release").archived_at is None
    assert ConfigVersion.objects.count() == versions


def test_restoring_an_active_flag_is_refused(live, app, admin_user):
    with pytest.raises(ValidationError, match="Not archived: promo"):
        services.flags_restore(actor=admin_user, application=app, flags=[live["promo"]])


def test_a_rollback_of_the_archive_serves_the_flag_again_and_the_flag_page_says_so(
    client, live, app, beta, production, admin_user, admin_client
):
    beta_key = new_key(beta)
    result = services.flags_archive(actor=admin_user, application=app, flags=[live["promo"]])
    archive_beta = next(d for d in result.deployments if d.environment_id == beta.pk)
    run(archive_beta)
    for d in result.deployments:
        if d.pk != archive_beta.pk:
            run(d)
    assert evaluate(client, beta_key, "promo").status_code == 404
    restore = deployment_services.deployment_rollback(
        actor=admin_user, deployment=archive_beta, reason="checkout broke"
    )
    run(restore)
    assert evaluate(client, beta_key, "promo").json()["value"] is True
    flag = Flag.objects.get(key="promo")
    assert flag.archived_at is not None
    (note,) = selectors.archived_but_served(flag)
    assert note.text == (
        f"Archived, but still served in Beta since rollback #{restore.pk} "
        f"(v{restore.version.number})."
    )
    html = admin_client.get(reverse("flag_detail", args=[app.key, "promo"])).content.decode()
    assert f"Archived, but still served in Beta since rollback #{restore.pk}" in html


def test_restoring_after_such_a_rollback_leaves_that_environment_alone(
    live, app, beta, production, admin_user
):
    result = services.flags_archive(actor=admin_user, application=app, flags=[live["promo"]])
    for d in result.deployments:
        run(d)
    beta_archive = next(d for d in result.deployments if d.environment_id == beta.pk)
    run(
        deployment_services.deployment_rollback(
            actor=admin_user, deployment=beta_archive, reason="too soon"
        )
    )
    restored = services.flags_restore(
        actor=admin_user, application=app, flags=[Flag.objects.get(key="promo")]
    )
    assert [d.environment_id for d in restored.deployments] == [production.pk]


def test_the_flag_page_says_when_the_archive_is_still_deploying(live, app, admin_user):
    result = services.flags_archive(actor=admin_user, application=app, flags=[live["promo"]])
    notes = selectors.archived_but_served(Flag.objects.get(key="promo"))
    assert [n.text for n in notes] == [
        f"Still served in {d.environment.name} until deployment #{d.pk} completes (queued)."
        for d in sorted(result.deployments, key=lambda d: d.environment.position)
    ]


def test_cleanup_steps_record_what_each_environment_got(live, app, beta, admin_user):
    result = services.flags_archive(actor=admin_user, application=app, flags=[live["promo"]])
    steps = CleanupStep.objects.filter(cleanup=result.cleanup).order_by("environment__position")
    assert [(s.environment.key, s.deployment_id) for s in steps] == [
        (d.environment.key, d.pk) for d in result.deployments
    ]
    assert all("promo" in documents.load(s.base_version.document)["flags"] for s in steps)


def test_a_rollback_of_the_deployment_an_archive_was_built_on_keeps_the_archive(
    client, live, app, beta, admin_user, editor
):
    """Archiving while another change rolls out builds on that change; rolling that change
    back must not undo the archive: the archive's deployment loses only the bad change."""
    from flagdash.deployments import engine
    from flagdash.flags import services as flag_services
    from tests.factories import make_strategy

    slow = make_strategy("slow", duration_minutes=60, growth_factor=10, final_bake_minutes=0)
    beta_key = new_key(beta)
    set_values(live["kill-switch"], beta, enabled=False)
    bad_version = flag_services.config_version_create(actor=None, environment=beta, message="x")
    bad = deployment_services.deployment_create(
        actor=None, environment=beta, version=bad_version, strategy=slow
    )
    with engine.without_nudges():
        engine.deployment_advance(bad.pk)
    assert Deployment.objects.get(pk=bad.pk).state == DeploymentState.DEPLOYING
    result = services.flags_archive(actor=admin_user, application=app, flags=[live["promo"]])
    archive = next(d for d in result.deployments if d.environment_id == beta.pk)
    assert documents.load(archive.version.document)["flags"]["kill-switch"]["enabled"] is False

    deployment_services.deployment_rollback(
        actor=editor, deployment=Deployment.objects.get(pk=bad.pk), reason="errors"
    )
    run(Deployment.objects.get(pk=bad.pk))
    archive = run(Deployment.objects.get(pk=archive.pk))
    assert archive.state == DeploymentState.COMPLETE  # rebased, not cancelled
    flags = documents.load(archive.version.document)["flags"]
    assert "promo" not in flags and flags["kill-switch"]["enabled"] is True
    assert evaluate(client, beta_key, "promo").status_code == 404  # still archived everywhere
    assert evaluate(client, beta_key, "kill-switch").json()["value"] is True


# --- many flags at once, and selections that are not this application's flags -----------------


def _many(app, beta, production, count):
    flags = [make_flag(app, f"bulk-{i:02d}", short_term=True) for i in range(count)]
    for flag in flags:
        set_values(flag, beta, enabled=True)
        set_values(flag, production, enabled=True)
    deploy_at(beta, None)
    deploy_at(production, None)
    return flags


@pytest.mark.parametrize("count", [2, 20])
def test_archiving_and_restoring_many_flags_takes_a_fixed_number_of_queries(
    app, beta, production, admin_user, ofrep, django_assert_max_num_queries, count
):
    """Was about 8 queries more per flag (its tags, its protected environments, one UPDATE and
    one audit append each): archiving 2 flags took 55 queries, 20 flags 197; now 46 for both."""
    flags = _many(app, beta, production, count)
    with django_assert_max_num_queries(50):
        result = services.flags_archive(actor=admin_user, application=app, flags=flags)
    assert len(result.flags) == count
    assert Flag.objects.filter(archived_at__isnull=False).count() == count
    archived = list(Flag.objects.filter(archived_at__isnull=False))
    with django_assert_max_num_queries(50):
        services.flags_restore(actor=admin_user, application=app, flags=archived)
    assert not Flag.objects.filter(archived_at__isnull=False).exists()
    events = AuditEvent.objects.filter(action__in=[Action.FLAG_ARCHIVED, Action.FLAG_RESTORED])
    assert events.count() == 2 * count
    first = events.filter(action=Action.FLAG_ARCHIVED).order_by("id").first()
    assert first.before["archived"] is False and first.after["archived"] is True
    assert first.target_repr == "checkout/bulk-00" and first.flag_id == flags[0].pk


def test_a_batched_audit_keeps_the_hash_chain_intact(app, beta, production, admin_user, ofrep):
    from flagdash.audit.services import audit_verify_chain

    flags = _many(app, beta, production, 5)
    services.flags_archive(actor=admin_user, application=app, flags=flags)
    checked, broken = audit_verify_chain()
    assert broken is None and checked == AuditEvent.objects.count()


def test_the_bulk_api_archive_has_the_same_query_budget_for_2_or_20_flags(
    app, beta, production, editor, api_as, ofrep, django_assert_max_num_queries
):
    keys = [f.key for f in _many(app, beta, production, 20)]
    beta.protected = production.protected = False
    beta.save(update_fields=["protected"])
    production.save(update_fields=["protected"])
    api = api_as(editor)
    with django_assert_max_num_queries(55):
        response = api.post("apps/checkout/short-term/archive/", {"flags": keys[:2]})
    assert response.status_code == 202, response.content
    with django_assert_max_num_queries(55):
        response = api.post("apps/checkout/short-term/archive/", {"flags": keys[2:]})
    assert response.status_code == 202, response.content
    assert Flag.objects.filter(archived_at__isnull=False).count() == 20


@pytest.fixture
def billing(db):
    from tests.factories import make_application

    other = make_application("billing", "Billing")
    make_flag(other, "invoices-v2", short_term=True)
    return other


@pytest.mark.parametrize(
    ("keys", "code", "message"),
    [
        (["promo", "nope"], "unknown_flag", "No active flag nope in Checkout"),
        (["promo", "invoices-v2"], "other_application", "invoices-v2 is a flag of Billing"),
        (["promo", "pro\x00mo"], "invalid", "Not a flag key: “pro\\x00mo”"),
        (["promo", "promo\n"], "invalid", "Not a flag key: “promo\\n”"),
        (["promo", "Promo"], "invalid", "Not a flag key"),
        (["promo", "x" * 65], "invalid", "Not a flag key"),
        (["promo", "a b"], "invalid", "Not a flag key"),
        ([], "required", "at least one"),
        ([f"k{i}" for i in range(501)], "too_many", "at most 500"),
    ],
)
def test_a_bulk_archive_of_keys_that_are_not_this_applications_flags_is_400_and_changes_nothing(
    live, app, billing, admin_user, api_as, keys, code, message
):
    versions = ConfigVersion.objects.count()
    response = api_as(admin_user).post("apps/checkout/short-term/archive/", {"flags": keys})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert code in [e["code"] for e in error["fields"]["flags"]]
    assert message in error["message"]
    assert not Flag.objects.filter(archived_at__isnull=False).exists()
    assert ConfigVersion.objects.count() == versions
    assert not Cleanup.objects.exists()


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["promo", "pro\x00mo"], "Not a flag key: “pro\\x00mo”"),
        (["promo", "invoices-v2"], "invoices-v2 is a flag of Billing, not of Checkout."),
        (["promo", "nope"], "No active flag nope in Checkout"),
    ],
)
def test_the_archive_page_names_keys_that_are_not_this_applications_flags_and_changes_nothing(
    live, app, billing, admin_client, keys, message
):
    url = reverse("short_term_archive", args=["checkout"])
    response = admin_client.post(url, {"flag": keys, "confirm": "yes"})
    assert response.status_code == 422
    assert message in response.content.decode()
    assert '<input type="hidden" name="flag" value="promo">' in response.content.decode()
    assert not Flag.objects.filter(archived_at__isnull=False).exists()
    assert not Cleanup.objects.exists()
    # the confirmation page (GET) says the same; a NUL anywhere in the address is refused by
    # the middleware before any view runs
    response = admin_client.get(url, {"flag": keys})
    if any("\x00" in key for key in keys):
        assert response.status_code == 400 and b"NUL character" in response.content
    else:
        assert response.status_code == 422 and message in response.content.decode()


def test_restoring_keys_of_another_application_is_refused(live, app, billing, admin_user, api_as):
    services.flags_archive(actor=admin_user, application=app, flags=[live["promo"]])
    response = api_as(admin_user).post(
        "apps/checkout/short-term/restore/", {"flags": ["promo", "invoices-v2"]}
    )
    assert response.status_code == 400
    assert Flag.objects.get(key="promo").archived_at is not None

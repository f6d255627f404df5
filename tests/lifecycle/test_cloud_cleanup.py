"""Archive and restore against the AWS AppConfig and Azure App Configuration fakes: the flag
leaves the AWS feature-flag document and the Azure setting is deleted, and both come back on
restore — through boto3 and azure-appconfiguration talking HTTP to the wire-level fakes."""

from __future__ import annotations

import pytest

from flagdash.deployments import services as deployment_services
from flagdash.deployments.models import DeploymentState
from flagdash.flags import services as flag_services
from flagdash.flags.models import Flag
from flagdash.lifecycle import selectors, services
from tests.backends.azure.conftest import LABEL
from tests.backends.conftest import Clocks, connect
from tests.deployments.conftest import reload, run_due
from tests.factories import make_flag
from tests.lifecycle.conftest import set_values

pytestmark = pytest.mark.django_db
S = DeploymentState
FLAG_KEY = ".appconfig.featureflag/{}"


# --- AWS AppConfig -----------------------------------------------------------------------------


def finish_aws(clocks: Clocks, deployment, limit: float = 7200):
    """Move the engine's and the fake's clocks on until the deployment is complete."""
    waited = 0.0
    clocks.run()
    while reload(deployment).state != S.COMPLETE:
        assert reload(deployment).state not in (S.FAILED, S.ROLLED_BACK), reload(deployment).error
        assert waited < limit
        clocks.tick(120)
        waited += 120
        clocks.run()
    return reload(deployment)


def aws_document(setup) -> dict:
    """The feature-flag document AppConfig serves to the environment's clients now."""
    version = setup.fake.served_version(
        setup.application_id, setup.environment_id, setup.profile_id
    )
    return setup.fake.document(setup.application_id, setup.profile_id, int(version))


def test_archive_takes_the_flag_out_of_the_aws_document_and_restore_brings_it_back(
    fake, app, beta, admin_user
):
    setup = connect(fake, beta)
    clocks = Clocks(fake)
    promo = make_flag(app, "promo", short_term=True)
    make_flag(app, "kill-switch")
    set_values(promo, beta, enabled=True)
    version = flag_services.config_version_create(actor=None, environment=beta, message="first")
    first = deployment_services.deployment_create(actor=None, environment=beta, version=version)
    finish_aws(clocks, first)
    assert set(aws_document(setup)["flags"]) == {"promo", "kill-switch"}

    plan = selectors.archive_plan(app, [promo], admin_user)
    assert (
        "AWS AppConfig: the flag leaves the feature-flag document" in plan[0].changes[0].consequence
    )

    (archive,) = services.flags_archive(
        actor=admin_user, application=app, flags=[promo]
    ).deployments
    assert archive.strategy.name == "AppConfig.AllAtOnce"  # beta's default strategy
    finish_aws(clocks, archive)
    document = aws_document(setup)
    assert set(document["flags"]) == {"kill-switch"}
    assert "promo" not in document["values"]
    assert fake.calls["StartDeployment"] == 2

    (restore,) = services.flags_restore(
        actor=admin_user, application=app, flags=[Flag.objects.get(key="promo")]
    ).deployments
    finish_aws(clocks, restore)
    document = aws_document(setup)
    assert set(document["flags"]) == {"promo", "kill-switch"}
    assert document["values"]["promo"]["enabled"] is True


# --- Azure App Configuration -------------------------------------------------------------------


def finish_azure(clock, deployment, limit: int = 100):
    run_due(clock)
    for _ in range(limit):
        if reload(deployment).state == S.COMPLETE:
            return reload(deployment)
        assert reload(deployment).state not in (S.FAILED, S.ROLLED_BACK), reload(deployment).error
        clock.tick(60)
        run_due(clock)
    raise AssertionError(f"#{deployment.pk} is {reload(deployment).state}")


def test_archive_deletes_the_azure_setting_and_restore_writes_it_again(
    clock, azure, staging, admin_user, app
):
    promo = make_flag(app, "promo", short_term=True)
    make_flag(app, "kill-switch")
    set_values(promo, staging, enabled=True)
    version = flag_services.config_version_create(actor=None, environment=staging, message="first")
    finish_azure(
        clock,
        deployment_services.deployment_create(actor=None, environment=staging, version=version),
    )
    assert set(azure.feature_flags(LABEL)) == {"promo", "kill-switch"}

    plan = selectors.archive_plan(app, [promo], admin_user)
    assert plan[0].changes[0].consequence == (
        "Azure App Configuration: the setting .appconfig.featureflag/promo (label staging) "
        "is deleted."
    )
    (archive,) = services.flags_archive(
        actor=admin_user, application=app, flags=[promo]
    ).deployments
    finish_azure(clock, archive)
    assert azure.get(FLAG_KEY.format("promo"), LABEL) is None
    assert set(azure.feature_flags(LABEL)) == {"kill-switch"}

    (restore,) = services.flags_restore(
        actor=admin_user, application=app, flags=[Flag.objects.get(key="promo")]
    ).deployments
    finish_azure(clock, restore)
    assert azure.feature_flags(LABEL)["promo"]["enabled"] is True

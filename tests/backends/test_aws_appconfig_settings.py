"""What the settings pages call: "test connection" (``check``), the environment's CloudWatch
monitors, and "Create in AWS" (``provision``) — success and each failure, through boto3."""

from __future__ import annotations

import pytest

from flagdash.backends.aws_appconfig import AwsAppConfigBackend, provision
from flagdash.backends.base import PermanentBackendError, TransientBackendError
from flagdash.backends.models import BackendConnection, BackendKind
from tests.backends.conftest import ALARM, REGION, aws_credentials
from tests.deployments.workers import free_port

pytestmark = pytest.mark.django_db


def backend_with(aws, **options) -> AwsAppConfigBackend:
    connection = BackendConnection.objects.create(
        name="other", kind=BackendKind.AWS_APPCONFIG, options={**aws.options, **options}
    )
    return AwsAppConfigBackend(connection)


# --- check -----------------------------------------------------------------------------------


def test_a_working_connection_lists_what_was_verified_and_the_monitors(aws):
    result = aws.backend().check()
    assert result.ok, result.message
    assert f"in {REGION}" in result.message
    assert result.details[0] == f"Application {aws.application_id} “checkout” in {REGION}"
    assert result.details[1].endswith("AWS.AppConfig.FeatureFlags, hosted")
    assert result.details[2] == f"Environment {aws.environment_id} “beta”: ready for deployment"
    assert result.details[3] == f"CloudWatch monitors: {ALARM}"
    assert aws.backend().monitors() == [ALARM]


def test_an_environment_without_monitors_says_aws_will_not_roll_back_by_itself(fake, beta):
    from tests.backends.conftest import connect

    setup = connect(fake, beta)
    result = setup.backend().check()
    assert result.ok and "CloudWatch monitors: none" in result.details[3]
    assert setup.backend().monitors() == []


def test_a_profile_of_another_type_is_refused_clearly(aws):
    freeform = aws.fake.create_profile(aws.application_id, "json", type="AWS.Freeform")
    result = backend_with(aws, configuration_profile_id=freeform).check()
    assert not result.ok
    assert "is of type AWS.Freeform" in result.message
    assert "hosted profile of type AWS.AppConfig.FeatureFlags" in result.message


def test_a_profile_stored_outside_appconfig_is_refused(aws):
    s3 = aws.fake.create_profile(aws.application_id, "s3", location="s3://bucket/flags.json")
    result = backend_with(aws, configuration_profile_id=s3).check()
    assert not result.ok and "stored at s3://bucket/flags.json" in result.message


@pytest.mark.parametrize(
    ("option", "named"),
    [
        ("application_id", "application nothere"),
        ("configuration_profile_id", "configuration profile nothere"),
        ("environment_id", "environment nothere"),
    ],
)
def test_a_missing_resource_names_the_id(aws, option, named):
    result = backend_with(aws, **{option: "nothere"}).check()
    assert not result.ok
    assert f"AWS AppConfig has no {named}" in result.message
    assert "Check the ids in the connection's settings" in result.message


def test_a_missing_iam_permission_names_the_action(aws):
    aws.fake.deny("GetEnvironment")
    result = aws.backend().check()
    assert not result.ok
    assert "AWS denied appconfig:GetEnvironment" in result.message
    assert "Allow the IAM action appconfig:GetEnvironment" in result.message
    assert len(result.details) == 2  # the application and the profile were verified


def test_bad_credentials_are_reported_without_raising(aws, monkeypatch):
    aws_credentials(monkeypatch, secret="wrong")
    result = aws.backend().check()
    assert not result.ok and "InvalidSignatureException" in result.message
    assert aws.fake.calls["GetApplication"] == 1  # no retries on a refusal


def test_missing_credentials_are_reported_without_raising(aws, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = aws.backend().check()
    assert not result.ok and "no usable AWS credentials" in result.message
    assert "AWS_ACCESS_KEY_ID" in result.message


def test_an_unreachable_endpoint_is_reported_without_raising(aws):
    result = backend_with(aws, endpoint_url=f"http://127.0.0.1:{free_port()}").check()
    assert not result.ok and "Could not reach AWS AppConfig" in result.message


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"endpoint_url": "not a url"}, "is not an http(s) URL with a host"),
        ({"endpoint_url": "http://127.0.0.1:99999"}, "is not a valid URL"),
        ({"region": "eu west 1"}, "Correct the connection's settings"),
    ],
    ids=["endpoint", "port", "region"],
)
def test_a_malformed_endpoint_or_region_is_reported_without_raising(aws, options, says):
    result = backend_with(aws, **options).check()
    assert not result.ok and says in result.message


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://169.254.169.254/latest/meta-data/",
        "https://internal.example.com",
        "https://appconfig.eu-west-1.amazonaws.com.attacker.example",
    ],
)
def test_hosts_other_than_awss_own_are_never_called(aws, endpoint, settings):
    settings.BACKEND_ENDPOINT_ALLOWLIST = []
    calls = sum(aws.fake.calls.values())
    result = backend_with(aws, endpoint_url=endpoint).check()
    assert not result.ok and "does not send AWS requests to" in result.message
    assert "BACKEND_ENDPOINT_ALLOWLIST" in result.message
    assert sum(aws.fake.calls.values()) == calls


def test_awss_own_hosts_are_allowed_without_an_allowlist(settings):
    from flagdash.backends.endpoints import check_endpoint

    settings.BACKEND_ENDPOINT_ALLOWLIST = []
    for url in (
        "https://appconfig.eu-west-1.amazonaws.com",
        "https://vpce-0abc.appconfig.eu-west-1.vpce.amazonaws.com",
        "https://appconfig.cn-north-1.amazonaws.com.cn",
    ):
        assert check_endpoint(url, "aws_appconfig") == url


def test_an_incomplete_connection_says_what_is_missing(aws):
    result = backend_with(aws, environment_id="", region="").check()
    assert not result.ok
    assert "lacks region, environment_id" in result.message


def test_a_slow_aws_does_not_hold_the_check(aws, monkeypatch):
    from flagdash.backends import aws_appconfig

    monkeypatch.setattr(aws_appconfig, "READ_TIMEOUT_SECONDS", 0.5)
    aws.fake.slow("GetApplication", seconds=2, times=2)
    result = aws.backend().check()
    assert not result.ok and "Could not reach AWS AppConfig for GetApplication" in result.message


# --- provision ---------------------------------------------------------------------------------


def test_create_in_aws_creates_the_application_profile_and_environment(fake):
    options = provision(
        region=REGION,
        endpoint_url=fake.url,
        application_name="checkout",
        profile_name="flags",
        environment_name="beta",
    )
    assert set(options) == {
        "region",
        "application_id",
        "configuration_profile_id",
        "environment_id",
        "endpoint_url",
    }
    assert options["region"] == REGION and options["endpoint_url"] == fake.url
    assert fake.applications[options["application_id"]]["Name"] == "checkout"
    profile = fake.profiles[(options["application_id"], options["configuration_profile_id"])]
    assert (profile["Type"], profile["LocationUri"]) == ("AWS.AppConfig.FeatureFlags", "hosted")
    env = fake.environments[(options["application_id"], options["environment_id"])]
    assert env["Name"] == "beta"
    connection = BackendConnection.objects.create(
        name="provisioned", kind=BackendKind.AWS_APPCONFIG, options=options
    )
    assert AwsAppConfigBackend(connection).check().ok


def test_create_in_aws_twice_reuses_what_exists(fake):
    args = {
        "region": REGION,
        "endpoint_url": fake.url,
        "application_name": "checkout",
        "profile_name": "flags",
        "environment_name": "beta",
    }
    first = provision(**args)
    again = provision(**args)
    production = provision(**{**args, "environment_name": "production"})
    assert again == first
    assert production["application_id"] == first["application_id"]
    assert production["configuration_profile_id"] == first["configuration_profile_id"]
    assert production["environment_id"] != first["environment_id"]
    assert fake.calls["CreateApplication"] == 1
    assert fake.calls["CreateConfigurationProfile"] == 1
    assert fake.calls["CreateEnvironment"] == 2


def test_use_existing_ids_creates_only_the_environment(fake):
    app_id = fake.create_application("shop")
    profile_id = fake.create_profile(app_id, "existing-flags")
    options = provision(
        region=REGION,
        endpoint_url=fake.url,
        application_name="ignored",
        profile_name="ignored",
        environment_name="beta",
        application_id=app_id,
        configuration_profile_id=profile_id,
    )
    assert options["application_id"] == app_id
    assert options["configuration_profile_id"] == profile_id
    assert fake.calls["CreateApplication"] == 0 and fake.calls["CreateConfigurationProfile"] == 0


def test_using_an_existing_profile_of_another_type_is_refused(fake):
    app_id = fake.create_application("shop")
    freeform = fake.create_profile(app_id, "flags", type="AWS.Freeform")
    with pytest.raises(PermanentBackendError, match="flagdash needs a hosted profile"):
        provision(
            region=REGION,
            endpoint_url=fake.url,
            application_name="shop",
            profile_name="flags",  # found by name: the same refusal
            environment_name="beta",
            application_id=app_id,
        )
    with pytest.raises(PermanentBackendError, match=r"is of type AWS\.Freeform"):
        provision(
            region=REGION,
            endpoint_url=fake.url,
            application_name="shop",
            profile_name="x",
            environment_name="beta",
            application_id=app_id,
            configuration_profile_id=freeform,
        )
    assert fake.calls["CreateEnvironment"] == 0


def test_create_in_aws_reports_permissions_and_outages(fake):
    args = {
        "region": REGION,
        "endpoint_url": fake.url,
        "application_name": "checkout",
        "profile_name": "flags",
        "environment_name": "beta",
    }
    fake.deny("CreateApplication")
    with pytest.raises(PermanentBackendError, match="appconfig:CreateApplication"):
        provision(**args)
    fake.allow("CreateApplication")
    fake.fail_next("CreateEnvironment", status=503)
    with pytest.raises(TransientBackendError, match="retries"):
        provision(**args)
    # a create is sent once: botocore does not repeat it (AWS may have carried it out)
    assert fake.log.count(("CreateEnvironment", 503)) == 1
    assert provision(**args)["environment_id"]  # and once AWS is back, it completes
    assert fake.calls["CreateApplication"] == 2  # the refused one, then one created
    assert fake.calls["CreateEnvironment"] == 2
    assert len(fake.applications) == 1 and len(fake.environments) == 1


def test_create_in_aws_after_lost_answers_creates_each_resource_once(fake):
    """AWS created each resource but its answer was lost: flagdash looks for it by name
    instead of creating a second one (botocore would have sent the create again)."""
    for operation in ("CreateApplication", "CreateConfigurationProfile", "CreateEnvironment"):
        fake.lose_answer(operation)
    options = provision(
        region=REGION,
        endpoint_url=fake.url,
        application_name="checkout",
        profile_name="flags",
        environment_name="beta",
    )
    assert fake.lost == ["CreateApplication", "CreateConfigurationProfile", "CreateEnvironment"]
    assert len(fake.applications) == 1 and len(fake.profiles) == 1 and len(fake.environments) == 1
    app_id = options["application_id"]
    assert options["configuration_profile_id"] == next(iter(fake.profiles.values()))["Id"]
    assert options["environment_id"] == fake.environments[next(iter(fake.environments))]["Id"]
    assert fake.applications[app_id]["Name"] == "checkout"
    for operation in ("CreateApplication", "CreateConfigurationProfile", "CreateEnvironment"):
        assert fake.calls[operation] == 1


def test_a_missing_application_id_is_named(fake, monkeypatch):
    aws_credentials(monkeypatch)
    with pytest.raises(PermanentBackendError, match="application nothere"):
        provision(
            region=REGION,
            endpoint_url=fake.url,
            application_name="x",
            profile_name="y",
            environment_name="z",
            application_id="nothere",
        )

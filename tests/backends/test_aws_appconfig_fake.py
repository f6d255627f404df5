"""The AppConfig fake itself is faithful where flagdash relies on it: signatures, conflicts, the
rollout schedule and the revert window (through boto3, as flagdash uses it)."""

from __future__ import annotations

import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config

from tests.backends.conftest import REGION
from tests.fakes.aws_appconfig import ACCESS_KEY, SECRET_KEY


def client(fake, region: str = REGION, secret: str = SECRET_KEY):
    return boto3.session.Session().client(
        "appconfig",
        region_name=region,
        endpoint_url=fake.url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=secret,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )


def code(exc_info) -> str:
    return exc_info.value.response["Error"]["Code"]


def test_a_correctly_signed_request_is_served(fake):
    created = client(fake).create_application(Name="checkout")
    assert fake.applications[created["Id"]]["Name"] == "checkout"


def test_a_request_changed_after_signing_is_refused(fake):
    aws = client(fake)

    def tamper(request, **kwargs):
        request.body = request.body.replace(b"checkout", b"evilshop")  # same length

    aws.meta.events.register("before-send.appconfig.CreateApplication", tamper)
    with pytest.raises(aws.exceptions.ClientError) as caught:
        aws.create_application(Name="checkout")
    assert code(caught) == "InvalidSignatureException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert fake.applications == {}


def test_a_wrong_secret_a_wrong_region_and_no_signature_are_refused(fake):
    with pytest.raises(Exception) as caught:
        client(fake, secret="wrong").list_applications()
    assert code(caught) == "InvalidSignatureException"
    with pytest.raises(Exception) as caught:
        client(fake, region="us-east-1").list_applications()
    assert code(caught) == "InvalidSignatureException"
    assert "valid region" in str(caught.value)
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(f"{fake.url}/applications", timeout=5)  # noqa: S310
    assert unsigned.value.code == 403
    assert unsigned.value.headers["x-amzn-errortype"].startswith(
        "MissingAuthenticationTokenException"
    )


def setup(fake):
    app = fake.create_application("a")
    profile = fake.create_profile(app, "p")
    env = fake.create_environment(app, "e")
    aws = client(fake)
    version = aws.create_hosted_configuration_version(
        ApplicationId=app,
        ConfigurationProfileId=profile,
        Content=b'{"version":"1","flags":{"f":{"name":"F"}},"values":{"f":{"enabled":true}}}',
        ContentType="application/json",
        VersionLabel="v-one",
    )
    return aws, app, profile, env, version["VersionNumber"]


def test_latest_version_number_detects_a_concurrent_writer(fake):
    aws, app, profile, _, number = setup(fake)
    assert number == 1
    fake.create_version(app, profile, {"version": "1"})
    with pytest.raises(aws.exceptions.ConflictException):
        aws.create_hosted_configuration_version(
            ApplicationId=app,
            ConfigurationProfileId=profile,
            Content=b'{"version":"1"}',
            ContentType="application/json",
            LatestVersionNumber=1,
        )
    found = aws.list_hosted_configuration_versions(
        ApplicationId=app, ConfigurationProfileId=profile, VersionLabel="v-one"
    )["Items"]
    assert [v["VersionNumber"] for v in found] == [1]


def test_an_invalid_document_comes_back_with_awss_details(fake):
    aws, app, profile, _, _ = setup(fake)
    with pytest.raises(aws.exceptions.BadRequestException) as caught:
        aws.create_hosted_configuration_version(
            ApplicationId=app,
            ConfigurationProfileId=profile,
            Content=b'{"version":"2","flags":{"Bad":{}}}',
            ContentType="application/json",
        )
    response = caught.value.response
    assert response["Reason"] == "InvalidConfiguration"
    locations = {i["Location"] for i in response["Details"]["InvalidConfiguration"]}
    assert locations == {"/version", "/flags/Bad"}


def test_one_deployment_at_a_time_and_the_exponential_schedule(fake):
    aws, app, profile, env, number = setup(fake)
    ids = {"ApplicationId": app, "EnvironmentId": env}
    start = {
        **ids,
        "ConfigurationProfileId": profile,
        "ConfigurationVersion": str(number),
        "DeploymentStrategyId": "AppConfig.Canary10Percent20Minutes",
    }
    first = aws.start_deployment(**start)["DeploymentNumber"]
    with pytest.raises(aws.exceptions.ConflictException):
        aws.start_deployment(**start)
    seen = []
    for _ in range(5):
        d = aws.get_deployment(**ids, DeploymentNumber=first)
        seen.append((d["State"], d["PercentageComplete"]))
        fake.clock.advance(240)
    assert seen == [
        ("DEPLOYING", 10),
        ("DEPLOYING", 20),
        ("DEPLOYING", 40),
        ("DEPLOYING", 80),
        ("DEPLOYING", 100),
    ]
    assert aws.get_deployment(**ids, DeploymentNumber=first)["State"] == "BAKING"
    fake.clock.advance(600)
    d = aws.get_deployment(**ids, DeploymentNumber=first)
    assert d["State"] == "COMPLETE"
    assert [e["EventType"] for e in d["EventLog"]][:2] == [
        "DEPLOYMENT_COMPLETED",
        "BAKE_TIME_STARTED",
    ]  # newest first, as AWS lists them


def test_allow_revert_only_within_72_hours_of_completion(fake):
    aws, app, profile, env, number = setup(fake)
    ids = {"ApplicationId": app, "EnvironmentId": env}
    start = {
        **ids,
        "ConfigurationProfileId": profile,
        "ConfigurationVersion": str(number),
        "DeploymentStrategyId": "AppConfig.AllAtOnce",
    }
    first = aws.start_deployment(**start)["DeploymentNumber"]
    fake.clock.advance(600 + 72 * 3600 + 1)
    with pytest.raises(aws.exceptions.BadRequestException, match="72 hours"):
        aws.stop_deployment(**ids, DeploymentNumber=first, AllowRevert=True)
    second = aws.start_deployment(**start)["DeploymentNumber"]
    fake.clock.advance(601)
    with pytest.raises(aws.exceptions.BadRequestException, match="latest deployment"):
        aws.stop_deployment(**ids, DeploymentNumber=first, AllowRevert=True)
    reverted = aws.stop_deployment(**ids, DeploymentNumber=second, AllowRevert=True)
    assert reverted["State"] == "REVERTED"


def test_a_baking_deployment_is_stopped_only_with_allow_revert(fake):
    """AWS's API reference: StopDeployment "works only on deployments that have a status of
    DEPLOYING, unless an AllowRevert parameter is supplied"; with it, an in-progress deployment
    is ROLLED_BACK."""
    aws, app, profile, env, number = setup(fake)
    ids = {"ApplicationId": app, "EnvironmentId": env}
    first = aws.start_deployment(
        **ids,
        ConfigurationProfileId=profile,
        ConfigurationVersion=str(number),
        DeploymentStrategyId="AppConfig.AllAtOnce",
    )["DeploymentNumber"]
    assert aws.get_deployment(**ids, DeploymentNumber=first)["State"] == "BAKING"
    with pytest.raises(aws.exceptions.BadRequestException, match="DEPLOYING"):
        aws.stop_deployment(**ids, DeploymentNumber=first)
    assert aws.get_deployment(**ids, DeploymentNumber=first)["State"] == "BAKING"
    stopped = aws.stop_deployment(**ids, DeploymentNumber=first, AllowRevert=True)
    assert stopped["State"] == "ROLLED_BACK"


def _signed_request(fake, *, leave_out: str):
    """A ListApplications request signed correctly except that ``leave_out`` is not among the
    signed headers (botocore's signer, told to sign one header fewer)."""
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    class Signer(botocore.auth.SigV4Auth):
        def headers_to_sign(self, request):
            headers = super().headers_to_sign(request)
            del headers[leave_out]
            return headers

    request = AWSRequest(method="GET", url=f"{fake.url}/applications")
    Signer(Credentials(ACCESS_KEY, SECRET_KEY), "appconfig", REGION).add_auth(request)
    prepared = request.prepare()
    return urllib.request.Request(  # noqa: S310 (the fake, over http)
        prepared.url, headers=dict(prepared.headers), method="GET"
    )


@pytest.mark.parametrize(
    ("leave_out", "says"),
    [("x-amz-date", "'X-Amz-Date' must be a 'SignedHeader'"), ("host", "'Host' must be")],
)
def test_a_signature_must_cover_the_date_and_the_host(fake, leave_out, says):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(_signed_request(fake, leave_out=leave_out), timeout=5)  # noqa: S310
    assert refused.value.code == 403
    assert refused.value.headers["x-amzn-errortype"].startswith("IncompleteSignatureException")
    assert says in refused.value.read().decode()
    assert "Authorization" in _signed_request(fake, leave_out=leave_out).headers


def test_a_lost_answer_is_carried_out_and_never_arrives(fake):
    fake.lose_answer("CreateApplication")
    with pytest.raises(Exception, match="Connection was closed"):
        client(fake).create_application(Name="checkout")
    assert [a["Name"] for a in fake.applications.values()] == ["checkout"]
    assert fake.lost == ["CreateApplication"]


def test_throttling_can_carry_a_retry_after(fake):
    fake.fail_next("ListApplications", status=429, retry_after=20)
    with pytest.raises(client(fake).exceptions.ClientError) as caught:
        client(fake).list_applications()
    assert code(caught) == "ThrottlingException"
    assert caught.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "20"

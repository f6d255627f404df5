"""Which hosts flagdash may send a cloud request (and its credentials) to.

Endpoints are typed by admins into the backend page, and requests carry credentials: an Azure
managed identity's bearer token, an AWS SigV4 signature. So flagdash only talks to the clouds'
own hosts, plus the hosts an operator allows in the process environment
(``BACKEND_ENDPOINT_ALLOWLIST``: VPC endpoints with custom DNS, emulators, the test fakes). A
typed URL can never make flagdash call 169.254.169.254, a host on the internal network, or a
stranger's server with a token (server-side request forgery), and a blocked host is named in
the error, never contacted.
"""

from __future__ import annotations

import fnmatch
from urllib.parse import urlsplit

from django.conf import settings

# The public, government and China clouds' own host names.
AWS_HOST_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")
AZURE_HOST_SUFFIXES = (
    ".azconfig.io",
    ".appconfig.azure.com",
    ".azconfig.azure.us",
    ".appconfig.azure.us",
    ".azconfig.azure.cn",
    ".appconfig.azure.cn",
)
SUFFIXES = {"aws_appconfig": AWS_HOST_SUFFIXES, "azure_appconfig": AZURE_HOST_SUFFIXES}
# Azure issues tokens per cloud; the audience follows the endpoint's cloud, never the host.
AZURE_AUDIENCES = (
    ((".azconfig.azure.us", ".appconfig.azure.us"), "https://appconfig.azure.us"),
    ((".azconfig.azure.cn", ".appconfig.azure.cn"), "https://appconfig.azure.cn"),
)
AZURE_PUBLIC_AUDIENCE = "https://appconfig.azure.com"


class EndpointNotAllowed(ValueError):
    """The URL's host is neither the cloud's own nor on the operator's allowlist."""


def allowlist() -> list[str]:
    return [p.strip().lower() for p in getattr(settings, "BACKEND_ENDPOINT_ALLOWLIST", []) if p]


def _allowed_by_operator(host: str, port: int | None) -> bool:
    candidates = [host] if port is None else [host, f"{host}:{port}"]
    return any(fnmatch.fnmatchcase(c, pattern) for pattern in allowlist() for c in candidates)


def check_endpoint(url: str, kind: str) -> str:
    """Return ``url`` if flagdash may call it for a backend of ``kind``, else raise.

    The URL must be http(s) with a host and a valid port; the host must end with one of the
    cloud's suffixes, or match a pattern of BACKEND_ENDPOINT_ALLOWLIST (``host`` or
    ``host:port``, ``*`` wildcards). Plain http is allowed only for allowlisted hosts.
    """
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError when out of range
    except ValueError as exc:
        raise EndpointNotAllowed(f"“{url}” is not a valid URL ({exc}).") from None
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme not in ("https", "http") or not host:
        raise EndpointNotAllowed(f"“{url}” is not an http(s) URL with a host.")
    if _allowed_by_operator(host, port):
        return url
    cloud = "AWS" if kind == "aws_appconfig" else "Azure"
    if parts.scheme == "https" and host.endswith(SUFFIXES.get(kind, ())):
        return url
    raise EndpointNotAllowed(
        f"flagdash does not send {cloud} requests to {host}: it is not one of {cloud}'s own "
        f"hosts ({', '.join('*' + s for s in SUFFIXES.get(kind, ()))}, over https). An operator "
        "can allow it with BACKEND_ENDPOINT_ALLOWLIST in flagdash's environment."
    )


def azure_audience(url: str) -> str:
    """The token audience for an Azure App Configuration endpoint (per cloud, never the host)."""
    host = (urlsplit(url).hostname or "").lower()
    for suffixes, audience in AZURE_AUDIENCES:
        if host.endswith(suffixes):
            return audience
    return AZURE_PUBLIC_AUDIENCE

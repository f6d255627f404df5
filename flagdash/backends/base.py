"""The one interface the deployment engine speaks to every backend.

A backend receives a ``DeploymentSpec`` (the version to deploy, the version it replaces, the
rollout plan and whatever the backend stored about this deployment last time) and answers with
a ``RolloutStatus``. The engine never knows how a backend rolls out:

- AWS AppConfig rolls out natively: ``start`` calls StartDeployment, ``status`` polls
  GetDeployment and mirrors its event log, ``stop`` calls StopDeployment.
- Azure App Configuration and the built-in store have no deployments, so the backend steps the
  rollout itself: ``status`` applies the step the plan says is due at ``now`` (raising the share
  of targeting keys that see the new version) and reports where the plan stands. The shared
  arithmetic is ``RolloutPlan.at``.

Every call must be idempotent: the engine may repeat any of them after a crash, a lost message or
a retry (``start`` twice for one deployment starts one rollout). Errors are one of:

- ``TransientBackendError``: retried with exponential backoff, at most DEPLOYMENT_MAX_ATTEMPTS
  times in a row (throttling, a 5xx, a timeout); when the backend said how long to wait
  (``retry_in``, from a Retry-After header), the next attempt comes no sooner;
- ``BackendBusy``: the backend runs another deployment that flagdash did not start (AWS allows
  one per environment); the deployment waits, showing the message, without using up attempts;
- ``PermanentBackendError``: the deployment fails with the backend's message (bad credentials,
  a missing resource, a refused document);
- ``DriftError``: what the backend holds was changed outside flagdash since flagdash last wrote
  it; the deployment fails without overwriting anything, and a person may deploy again with
  ``DeploymentSpec.overwrite_drift`` set.

Nothing here runs inside a database transaction.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from flagdash.backends.models import BackendConnection

RolloutState = Literal["deploying", "baking", "complete", "rolling_back", "rolled_back", "failed"]
LINEAR = "linear"
EXPONENTIAL = "exponential"


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """A Retry-After header's wait in seconds: a number of seconds or an HTTP date; None when
    absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


class BackendError(Exception):
    """A backend call did not succeed. ``message`` is shown to users as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransientBackendError(BackendError):
    """Worth retrying: throttling, a 5xx, a timeout, another deployment still running.

    ``retry_in`` is how long the backend asked flagdash to wait (seconds; a 429's Retry-After),
    if it said: the engine waits at least that long before the next attempt (up to
    ``engine.RETRY_AFTER_MAX_SECONDS``) instead of its own shorter backoff.
    """

    def __init__(self, message: str, *, retry_in: float | None = None) -> None:
        super().__init__(message)
        self.retry_in = retry_in


class BackendBusy(TransientBackendError):
    """The backend is busy with a deployment flagdash did not start: wait, then try again.

    ``retry_in`` is how long to wait (seconds). Waiting does not count as a failed attempt.
    """

    retry_in: float

    def __init__(self, message: str, *, retry_in: float = 15.0) -> None:
        super().__init__(message, retry_in=retry_in)


class PermanentBackendError(BackendError):
    """Retrying will not help: bad credentials, a missing resource, a refused document.

    ``details`` lists the individual problems (for instance AWS's InvalidConfiguration items,
    one per flag and attribute), shown under the message.
    """

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = list(details or [])


class DriftError(PermanentBackendError):
    """The backend's copy was changed outside flagdash since flagdash last wrote it.

    ``details`` names what changed (one line per setting or version). Nothing was overwritten.
    """


@dataclass(frozen=True)
class PlanPoint:
    state: RolloutState
    percentage: float
    next_change_in: float | None  # seconds until the plan's next step or phase; None: done


@dataclass(frozen=True)
class RolloutPlan:
    """A deployment strategy's schedule, as AWS AppConfig defines it.

    The rollout takes ``ceil(100 / factor)`` linear steps (or, exponential, steps of
    ``factor · 2^n`` %) spread evenly over the duration; the first step happens at once. When
    the duration has passed, 100 % of targets have the new version and the final bake starts.
    """

    duration_seconds: int
    growth_type: str
    growth_factor: float
    final_bake_seconds: int

    def __post_init__(self) -> None:
        if self.growth_type not in (LINEAR, EXPONENTIAL):
            raise ValueError(f"unknown growth type {self.growth_type!r}")
        if not 1 <= self.growth_factor <= 100:
            raise ValueError("growth factor must be between 1 and 100")
        if self.duration_seconds < 0 or self.final_bake_seconds < 0:
            raise ValueError("durations cannot be negative")

    @classmethod
    def immediate(cls) -> RolloutPlan:
        """All targets at once, no bake: how a restore is deployed."""
        return cls(0, LINEAR, 100, 0)

    def percentages(self) -> list[float]:
        """The share of targets after each step, ending at 100."""
        if self.duration_seconds == 0:
            return [100.0]
        values: list[float] = []
        if self.growth_type == LINEAR:
            steps = math.ceil(100 / self.growth_factor - 1e-9)
            values = [min(100.0, self.growth_factor * (n + 1)) for n in range(steps)]
        else:
            n = 0
            while not values or values[-1] < 100:
                values.append(min(100.0, self.growth_factor * 2**n))
                n += 1
        values[-1] = 100.0
        return [round(v, 4) for v in values]

    def step_interval(self) -> float:
        return self.duration_seconds / len(self.percentages())

    def steps(self) -> list[tuple[float, float]]:
        """(seconds after the start, percentage) of each step."""
        interval = self.step_interval()
        return [(n * interval, pct) for n, pct in enumerate(self.percentages())]

    @property
    def total_seconds(self) -> int:
        return self.duration_seconds + self.final_bake_seconds

    def at(self, elapsed: float) -> PlanPoint:
        """Where a rollout started ``elapsed`` seconds ago stands."""
        elapsed = max(0.0, elapsed)
        if elapsed >= self.total_seconds:
            return PlanPoint("complete", 100.0, None)
        if elapsed >= self.duration_seconds:
            return PlanPoint("baking", 100.0, self.total_seconds - elapsed)
        interval = self.step_interval()
        percentages = self.percentages()
        index = min(int(elapsed // interval), len(percentages) - 1)
        next_step = (index + 1) * interval
        return PlanPoint("deploying", percentages[index], max(0.0, next_step - elapsed))


@dataclass(frozen=True)
class DeploymentSpec:
    """Everything a backend needs to act on one deployment, read from the database."""

    deployment_id: int
    environment_id: int
    application_key: str
    environment_key: str
    version_id: int
    version_number: int
    document: dict[str, Any]
    previous_version_id: int | None
    previous_version_number: int | None
    previous_document: dict[str, Any] | None
    plan: RolloutPlan  # the schedule in seconds (sped up by DEPLOYMENT_CLOCK_SPEED in demos)
    started_at: dt.datetime
    description: str = ""
    # The strategy as it was when the deployment was queued, unscaled: name, duration_minutes,
    # growth_type, growth_factor, final_bake_minutes. Native backends (AWS) deploy with it.
    strategy: dict[str, Any] = field(default_factory=dict)
    backend_ref: str = ""
    backend_data: dict[str, Any] = field(default_factory=dict)
    is_restore: bool = False  # a rollback deployed as a new deployment of an earlier version
    # For a restore: the deployment it rolls back, as the backend knows it (AWS can revert a
    # completed deployment natively within its window instead of deploying the old version).
    # Set only when reverting that deployment brings back exactly this spec's version.
    restores_backend_ref: str = ""
    restores_backend_data: dict[str, Any] = field(default_factory=dict)
    overwrite_drift: bool = False  # a person chose to overwrite changes made outside flagdash


@dataclass(frozen=True)
class BackendEvent:
    """Something the backend itself reported (AWS's event log), mirrored into ours."""

    occurred_at: dt.datetime
    kind: str
    message: str
    triggered_by: str = "backend"
    percentage: float | None = None


@dataclass(frozen=True)
class StartResult:
    backend_ref: str
    backend_data: dict[str, Any] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class RolloutStatus:
    state: RolloutState
    percentage: float
    next_check_in: float | None = None  # seconds; None lets the engine choose
    events: list[BackendEvent] = field(default_factory=list)  # new since the last call
    message: str = ""  # for failed: the backend's reason
    rolled_back_by: str = ""  # e.g. "alarm:checkout-5xx" when the backend rolled back itself
    backend_data: dict[str, Any] | None = None  # replaces the stored data when not None


@dataclass(frozen=True)
class CheckResult:
    """The answer to "test connection": can flagdash reach and use this backend?"""

    ok: bool
    message: str
    details: list[str] = field(default_factory=list)


class Backend(ABC):
    """One BackendConnection's way of deploying versions."""

    kind: ClassVar[str]
    self_driven: ClassVar[bool] = False  # True: status() applies the plan's steps itself

    def __init__(self, connection: BackendConnection) -> None:
        self.connection = connection
        self.options: dict[str, Any] = dict(connection.options or {})

    @abstractmethod
    def render(self, document: dict[str, Any]) -> Any:
        """The version in the backend's own format (validated locally; raises on refusal)."""

    @abstractmethod
    def start(self, spec: DeploymentSpec, now: dt.datetime) -> StartResult:
        """Begin the rollout. Calling it again for the same deployment starts nothing new."""

    @abstractmethod
    def status(self, spec: DeploymentSpec, now: dt.datetime) -> RolloutStatus:
        """Where the rollout stands (a self-driven backend first applies the step due now)."""

    @abstractmethod
    def stop(self, spec: DeploymentSpec, now: dt.datetime) -> RolloutStatus:
        """Roll back: everyone gets the previous version again. Idempotent."""

    @abstractmethod
    def current(self, application_key: str, environment_key: str) -> dict[str, Any] | None:
        """What the backend serves now, as a flagdash document (drift checks and import)."""

    @abstractmethod
    def check(self) -> CheckResult:
        """Reach the backend with the connection's settings and credentials; never raises."""


_REGISTRY: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    _REGISTRY[cls.kind] = cls
    return cls


def backend_for(connection: BackendConnection) -> Backend:
    """The backend implementation of a connection (raises PermanentBackendError if none)."""
    from flagdash.backends import (  # noqa: F401  (each module registers its backend)
        aws_appconfig,
        azure_appconfig,
        local,
    )

    try:
        cls = _REGISTRY[connection.kind]
    except KeyError:
        raise PermanentBackendError(
            f"{connection.get_kind_display()} deployments are not available in this version "
            "of flagdash."
        ) from None
    return cls(connection)

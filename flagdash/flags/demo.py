"""Demo data for `make run`: two applications, realistic flags, three users.

Everything goes through the services, so the demo's history is real audit history. Seeding is
idempotent: an application that exists is left alone; demo users are created once and their
password is kept equal to the demo password so the printed logins always work.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from flagdash.accounts import services as account_services
from flagdash.accounts.models import Role
from flagdash.deployments import engine
from flagdash.deployments import services as deployment_services
from flagdash.deployments.models import Deployment, DeploymentEvent, DeploymentStrategy
from flagdash.env import secret_from_file
from flagdash.flags import services
from flagdash.flags.models import (
    Application,
    Environment,
    Flag,
    FlagKind,
    FlagSetting,
    ValueType,
)

User = get_user_model()
DEMO_USERS = (("admin", Role.ADMIN), ("editor", Role.EDITOR), ("viewer", Role.VIEWER))


def demo_password() -> tuple[str, str]:
    """(password, where it came from)."""
    if settings.FLAGDASH_DEMO_PASSWORD:
        return settings.FLAGDASH_DEMO_PASSWORD, "FLAGDASH_DEMO_PASSWORD"
    path = Path(settings.VAR_DIR) / "demo_password"
    return secret_from_file(path, nbytes=12), str(path)


def ensure_users(
    password: str, *, reset_passwords: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """The demo users, created where missing. Returns (users, names whose password differs).

    An existing account keeps its password unless ``reset_passwords`` (audited): running the
    seeder against a real installation must never silently change someone's login.
    """
    users, differing = {}, []
    for username, role in DEMO_USERS:
        user = User.objects.filter(username=username).first()
        if user is None:
            user = account_services.user_create(
                actor=None,
                username=username,
                password=password,
                role=role,
                email=f"{username}@example.com",
                check_password=False,
            )
        elif not user.check_password(password):
            if reset_passwords:
                account_services.user_set_password(
                    actor=None, user=user, password=password, reason="seed_demo --reset-passwords"
                )
            else:
                differing.append(username)
        users[username] = user
    return users, differing


@dataclass(frozen=True)
class DemoFlag:
    key: str
    name: str
    description: str = ""
    kind: str = FlagKind.BOOLEAN
    value_type: str | None = None
    short_term: bool = False
    owner: str = "editor"
    remove_by_days: int | None = None  # relative to today; negative = overdue
    tags: tuple[str, ...] = ()
    enabled: tuple[str, ...] = ()  # environment keys where it is on
    attributes: tuple[dict[str, Any], ...] = ()
    values: dict[str, dict[str, Any]] | None = None  # env key -> attribute values
    variants: tuple[dict[str, Any], ...] = ()
    default_variant: str = ""
    rules: dict[str, list[dict[str, Any]]] | None = None  # env key -> targeting rules
    age_days: int = 60  # how long ago it was created (the short-term page shows ages)


CHECKOUT = (
    DemoFlag(
        "allow-bitcoin-at-checkout",
        "Allow Bitcoin at checkout",
        "Offer Bitcoin as a payment option, with a limited-time discount for paying in BTC.",
        short_term=True,
        owner="editor",
        remove_by_days=45,
        age_days=50,
        tags=("payments", "promotion"),
        attributes=(
            {
                "name": "default-currency",
                "type": "string",
                "enum": ["USD", "BTC"],
                "description": "Currency preselected at checkout.",
                "required": True,
            },
            {
                "name": "bitcoin-discount-percentage",
                "type": "number",
                "minimum": 0,
                "maximum": 100,
                "description": "Discount when paying in BTC.",
            },
            {
                "name": "bitcoin-discount-end-date",
                "type": "date",
                "description": "Last day of the discount.",
            },
        ),
        rules={
            "beta": [
                {
                    "name": "El Salvador",
                    "conditions": [{"attribute": "country", "operator": "in", "value": ["SV"]}],
                    "serve": {"variant": "on"},
                },
                {
                    "name": "20 % of app 2.4+",
                    "conditions": [
                        {"attribute": "appVersion", "operator": "semver_gte", "value": "2.4.0"}
                    ],
                    "serve": {
                        "split": [{"variant": "on", "weight": 20}, {"variant": "off", "weight": 80}]
                    },
                },
                {
                    "name": "Other countries: not yet",
                    "conditions": [{"attribute": "country", "operator": "not_in", "value": ["SV"]}],
                    "serve": {"variant": "off"},
                },
            ]
        },
        values={
            "beta": {
                "default-currency": "BTC",
                "bitcoin-discount-percentage": 5,
                "bitcoin-discount-end-date": "2026-12-31",
            },
            "production": {
                "default-currency": "USD",
                "bitcoin-discount-percentage": 5,
                "bitcoin-discount-end-date": "2026-12-31",
            },
        },
    ),
    DemoFlag(
        "new-payment-form",
        "New payment form",
        "The redesigned card form with inline validation.",
        short_term=True,
        owner="editor",
        remove_by_days=-20,
        age_days=75,
        tags=("payments", "release"),
        enabled=("beta", "production"),
    ),
    DemoFlag(
        "one-page-checkout",
        "One-page checkout",
        "Address, shipping and payment on one page instead of three steps. Rolled out to "
        "everyone a month ago: the code's old path can go.",
        short_term=True,
        owner="admin",
        remove_by_days=10,
        age_days=60,
        tags=("release",),
        enabled=("beta", "production"),
    ),
    DemoFlag(
        "express-checkout",
        "Express checkout",
        "Kill switch for one-click checkout.",
        owner="admin",
        tags=("ops", "kill-switch"),
        enabled=("beta", "production"),
    ),
    DemoFlag(
        "checkout-button-color",
        "Checkout button colour",
        "A/B test of the primary button colour.",
        kind=FlagKind.MULTIVARIANT,
        value_type=ValueType.STRING,
        short_term=True,
        owner="editor",
        remove_by_days=20,
        age_days=35,
        tags=("experiment",),
        enabled=("beta",),
        variants=(
            {"name": "blue", "value": "#1f4fd1"},
            {"name": "green", "value": "#137a3a"},
            {"name": "orange", "value": "#d97706"},
        ),
        default_variant="blue",
        rules={
            "beta": [
                {
                    "name": "Staff preview",
                    "conditions": [
                        {"attribute": "email", "operator": "ends_with", "value": "@example.com"}
                    ],
                    "serve": {"variant": "orange"},
                },
                {
                    "name": "A/B test in North America",
                    "match": "any",
                    "conditions": [
                        {"attribute": "country", "operator": "in", "value": ["US", "CA"]}
                    ],
                    "serve": {
                        "split": [
                            {"variant": "blue", "weight": 50},
                            {"variant": "green", "weight": 50},
                        ]
                    },
                },
            ]
        },
    ),
    DemoFlag(
        "max-cart-items",
        "Maximum items in a cart",
        "Upper bound on cart lines.",
        kind=FlagKind.MULTIVARIANT,
        value_type=ValueType.INTEGER,
        owner="admin",
        tags=("limits",),
        enabled=("beta", "production"),
        variants=({"name": "standard", "value": 100}, {"name": "relaxed", "value": 250}),
        default_variant="standard",
    ),
    DemoFlag(
        "holiday-free-shipping",
        "Holiday free shipping",
        "Free shipping above a threshold.",
        short_term=True,
        owner="editor",
        remove_by_days=-60,
        age_days=120,
        tags=("promotion",),
        attributes=({"name": "threshold-usd", "type": "number", "minimum": 0, "maximum": 1000},),
        values={"beta": {"threshold-usd": 50}, "production": {"threshold-usd": 75}},
    ),
    DemoFlag(
        "fraud-check-v2",
        "Fraud check v2",
        "New risk-scoring service for card payments.",
        short_term=True,
        owner="admin",
        remove_by_days=30,
        age_days=45,
        tags=("payments", "release"),
        enabled=("beta",),
    ),
    DemoFlag(
        "address-autocomplete",
        "Address autocomplete",
        "Suggest addresses while typing.",
        owner="editor",
        tags=("ux",),
        enabled=("beta", "production"),
        attributes=(
            {"name": "provider", "type": "string", "enum": ["loqate", "google"]},
            {"name": "countries", "type": "string_list", "pattern": "^[A-Z]{2}$"},
        ),
        values={
            "beta": {"provider": "google", "countries": ["US", "CA", "GB"]},
            "production": {"provider": "loqate", "countries": ["US", "CA"]},
        },
    ),
    DemoFlag(
        "promo-banner",
        "Promotion banner",
        "Content of the banner above the basket.",
        kind=FlagKind.MULTIVARIANT,
        value_type=ValueType.OBJECT,
        owner="editor",
        tags=("promotion",),
        enabled=("beta",),
        variants=(
            {"name": "none", "value": {}},
            {"name": "winter-sale", "value": {"text": "Winter sale: 20% off", "color": "#1f4fd1"}},
        ),
        default_variant="none",
    ),
)

STOREFRONT = (
    DemoFlag(
        "search-ranking-model",
        "Search ranking model",
        "Which ranking model orders search results.",
        kind=FlagKind.MULTIVARIANT,
        value_type=ValueType.STRING,
        owner="admin",
        tags=("search",),
        enabled=("beta", "production"),
        variants=(
            {"name": "bm25", "value": "bm25"},
            {"name": "semantic-v1", "value": "semantic-v1"},
            {"name": "semantic-v2", "value": "semantic-v2"},
        ),
        default_variant="bm25",
    ),
    DemoFlag(
        "product-recommendations",
        "Product recommendations",
        "“Customers also bought” carousel.",
        owner="editor",
        tags=("ux",),
        enabled=("beta", "production"),
    ),
    DemoFlag(
        "dark-mode",
        "Dark mode",
        "Dark colour scheme for the storefront.",
        short_term=True,
        owner="editor",
        remove_by_days=-35,
        age_days=90,
        tags=("ux", "release"),
        enabled=("beta", "production"),
    ),
    DemoFlag(
        "new-homepage-hero",
        "New homepage hero",
        "Video hero on the homepage.",
        short_term=True,
        owner="admin",
        remove_by_days=-5,
        age_days=40,
        tags=("release",),
        enabled=("beta",),
    ),
    DemoFlag(
        "reviews-widget-v3",
        "Reviews widget v3",
        "Rewritten product reviews widget.",
        short_term=True,
        owner="editor",
        remove_by_days=60,
        age_days=70,
        tags=("release",),
    ),
    DemoFlag(
        "discount-rate",
        "Loyalty discount rate",
        "Discount for loyalty members.",
        kind=FlagKind.MULTIVARIANT,
        value_type=ValueType.FLOAT,
        owner="admin",
        tags=("pricing",),
        enabled=("beta", "production"),
        variants=(
            {"name": "none", "value": 0.0},
            {"name": "standard", "value": 0.05},
            {"name": "generous", "value": 0.1},
        ),
        default_variant="standard",
    ),
    DemoFlag(
        "maintenance-banner",
        "Maintenance banner",
        "Show the planned-maintenance notice.",
        owner="admin",
        tags=("ops", "kill-switch"),
    ),
)


def _seed_application(
    key: str, name: str, flags: tuple[DemoFlag, ...], users: dict[str, Any]
) -> Application:
    admin = users["admin"]
    app = services.application_create(actor=admin, key=key, name=name)
    envs = [
        services.environment_create(actor=admin, application=app, key="beta", name="Beta"),
        services.environment_create(
            actor=admin, application=app, key="production", name="Production", protected=True
        ),
    ]
    today = timezone.localdate()
    now = timezone.now()
    oldest = max(spec.age_days for spec in flags)
    Application.objects.filter(pk=app.pk).update(created_at=now - dt.timedelta(days=oldest + 1))
    Environment.objects.filter(application=app).update(
        created_at=now - dt.timedelta(days=oldest + 1)
    )
    for spec in flags:
        owner = users[spec.owner]
        flag = services.flag_create(
            actor=owner,
            application=app,
            key=spec.key,
            name=spec.name,
            description=spec.description,
            kind=spec.kind,
            value_type=spec.value_type,
            short_term=spec.short_term,
            owner=owner,
            remove_by=today + dt.timedelta(days=spec.remove_by_days)
            if spec.remove_by_days is not None
            else None,
            tags=spec.tags,
            variants=[dict(v) for v in spec.variants] or None,
            default_variant=spec.default_variant,
        )
        Flag.objects.filter(pk=flag.pk).update(created_at=now - dt.timedelta(days=spec.age_days))
        for attribute in spec.attributes:
            services.attribute_save(actor=owner, flag=flag, **attribute)
        for env in envs:
            setting = FlagSetting.objects.get(flag=flag, environment=env)
            services.flag_setting_update(
                actor=admin,
                flag=flag,
                environment=env,
                expected_revision=setting.revision,
                enabled=env.key in spec.enabled,
                attribute_values=(spec.values or {}).get(env.key, {}),
                variants=list(setting.variants) or None,
                default_variant=setting.default_variant,
                rules=(spec.rules or {}).get(env.key, []),
            )
    # The first versions went live a month ago: long enough for "unchanged for 30 days" and a
    # ready-to-remove flag on the short-term page.
    start = timezone.now() - dt.timedelta(days=30)
    for env in envs:
        version = services.config_version_create(
            actor=admin, environment=env, message="Initial configuration"
        )
        first = deployment_services.deployment_create(
            actor=admin,
            environment=env,
            version=version,
            strategy=deployment_services.strategy_by_name("AppConfig.AllAtOnce"),
        )
        _replay(first, start)
    return app


def _demo_strategy() -> DeploymentStrategy:
    """A rollout that visibly moves during a demo: 10 % more every minute, 2-minute bake."""
    found = DeploymentStrategy.objects.filter(name="Demo: 10 % per minute").first()
    return found or deployment_services.strategy_save(
        actor=None,
        name="Demo: 10 % per minute",
        description="Ten steps of 10 %, one a minute, then a 2-minute bake.",
        duration_minutes=10,
        growth_type="linear",
        growth_factor=10,
        final_bake_minutes=2,
    )


def _replay(
    deployment: Deployment | None, start: dt.datetime, *, until: dt.datetime | None = None
) -> dt.datetime:
    """Run a deployment through the engine on a past clock, as the worker did back then.

    Returns the simulated time it stopped at (terminal, or ``until``).
    """
    if deployment is None:
        return start
    Deployment.objects.filter(pk=deployment.pk).update(created_at=start, next_step_at=start)
    DeploymentEvent.objects.filter(deployment=deployment).update(occurred_at=start)
    now = start
    for _ in range(500):
        engine.deployment_advance(deployment.pk, now=now)
        deployment.refresh_from_db()
        if deployment.is_terminal or deployment.next_step_at is None:
            break
        if until is not None and deployment.next_step_at > until:
            return until
        now = max(now, deployment.next_step_at)
    return now


def _demo_history(users: dict[str, Any]) -> None:
    """A few everyday changes so the audit log and versions have something to show."""
    checkout = Application.objects.get(key="checkout")
    beta = Environment.objects.get(application=checkout, key="beta")
    production = Environment.objects.get(application=checkout, key="production")
    demo = _demo_strategy()
    admin = users["admin"]
    for env, strategy in ((beta, "AppConfig.Linear50PercentEvery30Seconds"), (production, None)):
        services.environment_update(
            actor=admin,
            environment=env,
            name=env.name,
            protected=env.protected,
            default_strategy=deployment_services.strategy_by_name(strategy) if strategy else demo,
        )
    now = timezone.now()
    fraud = checkout.flags.get(key="fraud-check-v2")
    off = services.flag_set_enabled(
        actor=users["editor"], flag=fraud, environment=beta, enabled=False
    )
    _replay(off.deployment, now - dt.timedelta(days=2))
    on = services.flag_set_enabled(
        actor=users["editor"], flag=fraud, environment=beta, enabled=True
    )
    _replay(on.deployment, now - dt.timedelta(days=2, hours=-1))

    # A rollout in production that an alarm rolled back half-way.
    bad = services.flag_set_enabled(actor=admin, flag=fraud, environment=production, enabled=True)
    started = now - dt.timedelta(hours=20)
    stopped = _replay(bad.deployment, started, until=started + dt.timedelta(minutes=3, seconds=5))
    assert bad.deployment is not None  # noqa: S101  (flag_set_enabled deploys by default)
    deployment_services.deployment_rollback(
        actor=None,
        deployment=bad.deployment,
        reason="checkout_5xx_rate above 2 % for 2 minutes",
        trigger="alarm",
        alarm_name="CheckoutHighErrorRate",
    )
    Deployment.objects.filter(pk=bad.deployment.pk).update(
        rollback_requested_at=stopped, next_step_at=stopped
    )
    DeploymentEvent.objects.filter(deployment=bad.deployment, type="rollback_requested").update(
        occurred_at=stopped
    )
    _replay_from(bad.deployment, stopped)

    # Bitcoin goes live in beta, for its targeting rules only (El Salvador, then 20 % of app
    # 2.4+): the curl `make run` prints evaluates it and gets a targeting match. Production
    # keeps it off.
    bitcoin = checkout.flags.get(key="allow-bitcoin-at-checkout")
    setting = FlagSetting.objects.get(flag=bitcoin, environment=beta)
    services.flag_setting_update(
        actor=users["editor"],
        flag=bitcoin,
        environment=beta,
        expected_revision=setting.revision,
        enabled=True,
        attribute_values={**setting.attribute_values, "bitcoin-discount-percentage": 10},
    )
    raised = services.config_version_create(
        actor=users["editor"],
        environment=beta,
        message="Offer Bitcoin in beta (El Salvador, 20 % of app 2.4+) with a 10 % BTC discount",
    )
    _replay(
        deployment_services.deployment_create(
            actor=users["editor"], environment=beta, version=raised
        ),
        now - dt.timedelta(hours=2),
    )


def _replay_from(deployment: Deployment, now: dt.datetime) -> None:
    for _ in range(100):
        engine.deployment_advance(deployment.pk, now=now)
        deployment.refresh_from_db()
        if deployment.is_terminal or deployment.next_step_at is None:
            return
        now = max(now, deployment.next_step_at)


@dataclass(frozen=True)
class SeedResult:
    created: list[str]
    password: str
    source: str
    kept_passwords: list[str]  # existing demo users whose password is not the demo password


def seed_demo(*, reset_passwords: bool = False) -> SeedResult:
    """Create what is missing."""
    password, source = demo_password()
    users, kept = ensure_users(password, reset_passwords=reset_passwords)
    created = []
    for key, name, flags in (
        ("checkout", "Checkout", CHECKOUT),
        ("storefront", "Storefront", STOREFRONT),
    ):
        if not Application.objects.filter(key=key).exists():
            with engine.without_nudges():
                _seed_application(key, name, flags, users)
            created.append(key)
    if "checkout" in created:
        with engine.without_nudges():
            _demo_history(users)
        # A gradual rollout left for the worker to move now (10 % a minute).
        checkout = Application.objects.get(key="checkout")
        services.flag_set_enabled(
            actor=users["admin"],
            flag=checkout.flags.get(key="promo-banner"),
            environment=Environment.objects.get(application=checkout, key="production"),
            enabled=True,
        )
    # Short-term flags: a scan of each application's demo code, a week of simulated
    # evaluations of the flags that code uses, and the weekly status chart.
    from flagdash.lifecycle.demo import seed_lifecycle

    for key in created:
        seed_lifecycle(Application.objects.get(key=key))
    return SeedResult(created, password, source, kept)

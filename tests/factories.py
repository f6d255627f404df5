"""factory_boy factories. Domain objects that services create are built through services so
the audit chain stays whole; factories here only build what has no audit side (users)."""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model

from flagdash.accounts.models import Membership, Role
from flagdash.deployments import services as deployment_services
from flagdash.deployments.models import DeploymentStrategy
from flagdash.flags import services
from flagdash.flags.models import Application, Environment, Flag

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def role(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        if extracted:
            Membership.objects.update_or_create(user=self, defaults={"role": Role(extracted)})
        self.save()


def make_application(key: str = "checkout", name: str = "Checkout") -> Application:
    app = Application.objects.filter(key=key).first()
    return app or services.application_create(actor=None, key=key, name=name)


def make_environment(
    application: Application, key: str, name: str, *, protected: bool = False
) -> Environment:
    env = Environment.objects.filter(application=application, key=key).first()
    return env or services.environment_create(
        actor=None, application=application, key=key, name=name, protected=protected
    )


def make_flag(application: Application, key: str, **kwargs: Any) -> Flag:
    kwargs.setdefault("name", key.replace("-", " ").capitalize()[:64])
    return services.flag_create(actor=None, application=application, key=key, **kwargs)


def make_strategy(
    name: str,
    *,
    duration_minutes: int = 4,
    growth_type: str = "linear",
    growth_factor: float = 25,
    final_bake_minutes: int = 0,
) -> DeploymentStrategy:
    found = DeploymentStrategy.objects.filter(name=name).first()
    return found or deployment_services.strategy_save(
        actor=None,
        name=name,
        duration_minutes=duration_minutes,
        growth_type=growth_type,
        growth_factor=growth_factor,
        final_bake_minutes=final_bake_minutes,
    )

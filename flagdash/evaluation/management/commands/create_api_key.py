"""``manage.py create_api_key APPLICATION ENVIRONMENT [--name NAME]``: print a new key once."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from flagdash.core import context
from flagdash.evaluation import services
from flagdash.flags.models import Environment


class Command(BaseCommand):
    help = (
        "Create an API key with which applications read ENVIRONMENT's flags over OFREP, and "
        "print it (only this once: flagdash keeps only its hash). The key is the only thing "
        "written to stdout."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("application", help="Application key, e.g. checkout.")
        parser.add_argument("environment", help="Environment key, e.g. beta.")
        parser.add_argument(
            "--name", default="", help="Which application uses the key (default: generated)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        app_key, env_key = options["application"], options["environment"]
        environment = (
            Environment.objects.select_related("application")
            .filter(application__key=app_key, key=env_key)
            .first()
        )
        if environment is None:
            raise CommandError(f"No environment {env_key!r} in an application {app_key!r}.")
        name = options["name"] or f"{app_key}-{env_key}-cli-{services.new_plaintext()[4:10]}"
        with context.bind(source="cli"):
            try:
                key, plaintext = services.api_key_create(
                    actor=None, environment=environment, name=name
                )
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(plaintext)
        self.stderr.write(
            f"Created API key “{key.name}” ({key.prefix}…) for {app_key}/{env_key}. "
            "Store it now: it cannot be shown again."
        )

"""``manage.py create_api_token USERNAME --name NAME``: print a new API token once."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from flagdash.accounts import tokens
from flagdash.core import context


class Command(BaseCommand):
    help = (
        "Create a personal API token for USERNAME and print it (only this once: flagdash keeps "
        "only its hash). The token is the only thing written to stdout."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="What will use the token.")
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=None,
            help="Expire the token after this many days (default: never).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user named {options['username']!r}.")
        days = options["expires_in_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-in-days must be at least 1.")
        expires_at = timezone.now() + dt.timedelta(days=days) if days else None
        with context.bind(source="cli"):
            try:
                token, plaintext = tokens.api_token_create(
                    actor=None, user=user, name=options["name"], expires_at=expires_at
                )
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(plaintext)
        expiry = (
            f"expires {token.expires_at:%Y-%m-%d %H:%M %Z}" if token.expires_at else "no expiry"
        )
        self.stderr.write(
            f"Created API token “{token.name}” ({token.prefix}…) for {user.get_username()}, "
            f"{expiry}. Store it now: it cannot be shown again."
        )

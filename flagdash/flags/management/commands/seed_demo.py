"""manage.py seed_demo: load the demo applications, flags and users (idempotent)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from flagdash.core import context
from flagdash.evaluation.demo import (
    DEMO_APPLICATION,
    DEMO_ENVIRONMENT,
    curl_example,
    ensure_demo_api_key,
)
from flagdash.flags.demo import DEMO_USERS, seed_demo


class Command(BaseCommand):
    help = "Create the demo applications, flags and users where they are missing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset-passwords",
            action="store_true",
            help="Set existing admin/editor/viewer accounts to the demo password (audited).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with context.bind(source="cli"):
            result = seed_demo(reset_passwords=options["reset_passwords"])
            demo_key = ensure_demo_api_key()
        if result.created:
            self.stdout.write(
                self.style.SUCCESS(f"Demo data created: {', '.join(result.created)}.")
            )
        else:
            self.stdout.write("Demo data already present; nothing to create.")
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"  flagdash: http://127.0.0.1:{settings.PORT}"))
        for username, role in DEMO_USERS:
            shown = (
                "(kept: not the demo password)"
                if username in result.kept_passwords
                else result.password
            )
            self.stdout.write(
                f"  login: {username:<7} {'(' + role.label.lower() + ')':<9} password: {shown}"
            )
        self.stdout.write(f"  (password from {result.source})")
        where = f"{DEMO_APPLICATION}/{DEMO_ENVIRONMENT}"
        if demo_key.plaintext:
            self.stdout.write(f"  OFREP API key ({where}): {demo_key.plaintext}  ({demo_key.note})")
            base = f"http://127.0.0.1:{settings.PORT}"
            self.stdout.write(f"  {curl_example(base, demo_key.plaintext)}")
        else:
            self.stdout.write(f"  No demo OFREP API key: {demo_key.note}.")
        if result.kept_passwords:
            self.stdout.write(
                "  Existing accounts keep their passwords; "
                "`manage.py seed_demo --reset-passwords` sets them to the one above."
            )
        self.stdout.write("")

"""manage.py seed_demo: load the demo applications, flags and users (idempotent)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from flagdash.core import context
from flagdash.flags.demo import DEMO_USERS, seed_demo


class Command(BaseCommand):
    help = "Create the demo applications, flags and users where they are missing."

    def handle(self, *args: Any, **options: Any) -> None:
        with context.bind(source="cli"):
            created, password, source = seed_demo()
        if created:
            self.stdout.write(self.style.SUCCESS(f"Demo data created: {', '.join(created)}."))
        else:
            self.stdout.write("Demo data already present; nothing to create.")
        url = f"http://127.0.0.1:{settings.PORT}"
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"  flagdash: {url}"))
        for username, role in DEMO_USERS:
            self.stdout.write(
                f"  login: {username:<7} ({role.label.lower():<6})  password: {password}"
            )
        self.stdout.write(f"  (password from {source})")
        self.stdout.write("")

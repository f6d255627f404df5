"""Walk the audit hash chain and report the first broken link.

Exit status 0 and "OK: N events, chain intact" when every event matches its hash and links to
the one before it; otherwise "BROKEN: audit chain broken at event #ID: reason" on stderr and
exit status 1.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from flagdash.audit.services import audit_verify_chain, chain_head


class Command(BaseCommand):
    help = "Verify the audit log's hash chain; exit 1 and name the first broken event if any."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--quiet", action="store_true", help="Print nothing when the chain is intact."
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=2000,
            help="Events read per query (default 2000).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        checked, broken = audit_verify_chain(batch_size=batch_size)
        if broken is not None:
            # Django prints a CommandError on stderr and exits with its returncode (1).
            raise CommandError(f"BROKEN: {broken} ({checked} events before it are intact)")
        if not options["quiet"]:
            head = chain_head()
            anchor = f"; head #{head[0]} {head[1]}" if head else ""
            self.stdout.write(f"OK: {checked} events, chain intact{anchor}")

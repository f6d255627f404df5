"""``manage.py scan_code_refs PATH --application KEY [--commit SHA] [--dry-run] [--json]``.

Scans a source tree for the application's flag keys (archived ones too) and replaces the
application's code references with what it found. ``--json`` prints the scan as the JSON the
upload endpoint takes (``POST /api/v1/apps/<app>/code-references/``) and nothing else on
stdout; with ``--dry-run`` nothing is stored, so a CI job can scan here and upload there.
``--keys-file`` reads the keys from a file instead of the database (one key per line, or the
JSON answer of ``GET /api/v1/apps/<app>/code-references/``), so that CI job needs no database.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import socket
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from flagdash.core import context
from flagdash.flags.models import Application, Flag, key_validator
from flagdash.lifecycle import scanner, services
from flagdash.lifecycle.models import ScanSource


def scan_payload(
    result: scanner.ScanResult, *, commit: str | None, scanned_at: dt.datetime
) -> dict[str, Any]:
    """The upload endpoint's JSON body for this scan."""
    return {
        "commit": commit,
        "scanned_at": scanned_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "files_scanned": result.files_scanned,
        "skipped_binary": result.skipped_binary,
        "skipped_large": result.skipped_large,
        "duration_ms": result.duration_ms,
        "listing": result.listing,
        "references": [
            {"flag": r.flag, "path": r.path, "line": r.line, "excerpt": r.excerpt}
            for r in result.references
        ],
    }


def _keys_from_file(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"Cannot read the keys file {path}: {exc}") from exc
    if text.lstrip().startswith("{"):
        try:
            keys = json.loads(text).get("flag_keys")
        except (ValueError, AttributeError) as exc:
            raise CommandError(f"{path} is not the JSON of the code-references endpoint.") from exc
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise CommandError(f"{path}: “flag_keys” must be a list of strings.")
    else:
        keys = [line.strip() for line in text.splitlines() if line.strip()]
    for key in keys:
        try:
            key_validator(key)
        except ValidationError as exc:
            raise CommandError(f"{path}: “{key[:70]}” is not a flag key.") from exc
    if not keys:
        raise CommandError(f"{path} holds no flag keys.")
    return keys


class Command(BaseCommand):
    help = (
        "Find every use of an application's flag keys in a source tree (file, line, excerpt) "
        "and store it as the application's code references, replacing the previous scan. "
        "Skips .git, what .gitignore ignores, symbolic links, binaries and files over 1 MiB."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="The source tree to scan.")
        parser.add_argument("--application", required=True, help="Application key, e.g. checkout.")
        parser.add_argument(
            "--commit",
            default=None,
            help="Commit the tree is at (default: HEAD when PATH is a git work tree).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Scan and report, store nothing."
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print the scan as the upload endpoint's JSON body (only that, on stdout).",
        )
        parser.add_argument(
            "--keys-file",
            default=None,
            help="Read the flag keys from this file instead of the database (with --dry-run).",
        )
        parser.add_argument(
            "--no-git",
            action="store_true",
            help="Walk the tree and apply .gitignore files here even in a git work tree.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        root = Path(options["path"]).expanduser()
        if not root.is_dir():
            raise CommandError(f"{root} is not a directory.")
        app_key = options["application"]
        as_json, dry_run = options["json"], options["dry_run"]
        out = self.stderr if as_json else self.stdout
        commit = options["commit"]
        if commit is not None:
            commit = commit.strip().lower()
            if not services.COMMIT_PATTERN.match(commit):
                raise CommandError("--commit must be 7 to 64 hexadecimal characters (a git SHA).")
        application = None
        if options["keys_file"]:
            if not dry_run:
                raise CommandError("--keys-file is for --dry-run scans (nothing is stored).")
            keys = _keys_from_file(options["keys_file"])
        else:
            application = Application.objects.filter(key=app_key).first()
            if application is None:
                raise CommandError(f"No application {app_key!r}.")
            keys = list(Flag.objects.filter(application=application).values_list("key", flat=True))
            if not keys:
                raise CommandError(f"{application.name} has no flags to look for.")
        use_git = False if options["no_git"] else None
        scanned_at = timezone.now()
        try:
            result = scanner.scan_tree(root, keys, use_git=use_git)
        except scanner.ScanError as exc:
            raise CommandError(str(exc)) from exc
        if commit is None and result.listing == "git":
            commit = scanner.git_head(root.resolve())
        payload = scan_payload(result, commit=commit, scanned_at=scanned_at)
        if as_json:
            self.stdout.write(json.dumps(payload, ensure_ascii=False))
        counts = result.counts_by_flag()
        out.write(
            f"Scanned {result.files_scanned:,} files in {result.duration_ms / 1000:.1f} s "
            f"({'git ls-files' if result.listing == 'git' else '.gitignore rules'}; skipped "
            f"{result.skipped_binary} binary, {result.skipped_large} over 1 MiB"
            + (f", {result.skipped_unreadable} unreadable" if result.skipped_unreadable else "")
            + (f", {result.skipped_symlinks} symbolic links" if result.skipped_symlinks else "")
            + f"): {len(result.references):,} references to {len(counts)} of "
            f"{len(keys)} flags" + (f" at {commit[:12]}" if commit else "") + "."
        )
        if dry_run:
            out.write("Dry run: nothing stored.")
            return
        if application is None:  # --keys-file is refused without --dry-run above
            raise CommandError("Nothing to store the scan in.")
        try:
            upload = services.clean_scan_upload(
                application,
                references=payload["references"],
                files_scanned=result.files_scanned,
                commit=commit,
                scanned_at=scanned_at,
                duration_ms=result.duration_ms,
                skipped_binary=result.skipped_binary,
                skipped_large=result.skipped_large,
                listing=result.listing,
            )
            with context.bind(source="cli"):
                scan = services.code_scan_store(
                    actor=None,
                    application=application,
                    upload=upload,
                    source=ScanSource.CLI,
                    uploaded_by_name=f"manage.py scan_code_refs ({_who()})",
                )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        out.write(
            self.style.SUCCESS(
                f"Stored as the code references of {application.name} "
                f"(replacing the previous scan); scan #{scan.pk}."
            )
        )


def _who() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "?"
    return f"{user}@{socket.gethostname()}"

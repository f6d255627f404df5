"""manage.py scan_code_refs: stores, replaces, audits; --dry-run --json produces the upload."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from flagdash.audit.models import Action, AuditEvent
from flagdash.flags import services
from flagdash.lifecycle.models import CodeReference, CodeReferenceScan
from tests.factories import make_flag
from tests.lifecycle.test_scanner import git, write

pytestmark = pytest.mark.django_db
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def flags(app, envs):
    make_flag(app, "new-checkout", short_term=True)
    old = make_flag(app, "old-banner", short_term=True)
    services.flag_set_archived(actor=None, flag=old, archived=True)  # archived keys count too
    make_flag(app, "beta")
    return app


@pytest.fixture
def source(tmp_path):
    root = tmp_path / "repo"
    write(root, "web/app.ts", "if (on('new-checkout')) {}\nshowBanner('old-banner');\n")
    write(root, "lib/x.py", "alphabeta_x = beta\n")
    write(root, ".gitignore", "dist/\n")
    write(root, "dist/bundle.js", "new-checkout\n")
    write(root, "img.png", b"\x00beta")
    return root


def scan(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("scan_code_refs", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_a_scan_is_stored_with_its_metadata_and_audited(flags, source):
    out, _ = scan(str(source), "--application", "checkout", "--commit", SHA)
    assert "Scanned 3 files" in out and "3 references to 3 of 3 flags" in out
    scan_row = CodeReferenceScan.objects.get(application=flags)
    assert (scan_row.commit, scan_row.files_scanned, scan_row.skipped_binary) == (SHA, 3, 1)
    assert (scan_row.source, scan_row.listing, scan_row.reference_count) == ("cli", "walk", 3)
    assert scan_row.uploaded_by_name.startswith("manage.py scan_code_refs (")
    refs = list(CodeReference.objects.values_list("flag_key", "path", "line", "excerpt"))
    assert sorted(refs) == [
        ("beta", "lib/x.py", 1, "alphabeta_x = beta"),
        ("new-checkout", "web/app.ts", 1, "if (on('new-checkout')) {}"),
        ("old-banner", "web/app.ts", 2, "showBanner('old-banner');"),
    ]
    event = AuditEvent.objects.get(action=Action.CODE_SCAN_UPLOADED)
    assert event.source == "cli"
    assert event.after["flags"] == {"beta": 1, "new-checkout": 1, "old-banner": 1}


def test_a_new_scan_replaces_the_previous_one(flags, source):
    scan(str(source), "--application", "checkout")
    (source / "web/app.ts").write_text("nothing here\n")
    scan(str(source), "--application", "checkout")
    assert CodeReferenceScan.objects.count() == 1
    assert list(CodeReference.objects.values_list("flag_key", flat=True)) == ["beta"]
    event = AuditEvent.objects.filter(action=Action.CODE_SCAN_UPLOADED).order_by("-id").first()
    assert event.before["references"] == 3 and event.after["references"] == 1


def test_in_a_git_work_tree_the_commit_is_head(flags, source):
    git(source, "init", "-q")
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "x")
    scan(str(source), "--application", "checkout")
    assert CodeReferenceScan.objects.get().commit == git(source, "rev-parse", "HEAD").strip()
    assert CodeReferenceScan.objects.get().listing == "git"


def test_dry_run_json_prints_the_upload_and_stores_nothing(flags, source):
    out, err = scan(str(source), "--application", "checkout", "--dry-run", "--json")
    payload = json.loads(out)
    assert set(payload) == {
        "commit", "scanned_at", "files_scanned", "skipped_binary", "skipped_large",
        "duration_ms", "listing", "references",
    }  # fmt: skip
    assert payload["files_scanned"] == 3
    assert {r["flag"] for r in payload["references"]} == {"beta", "new-checkout", "old-banner"}
    assert "Dry run: nothing stored." in err
    assert not CodeReferenceScan.objects.exists()


def test_keys_from_a_file_need_no_application_in_the_database(db, source, tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"flag_keys": ["new-checkout"], "scan": None}))
    out, _ = scan(
        str(source), "--application", "x", "--keys-file", str(keys), "--dry-run", "--json"
    )
    assert [r["flag"] for r in json.loads(out)["references"]] == ["new-checkout"]
    plain = tmp_path / "keys.txt"
    plain.write_text("new-checkout\nbeta\n")
    args = ["--application", "x", "--keys-file", str(plain), "--dry-run", "--json"]
    out, _ = scan(str(source), *args)
    assert len(json.loads(out)["references"]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--application", "nope"], "No application 'nope'."),
        (["--application", "checkout", "--commit", "xyz"], "--commit must be 7 to 64"),
        (["--application", "checkout", "--keys-file", "k.txt"], "--keys-file is for --dry-run"),
    ],
)
def test_bad_arguments_are_refused_and_store_nothing(flags, source, args, message):
    with pytest.raises(CommandError, match=message):
        scan(str(source), *args)
    assert not CodeReferenceScan.objects.exists()


def test_a_missing_directory_is_refused(flags, tmp_path):
    with pytest.raises(CommandError, match="is not a directory"):
        scan(str(tmp_path / "missing"), "--application", "checkout")

"""The code-reference scanner on generated trees: what it reads, what it skips, what matches."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from flagdash.lifecycle import scanner

KEYS = ["beta", "beta-x", "new-checkout", "allow_bitcoin", "old-flow"]


def write(root: Path, rel: str, content: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def git(root: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout


@pytest.mark.parametrize(
    ("line", "found"),
    [
        ('flags.get("beta")', ["beta"]),
        ("if beta.enabled:", ["beta"]),
        ("alphabeta_x = 1", []),
        ("beta_x = 1", []),
        ("x = beta2", []),
        ("BetaX and BETA", []),
        ("use beta-x here", ["beta-x"]),
        ("beta-y is another flag", []),
        ("beta-xy too", []),
        ("prefix-beta and beta-", []),
        ("new-checkout, allow_bitcoin; old-flow", ["new-checkout", "allow_bitcoin", "old-flow"]),
        ("'new-checkout'+'new-checkout'", ["new-checkout"]),  # one reference per key and line
        ("$beta/[beta]{beta}(beta)", ["beta"]),
        ("new-checkout-v2 and xnew-checkout", []),
    ],
)
def test_keys_match_only_as_whole_tokens(line, found):
    pattern = scanner.compile_keys(KEYS)
    refs = list(scanner.scan_bytes(f"{line}\n".encode(), pattern, "f.py"))
    assert [r.flag for r in refs] == found


def test_line_numbers_and_excerpts_are_those_of_each_match():
    pattern = scanner.compile_keys(KEYS)
    data = b"first\r\n\tif beta:\r\nnothing\n\n   old-flow()   \nlast beta"
    refs = list(scanner.scan_bytes(data, pattern, "a.py"))
    assert [(r.line, r.flag, r.excerpt) for r in refs] == [
        (2, "beta", "if beta:"),
        (5, "old-flow", "old-flow()"),
        (6, "beta", "last beta"),
    ]


def test_a_long_line_is_cut_to_200_characters_around_the_key():
    pattern = scanner.compile_keys(KEYS)
    line = "x" * 500 + " new-checkout " + "y" * 500
    (ref,) = scanner.scan_bytes(line.encode(), pattern, "a.py")
    assert len(ref.excerpt) == scanner.MAX_EXCERPT_CHARS
    assert "new-checkout" in ref.excerpt
    assert ref.excerpt.startswith("…") and ref.excerpt.endswith("…")


def test_invalid_utf8_and_control_characters_become_replacement_characters():
    pattern = scanner.compile_keys(KEYS)
    (ref,) = scanner.scan_bytes(b"\xff\xfe beta \x07end", pattern, "a.py")
    assert ref.excerpt == "\ufffd\ufffd beta \ufffdend"


@pytest.fixture
def tree(tmp_path):
    """A tree with every kind of file the scan must read or skip."""
    root = tmp_path / "src"
    write(root, "app/main.py", 'if flags.get("beta"):\n    pass\nold-flow\n')
    write(root, "app/web/page.tsx", "const a = isOn('new-checkout');\nconst b = alphabeta_x;\n")
    write(root, "README.md", "Remove `allow_bitcoin` after the promotion.\n")
    write(root, ".gitignore", "node_modules/\n/build\n*.log\n!keep.log\n")
    write(root, "node_modules/lib/index.js", "beta\n")  # ignored directory
    write(root, "build/out.js", "beta\n")  # ignored (anchored)
    write(root, "app/build/kept.js", "beta\n")  # /build is anchored: this one is scanned
    write(root, "debug.log", "beta\n")  # ignored by *.log
    write(root, "keep.log", "beta\n")  # re-included by !keep.log
    write(root, "gen/.gitignore", "*\n!.gitignore\n!wanted.py\n")
    write(root, "gen/skipped.py", "beta\n")
    write(root, "gen/wanted.py", "new-checkout\n")
    write(root, "assets/logo.png", b"\x89PNG\r\n\x1a\n\x00\x00beta")  # binary
    write(root, "data/big.sql", "-- beta\n" + "x" * (scanner.MAX_FILE_BYTES + 1))  # > 1 MiB
    exact = "-- beta\n"
    write(root, "data/exact.sql", exact + "y" * (scanner.MAX_FILE_BYTES - len(exact)))  # = 1 MiB
    return root


EXPECTED = [
    ("allow_bitcoin", "README.md", 1),
    ("beta", "app/build/kept.js", 1),
    ("beta", "app/main.py", 1),
    ("old-flow", "app/main.py", 3),
    ("new-checkout", "app/web/page.tsx", 1),
    ("beta", "data/exact.sql", 1),
    ("new-checkout", "gen/wanted.py", 1),
    ("beta", "keep.log", 1),
]


def _sorted(refs):
    return sorted(refs, key=lambda r: (r[1], r[2], r[0]))


def test_a_walked_tree_skips_ignored_binary_and_big_files(tree, keys_of):
    (tree / ".git").mkdir()
    write(tree, ".git/config", "beta\n")  # never read
    (tree / "link.py").symlink_to(tree / "app/main.py")  # never followed
    result = scanner.scan_tree(tree, KEYS, use_git=False)
    assert result.listing == "walk"
    assert _sorted(keys_of(result)) == _sorted(EXPECTED)
    assert result.skipped_binary == 1
    assert result.skipped_large == 1
    # main.py, page.tsx, README.md, .gitignore, kept.js, keep.log, gen/.gitignore, wanted.py,
    # exact.sql
    assert result.files_scanned == 9


def test_a_git_work_tree_is_listed_by_git_with_the_same_result(tree, keys_of):
    git(tree, "init", "-q")
    git(tree, "add", "-A")
    git(tree, "commit", "-q", "-m", "first")
    write(tree, "app/untracked.py", "beta\n")  # untracked, not ignored: scanned
    write(tree, "node_modules/other.js", "beta\n")  # untracked and ignored: not
    result = scanner.scan_tree(tree, KEYS)
    assert result.listing == "git"
    assert _sorted(keys_of(result)) == _sorted([*EXPECTED, ("beta", "app/untracked.py", 1)])
    assert (result.skipped_binary, result.skipped_large) == (1, 1)
    assert scanner.git_head(tree) == git(tree, "rev-parse", "HEAD").strip()


def test_the_gitignore_rules_ignore_what_git_ignores(tmp_path):
    """Our .gitignore reading against git's own, on tricky patterns (a repository without
    commits: every file is "other", listed unless ignored)."""
    root = tmp_path / "repo"
    patterns = "\n".join(
        [
            "# a comment",
            r"\#hash.txt",
            "*.tmp",
            "!important.tmp",
            "/root-only.txt",
            "docs/*.md",
            "!docs/keep.md",
            "**/cache/",
            "logs/**",
            "a/**/z.txt",
            "file?.txt",
            "[bc]at.txt",
            "[!d]og.txt",
            "trailing.txt   ",
            r"escaped\ space.txt\ ",
            "dironly/",
            "*.bak/",
        ]
    )
    write(root, ".gitignore", patterns + "\n")
    files = [
        "#hash.txt", "x.tmp", "sub/y.tmp", "important.tmp", "sub/important.tmp",
        "root-only.txt", "sub/root-only.txt", "docs/a.md", "docs/keep.md", "docs/sub/b.md",
        "sub/docs/c.md", "cache/x", "deep/er/cache/y", "cache.txt", "logs/a/b.txt",
        "logs.txt", "a/z.txt", "a/b/z.txt", "a/b/c/z.txt", "file1.txt", "file12.txt",
        "bat.txt", "cat.txt", "rat.txt", "dog.txt", "fog.txt", "trailing.txt",
        "escaped space.txt ", "dironly/f", "sub/dironly/g", "dironly.txt", "thing.bak/f",
        "thing.bak2", "plain.py", "nested/.gitignore", "nested/n.log", "nested/n.txt",
        "nested/deeper/n.log",
    ]  # fmt: skip
    for rel in files:
        if rel != "nested/.gitignore":
            write(root, rel, "x\n")
    write(root, "nested/.gitignore", "*.log\n!deeper/n.log\n")
    git(root, "init", "-q")
    expected = sorted(git(root, "ls-files", "--others", "--exclude-standard", "-z").split("\0"))
    expected = [e for e in expected if e]
    ours = sorted(rel for _, rel in scanner.walk_files(root))
    assert ours == expected


def test_too_many_references_stop_the_scan_without_a_partial_result(tmp_path):
    write(tmp_path, "a.py", "beta\n" * 11)
    with pytest.raises(scanner.ScanError, match="More than 10 references"):
        scanner.scan_tree(tmp_path, ["beta"], use_git=False, max_references=10)


def test_a_path_that_is_not_a_directory_is_refused(tmp_path):
    with pytest.raises(scanner.ScanError, match="is not a directory"):
        scanner.scan_tree(tmp_path / "missing", ["beta"])


def test_no_keys_still_counts_the_files(tmp_path):
    write(tmp_path, "a.py", "beta\n")
    result = scanner.scan_tree(tmp_path, [], use_git=False)
    assert (result.files_scanned, result.references) == (1, [])


def test_odd_file_names_are_scanned_or_skipped_but_never_break_the_scan(tmp_path, keys_of):
    write(tmp_path, "back\\slash.py", "beta\n")  # a legal POSIX name
    write(tmp_path, "new\nline.py", "beta\n")  # no one-line reference can name it
    write(tmp_path, "ünïcode.py", "beta\n")
    result = scanner.scan_tree(tmp_path, ["beta"], use_git=False)
    assert sorted(keys_of(result)) == [("beta", "back\\slash.py", 1), ("beta", "ünïcode.py", 1)]
    assert result.skipped_unreadable == 1


# --- symbolic links, encodings, names, long lines ----------------------------------------------


@pytest.fixture
def outside(tmp_path):
    """A directory beside the scanned tree whose file uses a key: it must never be read."""
    write(tmp_path, "outside/secret.py", "beta = 'outside the tree'\n")
    return tmp_path / "outside"


@pytest.mark.parametrize("use_git", [False, True])
def test_symbolic_links_are_never_followed_and_loops_do_not_hang(tmp_path, outside, use_git):
    root = tmp_path / "src"
    write(root, "app/main.py", "beta\n")
    (root / "to_outside").symlink_to(outside)  # a directory out of the tree
    (root / "secret_link.py").symlink_to(outside / "secret.py")  # a file out of the tree
    (root / "app" / "up").symlink_to("..")  # a directory loop
    (root / "loop_a").symlink_to("loop_b")  # a loop of links
    (root / "loop_b").symlink_to("loop_a")
    (root / "dangling.py").symlink_to("missing.py")
    if use_git:
        git(root, "init", "-q")
    result = scanner.scan_tree(root, ["beta"], use_git=use_git)
    assert [(r.path, r.excerpt) for r in result.references] == [("app/main.py", "beta")]
    assert result.files_scanned == 1
    assert result.skipped_symlinks == 6
    assert result.skipped_unreadable == 0


def test_a_tracked_directory_replaced_by_a_link_out_of_the_tree_is_not_read(tmp_path, outside):
    root = tmp_path / "src"
    write(root, "app/main.py", "beta\n")
    write(root, "conf/secret.py", "nothing here\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    # git ls-files still lists conf/secret.py (the index holds it) after conf becomes a link
    # to a directory outside the tree holding a file of the same name.
    (root / "conf" / "secret.py").unlink()
    (root / "conf").rmdir()
    (root / "conf").symlink_to(outside)
    assert "conf/secret.py" in git(root, "ls-files")
    result = scanner.scan_tree(root, ["beta"], use_git=True)
    assert [r.path for r in result.references] == ["app/main.py"]
    assert "outside the tree" not in " ".join(r.excerpt for r in result.references)
    assert result.skipped_symlinks == 2  # conf/secret.py, and conf itself (untracked)


def test_text_in_other_encodings_is_read_or_skipped_but_never_breaks_the_scan(tmp_path):
    write(tmp_path, "latin1.py", "# café\nx = 'beta'  # naïve\n".encode("latin-1"))
    write(tmp_path, "utf16.ps1", "# ü\r\nif ($beta) {}\r\n".encode("utf-16"))  # with a BOM
    write(tmp_path, "utf16be.txt", b"\xfe\xff" + "\nbeta".encode("utf-16-be"))
    write(tmp_path, "utf8bom.py", "\ufeffbeta = 1\n".encode())
    write(tmp_path, "utf16_no_bom.txt", "beta\n".encode("utf-16-le"))  # NULs: binary
    write(tmp_path, "invalid.py", b"\xc3\x28 beta \xa0\xa1\n")
    result = scanner.scan_tree(tmp_path, ["beta"], use_git=False)
    assert [(r.path, r.line, r.excerpt) for r in result.references] == [
        ("invalid.py", 1, "\ufffd( beta \ufffd\ufffd"),
        ("latin1.py", 2, "x = 'beta'  # na\ufffdve"),
        ("utf16.ps1", 2, "if ($beta) {}"),
        ("utf16be.txt", 2, "beta"),
        ("utf8bom.py", 1, "beta = 1"),
    ]
    assert (result.files_scanned, result.skipped_binary) == (5, 1)


def test_undecodable_and_control_characters_in_file_names_are_stored_escaped(
    tmp_path, db, app, envs
):
    from flagdash.lifecycle import services
    from flagdash.lifecycle.models import CodeReference, ScanSource
    from tests.factories import make_flag

    root = os.fsencode(tmp_path)
    for name in (b"caf\xe9.py", b"caf\xe8.py", b"tab\there.py", "rtl\u202egnp.py".encode()):
        with open(os.path.join(root, name), "wb") as handle:  # noqa: PTH118, PTH123
            handle.write(b"beta\n")
    result = scanner.scan_tree(tmp_path, ["beta"], use_git=False)
    paths = [r.path for r in result.references]
    assert paths == ["caf\\xe8.py", "caf\\xe9.py", "rtl\\u202egnp.py", "tab\\x09here.py"]
    make_flag(app, "beta")
    upload = services.clean_scan_upload(
        app,
        references=[
            {"flag": r.flag, "path": r.path, "line": r.line, "excerpt": r.excerpt}
            for r in result.references
        ],
        files_scanned=result.files_scanned,
    )
    services.code_scan_store(actor=None, application=app, upload=upload, source=ScanSource.CLI)
    assert sorted(CodeReference.objects.values_list("path", flat=True)) == paths


def test_a_megabyte_line_full_of_keys_is_scanned_quickly_with_short_excerpts():
    keys = [f"key-{i}" for i in range(300)]
    line = " ".join(keys * 20).encode()
    data = b"x" * (scanner.MAX_FILE_BYTES - len(line) - 10) + b" " + line + b"\nkey-1\n"
    pattern = scanner.compile_keys(keys)
    started = time.monotonic()
    refs = list(scanner.scan_bytes(data, pattern, "bundle.min.js"))
    assert time.monotonic() - started < 1.0  # decoding the whole line per key took seconds
    assert len(refs) == 301
    assert all(len(r.excerpt) <= scanner.MAX_EXCERPT_CHARS for r in refs)
    assert all(r.flag in r.excerpt for r in refs)
    first = refs[0]
    assert first.excerpt.startswith("…") and first.excerpt.endswith("…")
    assert refs[-1].excerpt == "key-1"


def test_excerpts_are_one_line_without_bidi_controls_whatever_the_line_holds():
    pattern = scanner.compile_keys(["beta"])
    data = "x = 'beta'\u2028\u202e// admin\u2066 \x0b\x0c\x85 end\n".encode()
    (ref,) = scanner.scan_bytes(data, pattern, "a.py")
    assert ref.excerpt.startswith("x = 'beta'")
    assert not any(ch in ref.excerpt for ch in "\u2028\u202e\u2066\x0b\x0c\x85\n\r")


def test_a_root_that_is_a_loop_of_links_is_refused_not_a_crash(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(scanner.ScanError):
        scanner.scan_tree(tmp_path / "a", ["beta"])


def test_parent_directories_are_checked_once_each_from_the_top(tmp_path):
    write(tmp_path, "a/b/c/d.py", "")
    (tmp_path / "x").symlink_to(tmp_path / "a")
    cache: dict[bytes, bool] = {}
    root = os.fsencode(tmp_path)
    assert scanner.parents_are_directories(root, b"a/b/c/d.py", cache)
    assert cache == {b"a": True, b"a/b": True, b"a/b/c": True}
    assert not scanner.parents_are_directories(root, b"x/b/c/d.py", cache)
    assert cache[b"x"] is False and cache[b"x/b/c"] is False
    deep = b"/".join([b"d"] * 3000) + b"/f.py"  # no recursion limit to hit
    assert not scanner.parents_are_directories(root, deep, cache)

"""Find where a source tree uses flag keys: file, line and a one-line excerpt per reference.

Pure Python and the standard library (plus the ``git`` binary when the tree is a git work
tree); no Django, so the same code runs in ``manage.py scan_code_refs`` and, through its
``--dry-run --json`` output, in a CI job that uploads the result to flagdash's API.

What is scanned:

- **Which files.** In a git work tree, exactly what git would consider: ``git ls-files -z
  --cached --others --exclude-standard`` (tracked files plus untracked ones that no
  ``.gitignore``, ``.git/info/exclude`` or global excludes file ignores). Elsewhere the tree is
  walked and ``.gitignore`` files are honoured with the rules git documents (see
  ``IgnoreRules``). ``.git`` (and ``.hg``, ``.svn``) are never entered; symbolic links are
  never followed.
- **Skipped:** files over ``MAX_FILE_BYTES`` (1 MiB: generated or vendored code, data),
  binaries (a NUL byte in the first 8 KiB, as git decides), anything that is not a regular file,
  symbolic links (never followed: not to a file, not to a directory, not as a parent directory
  of a path git lists, so nothing outside the tree is read and a link loop cannot hang).
- **Text.** Files are matched as bytes and read as UTF-8; bytes that are not UTF-8 (Latin-1,
  say) show as U+FFFD in excerpts and never stop the scan. A file that starts with a UTF-16 or
  UTF-32 byte-order mark is decoded from that encoding first (without a BOM such a file holds
  NUL bytes and is skipped as binary, as git does).
- **Names.** A path is stored as text: bytes of a file name that are not UTF-8 as ``\\xNN``,
  control and bidirectional-formatting characters as ``\\xNN`` / ``\\uNNNN`` escapes, so a
  stored path names its file unambiguously and cannot reorder what is displayed around it.
- **What matches:** a key as a whole token. Keys are ``[a-z][a-z0-9_-]*``, so the characters
  around a match must not be letters (either case), digits, ``_`` or ``-``: the key ``beta``
  matches ``flags.get("beta")`` and ``beta.enabled`` but not ``alphabeta_x``, ``beta-2`` or
  ``BetaX``. Matching is case-sensitive, as keys are.

Speed: one compiled regular expression (the keys folded into a trie, so each position costs
one character-class test) runs over each file's bytes; line numbers are counted only where a
key matched. 50,000 files take a few seconds (``make bench-scan``).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MAX_FILE_BYTES = 1024 * 1024
BINARY_SNIFF_BYTES = 8 * 1024
MAX_EXCERPT_CHARS = 200
MAX_PATH_CHARS = 1024
MAX_REFERENCES = 50_000
SKIPPED_DIRS = frozenset({b".git", b".hg", b".svn"})
KEY_CHARS = rb"A-Za-z0-9_\-"
GIT_TIMEOUT_SECONDS = 120
# How many bytes of a line around a match are decoded for its excerpt: enough for
# MAX_EXCERPT_CHARS characters of up to 4 bytes each on either side, so a megabyte-long
# minified line costs the same as a short one.
EXCERPT_WINDOW_BYTES = 4 * MAX_EXCERPT_CHARS + 4
# Characters that would break a one-line display or reorder the text around them (Trojan
# Source, CVE-2021-42574): C0 and C1 controls, line and paragraph separators, the bidi
# embeddings, overrides, isolates and marks, and lone surrogates (not storable as UTF-8).
UNSAFE_TEXT = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
_NON_BLANK = re.compile(rb"[^ \t\r\n\f\v]")
BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


class ScanError(Exception):
    """The scan cannot produce a result (a message a person can act on)."""


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def path_text(raw: bytes) -> str:
    """A file name's bytes as a path to store and show: UTF-8, with undecodable bytes as
    ``\\xNN`` and unsafe characters (``UNSAFE_TEXT``) as ``\\xNN`` / ``\\uNNNN``, so two
    different names never become the same text and nothing in a name reorders a display."""
    return UNSAFE_TEXT.sub(_escape, raw.decode("utf-8", errors="backslashreplace"))


@dataclass(frozen=True, order=True)
class Reference:
    path: str
    line: int
    flag: str
    excerpt: str


@dataclass
class ScanResult:
    references: list[Reference] = field(default_factory=list)
    files_scanned: int = 0
    skipped_binary: int = 0
    skipped_large: int = 0
    skipped_unreadable: int = 0
    skipped_symlinks: int = 0
    duration_ms: int = 0
    listing: str = "walk"  # "git" (git ls-files) or "walk" (.gitignore rules applied here)

    def counts_by_flag(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for ref in self.references:
            counts[ref.flag] = counts.get(ref.flag, 0) + 1
        return counts


# --- matching --------------------------------------------------------------------------------


def _trie_pattern(keys: Iterable[bytes]) -> bytes:
    """A regular expression matching exactly these byte strings, factored as a trie.

    ``re`` tries alternatives one by one; with a trie each level is one set of distinct first
    characters, so a position where no key starts costs a single test.
    """
    trie: dict[int, dict] = {}  # type: ignore[type-arg]
    END = -1
    for key in keys:
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[END] = {}

    def render(node: dict) -> bytes:  # type: ignore[type-arg]
        optional = END in node
        branches = []
        for byte in sorted(b for b in node if b != END):
            branches.append(re.escape(bytes([byte])) + render(node[byte]))
        if not branches:
            return b""
        body = branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"
        if optional:
            return b"(?:" + body + b")?"
        return body

    return render(trie)


def compile_keys(keys: Iterable[str]) -> re.Pattern[bytes] | None:
    """The whole-token matcher for these flag keys (None when there are none)."""
    encoded = sorted({k.encode() for k in keys if k})
    if not encoded:
        return None
    body = _trie_pattern(encoded)
    # The trie is greedy with optional tails, and the look-ahead forces the longest key that
    # ends at a token boundary: "beta-x" never matches "beta" when only "beta" is a key.
    return re.compile(rb"(?<![" + KEY_CHARS + rb"])(" + body + rb")(?![" + KEY_CHARS + rb"])")


def excerpt_of(
    line: bytes, start: int, end: int, *, more_before: bool = False, more_after: bool = False
) -> str:
    """The line, trimmed, at most MAX_EXCERPT_CHARS characters, keeping the match visible.

    ``line`` may be a window of a longer line (``scan_bytes`` passes at most
    EXCERPT_WINDOW_BYTES either side of the match, so the work per reference is bounded however
    long the line is); ``more_before`` / ``more_after`` say the line goes on beyond it."""
    text = _excerpt(line, start, end)
    if more_before and not text.startswith("…"):
        text = "…" + text
    if more_after and not text.endswith("…"):
        text += "…"
    if len(text) > MAX_EXCERPT_CHARS:  # only when the window ends in a long run of blanks
        text = text[: MAX_EXCERPT_CHARS - 1] + "…"
    return text


def _excerpt(line: bytes, start: int, end: int) -> str:
    text = line.decode("utf-8", errors="replace")
    before = len(line[:start].decode("utf-8", errors="replace"))
    match_len = len(line[start:end].decode("utf-8", errors="replace"))
    text = text.replace("\t", " ").replace("\r", "")
    stripped = text.lstrip()
    before -= len(text) - len(stripped)
    text = stripped.rstrip()
    text = "".join(ch if ch.isprintable() else "\ufffd" for ch in text)
    if len(text) <= MAX_EXCERPT_CHARS:
        return text
    room = MAX_EXCERPT_CHARS - 2  # two ellipses at most
    left = max(0, min(before - (room - match_len) // 2, len(text) - room))
    window = text[left : left + room]
    prefix = "…" if left > 0 else ""
    suffix = "…" if left + room < len(text) else ""
    return (prefix + window + suffix)[:MAX_EXCERPT_CHARS]


def _continues(data: bytes, at: int, *, backwards: bool) -> bool:
    """Whether the line holds more than blanks before (or after) ``at``."""
    if backwards:
        line_start = data.rfind(b"\n", 0, at) + 1
        return _NON_BLANK.search(data, line_start, at) is not None
    line_end = data.find(b"\n", at)
    return _NON_BLANK.search(data, at, len(data) if line_end == -1 else line_end) is not None


def scan_bytes(data: bytes, pattern: re.Pattern[bytes], path: str) -> Iterator[Reference]:
    """Every reference in one file's contents (one per key and line)."""
    line_no = 1
    counted_to = 0
    seen: set[tuple[str, int]] = set()
    for match in pattern.finditer(data):
        start = match.start()
        line_no += data.count(b"\n", counted_to, start)
        counted_to = start
        key = match.group(1).decode()
        if (key, line_no) in seen:
            continue
        seen.add((key, line_no))
        end = match.end()
        line_start = data.rfind(b"\n", max(0, start - EXCERPT_WINDOW_BYTES), start) + 1
        if line_start == 0:  # no line break in the window: the line starts further back
            line_start = max(0, start - EXCERPT_WINDOW_BYTES)
        line_end = data.find(b"\n", end, end + EXCERPT_WINDOW_BYTES)
        if line_end == -1:
            line_end = min(len(data), end + EXCERPT_WINDOW_BYTES)
        more_before = line_start > 0 and data[line_start - 1 : line_start] != b"\n"
        more_after = line_end < len(data) and data[line_end : line_end + 1] != b"\n"
        yield Reference(
            path=path,
            line=line_no,
            flag=key,
            excerpt=excerpt_of(
                data[line_start:line_end],
                start - line_start,
                end - line_start,
                more_before=more_before and _continues(data, line_start, backwards=True),
                more_after=more_after and _continues(data, line_end, backwards=False),
            ),
        )


# --- which files -----------------------------------------------------------------------------


def _translate(glob: str) -> str:
    """One gitignore glob (slashes already handled by the caller) as a regular expression."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        ch = glob[i]
        if ch == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
            continue
        if ch == "*":
            j = i
            while j < n and glob[j] == "*":
                j += 1
            stars = j - i
            at_start = i == 0 or glob[i - 1] == "/"
            at_end = j == n or glob[j] == "/"
            if stars >= 2 and at_start and at_end:
                if j == n:  # "x/**": everything inside
                    out.append(".*")
                    i = j
                else:  # "**/" : zero or more directories
                    out.append("(?:.*/)?")
                    i = j + 1
                continue
            out.append("[^/]*")
            i = j
            continue
        if ch == "?":
            out.append("[^/]")
        elif ch == "[":
            j = i + 1
            if j < n and glob[j] in "!^":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: a literal "["
                out.append(re.escape(ch))
            else:
                inner = glob[i + 1 : j]
                negate = inner[:1] in ("!", "^")
                if negate:
                    inner = inner[1:]
                inner = inner.replace("\\", "\\\\")
                out.append(("[^/" if negate else "[") + inner + "]")
                i = j + 1
                continue
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class IgnoreRule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def parse_gitignore(text: str) -> list[IgnoreRule]:
    """The rules of one .gitignore file, in order (the last matching rule decides).

    Supported as git documents them: comments (``#``, ``\\#`` for a literal), negation (``!``,
    ``\\!``), trailing spaces (unless escaped), a trailing ``/`` for directories only, a
    leading or middle ``/`` anchoring the pattern to the file's directory (otherwise it matches
    at any depth), ``*``, ``?``, ``[...]`` ranges, and ``**`` as a leading ``**/``, a trailing
    ``/**`` or a middle ``/**/``.
    """
    rules = []
    for raw in text.splitlines():
        line = raw
        # Trailing spaces are ignored unless escaped with a backslash.
        while line.endswith(" ") and not line.endswith("\\ "):
            line = line[:-1]
        if not line or line.startswith("#"):
            continue
        negate = False
        if line.startswith("!"):
            negate, line = True, line[1:]
        elif line.startswith(("\\!", "\\#")):
            line = line[1:]
        dir_only = line.endswith("/") and not line.endswith("\\/")
        if dir_only:
            line = line.rstrip("/")
        if not line:
            continue
        anchored = "/" in line
        line = line.lstrip("/") if anchored else line
        prefix = "" if anchored else "(?:.*/)?"
        try:
            regex = re.compile(r"\A" + prefix + _translate(line) + r"\Z", re.DOTALL)
        except re.error:
            continue  # git ignores patterns it cannot use; so do we
        rules.append(IgnoreRule(regex, negate, dir_only))
    return rules


@dataclass(frozen=True)
class IgnoreLevel:
    base: str  # directory of the .gitignore, relative to the scan root ("" for the root)
    rules: tuple[IgnoreRule, ...]


def is_ignored(levels: Sequence[IgnoreLevel], rel_path: str, is_dir: bool) -> bool:
    """Decide one path against the .gitignore files from the root down to its directory."""
    ignored = False
    for level in levels:
        if level.base:
            if not rel_path.startswith(level.base + "/"):
                continue
            local = rel_path[len(level.base) + 1 :]
        else:
            local = rel_path
        for rule in level.rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(local):
                ignored = not rule.negate
    return ignored


def _read_gitignore(directory: bytes) -> tuple[IgnoreRule, ...]:
    try:
        # Bytes paths throughout (file names need not be UTF-8): os.path, not pathlib.
        with open(os.path.join(directory, b".gitignore"), "rb") as handle:  # noqa: PTH118, PTH123
            text = handle.read(MAX_FILE_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return ()
    return tuple(parse_gitignore(text))


def walk_files(root: Path) -> Iterator[tuple[bytes, str]]:
    """(absolute path, relative posix path) of every file not ignored by a .gitignore."""
    root_b = os.fsencode(root)
    stack: list[tuple[bytes, str, tuple[IgnoreLevel, ...]]] = [(root_b, "", ())]
    while stack:
        directory, rel_dir, levels = stack.pop()
        own = _read_gitignore(directory)
        if own:
            levels = (*levels, IgnoreLevel(rel_dir, own))
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            name = os.fsdecode(entry.name) if isinstance(entry.name, bytes) else entry.name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            try:
                # A symbolic link is listed as a file (as git lists it) and never followed:
                # read_candidate refuses to open it, so a link out of the tree or a loop of
                # links is counted as skipped and costs nothing.
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if entry.name in SKIPPED_DIRS or is_ignored(levels, rel, True):
                    continue
                subdirs.append((entry.path, rel, levels))
            elif not is_ignored(levels, rel, False):
                yield entry.path, rel
        stack.extend(reversed(subdirs))


def git_toplevel(root: Path) -> bool:
    """Whether ``root`` is inside a git work tree (and git is installed)."""
    try:
        result = subprocess.run(  # noqa: S603 (fixed argv, no shell)
            ["git", "-C", str(root), "rev-parse", "--is-inside-work-tree"],  # noqa: S607
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0 and result.stdout.strip() == b"true"


def git_files(root: Path) -> Iterator[tuple[bytes, str]]:
    """(absolute path, relative posix path) of every file git tracks or would track."""
    try:
        result = subprocess.run(  # noqa: S603 (fixed argv, no shell)
            [  # noqa: S607
                "git", "-C", str(root), "-c", "core.quotepath=off",
                "ls-files", "-z", "--cached", "--others", "--exclude-standard",
            ],
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        raise ScanError(f"git ls-files failed in {root}: {exc}") from exc
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()
        raise ScanError(f"git ls-files failed in {root}: {message}")
    root_b = os.fsencode(root)
    seen: set[bytes] = set()
    for raw in result.stdout.split(b"\0"):
        if not raw or raw in seen:
            continue
        seen.add(raw)
        parts = raw.split(b"/")
        if any(part in SKIPPED_DIRS for part in parts[:-1]):
            continue
        yield os.path.join(root_b, raw), os.fsdecode(raw)  # noqa: PTH118


def git_head(root: Path) -> str | None:
    """The commit checked out in ``root`` (None outside a git work tree or before a commit)."""
    try:
        result = subprocess.run(  # noqa: S603 (fixed argv, no shell)
            ["git", "-C", str(root), "rev-parse", "--verify", "-q", "HEAD"],  # noqa: S607
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    head = result.stdout.decode(errors="replace").strip()
    return head if result.returncode == 0 and head else None


# --- reading ---------------------------------------------------------------------------------

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
)


def parents_are_directories(root: bytes, rel: bytes, cache: dict[bytes, bool]) -> bool:
    """Whether every directory on the way from ``root`` to ``rel`` is a real directory, not a
    symbolic link (``cache`` remembers each directory's answer, so a tree costs one ``lstat``
    per directory). ``git ls-files`` lists what the index holds: a path under a directory
    that has since been replaced by a link would otherwise be read from wherever it points."""
    parent = rel.rpartition(b"/")[0]
    unknown = []  # the directories not decided yet, deepest first
    while parent and parent not in cache:
        unknown.append(parent)
        parent = parent.rpartition(b"/")[0]
    ok = cache.get(parent, True) if parent else True
    for directory in reversed(unknown):  # from the top down: one lstat each, until one fails
        if ok:
            try:
                mode = os.lstat(os.path.join(root, directory)).st_mode  # noqa: PTH118
            except OSError:
                mode = 0
            ok = stat.S_ISDIR(mode)
        cache[directory] = ok
    return ok


def _decoded(data: bytes) -> bytes | None:
    """The text of a file that starts with a byte-order mark, as UTF-8 (None: no BOM)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:]
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace").encode("utf-8")
    return None


def read_candidate(path: bytes) -> tuple[str, bytes]:
    """("ok", data) or ("large" | "binary" | "unreadable" | "special" | "symlink", b"").

    ``data`` is UTF-8 or meant to be (a file with a UTF-16 or UTF-32 byte-order mark is
    decoded; a UTF-8 BOM is dropped)."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:  # gone, a symlink (O_NOFOLLOW), no permission
        return ("symlink" if exc.errno == errno.ELOOP else "unreadable"), b""
    with open(fd, "rb", closefd=True) as handle:  # noqa: PTH123 (a file descriptor)
        try:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                return "special", b""
            if info.st_size > MAX_FILE_BYTES:
                return "large", b""
            data = handle.read(MAX_FILE_BYTES + 1)
        except OSError:
            return "unreadable", b""
    if len(data) > MAX_FILE_BYTES:  # grew since fstat
        return "large", b""
    decoded = _decoded(data)
    if decoded is not None:
        return "ok", decoded
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        return "binary", b""
    return "ok", data


# --- the scan --------------------------------------------------------------------------------


def scan_tree(
    root: Path | str,
    keys: Iterable[str],
    *,
    use_git: bool | None = None,
    max_references: int = MAX_REFERENCES,
) -> ScanResult:
    """Scan ``root`` for the flag ``keys``. ``use_git=None`` uses git when ``root`` is in a
    git work tree. Raises ScanError when ``root`` is not a directory or the scan finds more
    than ``max_references`` references (nothing partial is ever returned)."""
    started = time.monotonic()
    try:
        root = Path(root).resolve()
    except (OSError, RuntimeError) as exc:  # a loop of links (RuntimeError before 3.13)
        raise ScanError(f"{root} cannot be resolved: {exc}") from exc
    if not root.is_dir():
        raise ScanError(f"{root} is not a directory.")
    pattern = compile_keys(keys)
    if use_git is None:
        use_git = git_toplevel(root)
    result = ScanResult(listing="git" if use_git else "walk")
    files = git_files(root) if use_git else walk_files(root)
    root_b = os.fsencode(root)
    directories: dict[bytes, bool] = {}
    for absolute, name in files:
        raw = os.fsencode(name)
        if b"\n" in raw or b"\r" in raw:
            result.skipped_unreadable += 1  # no one-line reference can name it
            continue
        rel = path_text(raw)
        if len(rel) > MAX_PATH_CHARS:
            result.skipped_unreadable += 1
            continue
        if use_git and not parents_are_directories(root_b, raw, directories):
            result.skipped_symlinks += 1
            continue
        outcome, data = read_candidate(absolute)
        if outcome == "symlink":
            result.skipped_symlinks += 1
            continue
        if outcome == "large":
            result.skipped_large += 1
            continue
        if outcome == "binary":
            result.skipped_binary += 1
            continue
        if outcome != "ok":
            result.skipped_unreadable += 1
            continue
        result.files_scanned += 1
        if pattern is None:
            continue
        result.references.extend(scan_bytes(data, pattern, rel))
        if len(result.references) > max_references:
            raise ScanError(
                f"More than {max_references:,} references found (stopped at {rel}). flagdash "
                "keeps at most that many per scan: scan a narrower directory, or check that "
                "no flag key is an everyday word in this code."
            )
    result.references.sort()
    result.duration_ms = round((time.monotonic() - started) * 1000)
    return result

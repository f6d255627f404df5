"""How long `manage.py scan_code_refs` takes on a generated tree of 50,000 files.

Run with `make bench-scan` (or `.venv/bin/python benchmarks/scan_code_refs.py --help`).

The script generates, under a temporary directory, a source tree that looks like a real
monorepo: FILES source files (Python, TypeScript, Go, Markdown, 0.5–8 KiB each, spread over
nested packages) in which about one file in eight uses one or more of KEYS flag keys (in the
ways code does: `client.get_boolean_value("key", False)`, `flags["key"]`, `isEnabled('key')`,
plus near misses that must not match, such as `key_v2` and `prefix_key`), and beside them what
the scan must skip:

- `node_modules/`, `build/` and `*.log` ignored by a `.gitignore` at the top, `generated/`
  ignored by a nested `.gitignore` (with a `!keep.py` exception that must be scanned),
- binary files (PNG-like, NUL bytes) that mention keys,
- files over 1 MiB that mention keys,
- a `.git` directory (in `--git` mode, a real one).

It then creates an application with KEYS flags in a fresh SQLite database (its own
FLAGDASH_VAR_DIR, nothing of yours is touched) and runs the real command in a subprocess,
timing the whole command (Python start-up, Django, scan, storing every reference) and
reporting the scanner's own time, files scanned and skipped, and references stored. With
`--git` the tree is also made a git repository and scanned through `git ls-files`.

Every number it prints comes from the run; the expected references are counted while
generating and compared with what the command stored (exit status 1 on a mismatch).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_KEY = "bench"
WORDS = (  # noqa: SIM905 (a sentence of words reads better than a list)
    "order customer payment cart basket invoice shipping address price total discount tax "
    "session token request response handler service client config value result error retry "
    "timeout cache queue worker event metric user account profile search product review"
).split()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=50_000, help="source files (default 50000)")
    parser.add_argument("--keys", type=int, default=300, help="flag keys (default 300)")
    parser.add_argument("--seed", type=int, default=6, help="random seed (default 6)")
    parser.add_argument(
        "--git", action="store_true", help="also make the tree a git repository and scan that"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated tree")
    return parser.parse_args()


def flag_keys(count: int) -> list[str]:
    parts = ("new", "checkout", "search", "promo", "beta", "ui", "api", "payment", "v2", "fast")
    keys: set[str] = set()
    rng = random.Random(1)  # noqa: S311 (test data, not secrets)
    while len(keys) < count:
        n = rng.randint(2, 4)
        keys.add("-".join(rng.choice(parts) for _ in range(n)) + f"-{len(keys)}")
    return sorted(keys)


def filler(rng: random.Random, size: int, comment: str) -> list[str]:
    lines = []
    total = 0
    while total < size:
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
        kind = rng.random()
        if kind < 0.2:
            line = f"{comment} {words}"
        elif kind < 0.6:
            line = (
                f"    {rng.choice(WORDS)}_{rng.choice(WORDS)} = compute({words.replace(' ', ', ')})"
            )
        else:
            line = f"    if {rng.choice(WORDS)}.{rng.choice(WORDS)}: return {rng.randint(0, 999)}"
        lines.append(line)
        total += len(line) + 1
    return lines


USES = (
    'if client.get_boolean_value("{key}", False):',
    "enabled = flags['{key}']",
    "if (featureFlags.isEnabled('{key}')) {{",
    '    variant := of.StringValue(ctx, "{key}", "control")',
    "Remove `{key}` after the release.",
)
NEAR_MISSES = ("{key}_v2 = True", "prefix_{key} = 1", "x = '{key}-old'", "{upper} = 3")


def generate(root: Path, files: int, keys: list[str], seed: int) -> dict[str, int]:
    """Write the tree; return what a correct scan must report."""
    rng = random.Random(seed)  # noqa: S311 (test data, not secrets)
    expected = {"references": 0, "files": 0, "binary": 0, "large": 0}
    exts = ((".py", "#"), (".ts", "//"), (".go", "//"), (".md", ">"))
    per_dir = 100
    for i in range(files):
        ext, comment = exts[i % len(exts)]
        directory = root / "src" / f"pkg{i // (per_dir * 20):03d}" / f"mod{i // per_dir:04d}"
        directory.mkdir(parents=True, exist_ok=True)
        lines = filler(rng, rng.randint(512, 8192), comment)
        inserted: dict[str, str] = {}
        if rng.random() < 0.125:
            for _ in range(rng.randint(1, 4)):
                key = rng.choice(keys)
                line = rng.choice(USES).format(key=key)
                inserted[line] = key
                lines.insert(rng.randrange(len(lines) + 1), line)
        if rng.random() < 0.05:
            key = rng.choice(keys)
            lines.insert(0, rng.choice(NEAR_MISSES).format(key=key, upper=key.upper()))
        # What the scan must report: one reference per line that uses a key.
        expected["references"] += sum(1 for line in lines if line in inserted)
        (directory / f"file{i}{ext}").write_text("\n".join(lines) + "\n")
        expected["files"] += 1

    # What the scan must skip.
    key = keys[0]
    (root / ".gitignore").write_text("node_modules/\n/build\n*.log\n")
    for i in range(2000):  # ignored: dependencies
        d = root / "node_modules" / f"dep{i // 50}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"index{i}.js").write_text(f"module.exports = '{key}';\n")
    (root / "build").mkdir()
    (root / "build" / "bundle.js").write_text(f"var f = '{key}';\n" * 100)
    (root / "server.log").write_text(f"evaluated {key}\n")
    generated = root / "src" / "generated"
    generated.mkdir(parents=True)
    (generated / ".gitignore").write_text("*\n!.gitignore\n!keep.py\n")
    (generated / "skip.py").write_text(f"'{key}'\n")
    (generated / "keep.py").write_text(f"FLAG = '{key}'\n")
    expected["files"] += 2  # keep.py and the nested .gitignore itself
    expected["references"] += 1
    assets = root / "assets"
    assets.mkdir()
    for i in range(200):  # binaries: a PNG header, NUL bytes, then a key
        (assets / f"img{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0" + key.encode())
        expected["binary"] += 1
    for i in range(5):  # over 1 MiB
        (assets / f"dump{i}.sql").write_text(f"-- {key}\n" + "x" * (1024 * 1024 + 10))
        expected["large"] += 1
    expected["files"] += 1  # the top .gitignore
    return expected


def django_env(var_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    env.update(
        FLAGDASH_VAR_DIR=str(var_dir),
        DJANGO_SETTINGS_MODULE="flagdash.settings",
        SECRET_KEY="bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",  # noqa: S106
        LOG_LEVEL="WARNING",
    )
    return env


def prepare_database(env: dict[str, str], keys: list[str]) -> None:
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, check=True)  # noqa: S603
    code = (
        "import django; django.setup()\n"
        "from flagdash.flags import services\n"
        "import json, sys\n"
        f"app = services.application_create(actor=None, key='{APP_KEY}', name='Bench')\n"
        "services.environment_create(actor=None, application=app, key='beta', name='Beta')\n"
        "for key in json.load(sys.stdin):\n"
        "    services.flag_create(actor=None, application=app, key=key, name=key[:64],"
        " short_term=True)\n"
    )
    subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], env=env, input=json.dumps(keys), text=True, check=True
    )


def run_scan(env: dict[str, str], tree: Path) -> tuple[float, dict[str, object]]:
    command = [
        sys.executable, str(ROOT / "manage.py"), "scan_code_refs", str(tree),
        "--application", APP_KEY, "--commit", "0123456789abcdef0123456789abcdef01234567",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    wall = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stdout, done.stderr, sep="\n", file=sys.stderr)
        raise SystemExit(f"scan_code_refs failed with status {done.returncode}")
    code = (
        "import django, json; django.setup()\n"
        "from flagdash.lifecycle.models import CodeReferenceScan\n"
        f"s = CodeReferenceScan.objects.get(application__key='{APP_KEY}')\n"
        "print(json.dumps({'references': s.references.count(), 'files': s.files_scanned,"
        " 'binary': s.skipped_binary, 'large': s.skipped_large, 'ms': s.duration_ms,"
        " 'listing': s.listing}))\n"
    )
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return wall, json.loads(out.stdout)


def git(tree: Path, *args: str) -> None:
    subprocess.run(  # noqa: S603
        ["git", "-C", str(tree), *args],  # noqa: S607
        check=True,
        capture_output=True,
        env={**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.com",
             "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@example.com"},
    )  # fmt: skip


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="flagdash-bench-scan-"))
    tree = work / "tree"
    tree.mkdir()
    keys = flag_keys(args.keys)
    print(f"Generating {args.files:,} source files with {args.keys} flag keys in {tree} …")
    started = time.perf_counter()
    expected = generate(tree, args.files, keys, args.seed)
    total_files = sum(1 for _ in tree.rglob("*") if _.is_file())
    size = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    print(
        f"  {total_files:,} files on disk ({size / 2**20:,.0f} MiB), generated in "
        f"{time.perf_counter() - started:.1f} s"
    )
    env = django_env(work / "var")
    prepare_database(env, keys)
    failed = False
    modes = [("walk (.gitignore rules)", False)] + ([("git ls-files", True)] if args.git else [])
    for label, use_git in modes:
        if use_git:
            print("Making the tree a git repository (git init, add, commit) …")
            git(tree, "init", "-q")
            git(tree, "add", "-A")
            git(tree, "commit", "-q", "-m", "bench")
        elif (tree / ".git").exists():
            shutil.rmtree(tree / ".git")
        wall, stored = run_scan(env, tree)
        ok = (
            stored["references"] == expected["references"]
            and stored["files"] == expected["files"]
            and stored["binary"] == expected["binary"]
            and stored["large"] == expected["large"]
        )
        failed |= not ok
        print(
            f"\n[{label}] manage.py scan_code_refs: {wall:.1f} s wall (scanner {stored['ms']} ms)\n"
            f"  files scanned {stored['files']:,} (expected {expected['files']:,}), "
            f"binary skipped {stored['binary']} (expected {expected['binary']}), "
            f"over 1 MiB skipped {stored['large']} (expected {expected['large']}), "
            f"references stored {stored['references']:,} (expected {expected['references']:,})"
            f" — {'OK' if ok else 'MISMATCH'}"
        )
    if args.keep:
        print(f"\nKept {work}")
    else:
        shutil.rmtree(work)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

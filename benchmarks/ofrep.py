"""OFREP benchmark: throughput and latency of flag evaluation over HTTP, and its in-memory cost.

Run with `make bench-ofrep` (or `.venv/bin/python benchmarks/ofrep.py --help`). Real parts:
PostgreSQL (database flagdash_bench_ofrep, dropped and recreated; BENCH_OFREP_DATABASE_URL
overrides), Redis (BENCH_REDIS_URL, default db 8) and the production server, gunicorn with
flagdash/gunicorn.conf.py (WEB_THREADS threads per worker, access log on), at 1 and 2 workers.

The environment serves --flags flags (a quarter of them with two targeting rules, one a
percentage split), deployed through the deployment engine. For each worker count, closed-loop
clients (--clients keep-alive connections in 2 processes, on the same 2-core machine as the
server) send single-flag and bulk evaluations for --seconds each; the table gives requests per
second and p50/p99 latency. Then, in this process, the compiled snapshot evaluates flags with
no HTTP at all: microseconds per flag.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import free_port, wait_http  # noqa: E402
from benchmarks.run import recreate_database  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/flagdash_bench_ofrep"
KEY = "fdk_" + "bench" * 8  # a fixed 40-character key for the throwaway database
SINGLE_FLAG = "flag-001"  # has targeting rules (see prepare)


def prepare(env: dict[str, str], flags: int) -> None:
    """Migrate, create the flags, deploy them and create the API key (in a subprocess)."""
    script = f"""
import django; django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0, interactive=False)
from flagdash.deployments import engine, services as deployments
from flagdash.evaluation import services as keys
from flagdash.flags import services
from flagdash.flags.models import FlagSetting
app = services.application_create(actor=None, key="bench", name="Bench")
env = services.environment_create(actor=None, application=app, key="prod", name="Prod")
rules = [
    {{"conditions": [{{"attribute": "email", "operator": "ends_with", "value": "@example.com"}}],
      "serve": {{"variant": "off"}}}},
    {{"conditions": [{{"attribute": "country", "operator": "in", "value": ["US", "CA", "GB"]}},
                    {{"attribute": "appVersion", "operator": "semver_gte", "value": "2.0.0"}}],
      "serve": {{"split": [{{"variant": "on", "weight": 30}},
                           {{"variant": "off", "weight": 70}}]}}}},
]
for n in range({flags}):
    flag = services.flag_create(actor=None, application=app, key=f"flag-{{n:03d}}", name=f"F{{n}}")
    setting = FlagSetting.objects.get(flag=flag, environment=env)
    services.flag_setting_update(actor=None, flag=flag, environment=env,
        expected_revision=setting.revision, enabled=True,
        rules=rules if n % 4 == 1 else [])
version = services.config_version_create(actor=None, environment=env, message="bench")
d = deployments.deployment_create(actor=None, environment=env, version=version,
    strategy=deployments.strategy_by_name("flagdash.Immediate"))
with engine.without_nudges():
    engine.deployment_advance(d.pk)
keys.api_key_create(actor=None, environment=env, name="bench", plaintext={KEY!r})
"""
    subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=True)  # noqa: S603


CONTEXT = json.dumps(
    {"context": {"targetingKey": "user-1", "country": "US", "appVersion": "2.3.1"}}
).encode()


def _client_process(port: int, path: str, threads: int, seconds: float, queue: object) -> None:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def run(thread_index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine: list[float] = []
        i = 0
        while time.monotonic() < stop_at:
            body = CONTEXT.replace(b"user-1", f"u{thread_index}-{i}".encode())
            start = time.perf_counter()
            conn.request(
                "POST",
                path,
                body=body,
                headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - start)
            if response.status != 200:
                with lock:
                    errors[0] += 1
            i += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    queue.put((latencies, errors[0]))  # type: ignore[attr-defined]


def load(port: int, path: str, clients: int, seconds: float) -> tuple[float, float, float, int]:
    """Closed-loop load: (requests/s, p50 ms, p99 ms, non-200 answers)."""
    queue: multiprocessing.Queue[tuple[list[float], int]] = multiprocessing.Queue()
    per_process = max(1, clients // 2)
    procs = [
        multiprocessing.Process(
            target=_client_process, args=(port, path, per_process, seconds, queue)
        )
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    latencies: list[float] = []
    errors = 0
    for _ in procs:
        got, bad = queue.get(timeout=seconds + 60)
        latencies.extend(got)
        errors += bad
    for p in procs:
        p.join()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return (
        len(latencies) / seconds,
        statistics.median(latencies) * 1000,
        p99 * 1000,
        errors,
    )


def in_memory(env: dict[str, str], rounds: int) -> list[tuple[str, float]]:
    os.environ.update(env)
    import django

    django.setup()
    from flagdash.evaluation.evaluate import evaluate, evaluate_all
    from flagdash.evaluation.snapshot import load_snapshot

    snapshot = load_snapshot()
    environment = next(e for e in snapshot.environments.values() if e.stable)
    context = {"targetingKey": "user-1", "country": "US", "appVersion": "2.3.1"}
    results = []
    for label, key in (
        ("flag without rules", "flag-000"),
        ("flag with 2 rules + split", "flag-001"),
    ):
        start = time.perf_counter()
        for i in range(rounds):
            evaluate(environment, key, context, f"user-{i}")
        results.append((label, (time.perf_counter() - start) / rounds * 1e6))
    start = time.perf_counter()
    bulk_rounds = max(1, rounds // 100)
    for i in range(bulk_rounds):
        evaluate_all(environment, context, f"user-{i}")
    per_flag = (time.perf_counter() - start) / bulk_rounds / len(environment.flag_keys) * 1e6
    results.append(("bulk, per flag", per_flag))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flags", type=int, default=50, help="flags served (default 50)")
    parser.add_argument("--seconds", type=float, default=8, help="seconds per measurement")
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections")
    parser.add_argument("--rounds", type=int, default=100_000, help="in-memory evaluations")
    args = parser.parse_args()
    url = os.environ.get("BENCH_OFREP_DATABASE_URL", DEFAULT_URL)
    redis = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
    recreate_database(url)
    var_dir = tempfile.mkdtemp(prefix="flagdash-ofrep-bench-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "flagdash.settings",
        "DATABASE_URL": url,
        "REDIS_URL": redis,
        "FLAGDASH_VAR_DIR": var_dir,
        "SECRET_KEY": "benchmark-only-secret-key-not-for-production-0123456789",
        "LOG_LEVEL": "WARNING",
    }
    prepare(env, args.flags)
    bin_dir = Path(sys.executable).parent
    rows: list[tuple[str, str]] = []
    for workers in (1, 2):
        port = free_port()
        server = subprocess.Popen(  # noqa: S603
            [str(bin_dir / "gunicorn"), "-c", "flagdash/gunicorn.conf.py", "flagdash.wsgi"],
            env={**env, "PORT": str(port), "WEB_CONCURRENCY": str(workers)},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz")
            for path, label in (
                (f"/ofrep/v1/evaluate/flags/{SINGLE_FLAG}", "single flag"),
                ("/ofrep/v1/evaluate/flags", f"bulk ({args.flags} flags)"),
            ):
                load(port, path, args.clients, 1.5)  # warm-up: snapshots loaded, pools open
                rps, p50, p99, errors = load(port, path, args.clients, args.seconds)
                note = f", {errors} non-200" if errors else ""
                rows.append(
                    (
                        f"{workers} worker{'s' if workers > 1 else ''}, {label}",
                        f"{rps:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms{note}",
                    )
                )
                print(rows[-1][0], "→", rows[-1][1], flush=True)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
    for label, micros in in_memory(env, args.rounds):
        rows.append((f"in memory, {label}", f"{micros:.1f} µs per evaluation"))
        print(rows[-1][0], "→", rows[-1][1], flush=True)
    print()
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"  {label.ljust(width)}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How long from clicking a toggle to the flag list showing the rollout finished, end to end.

Real parts only: PostgreSQL, Redis, gunicorn, a Celery worker with beat, and Debian's Chromium
driven by Playwright. The script drops and recreates BENCH_TOGGLE_DATABASE_URL (default
postgres://postgres@127.0.0.1:5432/flagdash_bench_toggle), creates one application with N
environments on the built-in backend, starts the processes, logs in and, for each environment,
clicks the switch of one flag and waits until the switch's rollout status says the deployment
is over (polling stopped, no open deployment). It reports the median and p95 of the N runs:

  (a) strategy flagdash.Immediate (all at once, no bake): click → "complete";
  (b) strategy AppConfig.AllAtOnce (all at once, then AWS's 10-minute bake): click → "baking"
      (100 % of targets served). Its "complete" is by definition 10 minutes later.

One environment per run, so no run waits behind another's bake. Usage:

  .venv/bin/python benchmarks/toggle_to_complete.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import free_port, wait_http  # noqa: E402
from benchmarks.run import recreate_database  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/flagdash_bench_toggle"
PASSWORD = secrets.token_urlsafe(12)
FLAG = "bench-flag"


def prepare(env: dict[str, str], runs: int) -> None:
    """Migrate and create the admin, the application and its environments (in a subprocess)."""
    script = f"""
import django; django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0, interactive=False)
call_command("collectstatic", verbosity=0, interactive=False)
from flagdash.accounts import services as accounts
from flagdash.deployments import services as deployments
from flagdash.flags import services
admin = accounts.user_create(actor=None, username="admin", password={PASSWORD!r},
                             role="admin", check_password=False)
app = services.application_create(actor=None, key="bench", name="Bench")
for strategy, prefix in (("flagdash.Immediate", "im"), ("AppConfig.AllAtOnce", "aa")):
    for n in range({runs}):
        env = services.environment_create(actor=None, application=app, key=f"{{prefix}}{{n}}",
                                          name=f"{{prefix}}{{n}}")
        services.environment_update(actor=None, environment=env, name=env.name,
                                    protected=False,
                                    default_strategy=deployments.strategy_by_name(strategy))
services.flag_create(actor=None, application=app, key={FLAG!r}, name="Bench flag")
"""
    subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=True)  # noqa: S603


def measure(base: str, runs: int) -> dict[str, list[float]]:
    from playwright.sync_api import expect, sync_playwright

    results: dict[str, list[float]] = {"im": [], "aa": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.goto(f"{base}/login/")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.goto(f"{base}/apps/bench/flags/")
        for prefix, done_class in (("im", None), ("aa", "rollout-baking")):
            for n in range(runs):
                switch = page.get_by_role("switch", name=f"{FLAG} in {prefix}{n}", exact=True)
                form = page.locator("form.switch-form").filter(has=switch)
                start = time.perf_counter()
                switch.click()
                expect(switch).to_have_attribute("aria-checked", "true", timeout=10_000)
                # The toggle's response shows the queued deployment, polling; "complete" is
                # the status gone and polling stopped.
                if done_class is None:
                    polling = form.locator(".rollout-status[hx-trigger]")
                    expect(polling).to_have_count(0, timeout=30_000)
                else:
                    expect(form.locator(f".{done_class}")).to_have_count(1, timeout=30_000)
                results[prefix].append(time.perf_counter() - start)
        browser.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    url = os.environ.get("BENCH_TOGGLE_DATABASE_URL", DEFAULT_URL)
    redis = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
    recreate_database(url)
    port = free_port()
    var_dir = tempfile.mkdtemp(prefix="flagdash-toggle-bench-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "flagdash.settings",
        "DATABASE_URL": url,
        "REDIS_URL": redis,
        "FLAGDASH_VAR_DIR": var_dir,
        "SECRET_KEY": "benchmark-only-secret-key-not-for-production-0123456789",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    prepare(env, args.runs)
    bin_dir = Path(sys.executable).parent
    procs = [
        subprocess.Popen(  # noqa: S603
            [str(bin_dir / "gunicorn"), "-c", "flagdash/gunicorn.conf.py", "flagdash.wsgi"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(  # noqa: S603
            [
                str(bin_dir / "celery"),
                "-A",
                "flagdash",
                "worker",
                "-B",
                "--concurrency=2",
                f"--schedule={var_dir}/beat-schedule",
                "--loglevel=WARNING",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        time.sleep(2)  # let the worker connect to Redis
        results = measure(base, args.runs)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    for prefix, label in (
        ("im", "flagdash.Immediate: click → complete"),
        ("aa", "AppConfig.AllAtOnce: click → baking (100 % served)"),
    ):
        samples = sorted(results[prefix])
        p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
        print(
            f"{label}: median {statistics.median(samples):.2f} s, p95 {p95:.2f} s, "
            f"min {samples[0]:.2f} s, max {samples[-1]:.2f} s over {len(samples)} runs"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

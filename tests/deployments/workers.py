"""Real workers for the deployment tests: an in-process Celery worker, a reconciler thread that
stands in for beat, worker subprocesses that can be SIGKILLed, and a private redis-server that
can be killed and started again.

Run as a module (``python -m tests.deployments.workers --queue q``) this file is a Celery worker
(solo pool) for the test settings; ``FLAGDASH_TEST_BACKEND_DELAY`` (seconds) makes the backends
(built-in and AWS AppConfig) pause after they have acted and before the engine records it, so a
test can kill the worker in exactly that window.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
REDIS_SERVER = "/usr/bin/redis-server"
T = TypeVar("T")
logger = logging.getLogger(__name__)

# The engine made fast enough for a test: a minute of strategy passes in half a second, a dead
# worker's lease expires after 2 s, the reconciler nudges anything due at once, retries back off
# 1 s, and status is polled at least every second.
FAST_ENGINE: dict[str, int] = {
    "DEPLOYMENT_CLOCK_SPEED": 120,
    "DEPLOYMENT_LEASE_SECONDS": 2,
    "DEPLOYMENT_POLL_MIN_SECONDS": 0,
    "DEPLOYMENT_POLL_MAX_SECONDS": 1,
    "DEPLOYMENT_RECONCILE_GRACE_SECONDS": 0,
    "DEPLOYMENT_RETRY_MAX_SECONDS": 1,
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(condition: bool, what: str) -> None:
    """Missing services fail the run in CI (never a silent skip) and skip on a bare laptop."""
    import pytest

    if condition:
        return
    if in_ci():
        pytest.fail(f"{what} is needed for the real-worker tests (CI=true)")
    pytest.skip(f"{what} is not available (set CI=true to make this fail)")


def wait_for(
    predicate: Callable[[], T], *, timeout: float, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique_queue(label: str) -> str:
    from django.conf import settings

    return f"{settings.CELERY_TASK_DEFAULT_QUEUE}-{label}-{uuid.uuid4().hex[:8]}"


def run_together(*calls: Callable[[], Any], timeout: float = 30) -> list[Any]:
    """Start every call in its own thread (own database connection) at the same moment.

    Returns each call's result or the exception it raised.
    """
    from django.db import connections

    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = call()
        except Exception as exc:  # handed to the test, which asserts on it
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
        if t.is_alive():
            raise AssertionError(f"a racing thread did not finish within {timeout:g} s")
    return results


# --- the in-process Celery app, pointed at a queue (and broker) of the test's own ----------------


def _reset_connections(app: Any) -> None:
    """Forget the app's pooled broker connections, so it connects to the broker it has now."""
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


def _close_pools(app: Any) -> None:
    """Close and forget kombu's pools for the app's current broker (one only this test used)."""
    from kombu import pools
    from kombu.utils.collections import eqhash

    connection = app.connection_for_write()
    key = eqhash(connection)
    connection.release()
    for group in (pools.producers, pools.connections):
        pool = dict.pop(group, key, None)
        if pool is not None:
            with contextlib.suppress(Exception):
                pool.force_close_all()


def _forget_queue(app: Any, queue: str) -> None:
    """Delete the queue and the messages a killed worker left unacknowledged for it."""
    import redis

    url = app.conf.broker_url
    if not url.startswith("redis://"):
        return
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.delete(
            queue,
            f"_kombu.binding.{queue}",
            f"_kombu.binding_permanent.{queue}",
            *(f"{queue}\x06\x16{p}" for p in range(10)),
        )
        for tag, raw in client.hgetall("unacked").items():
            with contextlib.suppress(ValueError, IndexError, TypeError):
                if json.loads(raw)[2] == queue:
                    client.hdel("unacked", tag)
                    client.zrem("unacked_index", tag)
    except redis.RedisError:
        pass  # a private server that is gone already took its data with it
    finally:
        client.close()


@contextlib.contextmanager
def celery_routed(queue: str, broker_url: str | None = None) -> Iterator[Any]:
    """Send this process's tasks to ``queue`` (on ``broker_url``); restore everything after."""
    from django.conf import settings

    from flagdash.celery import app

    keys = ("broker_url", "task_default_queue")
    previous = {k: app.conf[k] for k in keys}
    consume_from = app.amqp.queues._consume_from
    # Sending a task caches the result backend the app has now; later tests may configure one.
    backend_cache, local_backend = app._backend_cache, getattr(app._local, "backend", None)
    app.conf.update(broker_url=broker_url or settings.CELERY_BROKER_URL, task_default_queue=queue)
    _reset_connections(app)
    try:
        yield app
    finally:
        _forget_queue(app, queue)
        if broker_url and broker_url != settings.CELERY_BROKER_URL:
            _close_pools(app)
        app.conf.update(previous)
        app.amqp.queues._consume_from = consume_from
        app._backend_cache = backend_cache
        if local_backend is None:
            vars(app._local).pop("backend", None)
        else:
            app._local.backend = local_backend
        _reset_connections(app)


def _close_connections(**kwargs: Any) -> None:
    from django.db import connections

    connections.close_all()


@contextlib.contextmanager
def in_process_worker(queue: str) -> Iterator[Any]:
    """A real worker (solo pool) in a thread of this process, consuming ``queue`` only."""
    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_postrun

    with celery_routed(queue) as app:
        # The worker thread has its own database connection; close it after each task, as the
        # Django fix-up does in a real worker, so the test database can be flushed and dropped.
        task_postrun.connect(_close_connections)
        try:
            with start_worker(
                app, pool="solo", perform_ping_check=False, shutdown_timeout=15, queues=[queue]
            ) as worker:
                yield worker
        finally:
            task_postrun.disconnect(_close_connections)


# --- beat ------------------------------------------------------------------------------------


class Reconciler:
    """Beat, for a test: runs the reconciler task every ``every`` seconds in a thread."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.runs = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-beat", daemon=True)

    def _run(self) -> None:
        from django.db import connections

        from flagdash.deployments.tasks import deployment_reconcile_task

        try:
            while not self._stop.is_set():
                try:
                    deployment_reconcile_task()
                    self.runs += 1
                except Exception as exc:  # the broker is down: beat keeps ticking
                    self.errors.append(repr(exc))
                    connections.close_all()
                self._stop.wait(self.every)
        finally:
            connections.close_all()

    def __enter__(self) -> Reconciler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        if self._thread.is_alive():
            raise RuntimeError("the reconciler thread did not stop")


# --- worker subprocesses ---------------------------------------------------------------------


def database_url() -> str:
    """The test database (the one this test writes to), as a URL for another process."""
    from django.db import connection

    s = connection.settings_dict
    user = s.get("USER") or "postgres"
    return f"postgres://{user}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def subprocess_env(redis_url: str, **extra: Any) -> dict[str, str]:
    from django.db import connection

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "flagdash.settings_test",
        "DATABASE_URL": database_url(),
        "TEST_DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "TEST_REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "PYTHONUNBUFFERED": "1",
        **{k: str(v) for k, v in FAST_ENGINE.items()},
        **{k: str(v) for k, v in extra.items()},
    }
    if connection.settings_dict.get("PASSWORD"):
        env["PGPASSWORD"] = str(connection.settings_dict["PASSWORD"])
    return env


class Process:
    """A child process with its output in a file, killed for sure at the end."""

    def __init__(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log = Path(tempfile.mkstemp(prefix=f"flagdash-{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_output(self, text: str, timeout: float) -> None:
        def seen() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited early:\n{self.output()[-4000:]}")
            return text in self.output()

        wait_for(seen, timeout=timeout, interval=0.1, what=f"{text!r} from {self.name}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL if it lingers."""
        if not self.alive():
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        if not os.environ.get("FLAGDASH_TEST_KEEP_LOGS"):  # set it to read them afterwards
            with contextlib.suppress(OSError):
                self.log.unlink()


@contextlib.contextmanager
def processes() -> Iterator[list[Process]]:
    """Collect child processes; all are stopped at the end, and their output printed on failure."""
    started: list[Process] = []
    try:
        yield started
    except BaseException:
        for p in started:
            print(f"----- {p.name} {p.command[:3]} -----\n{p.output()[-8000:]}")
        raise
    finally:
        for p in started:
            p.close()


def worker_process(name: str, queue: str, redis_url: str, *, backend_delay: float = 0) -> Process:
    """``celery worker --pool=solo -Q queue`` for the test database, as a child process."""
    env = subprocess_env(redis_url, FLAGDASH_TEST_BACKEND_DELAY=backend_delay)
    command = [sys.executable, "-m", "tests.deployments.workers", "--queue", queue, "--name", name]
    return Process(name, command, env)


class Supervisor:
    """Keeps one worker process running, as compose's ``restart: unless-stopped`` does.

    Call ``check()`` while waiting: a worker that exited is started again (and remembered).
    """

    def __init__(self, start: Callable[[int], Process], started: list[Process]) -> None:
        self._start = start
        self._started = started
        self.exits: list[tuple[str, int | None]] = []
        self.current = self._spawn()

    def _spawn(self) -> Process:
        process = self._start(len(self._started)).start()
        self._started.append(process)
        return process

    def check(self) -> None:
        if not self.current.alive():
            proc = self.current.proc
            self.exits.append((self.current.name, proc.returncode if proc else None))
            self.current = self._spawn()


class RedisServer:
    """A redis-server of the test's own (no persistence), which the test may kill and restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Process | None = None
        self.past: list[Process] = []

    def start(self) -> RedisServer:
        if self.process is not None:
            self.past.append(self.process)
        self.process = Process(
            f"redis-{self.port}",
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        ).start()
        wait_for(self.ping, timeout=10, interval=0.05, what=f"redis-server on {self.port}")
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill(signal.SIGKILL)

    def close(self) -> None:
        for process in [*self.past, self.process]:
            if process is not None:
                process.close()


# --- the worker subprocess itself ------------------------------------------------------------


def _slow_backend(delay: float) -> None:
    """Pause after a backend acted, before the engine records: the window to kill a worker in.

    Both the built-in backend and AWS AppConfig's (which the AWS fault tests run on the fake).
    """
    from flagdash.backends.aws_appconfig import AwsAppConfigBackend
    from flagdash.backends.local import LocalBackend

    for cls in (LocalBackend, AwsAppConfigBackend):
        _pause_after(cls, "start", delay)
        _pause_after(cls, "status", delay)


def _pause_after(cls: Any, name: str, delay: float) -> None:
    real = getattr(cls, name)

    def slowed(self: Any, spec: Any, now: Any) -> Any:
        result = real(self, spec, now)
        time.sleep(delay)
        return result

    setattr(cls, name, slowed)


def main(argv: list[str]) -> None:
    import argparse

    import django

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--name", default="worker")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flagdash.settings_test")
    django.setup()
    delay = float(os.environ.get("FLAGDASH_TEST_BACKEND_DELAY") or 0)
    if delay:
        _slow_backend(delay)
    from flagdash.celery import app

    # The engine's own follow-up messages must reach this worker's queue, too.
    app.conf.task_default_queue = args.queue
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            "--queues",
            args.queue,
            "--hostname",
            f"{args.name}-{os.getpid()}@%h",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


if __name__ == "__main__":
    main(sys.argv[1:])

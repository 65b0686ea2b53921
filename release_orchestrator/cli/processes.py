"""``relo worker|beat|flower|up`` and ``relo db upgrade``: the processes of relo."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Annotated
from urllib.parse import urlsplit

import typer

from ..errors import InvalidRequest
from . import render
from .common import client

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


def _celery_app():  # type: ignore[no-untyped-def]
    from workers.app import app

    return app


def check_environments(value: str) -> None:
    """Every ``P/E`` of ``--environments`` must exist (exit 2 naming what exists)."""
    from ..storage.repository import Repository

    c = client()
    with c.ctx.db.session(write=False) as s:
        repo = Repository(s)
        for item in value.split(","):
            item = item.strip()
            project, sep, env = item.partition("/")
            if not sep or not project or not env:
                raise InvalidRequest(f"--environments: '{item}' must be PROJECT/ENVIRONMENT")
            repo.environment(project, env)


def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", "-c", help="Parallel releases on this worker (default: CPU count)."
        ),
    ] = None,
    environments: Annotated[
        str | None,
        typer.Option(
            "--environments",
            help="Only these PROJECT/ENVIRONMENT queues (comma-separated); "
            "default: every environment, following new ones.",
        ),
    ] = None,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "INFO",
    hostname: Annotated[str | None, typer.Option("--hostname", "-n")] = None,
) -> None:
    """Run a worker consuming release queues (release.<project>.<environment>).

    Example: relo worker --concurrency 4 --environments shop/prod,shop/staging
    """
    if concurrency is not None and concurrency < 1:
        raise InvalidRequest("--concurrency must be at least 1")
    if environments:
        check_environments(environments)
    else:
        client().ctx.db.ensure_schema()
    argv = [
        "worker",
        f"--concurrency={concurrency or os.cpu_count() or 1}",
        f"--loglevel={loglevel}",
        "-Q",
        "relo.control",
        "--without-gossip",
        "--without-mingle",
    ]
    if environments:
        argv += ["--environments", environments]
    if hostname:
        argv += ["--hostname", hostname]
    _celery_app().worker_main(argv)


def beat(loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "INFO") -> None:
    """Run Celery beat: ticks every RELO_SCHEDULE_TICK seconds (schedules, reconciler).

    Run one beat; a second one by mistake is harmless (due times are claimed in the database).
    Example: relo beat
    """
    client().ctx.db.ensure_schema()
    _celery_app().start(["beat", "-S", "celery.beat:Scheduler", f"--loglevel={loglevel}"])


def flower(
    port: Annotated[int | None, typer.Option("--port", help="Default RELO_FLOWER_PORT.")] = None,
    basic_auth: Annotated[
        str | None,
        typer.Option("--basic-auth", help="user:password (default RELO_FLOWER_BASIC_AUTH)."),
    ] = None,
) -> None:
    """Run Flower, the Celery monitor, showing release tasks.

    Example: RELO_FLOWER_BASIC_AUTH=admin:secret relo flower --port 5555
    """
    settings = client().config
    argv = [
        "flower",
        f"--port={port or settings.flower_port}",
        "--address=127.0.0.1" if os.environ.get("RELO_FLOWER_LOCAL_ONLY") else "--address=0.0.0.0",
    ]
    auth = basic_auth or settings.flower_basic_auth
    if auth:
        argv.append(f"--basic-auth={auth}")
    _celery_app().start(argv)


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except Exception:
        return False


def _start_redis(url: str) -> tuple[subprocess.Popen[bytes] | None, object | None]:
    """A local Redis for ``relo up``: redis-server if installed, else embedded fakeredis."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if host not in ("127.0.0.1", "localhost"):
        raise InvalidRequest(f"Redis at {host}:{port} is not answering (RELO_REDIS_URL)")
    server = shutil.which("redis-server")
    if server:
        render.info(f"relo up: Redis not answering; starting {server} on {host}:{port}")
        proc = subprocess.Popen(
            [server, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(50):
            if _redis_answers(url):
                return proc, None
            time.sleep(0.1)
        proc.terminate()
    import fakeredis

    render.info("!" * 78)
    render.info(f"relo up: NO REDIS FOUND. Starting an EMBEDDED fakeredis server on {host}:{port}.")
    render.info("This is for a quick look on a laptop ONLY: not durable, not for production.")
    render.info("Install redis-server (or set RELO_REDIS_URL) for anything real.")
    render.info("!" * 78)
    fake = fakeredis.TcpFakeServer((host, port), server_type="redis")
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    return None, fake


def up(
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c")] = None,
    web: Annotated[bool, typer.Option("--web/--no-web", help="Also run the web app.")] = True,
) -> None:
    """Run worker + beat + Flower (+ web) on this machine: the quick start.

    Uses RELO_REDIS_URL when it answers; otherwise starts redis-server, or as a last resort
    an embedded fakeredis server (said loudly). Ctrl-C stops everything.
    Example: relo up
    """
    settings = client().config
    client().ctx.db.ensure_schema()
    redis_proc, fake = (None, None)
    if not _redis_answers(settings.redis_url):
        redis_proc, fake = _start_redis(settings.redis_url)
    cmd = [sys.executable, "-m", "release_orchestrator.cli.main"]
    specs = [
        ("worker", [*cmd, "worker"] + ([f"--concurrency={concurrency}"] if concurrency else [])),
        ("beat", [*cmd, "beat"]),
        ("flower", [*cmd, "flower"]),
    ]
    if web and _web_available():
        specs.append(("web", [*cmd, "web"]))
    env = dict(os.environ, RELO_FLOWER_LOCAL_ONLY="1")
    procs = {name: subprocess.Popen(argv, env=env) for name, argv in specs}
    render.info("relo up: " + ", ".join(f"{n} (pid {p.pid})" for n, p in procs.items()))
    render.info(
        f"relo up: Flower on http://127.0.0.1:{settings.flower_port}"
        + (f", web on http://127.0.0.1:{settings.web_port}" if "web" in procs else "")
    )
    stopping = threading.Event()

    def _stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    code = 0
    try:
        while not stopping.is_set():
            for name, proc in procs.items():
                if proc.poll() is not None:
                    render.info(f"relo up: {name} exited with {proc.returncode}; stopping")
                    code = 1
                    stopping.set()
            stopping.wait(0.5)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        if redis_proc is not None:
            redis_proc.terminate()
        if fake is not None:
            fake.shutdown()  # type: ignore[attr-defined]
    raise typer.Exit(code)


def _web_available() -> bool:
    try:
        import release_orchestrator.web  # noqa: F401
    except ImportError:
        return False
    return True


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database schema to the newest revision (relo does it on first use too).

    Example: RELO_DATABASE_URL=postgresql://relo@db/relo relo db upgrade
    """
    db = client().ctx.db
    db.upgrade()
    render.info(f"database at revision {db.current_revision()}")

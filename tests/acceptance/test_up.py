"""`relo up` on a machine without a running Redis: it starts redis-server, or as a last resort
an embedded fakeredis server, runs worker + beat + Flower, and a release really executes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BLUEPRINT = """
project: demo
environments:
  - name: dev
resources:
  - {type: service, name: api, executor: simulated, spec: {duration: 0.2}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def relo(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "release_orchestrator.cli.main", *args],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("redis_source", ["redis-server", "fakeredis"])
def test_up_starts_a_local_redis_and_runs_a_release(tmp_path: Path, redis_source: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELO_", "CELERY"))}
    env.update(RELO_REDIS_URL=f"redis://127.0.0.1:{port}/0",
               RELO_DATABASE_URL=f"sqlite:///{tmp_path / 'relo.db'}",
               RELO_FLOWER_PORT=str(free_port()), RELO_SCHEDULE_TICK="1")
    if redis_source == "fakeredis":  # no redis-server on PATH
        env["PATH"] = str(Path(sys.executable).parent)
    (tmp_path / "bp.yaml").write_text(BLUEPRINT)
    assert relo(env, tmp_path, "blueprint", "apply", "-f", "bp.yaml").returncode == 0
    log = tmp_path / "up.log"
    with log.open("wb") as handle:
        up = subprocess.Popen([sys.executable, "-m", "release_orchestrator.cli.main", "up",
                               "--no-web", "-c", "1"], env=env, cwd=tmp_path, stdout=handle,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "ready." not in log.read_text(errors="replace"):
            assert up.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        text = log.read_text()
        if redis_source == "fakeredis":
            assert "EMBEDDED fakeredis" in text
        else:
            assert "starting" in text and "redis-server" in text
        out = relo(env, tmp_path, "release", "trigger", "-p", "demo", "-e", "dev", "--wait",
                   "--timeout", "45")
        assert out.returncode == 0, out.stderr + log.read_text()[-3000:]
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        try:
            up.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
    assert up.returncode == 0, log.read_text()[-3000:]

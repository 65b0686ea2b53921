"""Security basics (SPEC §10, issue 8): passwords in Redis/PostgreSQL URLs, TLS to Redis, and
nothing secret in errors or logs."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import Stack

pytestmark = pytest.mark.integration

SECRET = "s3cret-Pa55word"
BLUEPRINT = """
project: sec
environments:
  - name: dev
resources:
  - {type: service, name: api, executor: simulated, spec: {duration: 0.1}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_certs(tmp: Path) -> Path:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=tmp, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=relo-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    (tmp / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf")
    return tmp / "ca.crt"


def test_tls_redis_with_password_runs_releases_and_never_prints_it(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = make_certs(certs)
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(certs / "server.crt"), "--tls-key-file",
         str(certs / "server.key"), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
         "--requirepass", SECRET, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = (f"rediss://:{SECRET}@127.0.0.1:{port}/0?ssl_cert_reqs=required"
           f"&ssl_ca_certs={ca}")
    try:
        client = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.skip("this redis-server has no TLS support")
        stack = Stack(tmp_path)
        stack.env["RELO_REDIS_URL"] = url
        try:
            (tmp_path / "bp.yaml").write_text(BLUEPRINT)
            stack.cli("blueprint", "apply", "-f", str(tmp_path / "bp.yaml"), check=True)
            stack.worker()
            result = stack.cli("release", "trigger", "-p", "sec", "-e", "dev", "--wait",
                               "--timeout", "60")
            assert result.returncode == 0, result.stderr + stack.logs()
            locks = stack.cli("lock", "list", "-p", "sec", "-e", "dev", "-o", "json")
            assert locks.returncode == 0
            outputs = result.stdout + result.stderr + locks.stdout + locks.stderr + stack.logs()
            assert SECRET not in outputs
        finally:
            stack.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_unreachable_services_give_one_line_without_the_password(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    (tmp_path / "bp.yaml").write_text(BLUEPRINT)
    stack.cli("blueprint", "apply", "-f", str(tmp_path / "bp.yaml"), check=True)
    stack.env["RELO_REDIS_URL"] = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"
    result = stack.cli("lock", "list", "-p", "sec", "-e", "dev")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert SECRET not in result.stderr + result.stdout
    stack.env["RELO_DATABASE_URL"] = f"postgresql://relo:{SECRET}@127.0.0.1:{free_port()}/relo"
    result = stack.cli("env", "list")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert SECRET not in result.stderr + result.stdout
    assert "***" in result.stderr


@pytest.mark.postgres
def test_postgresql_url_with_password_works_and_is_not_printed(tmp_path: Path,
                                                               pg_url: str) -> None:
    url = pg_url.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@")
    stack = Stack(tmp_path, database_url=url)
    try:
        (tmp_path / "bp.yaml").write_text(BLUEPRINT)
        stack.cli("blueprint", "apply", "-f", str(tmp_path / "bp.yaml"), check=True)
        stack.worker()
        result = stack.cli("release", "trigger", "-p", "sec", "-e", "dev", "--wait",
                           "--timeout", "60")
        assert result.returncode == 0, result.stderr + stack.logs()
        assert SECRET not in result.stdout + result.stderr + stack.logs()
    finally:
        stack.close()

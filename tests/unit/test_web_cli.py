"""``relo web``: registered in ``relo``, bad options exit 2 with one line, nothing started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from release_orchestrator.cli.common import reset_client
from release_orchestrator.cli.main import main


@pytest.fixture(autouse=True)
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RELO_DATABASE_URL", f"sqlite:///{tmp_path / 'relo.db'}")
    reset_client()
    yield
    reset_client()


def test_web_is_a_relo_command_with_host_and_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "web" in capsys.readouterr().out
    assert main(["web", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--host" in out and "--port" in out and "RELO_WEB_PORT" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["web", "--port", "70000"], "--port must be between 1 and 65535"),
        (["web", "--log-level", "loud"], "--log-level must be one of"),
        (["web", "--port", "x"], "Invalid value for '--port'"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_malformed_tokens_are_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RELO_API_TOKENS", "ci:,secret-value")
    assert main(["web"]) == 2
    err = capsys.readouterr().err
    assert "RELO_API_TOKENS" in err and "secret-value" not in err, err

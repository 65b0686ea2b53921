"""``relo env pause|resume|show|window`` through the real CLI entry point (in process).

Bad input → exit 2, one line on stderr, nothing on stdout, database unchanged.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from release_orchestrator.cli.common import reset_client
from release_orchestrator.cli.main import main

BLUEPRINT = """
project: shop
environments:
  - name: staging
  - name: prod
    settings: {parallel_releases: true}
resources:
  - {type: database, name: orders, executor: simulated, spec: {size: 1}}
  - {type: service, name: web, executor: simulated, spec: {image: "web:1"}}
"""


@pytest.fixture
def cli(
    own_redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    monkeypatch.setenv("RELO_DATABASE_URL", f"sqlite:///{tmp_path / 'relo.db'}")
    monkeypatch.setenv("RELO_REDIS_URL", own_redis_url)
    monkeypatch.setenv("RELO_USER", "alice")
    reset_client()
    from release_orchestrator.cli import common
    from release_orchestrator.testing import MemoryTransport

    real_client = common.client
    transport = MemoryTransport()

    def client():  # the CLI's wiring, with an in-memory transport (no broker needed)
        c = real_client()
        c.ctx.transport = transport
        return c

    monkeypatch.setattr(common, "client", client)
    for module in ("config", "releases", "pauses"):
        monkeypatch.setattr(f"release_orchestrator.cli.{module}.client", client)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    path = tmp_path / "bp.yaml"
    path.write_text(BLUEPRINT)
    code, _, err = run("blueprint", "apply", "-f", str(path))
    assert code == 0, err
    yield run
    reset_client()


def _db_digest(tmp_path: Path) -> str:
    """A digest of every table's rows (the database is unchanged iff it is equal)."""
    con = sqlite3.connect(tmp_path / "relo.db")
    rows = []
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY 1"):
        rows.append((table, sorted(map(repr, con.execute(f'SELECT * FROM "{table}"')))))
    con.close()
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


PE = ("-p", "shop", "-e", "prod")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("env", "pause", "-p", "shopp"), "unknown project 'shopp'; existing: shop"),
        (("env", "pause", "-p", "shop", "-e", "prd"), "unknown environment 'prd'"),
        (("env", "resume", "-p", "nope"), "unknown project 'nope'"),
        (("env", "resume", "-p", "shop", "-e", "qa"), "existing: "),
        (("env", "show", "-p", "shop", "-e", "qa"), "unknown environment 'qa'"),
        (("env", "pause", *PE, "--until", "2001-01-01T00:00:00Z"), "is not in the future"),
        (("env", "pause", *PE, "--until", "2999-01-01T00:00:00"), "has no timezone"),
        (("env", "pause", *PE, "--until", "tomorrow"), "is not an ISO 8601 time"),
        (("env", "pause", *PE, "--reason", "x" * 2001), "--reason is longer than 2000"),
        (("env", "pause", *PE, "-o", "yaml"), "-o/--output must be table or json"),
        (
            ("env", "window", "add", *PE, "--deny", "--cron", "61 * * * *", "--duration", "1h"),
            "invalid cron expression '61 * * * *'",
        ),
        (
            ("env", "window", "add", *PE, "--deny", "--cron", "every day", "--duration", "1h"),
            "invalid cron expression 'every day'",
        ),
        (
            ("env", "window", "add", *PE, "--allow", "--cron", "0 9 * * *", "--duration", "0m"),
            "duration must be positive",
        ),
        (
            ("env", "window", "add", *PE, "--allow", "--cron", "0 9 * * *", "--duration", "2x"),
            "invalid duration '2x'",
        ),
        (
            ("env", "window", "add", *PE, "--allow", "--cron", "0 9 * * *", "--duration", "1h",
             "--timezone", "Europe/Atlantis"),
            "unknown timezone 'Europe/Atlantis'",
        ),
        (
            ("env", "window", "add", *PE, "--cron", "0 9 * * *", "--duration", "1h"),
            "give exactly one of --allow or --deny",
        ),
        (
            ("env", "window", "add", *PE, "--allow", "--deny", "--cron", "0 9 * * *",
             "--duration", "1h"),
            "give exactly one of --allow or --deny",
        ),
        (
            ("env", "window", "add", "-p", "shop", "-e", "qa", "--deny", "--cron", "* * * * *",
             "--duration", "1h"),
            "unknown environment 'qa'",
        ),
        (("env", "window", "add", *PE, "--deny", "--cron", "* * * * *"), "--duration"),
        (("env", "window", "remove", *PE, "99"), "unknown window '99'"),
        (("env", "window", "remove", *PE, "abc"), "Invalid value for 'ID'"),
        (("env", "window", "list", "-p", "x", "-e", "prod"), "unknown project 'x'"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_changes_nothing(
    cli: Any, tmp_path: Path, args: tuple[str, ...], fragment: str
) -> None:
    before = _db_digest(tmp_path)
    code, out, err = cli(*args)
    assert code == 2, (out, err)
    assert out == ""
    assert err.startswith("relo: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert fragment in err
    assert "Traceback" not in err
    assert _db_digest(tmp_path) == before


def test_unknown_window_id_names_the_existing_ids(cli: Any, tmp_path: Path) -> None:
    code, out, _ = cli("env", "window", "add", *PE, "--deny", "--cron", "@daily",
                       "--duration", "1h")
    assert code == 0
    before = _db_digest(tmp_path)
    code, _, err = cli("env", "window", "remove", *PE, "7")
    assert code == 2 and f"existing: {out.strip()}" in err
    assert _db_digest(tmp_path) == before


def test_pause_show_and_resume(cli: Any) -> None:
    code, out, err = cli("env", "pause", "-p", "shop", "--reason", "holiday freeze",
                         "--until", "2999-01-01T00:00:00+01:00")
    assert code == 0 and out == ""
    assert "project 'shop' paused by alice since" in err
    assert "holiday freeze (until 2998-12-31 23:00:00 UTC)" in err
    code, out, err = cli("release", "trigger", *PE, "--type", "selective", "--target",
                         "service/web")
    assert code == 0, err
    release_id = int(out)
    code, out, _ = cli("release", "active", *PE)
    assert code == 0 and "project 'shop' is paused by alice" in out and "holiday" in out
    code, out, _ = cli("env", "show", *PE, "-o", "json")
    view = json.loads(out)
    assert view["project_pause"]["paused_by"] == "alice"
    assert view["project_pause"]["reason"] == "holiday freeze"
    assert view["project_pause"]["until"] == "2998-12-31T23:00:00Z"
    assert view["environment_pause"] is None and view["can_start"] is False
    assert view["queue"]["queued"] == [release_id]
    assert view["queue"]["next_holds"][0]["code"] == "project_paused"
    code, out, _ = cli("env", "show", *PE)
    assert code == 0
    assert "releases can start: no" in out and "project pause:      paused by alice" in out
    assert f"1 queued ({release_id})" in out
    code, out, err = cli("env", "resume", "-p", "shop")
    assert code == 0 and out == ""
    assert "resumed project 'shop'" in err and f"releases starting now: {release_id}" in err
    code, out, err = cli("env", "resume", "-p", "shop")
    assert code == 0 and "project 'shop' is not paused; nothing to resume" in err
    code, out, _ = cli("events", "-p", "shop", "-o", "json")
    kinds = [e["kind"] for e in json.loads(out)]
    assert kinds.count("paused") == 1 and kinds.count("resumed") == 1


def test_environment_resume_notes_a_project_pause(cli: Any) -> None:
    assert cli("env", "pause", "-p", "shop")[0] == 0
    assert cli("env", "pause", *PE, "--reason", "audit")[0] == 0
    code, _, err = cli("env", "resume", *PE)
    assert code == 0 and "resumed environment 'shop/prod'" in err
    assert "note: project 'shop' is still paused by alice" in err
    assert "relo env resume -p shop\n" in err


def test_window_add_prints_the_id_and_list_gives_ids(cli: Any) -> None:
    code, out, err = cli("env", "window", "add", *PE, "--deny", "--cron", "* * * * *",
                         "--duration", "1h")
    assert code == 0 and out.strip().isdigit(), err
    first = int(out)
    assert f"deny window {first} added to shop/prod" in err and "open now until" in err
    code, out, _ = cli("env", "window", "add", *PE, "--allow", "--cron", "0 9 * * 1-5",
                       "--duration", "8h", "--timezone", "Europe/Berlin", "-o", "json")
    second = json.loads(out)
    assert second["kind"] == "allow" and second["timezone"] == "Europe/Berlin"
    code, out, _ = cli("env", "window", "list", *PE, "-o", "json")
    assert [w["id"] for w in json.loads(out)] == [first, second["id"]]
    code, out, _ = cli("env", "window", "list", *PE)
    assert code == 0 and "Europe/Berlin" in out and "0 9 * * 1-5" in out
    code, out, _ = cli("env", "show", *PE)
    assert f"closed now (deny window {first} is open)" in out
    code, out, err = cli("env", "window", "remove", *PE, str(first))
    assert code == 0 and f"removed deny window {first}" in err
    code, out, _ = cli("env", "window", "list", *PE, "-o", "json")
    assert [w["id"] for w in json.loads(out)] == [second["id"]]


def test_help_documents_the_choices(cli: Any) -> None:
    code, out, _ = cli("env", "resume", "--help")
    assert code == 0 and "not paused changes nothing" in " ".join(out.split())
    code, out, _ = cli("env", "pause", "--help")
    assert "replaces its pause" in " ".join(out.split()) and "--until" in out
    code, out, _ = cli("env", "window", "--help")
    assert all(cmd in out for cmd in ("add", "list", "remove"))

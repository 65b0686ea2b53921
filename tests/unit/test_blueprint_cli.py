"""Blueprint files through the real CLI entry point (in process): bad input → one line, exit 2,
database unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from release_orchestrator.cli.common import reset_client
from release_orchestrator.cli.main import main

GOOD = """
project: shop
environments:
  - name: staging
  - name: prod
    settings: {parallel_releases: true, max_parallel_releases: 5}
    overrides:
      service/web: {replicas: 3}
resources:
  - type: database
    name: orders
    executor: simulated
    spec: {size: 10}
  - type: service
    name: web
    executor: simulated
    spec: {image: "web:1", replicas: 1}
    depends_on: [database/orders]
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

    def client():  # same wiring as the CLI, with an in-memory transport (no broker needed)
        c = real_client()
        c.ctx.transport = MemoryTransport()
        return c

    monkeypatch.setattr(common, "client", client)
    for module in ("config", "releases", "processes"):
        monkeypatch.setattr(f"release_orchestrator.cli.{module}.client", client)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    reset_client()


def _db_digest(tmp_path: Path) -> str:
    """A digest of every table's rows (the database is unchanged iff it is equal)."""
    import sqlite3

    con = sqlite3.connect(tmp_path / "relo.db")
    rows = []
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY 1"):
        rows.append((table, sorted(map(repr, con.execute(f'SELECT * FROM "{table}"')))))
    con.close()
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def write(tmp_path: Path, text: str, name: str = "bp.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_apply_creates_project_environments_and_specs(cli, tmp_path: Path) -> None:
    code, _, err = cli("blueprint", "apply", "-f", write(tmp_path, GOOD))
    assert code == 0, err
    code, out, _ = cli("resource", "list", "-p", "shop", "-e", "prod", "-o", "json")
    assert code == 0
    items = {r["resource"]: r for r in json.loads(out)}
    assert items["service/web"]["desired_spec"] == {"image": "web:1", "replicas": 3}
    assert items["service/web"]["sync"] == "Unknown" and items["service/web"]["health"] == "Missing"
    code, out, _ = cli("env", "settings", "-p", "shop", "-e", "prod", "-o", "json")
    assert json.loads(out)["max_parallel_releases"] == 5


BAD = [
    ("yaml error", "project: shop\nresources: [\n", "invalid YAML"),
    ("unknown top key", "project: shop\nbogus: 1\n", "bogus: unknown key"),
    ("unknown resource key",
     "project: shop\nresources:\n  - {type: service, name: a, executor: simulated, colour: red}\n",
     "resources[0].colour: unknown key"),
    ("cycle",
     "project: shop\nresources:\n"
     "  - {type: service, name: a, executor: simulated, depends_on: [service/b]}\n"
     "  - {type: service, name: b, executor: simulated, depends_on: [service/a]}\n",
     "dependency cycle"),
    ("unknown executor",
     "project: shop\nresources:\n  - {type: service, name: a, executor: helm9}\n",
     "resources[0].executor: unknown executor 'helm9'"),
    ("duplicate resource",
     "project: shop\nresources:\n  - {type: service, name: a, executor: simulated}\n"
     "  - {type: service, name: a, executor: simulated}\n",
     "resources[1]: duplicate resource 'service/a'"),
    ("unknown dependency",
     "project: shop\nresources:\n"
     "  - {type: service, name: a, executor: simulated, depends_on: [database/x]}\n",
     "resources[0].depends_on[0]: unknown resource 'database/x'"),
    ("shell without apply",
     "project: shop\nresources:\n  - {type: service, name: a, executor: shell}\n",
     "resources[0]: shell executor: 'apply'"),
    ("bad env name", "project: shop\nenvironments:\n  - name: Prod.EU\n",
     "environments[0].name: invalid environment name"),
    ("negative max parallel",
     "project: shop\nenvironments:\n  - {name: prod, settings: {max_parallel_releases: -1}}\n",
     "environments[0].settings.max_parallel_releases"),
    ("override of unknown resource",
     "project: shop\nenvironments:\n  - {name: prod, overrides: {service/x: {a: 1}}}\n",
     "environments[0].overrides.service/x: unknown resource"),
    ("not a mapping", "- a\n- b\n", "a blueprint must be a mapping"),
    ("valid parts are not applied either",
     "project: shop\nenvironments:\n  - name: qa\nresources:\n"
     "  - {type: service, name: a, executor: simulated, depends_on: [service/a]}\n",
     "dependency cycle"),
]


@pytest.mark.parametrize(("label", "text", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_blueprint_is_one_line_exit_2_and_changes_nothing(
    cli, tmp_path: Path, label: str, text: str, expected: str
) -> None:
    assert cli("blueprint", "apply", "-f", write(tmp_path, GOOD, "good.yaml"))[0] == 0
    before = _db_digest(tmp_path)
    path = write(tmp_path, text)
    code, out, err = cli("blueprint", "apply", "-f", path)
    assert code == 2, (out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expected in lines[0], lines[0]
    if "YAML" not in expected and "mapping" not in expected:
        assert path in lines[0]
    assert "Traceback" not in err
    assert _db_digest(tmp_path) == before


def test_missing_file_is_exit_2(cli, tmp_path: Path) -> None:
    code, _, err = cli("blueprint", "apply", "-f", str(tmp_path / "nope.yaml"))
    assert code == 2 and "cannot read" in err and len(err.strip().splitlines()) == 1


def test_resource_set_parses_json_and_dotted_keys(cli, tmp_path: Path) -> None:
    assert cli("blueprint", "apply", "-f", write(tmp_path, GOOD))[0] == 0
    code, out, err = cli("resource", "set", "-p", "shop", "-e", "staging", "web",
                         "image=web:2", "replicas=4", "limits.cpu=0.5", "flags={\"a\": true}",
                         "-o", "json")
    assert code == 0, err
    spec = json.loads(out)["desired_spec"]
    assert spec == {"image": "web:2", "replicas": 4, "limits": {"cpu": 0.5},
                    "flags": {"a": True}}
    assert json.loads(out)["sync"] == "Unknown"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("resource", "set", "-p", "nope", "-e", "staging", "web", "a=1"),
         "unknown project 'nope'; existing: shop"),
        (("resource", "set", "-p", "shop", "-e", "qa", "web", "a=1"),
         "unknown environment 'qa' in project 'shop'; existing: "),
        (("resource", "set", "-p", "shop", "-e", "staging", "service/nope", "a=1"),
         "unknown resource 'service/nope'"),
        (("resource", "set", "-p", "shop", "-e", "staging", "web", "novalue"),
         "'novalue' is not KEY=VALUE"),
        (("release", "trigger", "-p", "shop", "-e", "staging", "--type", "sideways"),
         "unknown release type 'sideways'"),
        (("release", "trigger", "-p", "shop", "-e", "staging", "--type", "selective"),
         "needs at least one --target"),
        (("release", "trigger", "-p", "shop", "-e", "staging", "--type", "selective",
          "--target", "service/zzz"), "unknown resource 'service/zzz'"),
        (("release", "show", "999"), "unknown release id 999"),
        (("release", "trigger", "-p", "shop", "-e", "staging", "--bogus"), "No such option"),
        (("env", "settings", "-p", "shop", "-e", "staging", "--max-parallel", "0"),
         "--max-parallel must be an integer >= 1"),
        (("env", "settings", "-p", "shop", "-e", "staging", "--max-parallel", "-1"),
         "--max-parallel must be an integer >= 1"),
        (("release", "list", "-p", "shop", "-e", "staging", "-o", "xml"),
         "-o/--output must be table or json"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    cli, tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    assert cli("blueprint", "apply", "-f", write(tmp_path, GOOD))[0] == 0
    before = _db_digest(tmp_path)
    code, out, err = cli(*args)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err
    assert _db_digest(tmp_path) == before


def test_launch_refused_once_launched(cli, tmp_path: Path) -> None:
    from release_orchestrator.cli import common
    from release_orchestrator.services import engine

    assert cli("blueprint", "apply", "-f", write(tmp_path, GOOD))[0] == 0
    code, out, _ = cli("release", "trigger", "-p", "shop", "-e", "staging", "--type", "launch")
    assert code == 0 and out.strip() == "1"
    assert engine.execute(common.client().ctx, 1, "w") == "succeeded"
    before = _db_digest(tmp_path)
    code, _, err = cli("release", "trigger", "-p", "shop", "-e", "staging", "--type", "launch")
    assert code == 2 and "already launched" in err
    assert _db_digest(tmp_path) == before

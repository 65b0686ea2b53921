"""Fuzzing the two inputs users type: blueprint files and CLI arguments (SPEC §10).

Whatever the input: no traceback, exit code 0 or a documented one, and when the answer is
"bad input" (exit 2) exactly one line on stderr and a database unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from release_orchestrator.cli import common
from release_orchestrator.cli.common import reset_client
from release_orchestrator.cli.main import main
from release_orchestrator.testing import MemoryTransport

#: Examples per fuzz test: 150 in `make test` (CPU-bound, on 2 cores); `make reliability` and
#: anyone hunting bugs raise it (RELO_FUZZ_EXAMPLES=5000).
FUZZ_EXAMPLES = int(os.environ.get("RELO_FUZZ_EXAMPLES", "150"))

GOOD = {
    "project": "shop",
    "environments": [
        {"name": "staging"},
        {"name": "prod", "settings": {"parallel_releases": True, "max_parallel_releases": 3},
         "overrides": {"service/web": {"replicas": 3}}},
    ],
    "resources": [
        {"type": "database", "name": "orders", "executor": "simulated", "spec": {"size": 1}},
        {"type": "service", "name": "web", "executor": "shell", "apply": ["true"],
         "destroy": ["true"], "spec": {"image": "web:1"}, "depends_on": ["database/orders"]},
    ],
}


class Harness:
    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp = tmp
        self.capsys = capsys
        monkeypatch.setenv("RELO_DATABASE_URL", f"sqlite:///{tmp / 'relo.db'}")
        monkeypatch.setenv("RELO_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens
        reset_client()
        real = common.client

        def client():
            c = real()
            if not isinstance(c.ctx.transport, MemoryTransport):
                c.ctx.transport = MemoryTransport()
                from release_orchestrator.locks import MemoryLockStore

                c.ctx.lock_store = MemoryLockStore()
            return c

        for module in ("common", "config", "releases", "processes", "pauses", "schedules",
                       "diagnose", "sync"):
            target = f"release_orchestrator.cli.{module}"
            with contextlib.suppress(AttributeError):
                monkeypatch.setattr(f"{target}.client", client)
        path = tmp / "good.yaml"
        path.write_text(yaml.safe_dump(GOOD))
        assert self.run("blueprint", "apply", "-f", str(path))[0] == 0

    def run(self, *args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = self.capsys.readouterr()
        return code, out, err

    def digest(self) -> str:
        con = sqlite3.connect(self.tmp / "relo.db")
        rows = []
        for (table,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY 1"
        ):
            rows.append((table, sorted(map(repr, con.execute(f'SELECT * FROM "{table}"')))))
        con.close()
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()

    def check(self, *args: str) -> int:
        before = self.digest()
        code, out, err = self.run(*args)
        assert "Traceback" not in err + out, (args, err)
        assert code in (0, 1, 2, 3, 4), (args, code, err)
        if code == 2:
            assert len(err.strip().splitlines()) == 1, (args, err)
            assert self.digest() == before, (args, err)
        return code


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> Iterator[Harness]:
    yield Harness(tmp_path, monkeypatch, capsys)
    reset_client()


# -- blueprints ------------------------------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False),
                    st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)
keys = st.sampled_from(["project", "environments", "resources", "name", "type", "executor",
                        "apply", "destroy", "refresh", "spec", "depends_on", "settings",
                        "overrides", "timeout", "options", "cwd", "max_parallel_releases",
                        "parallel_releases", "approval_required", "bogus"])


@st.composite
def mutated_blueprints(draw: st.DrawFn) -> object:
    doc = json.loads(json.dumps(GOOD))
    for _ in range(draw(st.integers(1, 4))):
        if not isinstance(doc, dict):
            break
        kind = draw(st.sampled_from(["set", "drop", "top", "resource", "env", "cycle"]))
        if kind == "top":
            doc[draw(keys)] = draw(json_values)
        elif kind == "drop" and doc:
            doc.pop(draw(st.sampled_from(sorted(doc))), None)
        elif kind == "resource" and isinstance(doc.get("resources"), list) and doc["resources"]:
            res = doc["resources"][draw(st.integers(0, len(doc["resources"]) - 1))]
            if isinstance(res, dict):
                res[draw(keys)] = draw(json_values)
        elif kind == "env" and isinstance(doc.get("environments"), list) and doc["environments"]:
            env = doc["environments"][draw(st.integers(0, len(doc["environments"]) - 1))]
            if isinstance(env, dict):
                env[draw(keys)] = draw(json_values)
        elif kind == "cycle" and isinstance(doc.get("resources"), list) and doc["resources"]:
            first = doc["resources"][0]
            if isinstance(first, dict):
                first["depends_on"] = ["service/web"]
        else:
            doc = draw(st.one_of(json_values, st.just(doc)))
    return doc


@settings(max_examples=FUZZ_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=mutated_blueprints(), raw=st.booleans(), text=st.text(max_size=40))
def test_fuzzed_blueprints_never_crash(harness: Harness, doc: object, raw: bool,
                                       text: str) -> None:
    path = harness.tmp / "fuzz.yaml"
    path.write_text(text if raw else yaml.safe_dump(doc), encoding="utf-8")
    harness.check("blueprint", "apply", "-f", str(path))


# -- command-line arguments -----------------------------------------------------------------
tokens = st.one_of(
    st.sampled_from(["-p", "-e", "-o", "shop", "staging", "prod", "nope", "json", "table",
                     "xml", "--type", "full", "selective", "launch", "destroy", "custom",
                     "--target", "service/web", "web", "database/orders", "service/x:zap",
                     "--force", "--limit", "0", "-1", "7", "999", "--max-parallel", "--parallel",
                     "on", "off", "maybe", "--approval", "--all-queued", "--reason", "--all",
                     "image=web:2", "a.b.c=1", "=x", "--comment", "$(touch /tmp/x)", "--every",
                     "5x", "0m", "15m", "--until", "2000-01-01T00:00:00Z", "--cron", "61 * * * *",
                     "--duration", "0m", "--allow", "--deny", "--fail-on-conflict",
                     "--allow-destroy", "--var", "A=1", "--arg", "x", "-n"]),
    st.text(max_size=10),
)
commands = st.sampled_from([
    ["release", "trigger"], ["release", "show"], ["release", "list"], ["release", "active"],
    ["release", "delete"], ["release", "approve"], ["release", "reject"],
    ["resource", "set"], ["resource", "list"], ["env", "settings"], ["env", "list"],
    ["env", "show"], ["env", "pause"], ["env", "resume"], ["env", "window", "add"],
    ["env", "window", "list"], ["env", "window", "remove"], ["lock", "list"], ["events"],
    ["schedule", "set"], ["schedule", "show"], ["diagnose"], ["blueprint", "apply"], ["bogus"],
])


@settings(max_examples=FUZZ_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(command=commands, args=st.lists(tokens, max_size=8))
def test_fuzzed_arguments_never_crash(harness: Harness, command: list[str],
                                      args: list[str]) -> None:
    if "\x00" in "".join(args):
        args = [a.replace("\x00", "") for a in args]
    harness.check(*command, *args)


def test_fuzzing_covers_bad_input(harness: Harness) -> None:
    """The harness itself sees exit 2 for bad input and 0 for good input."""
    assert harness.check("release", "list", "-p", "shop", "-e", "nope") == 2
    assert harness.check("release", "list", "-p", "shop", "-e", "staging") == 0

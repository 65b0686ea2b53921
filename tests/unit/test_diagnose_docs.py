"""README's CI pipeline and Troubleshooting sections stay true: every finding code has a row in the
troubleshooting table, and every ``relo`` command of the CI snippets parses (options and
arguments as the CLI defines them)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from release_orchestrator.cli import common
from release_orchestrator.cli.main import main
from release_orchestrator.policy.admission import Code
from release_orchestrator.policy.findings import Fact

DOC = Path(__file__).resolve().parents[2] / "README.md"


def _section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_every_finding_code_has_a_troubleshooting_row() -> None:
    table = [line for line in _section("Troubleshooting").splitlines() if line.startswith("| ")]
    # the second column: "`code` (what it names)"; the header row is the only other one
    rows = [line.split(" | ")[1] for line in table]
    assert rows[0] == "finding `code`"
    matches = [re.match(r"`([a-z_]+)`", row) for row in rows[1:]]
    assert all(matches), rows
    documented = {m.group(1) for m in matches if m}
    assert documented == {str(c) for c in Code} | {str(f) for f in Fact}


def _snippet_commands() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", _section("CI pipeline"), re.S)
    assert len(blocks) == 2  # GitHub Actions, GitLab CI
    out = []
    for block in blocks:
        for line in block.splitlines():
            found = re.search(r"(?:run:|-)\s+(relo .*)$", line)
            if found:
                out.append(found.group(1).split(" | ")[0])
    return out


class _Parsed(Exception):
    """The command line parsed and the command reached the client."""


class _Unreachable:
    def __getattr__(self, name: str) -> object:
        raise _Parsed(name)


@pytest.mark.parametrize("command", _snippet_commands())
def test_ci_snippet_commands_parse(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "_client", _Unreachable())
    argv = shlex.split(command.replace("${", "{"))[1:]
    with pytest.raises(_Parsed) as called:
        main(argv)
    assert str(called.value) in ("set_resource", "sync", "wait")


def test_the_snippets_use_set_sync_and_wait() -> None:
    commands = [shlex.split(c)[1:3] for c in _snippet_commands()]
    for step in (["resource", "set"], ["release", "sync"], ["release", "wait"]):
        assert commands.count(step) == 2

"""The ``relo`` command line: parses, calls the client, renders; exit codes in one place.

Exit codes (SPEC §6): 0 success; 1 the release/operation failed; 2 usage or bad input;
3 timed out; 4 state lock conflict.
"""

from __future__ import annotations

import sys

import typer

try:  # Typer >= 0.20 vendors its own copy of Click
    from typer._click import exceptions as click
except ImportError:  # pragma: no cover - older Typer on real Click
    from click import exceptions as click  # type: ignore[no-redef]

from . import config, diagnose, pauses, processes, releases, schedules, sync, web

app = typer.Typer(
    name="relo",
    help="relo — the release orchestrator: queued, paused, parallel and scheduled releases.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode=None,
)
app.add_typer(config.blueprint_app, name="blueprint")
app.add_typer(config.resource_app, name="resource")
app.add_typer(releases.app, name="release")
app.add_typer(config.env_app, name="env")
app.add_typer(config.lock_app, name="lock")
app.add_typer(processes.db_app, name="db")
app.command("events")(config.events)
app.command("worker")(processes.worker)
app.command("beat")(processes.beat)
app.command("flower")(processes.flower)
app.command("up")(processes.up)
for _module in (pauses, schedules, diagnose, sync, web):
    _register = getattr(_module, "register", None)
    if _register is not None:
        _register(app)


def _error(message: str, code: int) -> int:
    message = " ".join(message.split())  # one line, whatever the driver's message looked like
    sys.stderr.write(f"relo: error: {message}\n")
    sys.stderr.flush()
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point: run ``relo`` and return its exit code (never a traceback for our errors)."""
    from ..errors import ReloError

    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    try:
        result = command.main(args=args, prog_name="relo", standalone_mode=False)
    except ReloError as exc:
        return _error(exc.message, exc.exit_code)
    except click.NoArgsIsHelpError as exc:
        sys.stdout.write((exc.ctx.get_help() if exc.ctx else "") + "\n")
        return 0
    except click.UsageError as exc:
        where = f"{exc.ctx.command_path}: " if exc.ctx else ""
        return _error(f"{where}{exc.format_message()}", 2)
    except click.ClickException as exc:
        return _error(exc.format_message(), exc.exit_code or 1)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        return _error("aborted", 1)
    except KeyboardInterrupt:
        return _error("interrupted", 130)
    if isinstance(result, int):
        return result
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()

"""The CLI's plumbing: the context a command gets, how a failure ends (one message and an exit
code, never a bare traceback), and global options accepted after the subcommand too.

Like `engine.cli`, it imports only click and the standard library at start.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from engine.config import Project
    from engine.state import StateStore

log = logging.getLogger("cio_sync.cli")
EXIT_OK, EXIT_FAILED = 0, 1

_GLOBAL_VALUED = ("--project", "--log-format", "--metrics-file")
_GLOBAL_FLAG = re.compile(r"-v+|--verbose|-q|--quiet")


class Context:
    def __init__(self, project_dir: str | None, metrics_file: Path | None = None) -> None:
        self.project_dir = project_dir
        self.metrics_file = metrics_file
        self.stores: list[StateStore] = []

    def project(self, selected: Sequence[str] | None = None) -> Project:
        from engine import compose
        from engine.config import find_project_root

        return compose.load_project(find_project_root(self.project_dir), selected)

    def store(self, project: Project) -> StateStore:
        """The project's state store, opened (and migrated) once per command."""
        from engine.state import StateStore

        for store in self.stores:
            if store.url == project.state:
                return store
        store = StateStore(project.state)
        self.stores.append(store)
        store.migrate()
        return store

    def close(self) -> None:
        for store in self.stores:
            store.dispose()


def exit_with(code: int) -> NoReturn:
    sys.exit(code)


def run_then_exit(command: click.Command) -> NoReturn:
    """The `sync` executable: run the command line, then end the process without the
    interpreter's teardown of every module it loaded (SQLAlchemy, Arrow, the HTTP client...),
    which took 0.12-0.15 s after each command, 8% of an unchanged rerun of 1M people. What that
    teardown does that matters is done first: the logs and standard streams are flushed. While
    another thread still runs (none should by then), the interpreter ends as usual."""
    try:
        command.main()
    except SystemExit as done:
        code = done.code
    else:
        code = EXIT_OK
    if not isinstance(code, int):  # as the interpreter treats sys.exit(message)
        if code is not None:
            print(code, file=sys.stderr)
        code = EXIT_OK if code is None else EXIT_FAILED
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # its reader went away (a closed pipe): nothing to keep
            code = code or EXIT_FAILED
    if threading.active_count() == 1:
        os._exit(code)
    sys.exit(code)


def guarded(command: Callable[..., int]) -> Callable[..., None]:
    """Run a command body: a SyncError ends as its message and exit code, anything else as an
    engine defect (exit 1); a traceback only at -vv."""

    def wrapper(*args: Any, **kwargs: Any) -> None:
        from engine import errors, logs

        try:
            code = command(*args, **kwargs)
        except errors.SyncError as exc:
            extra = logs.event("error", kind=type(exc).__name__, hint=exc.hint)
            log.error("%s", exc.message or str(exc), extra=extra, exc_info=logs.tracebacks())
            exit_with(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:  # the reader went away (`sync plan x | head`): end quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            exit_with(EXIT_FAILED)
        except Exception as exc:  # a defect: say so, never a bare traceback
            extra = logs.event("error", kind="defect")
            log.error("%s", errors.engine_defect(exc), extra=extra, exc_info=logs.tracebacks())
            exit_with(EXIT_FAILED)
        exit_with(code)

    wrapper.__name__ = command.__name__
    wrapper.__doc__ = command.__doc__
    return wrapper


class Group(click.Group):
    """A group whose global options may also come after the subcommand (`sync list -v`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _hoisted(args))


def _hoisted(args: list[str]) -> list[str]:
    """`args` with the global options that follow the subcommand moved before it (not for
    `sync emulator`, whose arguments are its own, nor past `--`)."""
    command = _command_index(args)
    if command is None or args[command] == "emulator":
        return args
    front, rest, i = args[: command + 1], [], command + 1
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        width = 2 if arg in _GLOBAL_VALUED else 1
        if width == 2 or arg.split("=", 1)[0] in _GLOBAL_VALUED or _GLOBAL_FLAG.fullmatch(arg):
            front[:0] = args[i : i + width]
        else:
            rest.append(arg)
        i += width
    return front + rest


def _command_index(args: list[str]) -> int | None:
    """Where the subcommand stands: the first word that is not an option or an option's value."""
    i = 0
    while i < len(args):
        if args[i] in _GLOBAL_VALUED:
            i += 2
        elif args[i].startswith("-"):
            i += 1
        else:
            return i
    return None

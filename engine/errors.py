"""The exception tree of cio-sync, grouped by what the runtime does about each error.

    SyncError                      exit  status    root; carries the exit code the CLI returns
    ├── ConfigError                2     config    invalid configuration (every problem at once,
    │                                              with file and line)
    ├── UsageError                 2     config    invalid command-line usage
    │   └── SyncRetired            2     config    a run of a retiring or retired sync
    ├── SourceError                2     source    the source rejected the query or its settings
    │   │                                          (SQL errors, missing tables, permissions,
    │   │                                          an unknown dialect)
    │   └── SourceUnreachable      1     failed    the source database did not answer
    ├── StateStoreError            1     failed    the state store is unreachable, damaged, or
    │                                              written by a newer cio-sync
    ├── DestinationAuthError       4     auth      Customer.io rejected the credentials (401/403)
    ├── DestinationError           1     failed    the destination kept failing after retries, or
    │   │                                          answered nonsense
    │   └── RetriableError         1     failed    one attempt failed in a way worth retrying
    │                                              (429, 5xx, timeout, drop)
    ├── RecordRejected             6     rejected  one record refused (locally or by a 207/4xx)
    ├── DriftFound                 6     drift     delivered records read back missing or
    │                                              different (`verify`)
    ├── GuardTripped               3     guard     a safety guard stopped a run before sending
    └── LockHeld                   5     locked    another live run holds the sync's lock
        └── StateChanged           5     locked    another process changed the sync's state
                                                   first (a teardown or reset lost the race)

Each class carries its exit code and the status word a run that ends with it records in history.
`EXIT_PRECEDENCE` is the order in which a command that met several outcomes picks one (SPEC §3).
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_GUARD = 3
EXIT_AUTH = 4
EXIT_LOCKED = 5
EXIT_REJECTED = 6

EXIT_PRECEDENCE = (EXIT_CONFIG, EXIT_AUTH, EXIT_FAILED, EXIT_GUARD, EXIT_REJECTED, EXIT_LOCKED)


def combine_exit_codes(codes: list[int] | tuple[int, ...]) -> int:
    """The first code of `EXIT_PRECEDENCE` that occurs in `codes`, else 0."""
    present = set(codes)
    return next((code for code in EXIT_PRECEDENCE if code in present), EXIT_OK)


class SyncError(Exception):
    """An outcome the engine expected: its message says what happened, its hint what to do."""

    exit_code = EXIT_FAILED
    status = "failed"

    def __init__(self, message: str = "", hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


@dataclass(frozen=True)
class Problem:
    """One configuration problem: where it is and what to do about it."""

    file: str
    line: int | None
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: " if self.file else ""
        return f"{where}{self.message}" + (f" (hint: {self.hint})" if self.hint else "")


class ConfigError(SyncError):
    exit_code = EXIT_CONFIG
    status = "config"

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("", None, problems)]
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class UsageError(SyncError):
    exit_code = EXIT_CONFIG
    status = "config"


class SyncRetired(UsageError):
    """A run of a sync that was torn down, or whose teardown did not finish."""


class SourceError(SyncError):
    exit_code = EXIT_CONFIG
    status = "source"


class SourceUnreachable(SourceError):
    exit_code = EXIT_FAILED
    status = "failed"


class StateStoreError(SyncError):
    exit_code = EXIT_FAILED
    status = "failed"


def engine_defect(exc: BaseException) -> str:
    """The message for an exception no rule expected: a defect of the engine itself."""
    return (
        f"internal error: {type(exc).__name__}: {exc}. This is a defect of cio-sync, not of "
        "your project: rerun with -vv and report it to the project with the traceback"
    )


class DestinationAuthError(SyncError):
    exit_code = EXIT_AUTH
    status = "auth"


class DestinationError(SyncError):
    exit_code = EXIT_FAILED


class RetriableError(DestinationError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RecordRejected(SyncError):
    exit_code = EXIT_REJECTED
    status = "rejected"

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class DriftFound(SyncError):
    """Delivered records that the destination does not hold as delivered (`verify`)."""

    exit_code = EXIT_REJECTED
    status = "drift"


class GuardTripped(SyncError):
    exit_code = EXIT_GUARD
    status = "guard"


class LockHeld(SyncError):
    exit_code = EXIT_LOCKED
    status = "locked"


class StateChanged(LockHeld):
    """Another process changed the sync's state since this one read it (engine.lifecycle)."""

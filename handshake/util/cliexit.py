"""Exit codes and the one-line error report shared by every ``edgepair`` command."""

from __future__ import annotations

import sys

from handshake.errors import ConfigError, EdgepairError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def report(exc: Exception, prefix: str = "edgepair") -> int:
    """Say what went wrong on stderr (a config problem per line); return the exit code.

    A config problem is a usage error (2: fix the file); anything else is a failure (1).
    """
    if isinstance(exc, ConfigError):
        for problem in exc.problems:
            print(f"{prefix}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{prefix}: {exc}", file=sys.stderr)
    return EXIT_FAILED


def report_group(group: BaseExceptionGroup[BaseException]) -> int | None:
    """Report every error of a TaskGroup that failed; None when one of them is not ours.

    Daemons run side by side in a TaskGroup, so their errors come grouped: each is said
    on its own line, and the worst exit code wins. Anything else is a bug: re-raise it.
    """
    errors = _leaves(group)
    if not all(isinstance(exc, EdgepairError) for exc in errors):
        return None
    return max(report(exc) for exc in errors if isinstance(exc, EdgepairError))


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out

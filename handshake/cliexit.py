"""Exit codes and the one-line error report shared by every ``edgepair`` command."""

from __future__ import annotations

import sys

from handshake.errors import ConfigError

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

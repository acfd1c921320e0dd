"""``python -m handshake …`` is the ``edgepair`` command (tests and benchmarks use it)."""

import sys

from handshake.command import main

sys.exit(main())

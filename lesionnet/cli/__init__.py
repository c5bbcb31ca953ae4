"""The ``lesionnet_*`` commands: thin argparse wrappers; :mod:`lesionnet.cli.entry` says how each one ends.

Started as a console script (``lesionnet_train``, ...), a command may be interrupted while Python is still
importing torch and lesionnet (a second or two, before :func:`lesionnet.cli.entry.run_command` takes over
Ctrl-C): that ends it with one line and exit status 130, not with a traceback of the import. Imported as a
library (tests, notebooks), or started with SIGINT ignored (e.g. in the background of a script), this
package leaves the SIGINT handler alone.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

_COMMAND = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""


def _interrupted_while_starting(signum, frame) -> None:
    sys.stderr.write(f"{_COMMAND}: interrupted while starting; nothing was done.\n")
    sys.stderr.flush()
    os._exit(130)


if _COMMAND.startswith("lesionnet_") and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

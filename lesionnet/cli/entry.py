"""How every ``lesionnet_*`` command ends: a result, one clear error line, or an interrupt with the way on.

:func:`run_command` runs a command's body and turns what can go wrong into what a user can act on:

* an error (any exception) is written to stderr as ``<prog>: error: <file>: <problem> <fix>`` (argparse's
  form; the framework's exceptions carry the file and the fix in their message; a list of problems
  gets a line each), and the command exits with status 1. The Python traceback is shown only with
  ``-v``. An exception that lesionnet did not anticipate (a bug, or a library failing in an unforeseen
  way) is named by its type and asks for ``-v`` and a report;
* Ctrl-C (``KeyboardInterrupt``) writes ``<prog>: interrupted.`` and the command that continues the work (each
  command passes its own hint, e.g. the same command line with ``--c``), and exits with status 130,
  the shell's convention for SIGINT. (Depending on where a real SIGINT lands, CPython may then end the
  process by SIGINT itself, after the message; a shell shows 130 either way.) A library that Ctrl-C
  stopped half-way (seen: blosc2 interrupted while it was being imported) can then fail in its own exit
  handler; Python reports that with a traceback, which is shown only with ``-v``.

Worker processes of :func:`lesionnet.utils.parallel.run_jobs` ignore SIGINT, so Ctrl-C reaches only the
main process and prints no worker tracebacks.
"""
from __future__ import annotations

import shlex
import signal
import sys
import threading
import traceback
from typing import Callable, Sequence

from lesionnet.utils.errors import error_message
from lesionnet.utils.logging_setup import configure_logging

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
def command_line(prog: str, argv: Sequence[str] | None, add: Sequence[str] = (), drop: Sequence[str] = ()) -> str:
    """``prog`` and its arguments as a shell command line, without the flags in ``drop`` and with ``add``
    appended when not already there (e.g. a run started with ``--overwrite`` continues with ``--c``)."""
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a not in drop]
    args += [a for a in add if a not in args]
    return shlex.join([prog, *args])


def _ignore_unraisable(unraisable) -> None:
    """``sys.unraisablehook`` after Ctrl-C: Python's report of an exception in an exit handler (``Exception
    ignored in atexit callback`` and a traceback) is not written."""


def run_command(prog: str, body: Callable[[], int | None], verbose: bool = False,
                interrupted_hint: str | None = None) -> int:
    """Run ``body()`` (a command's work; returns its exit status, None meaning 0) after setting up logging.

    Args:
        prog: the command's name, the first word of its messages.
        body: the command's work, with its arguments already parsed.
        verbose: ``-v``: debug logging, and the traceback of an error.
        interrupted_hint: what to run to continue after Ctrl-C (e.g. the command line with ``--c``).

    Returns:
        the exit status: ``body``'s, 1 after an error, 130 after Ctrl-C.
    """
    configure_logging(verbose)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)   # Ctrl-C from here on: KeyboardInterrupt
    try:
        status = body()
    except KeyboardInterrupt:
        hint = f" To continue: {interrupted_hint}" if interrupted_hint else ""
        print(f"{prog}: interrupted.{hint}", file=sys.stderr)
        if not verbose:
            sys.unraisablehook = _ignore_unraisable     # the exit handlers of libraries Ctrl-C stopped half-way
        return EXIT_INTERRUPTED
    except SystemExit:
        raise
    except Exception as error:               # every error ends as one message; the traceback only with -v
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {error_message(error)}", file=sys.stderr)
        return EXIT_ERROR
    return 0 if status is None else int(status)


__all__ = ["run_command", "error_message", "command_line", "EXIT_ERROR", "EXIT_INTERRUPTED"]

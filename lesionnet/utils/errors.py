"""How an exception reads to a user: one line with the file, the problem and the fix (shared by every command
and by the workers of multi-process training, which send it to their launcher)."""
from __future__ import annotations

#: exception types whose message is written for users (the framework raises these with file and fix)
USER_FACING = (ValueError, LookupError, OSError, RuntimeError, FloatingPointError)


def error_message(error: BaseException) -> str:
    """One line (or a few, for a list of problems) that tells a user what went wrong."""
    if isinstance(error, KeyError) and error.args:
        text = str(error.args[0])                    # str(KeyError) would quote the message
    else:
        text = str(error).strip()
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{error.filename}: {text}"
    defined_here = type(error).__module__.startswith("lesionnet")
    if not text:
        text = type(error).__name__
    if not defined_here and not isinstance(error, USER_FACING):
        text = (f"unexpected {type(error).__name__}: {text}. This is a lesionnet bug or an unforeseen "
                "failure of a library; run the command again with -v and report the traceback.")
    return text


__all__ = ["USER_FACING", "error_message"]

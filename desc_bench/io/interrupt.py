"""SIGTERM as a clean interruption, for the command-line process only.

Python runs ``finally`` blocks and context-manager exits on KeyboardInterrupt (SIGINT) but not on
SIGTERM, whose default action kills the process at once: staging folders (see
:func:`desc_bench.io.atomic.staged_folder`) and ``.part`` files would stay behind. The CLI calls
:func:`terminate_as_interrupt` once at start-up; library code never installs signal handlers.
Whatever a SIGKILL leaves is removed at the next start by
:func:`desc_bench.io.atomic.remove_stale_staging`.
"""

from __future__ import annotations

import signal
import threading

EXIT_SIGTERM = 128 + signal.SIGTERM  # the shell's status for a process ended by SIGTERM


def _raise_exit(signum, frame):  # noqa: ARG001 (the signal-handler signature)
    raise SystemExit(EXIT_SIGTERM)


def terminate_as_interrupt() -> bool:
    """Make SIGTERM raise ``SystemExit(143)`` in the main thread, so that cleanups run.

    Returns False (and changes nothing) outside the main thread or when SIGTERM already has a
    handler other than the default (a host application's choice is kept).
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return False
    signal.signal(signal.SIGTERM, _raise_exit)
    return True

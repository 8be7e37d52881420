"""Ctrl-C during training stops at the next batch, not wherever the signal lands.

A KeyboardInterrupt raised at an arbitrary bytecode can land inside the
progress display while it holds its console lock; closing the display would
then wait on that lock. While training, the first SIGINT only asks to stop;
the loop checks between batches and stops there. A second SIGINT stops at
once, as usual. An ignored SIGINT (inherited by a background job) stays ignored.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StopRequest:
    """Whether Ctrl-C was pressed; :meth:`check` raises KeyboardInterrupt at a safe point if so."""

    def __init__(self) -> None:
        self.requested = False

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


@contextmanager
def stop_at_safe_points() -> Iterator[StopRequest]:
    """Defer SIGINT to :meth:`StopRequest.check` calls inside; outside the main thread, signals are left alone."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) in (
        signal.SIG_IGN,
        None,
    ):  # not ours to handle, or ignored on purpose (a background job)
        yield request
        return

    def ask(signum, frame) -> None:
        if request.requested:  # pressed twice: the user does not want to wait for the batch
            raise KeyboardInterrupt
        request.requested = True

    previous = signal.signal(signal.SIGINT, ask)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)
        request.check()  # a request made during the last steps still stops the run

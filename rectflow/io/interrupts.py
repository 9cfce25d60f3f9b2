"""SIGTERM / SIGINT as an exception at a step boundary, so a stage can save before it stops.

::

    with graceful_interrupts() as stop:
        for step in ...:
            train_one_step()
            if stop.requested:                    # in a distributed run: all-reduce it first
                save_snapshot(step)
                raise StageInterrupted(stop.requested, step, resume="rectflow train ... --resume")

``stop.check()`` raises ``StageInterrupted(signum)`` instead, for loops with nothing to save.
The first signal only sets ``stop.requested``; a second one raises at once wherever the main
thread is, so a stuck run can still be stopped. A request that no ``check()`` delivered is
raised when the block ends. The old handlers come back on exit. Outside the main thread no
handler can be installed and the block runs unguarded (``requested`` stays None).
"""
from __future__ import annotations

import contextlib
import signal
import threading

from ..errors import StageInterrupted

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupts:
    def __init__(self, active: bool):
        self.active = active
        self.requested: int | None = None   # the signal number of the first stop request
        self.delivered = False

    def check(self) -> None:
        """Raise StageInterrupted if a stop was requested."""
        if self.requested is not None:
            self.delivered = True
            raise StageInterrupted(self.requested)

    def _handle(self, signum, frame) -> None:
        if self.requested is None:
            self.requested = signum
            return
        self.delivered = True
        raise StageInterrupted(signum)


@contextlib.contextmanager
def graceful_interrupts():
    """Turn SIGTERM and SIGINT into StageInterrupted at the block's own check points."""
    if threading.current_thread() is not threading.main_thread():
        yield Interrupts(active=False)
        return
    stop = Interrupts(active=True)
    old = {sig: signal.signal(sig, stop._handle) for sig in SIGNALS}
    failed = False
    try:
        yield stop
    except BaseException:
        failed = True
        raise
    finally:
        for sig, handler in old.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if not failed and stop.requested is not None and not stop.delivered:
            raise StageInterrupted(stop.requested)

"""Hang watchdog: names the collective a rank has waited in for longer than `dist.timeout_s`.

A peer that is stopped (SIGSTOP, a debugger), swapping, or lost without closing its sockets leaves the
other ranks blocked in their next collective with no message. Each distributed engine method that
communicates is marked with @watched, and the loop wraps checkpoint saves (whose collectives run inside
torch.distributed.checkpoint) in `engine.watch`: entering writes (name, start time) to
`Watchdog.pending`, leaving puts the previous value back; nothing else happens on the training path. A
daemon thread
looks once a second and, past the timeout, prints one line naming the rank, the collective and the step,
hands it to `record` (the loop writes it into the run folder), then exits the process with
exit_codes.PEER_LOST. torch's own process-group timeout is set a minute
later (BACKSTOP_S) and catches what this cannot: a collective that never releases the GIL.
"""

import functools
import os
import sys
import threading
import time

from bip_dist import exit_codes

BACKSTOP_S = 60


class Watchdog:
    def __init__(self, rank, timeout_s, poll_s=1.0):
        self.rank, self.timeout_s = rank, timeout_s
        self.pending = None  # (collective, time.monotonic() at entry) while inside one
        self.step = None     # the last step this rank finished (engine.step_done)
        self.record = None   # called with the line before the process exits (engine.on_hang)
        self._closed = threading.Event()
        threading.Thread(target=self._watch, args=(min(poll_s, timeout_s / 4),), name="bip-hang-watchdog",
                         daemon=True).start()

    def _watch(self, poll_s):
        while not self._closed.wait(poll_s):
            pending = self.pending  # one read: the main thread replaces the tuple, never edits it
            if pending is not None and time.monotonic() - pending[1] > self.timeout_s:
                self._fire(*pending)

    def _fire(self, collective, since):
        where = f"after step {self.step}" if self.step is not None else "before the first step"
        line = (f"rank {self.rank}: no progress for {time.monotonic() - since:.0f} s in {collective} ({where}); "
                f"a peer rank is stopped or lost")
        print(line, file=sys.stderr, flush=True)
        try:
            if self.record is not None:
                self.record(line)
        except Exception:  # noqa: BLE001 (a full disk must not keep a hung process alive)
            pass
        os._exit(exit_codes.PEER_LOST)  # the main thread is blocked: no exception can reach it

    def waiting(self, collective):
        """Context manager: this rank waits in `collective` (on peers) until the block ends."""
        return _Waiting(self, collective)

    def close(self):
        self._closed.set()


class _Waiting:
    __slots__ = ("dog", "collective", "outer")

    def __init__(self, dog, collective):
        self.dog, self.collective = dog, collective

    def __enter__(self):
        self.outer, self.dog.pending = self.dog.pending, (self.collective, time.monotonic())

    def __exit__(self, *exc):
        self.dog.pending = self.outer


def watched(collective):
    """Decorate an engine method that communicates; `collective` is how the hang line names it."""
    def wrap(method):
        @functools.wraps(method)
        def timed(self, *args, **kwargs):
            with _Waiting(self.watchdog, collective):
                return method(self, *args, **kwargs)
        return timed
    return wrap

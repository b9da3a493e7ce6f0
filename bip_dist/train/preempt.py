"""Preemption requests: SIGTERM and SIGUSR1 (what SLURM and most schedulers send before a kill) only set a
flag here; the training loop reads it between steps (train/guards.py), so every rank finishes its step and
they checkpoint together.
"""

import signal

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
_received = []  # names of the signals caught, in order


def _catch(signum, frame):
    # Only record: the main thread may be inside a collective or a file write.
    _received.append(signal.Signals(signum).name)


def install():
    """Catch SIGTERM and SIGUSR1 from now on (main thread); returns the handlers they replace. Repeats are
    ignored too: under SLURM a signal may reach a worker both directly and through torchrun."""
    return {s: signal.signal(s, _catch) for s in SIGNALS}


def restore(previous):
    """Put back the handlers install() returned and forget any request (tests)."""
    for s, h in previous.items():
        signal.signal(s, h)
    _received.clear()


def requested():
    """The name of the first stop signal caught ('SIGTERM' / 'SIGUSR1'), or None."""
    return _received[0] if _received else None

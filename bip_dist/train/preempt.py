"""Stop requests: SIGTERM and SIGUSR1 (what SLURM and most schedulers send before a kill), SIGINT (Ctrl-C)
and SIGHUP (the terminal closed) only set a flag here; the training loop reads it between steps
(train/guards.py), so every rank finishes its step and they checkpoint together.

Ctrl-C is the user's own stop: it ends with exit_codes.INTERRUPTED (130, the shell's code for it), so a
wrapper that requeues preempted jobs (75) does not restart a run someone stopped on purpose. A closed
terminal is treated as a preemption: the run checkpoints and ends with 75, and output meant for that
terminal goes to /dev/null from then on (writing to a hung-up terminal fails, which would end the run
before its checkpoint); the run's log.txt and metrics.jsonl still get the line.
"""

import os
import signal

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT, signal.SIGHUP)
PREEMPT, INTERRUPT = 1, 2  # request codes; the ranks agree on the max: a Ctrl-C on any rank wins
_received = []  # names of the signals caught, in order
_terminal_fds = []  # stdout / stderr when install() found them on a terminal


def _catch(signum, frame):
    # Only record: the main thread may be inside a collective or a file write.
    _received.append(signal.Signals(signum).name)
    if signum == signal.SIGHUP:
        _detach_terminal()


def _detach_terminal():
    # Only the terminal's: a file or pipe (nohup, a job's log) still works. Known from install(), since a
    # hung-up terminal no longer answers isatty().
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in _terminal_fds:
        os.dup2(devnull, fd)
    os.close(devnull)


def install():
    """Catch the stop signals from now on (main thread); returns the handlers they replace. Repeats are
    ignored: under SLURM a signal may reach a worker both directly and through torchrun, and Ctrl-C under
    bip-launch reaches each worker from the terminal and again from torchrun."""
    _terminal_fds[:] = [fd for fd in (1, 2) if os.isatty(fd)]
    return {s: signal.signal(s, _catch) for s in SIGNALS}


def restore(previous):
    """Put back the handlers install() returned and forget any request (tests)."""
    for s, h in previous.items():
        signal.signal(s, h)
    _received.clear()


def requested():
    """The name of the first stop signal caught ('SIGTERM', 'SIGUSR1', 'SIGINT', 'SIGHUP'), or None."""
    return _received[0] if _received else None


def request_code(name=None):
    """The code of the stop signal `name` (default: the first one caught): 0 for none, INTERRUPT for a
    Ctrl-C (SIGINT), else PREEMPT."""
    name = name or requested()
    return 0 if name is None else INTERRUPT if name == "SIGINT" else PREEMPT

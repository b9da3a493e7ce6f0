"""torchrun's agent, run inside bip-launch, that ends in one line and the workers' own exit status.

torchrun itself turns any worker's non-zero exit (a preempted worker's 75 included) and any signal it
passes on into a 25-40-line traceback and exit status 1, which hides both what happened and whether a
rerun with --resume auto is the cure. Here the agent runs in this process (same pid, so the signals a
scheduler sends still reach it and are passed on as before), its failure exceptions are caught, and the
first worker's status is named and returned (bip_dist/exit_codes.py).
"""

import logging
import os
import signal
import sys

from bip_dist import exit_codes

MEANINGS = {
    exit_codes.BAD_INPUT: "bad input, named in its line above",
    exit_codes.DIVERGED: "diverged, see its line above",
    exit_codes.PEER_LOST: "a peer rank hung or was lost",
    exit_codes.PREEMPTED: "preempted; it wrote a checkpoint, continue with --resume auto",
    exit_codes.INTERRUPTED: "interrupted by Ctrl-C; it wrote a checkpoint, continue with --resume auto",
}


class _Replaced(logging.Filter):
    """Drops the log lines of torch's agent that bip-launch's own line replaces (a worker failed, a
    signal was passed on); the rest of its log stays."""
    REPLACED = ("failed (exitcode", "Received %s death signal", "Sending process %s closing signal")

    def filter(self, record):
        return not str(record.msg).startswith(self.REPLACED)


REPLACING_LOGGERS = ("torch.distributed.elastic.multiprocessing.api", "torch.distributed.elastic.agent.server.api")


def describe(status):
    """(what a worker's exit status means, the status bip-launch exits with): a worker that died of a
    signal (Popen's negative status) exits as a shell reports it, 128 + the signal number."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"killed by {name}", 128 - status
    return MEANINGS.get(status, "failed, see its output above"), status


def _agent_recording_statuses(statuses):
    """torch's LocalElasticAgent, noting each local worker's exit status (Popen's returncode) into
    `statuses` when it shuts the workers down: after a signal torchrun reports none of them."""
    from torch.distributed.elastic.agent.server.local_elastic_agent import LocalElasticAgent

    class Agent(LocalElasticAgent):
        def _shutdown(self, *args, **kwargs):
            super()._shutdown(*args, **kwargs)
            handlers = getattr(self._pcontext, "subprocess_handlers", None) or {}
            statuses.update({r: h.proc.returncode for r, h in handlers.items() if h.proc.returncode is not None})
    return Agent


def run(torchrun_args):
    """torchrun `torchrun_args` (what follows `python -m torch.distributed.run`) in this process; returns
    the exit status: 0, or that of the first worker that stopped, after one line on stderr naming it."""
    import torch.distributed.launcher.api as launcher_api
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run as torchrun
    # torchrun dies of SIGUSR1 (SLURM's usual early warning) and leaves its workers running; let it pass
    # SIGUSR1 on like SIGTERM, so the workers checkpoint and stop (docs/faults.md, "Preemption").
    os.environ.setdefault("PET_SIGNALS_TO_HANDLE", "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1")
    statuses = {}
    for name in REPLACING_LOGGERS:
        logging.getLogger(name).addFilter(_Replaced())
    launcher_api.LocalElasticAgent = _agent_recording_statuses(statuses)  # launch_agent looks it up there
    try:
        torchrun(parse_args(torchrun_args))
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        what, code = describe(failure.exitcode)
        _say(f"worker rank {rank} stopped with exit status {failure.exitcode}: {what}")
        return code
    except SignalException as e:
        failed = sorted((r, s) for r, s in statuses.items() if s)
        if not failed:  # the workers had finished (or none had started)
            _say(f"{e.sigval.name} received; passed on to the workers, which "
                 + ("had all finished" if statuses else "had not started"))
            return 0 if statuses else 128 + e.sigval
        rank, status = failed[0]
        what, code = describe(status)
        _say(f"{e.sigval.name} received and passed on to the workers; local worker {rank} stopped with exit "
             f"status {status}: {what}")
        return code
    return 0


def _say(line):
    try:
        print(f"bip-launch: {line}", file=sys.stderr, flush=True)
    except OSError:  # the terminal was closed (SIGHUP): the workers' records in the run folder remain
        pass

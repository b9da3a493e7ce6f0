"""The exit statuses of bip-train (launcher.worker), one per way a run stops on purpose.

They follow BSD sysexits.h where one fits, so schedulers and scripts can tell "retry" from "fix first";
docs/faults.md lists them for users.
"""

BAD_INPUT = 2    # a config, data or checkpoint problem, named in one line: fix it, then rerun
DIVERGED = 65    # EX_DATAERR: a loss, weight or score became nan / inf; nothing non-finite was written
PEER_LOST = 69   # EX_UNAVAILABLE: a collective waited longer than dist.timeout_s (a rank stopped or lost)
PREEMPTED = 75   # EX_TEMPFAIL: SIGTERM / SIGUSR1 / SIGHUP; a checkpoint was written, rerun with --resume auto
INTERRUPTED = 130  # 128 + SIGINT, the shell's code for Ctrl-C: a checkpoint was written, as for PREEMPTED

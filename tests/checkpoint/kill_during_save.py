"""Subprocess for test_atomic: a BiP run that SIGKILLs itself inside its Nth checkpoint save, after every
shard is on disk and before the folder is renamed (the last moment a crash can tear a save).

usage: python -m tests.checkpoint.kill_during_save OUT_DIR N   (PYTHONPATH: the repository root)
"""

import os
import signal
import sys

from bip_dist.checkpoint.layout import Layout
from tests.helpers import models, runs


def main(out, nth):
    calls = {"n": 0}
    publish = Layout.publish

    def dying_publish(self, tmp, name):
        calls["n"] += 1
        if calls["n"] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return publish(self, tmp, name)

    Layout.publish = dying_publish
    with models.registered():
        runs.run(runs.make_cfg(out, "bip"))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))

"""Subprocess for test_atomic: a BiP run that SIGKILLs itself inside its Nth checkpoint save, after every
shard is on disk and before the folder is renamed (the last moment a crash can tear a save)."""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(__file__))
import ckpt_helpers as H  # noqa: E402

from bip_dist.checkpoint.layout import Layout  # noqa: E402

out, nth = sys.argv[1], int(sys.argv[2])
calls = {"n": 0}
publish = Layout.publish


def dying_publish(self, tmp, name):
    calls["n"] += 1
    if calls["n"] == nth:
        os.kill(os.getpid(), signal.SIGKILL)
    return publish(self, tmp, name)


Layout.publish = dying_publish
H.run(H.make_cfg(out, "bip"))

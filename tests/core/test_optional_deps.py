"""Training on, and preparing, in-memory data needs neither lmdb nor FFCV installed (a GPU box may have
neither)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('lmdb', 'ffcv'):
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Block())
import bip_dist.train.loop, launcher.worker, launcher.demo, bench.gpu_check, data_prep.cli
try:
    import lmdb
except ImportError:
    print('imports ok; lmdb blocked')
"""


def test_trainer_imports_without_lmdb_or_ffcv():
    out = subprocess.run([sys.executable, "-c", BLOCK], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "imports ok; lmdb blocked"

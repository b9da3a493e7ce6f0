"""make_engine keeps freed host memory mapped on the CPU: training steps stop re-faulting their pages."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Page faults per forward/backward of ResNet-20s after an engine is made, in a fresh process (the malloc
# settings are process-wide and cannot be undone).
PROBE = """
import resource, torch, torch.nn.functional as F
from bip_dist.config import load_config
from bip_dist.engine import make_engine
from bip_dist.models import build_model
make_engine(load_config(None, []))
torch.set_num_threads(1)
m = build_model("resnet20s", 10)
x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
def step():
    m.zero_grad()
    F.cross_entropy(m(x), y).backward()
for _ in range(3):
    step()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 4)
"""


def _faults_per_step(keep):
    env = {**os.environ, "PYTHONPATH": ROOT, "CUDA_VISIBLE_DEVICES": "", "BIP_KEEP_HOST_MEMORY": keep}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    return float(out.split()[-1])


def test_engine_keeps_host_memory_mapped():
    glibc_default, kept = _faults_per_step("0"), _faults_per_step("1")
    assert glibc_default > 2000, glibc_default  # activations and gradients re-faulted every step
    assert kept < glibc_default / 5, (kept, glibc_default)

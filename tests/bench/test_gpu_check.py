"""`make gpu-check` in its tiny CPU mode: every part runs (or says why not), so the script cannot rot."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_gpu_check_tiny_runs_every_part(tmp_path):
    out = tmp_path / "gpu.json"
    r = subprocess.run([sys.executable, "bench/gpu_check.py", "--tiny", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = json.loads(out.read_text())
    parts = res["parts"]
    assert res["meta"]["mode"] == "tiny"
    for name in ("equal", "bf16", "steps", "mask", "torchvision"):
        assert parts[name]["status"] == "ok", (name, parts[name]["summary"])
    assert parts["equal"]["mask_entries_differing"] == 0 and parts["equal"]["max_abs_score_diff"] == 0.0
    assert parts["bf16"]["entries_moved_bf16"] > 0
    methods = {(row["method"], row["backend"]) for row in parts["steps"]["rows"]}
    assert {("dense", "ddp"), ("hydra", "ddp"), ("bip_fused", "ddp"), ("bip_3pass", "ddp"),
            ("bip_first_order", "ddp")} <= methods
    assert parts["steps"]["ddp_grad_stride_warning"] is False
    assert parts["mask"]["ms"]["refresh_mask"] > 0 and parts["torchvision"]["median_s"] > 0
    # Parts that need optional packages either ran or name what is missing; the table lists every part.
    assert parts["train"]["status"] in ("ok", "skipped") and parts["demo"]["status"] == "skipped"
    if parts["train"]["status"] == "ok":
        assert parts["train"]["lmdb"]["images_per_s"] > 0 and 0 <= parts["train"]["lmdb"]["data_wait_share"] < 1
    else:
        assert "not installed" in parts["train"]["summary"]
    for name in parts:
        assert f"\n{name} " in r.stdout

"""Readers of what a run leaves: its final state, metrics records, checkpoints and error output."""

import json
import os
import time

import torch


def final_state(run_dir):
    """Model, both optimizers and the step count from final.pt."""
    from bip_dist.checkpoint.io import load_checkpoint
    ck = load_checkpoint(os.path.join(run_dir, "final.pt"))
    return {"model": ck["model"], "weight_opt": ck["weight_opt"].get("state", {}),  # {} under DeepSpeed
            "score_opt": ck["score_opt"].get("momentum_buffer"), "step": ck["state"]["step"]}


def assert_same(a, b):
    """Bitwise equality of two final_state dicts."""
    assert a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for i in a["weight_opt"]:
        assert torch.equal(a["weight_opt"][i]["momentum_buffer"], b["weight_opt"][i]["momentum_buffer"]), i
    if a["score_opt"] is not None:
        assert torch.equal(a["score_opt"], b["score_opt"])


def strict_records(path):
    """The JSON lines of `path` as dicts; NaN / Infinity (not JSON) fail the parse."""
    def refuse(token):
        raise ValueError(f"{path}: {token} is not JSON")
    with open(path) as f:
        return [json.loads(line, parse_constant=refuse) for line in f]


def wait_for_step(out_dir, step, running, timeout=60):
    """Block until the run under `out_dir` has logged training step `step`; returns its run folder.
    `running()` says whether the process training it is still alive."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert running(), f"the run under {out_dir} ended before step {step}"
        for log in out_dir.rglob("metrics.jsonl"):
            if any(r["kind"] == "train" and r["step"] >= step for r in strict_records(log)):
                return log.parent
        time.sleep(0.1)
    raise TimeoutError(f"no step {step} logged under {out_dir} in {timeout} s")


def assert_finite_checkpoints(run_dir):
    """Every checkpoint folder and final.pt under `run_dir` holds only finite floating-point tensors."""
    from bip_dist.checkpoint.consolidate import consolidate
    for ck in list(run_dir.glob("checkpoints/step_*")) + list(run_dir.glob("final.pt")):
        for k, v in consolidate(ck).items():
            assert not v.is_floating_point() or torch.isfinite(v).all(), (ck, k)


def error_lines(stderr):
    """What a run printed on stderr besides progress: its non-empty lines without progress bars (the last
    update of each tqdm line), per-epoch lines, warnings and the indented source line under a warning."""
    lines = [ln.rsplit("\r", 1)[-1] for ln in stderr.splitlines()]
    lines = [ln for ln in lines if ln.strip() and "it/s]" not in ln and "img/s]" not in ln
             and not ln.startswith("[epoch ")]
    return [ln for i, ln in enumerate(lines)
            if "Warning" not in ln and not (i and "Warning" in lines[i - 1] and ln[:1].isspace())]

"""`bip-launch`: build (and run) the torchrun command for one node or many, or from inside a SLURM job.

    bip-launch --config configs/cifar10/bip.yaml --nproc-per-node 4 [--set key=value ...]
    bip-launch --config ... --nnodes 2 --nproc-per-node 8 --rdzv-endpoint head:29500   (run on every node)
    bip-launch --config ... --slurm                    (inside `srun --ntasks-per-node=1`, see slurm_example.sbatch)
    bip-launch ... --dry-run                           (print the command instead of running it)

Arguments it does not know (--set, --resume, --overwrite, --print-config) go to launcher.worker unchanged.
The worker's engine picks nccl on GPU and gloo on CPU by itself, so the command is the same on both.
torchrun's agent runs in this process (launcher/torchrun.py): when a worker stops, one line names it and
bip-launch exits with that worker's status (75 preempted, 130 Ctrl-C, ...), not torchrun's traceback and 1.
"""

import argparse
import os
import shlex
import subprocess
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bip-launch", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("--config", required=True, help="experiment YAML, passed to launcher.worker")
    p.add_argument("--nproc-per-node", default="auto",
                   help="processes per node; auto = number of visible GPUs, 1 on a CPU-only machine")
    p.add_argument("--nnodes", type=int, default=1, help="number of nodes (>1: c10d rendezvous)")
    p.add_argument("--rdzv-endpoint", default="", help="HOST:PORT of the rendezvous (multi-node; any node)")
    p.add_argument("--rdzv-id", default="bip", help="job id shared by all nodes of one run")
    p.add_argument("--backend", choices=("ddp", "deepspeed"), default=None,
                   help="shorthand for --set dist.backend=VALUE")
    p.add_argument("--slurm", action="store_true",
                   help="take nnodes, rendezvous host and job id from the SLURM job environment")
    p.add_argument("--max-restarts", type=int, default=0,
                   help="elastic restarts after a lost worker; > 0 also resumes from the newest checkpoint")
    p.add_argument("--dry-run", action="store_true", help="print the command and exit")
    return p.parse_known_args(argv)


def local_nproc():
    """Visible GPUs, else 1 (one CPU process per node is the useful default: torch already uses all cores)."""
    try:
        import torch
        return max(1, torch.cuda.device_count())
    except ImportError:
        return 1


def slurm_settings(environ=None):
    """nnodes, rendezvous endpoint and id from the SLURM variables of the current job."""
    e = os.environ if environ is None else environ
    nodes = e.get("SLURM_JOB_NODELIST") or e.get("SLURM_NODELIST")
    if not nodes:
        raise SystemExit("bip-launch: --slurm needs SLURM_JOB_NODELIST (run it inside an sbatch/srun job)")
    head = e.get("BIP_RDZV_HOST") or subprocess.run(["scontrol", "show", "hostnames", nodes], check=True,
                                                     capture_output=True, text=True).stdout.split()[0]
    port = e.get("BIP_RDZV_PORT", "29500")
    return int(e.get("SLURM_NNODES", e.get("SLURM_JOB_NUM_NODES", "1"))), f"{head}:{port}", \
        e.get("SLURM_JOB_ID", "bip")


def build_command(args, worker_args, python=sys.executable):
    """The torchrun command line (as `python -m torch.distributed.run`, the same program) as a list."""
    from launcher.stage import torchrun_command
    nproc = local_nproc() if args.nproc_per_node == "auto" else int(args.nproc_per_node)
    nnodes, endpoint, rdzv_id = args.nnodes, args.rdzv_endpoint, args.rdzv_id
    if args.slurm:
        nnodes, endpoint, rdzv_id = slurm_settings()
    worker = ["--config", args.config]
    if args.backend:
        worker += ["--set", f"dist.backend={args.backend}"]
    if args.max_restarts and "--resume" not in worker_args:
        worker += ["--resume", "auto"]  # a restarted attempt must continue, not start over
    try:
        return torchrun_command(worker + list(worker_args), nproc, nnodes, endpoint, rdzv_id, args.max_restarts,
                                python=python)
    except ValueError as e:
        raise SystemExit(f"bip-launch: {e}") from None


def main(argv=None):
    args, worker_args = parse_args(argv)
    cmd = build_command(args, worker_args)
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    sys.stdout.flush()
    # torch 2.14: restarted workers sharing the agent's TCP store can read the dead attempt's gloo
    # addresses and hang in init_process_group (pytorch/pytorch#135712); a fresh store per attempt avoids it.
    os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    from launcher import torchrun
    return torchrun.run(cmd[3:])  # cmd = python -m torch.distributed.run ARGS; run in this process


if __name__ == "__main__":
    sys.exit(main())

"""Multi-process engine: torch DDP for the theta pass, our bucketed reducer for the score pass.

Why two mechanisms: DDP registers a fixed parameter set and expects every forward through it to be
followed by a backward over that set. BiP's score pass differentiates a different set (scores, and for
the paper IG the prunable weights) at a different point, so it runs on the unwrapped module and its
gradients are averaged by `ScoreGradReducer` on the flat score-gradient buffer. Scores and masks are
excluded from DDP entirely: masks are recomputed identically on every rank from identical scores.
First-order BiP (train/first_order_step.py) has one pass for both levels: it runs through DDP, whose
hooks reduce the weight gradients while the reducer's hooks reduce the score gradients (`backward_both`).

BatchNorm: by default no per-forward buffer broadcast (each rank keeps running statistics of its own
shard; rank 0's are what checkpoints save); `dist.sync_bn: true` converts BatchNorm to SyncBatchNorm
(GPU only: batch statistics over the global batch).
"""

import inspect
import os
import socket
import time
from datetime import timedelta

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from torch.nn.parallel import DistributedDataParallel as DDP

from bip_dist.engine.dist_env import DistEnv
from bip_dist.engine.local import LocalEngine
from bip_dist.engine.score_reducer import ScoreGradReducer
from bip_dist.engine.watchdog import BACKSTOP_S, Watchdog, watched

_BROADCAST_BUCKET = 64 * 2 ** 20
_DDP_ARGS = inspect.signature(DDP.__init__).parameters


def init_process_group(env, timeout_s):
    """Join the default process group once (torchrun's MASTER_ADDR/PORT via env://). torch's timeout
    backs up the engine's hang watchdog (`dist.timeout_s`), which fires first with a clearer line."""
    if not dist.is_initialized():
        if env.world_size == 1 and "MASTER_ADDR" not in os.environ:
            # `dist.backend: deepspeed` in a plain single process: a private one-rank group.
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
        if env.device().startswith("cuda"):
            torch.cuda.set_device(torch.device(env.device()))
        dist.init_process_group(env.backend(), rank=env.rank, world_size=env.world_size,
                                timeout=timedelta(seconds=timeout_s + BACKSTOP_S))


def free_port():
    """A TCP port on 127.0.0.1 that is free now (for a local rendezvous: one-rank groups, benchmarks, tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nbytes(tensors):
    return sum(t.numel() * t.element_size() for t in tensors)


class _Comm:
    """Adds a block's wall time, and the size of the tensors passed to `sent`, to the engine's counters."""

    def __init__(self, engine):
        self.engine = engine

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def sent(self, *tensors):
        self.engine.comm_bytes += nbytes(tensors)

    def __exit__(self, *exc):
        self.engine.comm_seconds += time.perf_counter() - self.t0


def score_names(model):
    """Fully qualified names of score parameters and mask buffers (excluded from DDP)."""
    names = [n for n, _ in model.named_parameters() if n.endswith("scores")]
    return names + [n for n, _ in model.named_buffers() if n.endswith("mask")]


class DDPEngine(LocalEngine):
    """One process per device; rank and world size come from `env` (default: DistEnv.from_environ())."""

    def __init__(self, dist, micro_batch, env=None):
        env = env or DistEnv.from_environ()
        super().__init__(dist, micro_batch, env)
        self.env = env
        self.rank, self.world_size, self.is_main = env.rank, env.world_size, env.is_main
        init_process_group(env, dist.timeout_s)
        self.watchdog = Watchdog(env.rank, dist.timeout_s)
        self.reducer = None

    # --- setup -----------------------------------------------------------------------------------
    def prepare(self, model, store, weight_opt):
        """Wrap `model` in DDP (scores/masks ignored) and hook the score reducer onto `store`."""
        if self.dist_cfg.sync_bn:
            if self.device.type != "cuda":
                raise ValueError("dist.sync_bn needs GPUs (SyncBatchNorm has no CPU kernel); set it false")
            # Converts in place below the root and reuses the Parameter objects, so optimizers stay valid.
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        super().prepare(model, store, weight_opt)
        self._wrap_theta(model)
        if store is not None and self.world_size > 1:
            self.reducer = ScoreGradReducer(store, self.world_size, self.dist_cfg.bucket_mb,
                                            self.dist_cfg.score_grad_dtype)

    def _wrap_theta(self, model):
        if self.world_size == 1:
            # One rank averages nothing: no DDP (its buckets, hooks and copies would only cost), the same
            # step as DDP's at world size 1.
            self.theta_params, self.theta_bytes = [], 0
            return
        DDP._set_params_and_buffers_to_ignore_for_model(model, score_names(model))
        ids = [self.device.index] if self.device.type == "cuda" else None
        # No per-forward buffer broadcast (BatchNorm statistics stay rank-local); the flag was renamed in
        # torch 2.14 (forward_sync_buffers), older versions only know broadcast_buffers.
        no_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in _DDP_ARGS else \
            {"broadcast_buffers": False}
        ignored = set(score_names(model))
        # Weight gradients live in DDP's buckets from the start (zero_theta keeps them there): no copy into
        # a bucket after each backward, and no bucket-layout check for cuDNN to fail on the 1x1
        # convolutions of a channels_last model.
        self.theta_params = [p for n, p in model.named_parameters() if n not in ignored and p.requires_grad]
        self.zero_theta()
        self.theta_model = DDP(model, device_ids=ids, find_unused_parameters=False, gradient_as_bucket_view=True,
                               bucket_cap_mb=self.dist_cfg.bucket_mb, **no_sync)
        # DDP all-reduces the gradient of every parameter it holds once per theta backward.
        self.theta_bytes = nbytes(self.theta_params)

    def _state_tensors(self):
        skip = set(score_names(self.model))
        params = [p.data for n, p in self.model.named_parameters() if n not in skip]
        return params + [b for n, b in self.model.named_buffers() if n not in skip]

    @watched("the start-state broadcast")
    @torch.no_grad()
    def broadcast_state(self):
        """Every rank takes rank 0's weights and buffers (coalesced), scores and mask (one call each)."""
        with _Comm(self) as comm:
            tensors = self._state_tensors()
            dist._broadcast_coalesced(dist.group.WORLD, tensors, _BROADCAST_BUCKET, 0)
            comm.sent(*tensors)
            if self.store is not None:
                for flat in (self.store.scores, self.store.mask):
                    dist.broadcast(flat, 0)
                    comm.sent(flat)

    @watched("the BatchNorm statistics sync")
    @torch.no_grad()
    def sync_bn_stats(self, mode):
        """Average (or take rank 0's) BatchNorm running mean/var in one collective: DDP leaves them
        rank-local (no per-forward buffer broadcast), so ranks drift apart within an epoch."""
        if mode == "local" or self.world_size == 1:
            return
        bufs = [b for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                for b in (m.running_mean, m.running_var) if b is not None]
        if not bufs:
            return
        with _Comm(self) as comm:
            flat = _flatten_dense_tensors(bufs)
            if mode == "reduce":
                dist.all_reduce(flat)
                flat /= self.world_size
            else:
                dist.broadcast(flat, 0)
            for b, v in zip(bufs, _unflatten_dense_tensors(flat, bufs)):
                b.copy_(v)
            comm.sent(flat)

    # --- passes ----------------------------------------------------------------------------------
    def zero_theta(self):
        # Zeros in place, not None: a None gradient would leave its bucket and be copied back into it.
        # Every weight DDP holds gets a gradient in each theta pass, so SGD sees the same as with None.
        # A gradient the score pass replaced (three-pass, paper IG) becomes zeros in the parameter's own
        # strides: DDP copies it into its bucket once, and never meets a layout it warns about.
        self.weight_opt.zero_grad(set_to_none=False)
        for p in self.theta_params:
            if p.grad is None or p.grad.stride() != p.stride():
                p.grad = torch.zeros_like(p)

    @watched("the weight-gradient all-reduce")
    def backward_theta(self, loss):
        loss.backward()  # DDP's reducer all-reduces weight gradients bucket by bucket during backward
        self.comm_bytes += self.theta_bytes

    @watched("the score-gradient all-reduce")
    def backward_scores(self, loss):
        """Backward on the unwrapped module; score-gradient buckets are reduced as they fill."""
        self._reducing_scores(loss, torch.Tensor.backward)

    @watched("the weight- and score-gradient all-reduces")
    def backward_both(self, loss, keep_weight_grads=False):
        """The first-order pass: the theta backward (DDP's hooks all-reduce the weight gradients) with the
        score reducer's hooks live, so both reductions overlap the one backward. Both issue collectives on
        the default group from autograd hooks, in the backward's order, which every rank shares."""
        self._reducing_scores(loss, self.backward_theta)

    def _reducing_scores(self, loss, backward):
        """Run `backward(loss)` while the score reducer averages `store.grad`; counts its bytes and time."""
        if self.reducer is None:
            backward(loss)
            return
        b0, s0 = self.reducer.bytes, self.reducer.seconds
        self.reducer.backward(loss, backward)
        self.comm_bytes += self.reducer.bytes - b0
        self.comm_seconds += self.reducer.seconds - s0

    # --- collectives -----------------------------------------------------------------------------
    @watched("the implicit-gradient all-reduce")
    @torch.no_grad()
    def reduce_mean_(self, tensors):
        """Average tensors in place with one all-reduce over their concatenation."""
        tensors = [t for t in tensors if t is not None]
        if not tensors or self.world_size == 1:
            return
        with _Comm(self) as comm:
            flat = _flatten_dense_tensors(tensors)
            dist.all_reduce(flat)
            flat.div_(self.world_size)
            torch._foreach_copy_(tensors, _unflatten_dense_tensors(flat, tensors))
            comm.sent(flat)

    @watched("the evaluation all-reduce")
    def all_reduce_sum(self, tensor):
        """Sum across ranks (returns the same tensor, reduced in place)."""
        with _Comm(self) as comm:
            dist.all_reduce(tensor)
            comm.sent(tensor)
        return tensor

    @watched("the stop-flag all-reduce")
    def agree(self, flags):
        """Element-wise max of `flags` over ranks, in place: the ranks' common decision to stop
        (train/guards.py; a few numbers at logging and checkpoint steps)."""
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        return flags

    def step_done(self, step):
        self.watchdog.step = step

    def on_hang(self, record):
        self.watchdog.record = record

    @watched("the mask-hash all-gather")
    def check_masks(self):
        """With `dist.check_masks`: all-gather the mask hash and raise naming the ranks that differ."""
        if not self.dist_cfg.check_masks or self.store is None:
            return
        mine = torch.tensor([self.store.mask_hash()], dtype=torch.float64, device=self.device)
        hashes = [torch.zeros_like(mine) for _ in range(self.world_size)]
        dist.all_gather(hashes, mine)
        differ = [r for r, h in enumerate(hashes) if not torch.equal(h, hashes[0])]
        if differ:
            raise RuntimeError(f"mask differs from rank 0's on ranks {differ} "
                               f"(hashes {[float(h) for h in hashes]})")

    def watch(self, what):
        """Context manager: a block that waits on the other ranks (a checkpoint save), for the watchdog."""
        return self.watchdog.waiting(what)

    @watched("a barrier")
    def barrier(self):
        if dist.is_initialized():
            dist.barrier()

    def unwrap(self):
        return self.model

    def shutdown(self):
        """Stop the watchdog, remove hooks and leave the process group (safe to call twice)."""
        self.watchdog.close()
        if self.reducer is not None:
            self.reducer.remove()
            self.reducer = None
        if dist.is_initialized():
            dist.destroy_process_group()

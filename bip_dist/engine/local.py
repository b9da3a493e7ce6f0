"""Single-process engine: the contract every distributed engine implements, with no communication."""

import contextlib
import time

import torch

from bip_dist.config.schema import DistConfig

_NOTHING_TO_WATCH = contextlib.nullcontext()  # reusable


class LocalEngine:
    """One process, one device. Distributed engines subclass this and override the marked hooks.

    Every engine is built as Engine(dist, micro_batch, env): `dist` is the config's dist section,
    `micro_batch` the per-rank batch (data.batch_size), `env` the process's DistEnv (None: here one process
    on the CPU; the distributed engines read it from the environment)."""

    rank = 0
    world_size = 1
    is_main = True

    def __init__(self, dist=DistConfig(), micro_batch=0, env=None):
        self.dist_cfg, self.micro_batch = dist, micro_batch
        self.device = torch.device(env.device() if env is not None else "cpu")
        self.precision = dist.precision
        self.channels_last = dist.channels_last
        self.comm_seconds = 0.0
        self.comm_bytes = 0
        # A step MetricsLog records: timed exactly (see timed()) and its diagnostics (the score-gradient
        # norm) computed. The training loop sets it per step; outside the loop every step is one.
        self.logged_step = True

    # --- setup -----------------------------------------------------------------------------------
    def prepare(self, model, store, weight_opt):
        """Wrap the model for the theta pass (DDP / DeepSpeed in subclasses). `store` may be None."""
        self.model, self.store, self.weight_opt = model, store, weight_opt
        self.theta_model = model

    def broadcast_state(self):
        """Make every rank start from rank 0's weights and scores (no-op here)."""

    # --- passes ----------------------------------------------------------------------------------
    def autocast(self):
        if self.precision == "bf16" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_device(self, x, y):
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=True)

    def forward_theta(self, x):
        """Forward for the pass whose weight gradients are reduced by the engine."""
        return self.theta_model(x)

    def forward_scores(self, x):
        """Forward for the score pass (never through DDP: its parameter set differs)."""
        return self.model(x)

    def forward_both(self, x):
        """Forward of the first-order BiP pass, whose one backward feeds both levels: through the theta
        wrapper, so its weight gradients are reduced as the theta pass's are."""
        return self.theta_model(x)

    def backward_both(self, loss, keep_weight_grads=False):
        """Backward of forward_both; on return the weights' `.grad` and `store.grad` hold the globally
        averaged gradients. `keep_weight_grads`: the caller reads the weights' `.grad` afterwards."""
        loss.backward()

    def backward_theta(self, loss):
        loss.backward()

    def step_theta(self):
        self.weight_opt.step()

    def zero_theta(self):
        self.weight_opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def assign_weights(self, weights, values):
        """weights[i] <- values[i] in place, and in any copy the engine's optimizer keeps of them
        (prune.score_init: shared writes the score step into the weights)."""
        torch._foreach_copy_(weights, [v.detach() for v in values])

    def backward_scores(self, loss):
        """Backward of the score pass; on return `store.grad` holds the globally averaged gradient."""
        loss.backward()

    def reduce_mean_(self, tensors):
        """All-reduce (mean) a list of tensors in place; used for the paper IG's theta gradients."""

    def all_reduce_sum(self, tensor):
        """Sum a tensor across ranks (evaluation counts)."""
        return tensor

    def sync_bn_stats(self, mode):
        """Make BatchNorm running statistics agree across ranks ('reduce' | 'broadcast' | 'local')."""

    def agree(self, flags):
        """Element-wise max of `flags` over ranks: the ranks' common decision to stop (train/guards.py)."""
        return flags

    def step_done(self, step):
        """The loop finished step `step` (what the hang watchdog of the distributed engines reports)."""

    def on_hang(self, record):
        """Have record(line) called with the hang watchdog's line before it ends the process (replacing any
        earlier one; distributed engines only: a single process never waits on a peer)."""

    def check_masks(self):
        """Debug: raise if ranks disagree on the mask."""

    def barrier(self):
        pass

    def watch(self, what):
        """Context manager around a block that waits on the other ranks (for the hang watchdog)."""
        return _NOTHING_TO_WATCH

    def weight_opt_state(self):
        """The weight optimizer as a torch SGD state_dict over the model's weights, whatever the backend
        holds internally (collective under DeepSpeed: call it on every rank)."""
        return self.weight_opt.state_dict()

    def load_weight_opt_state(self, sd):
        """Inverse of weight_opt_state, after the model's weights are loaded."""
        self.weight_opt.load_state_dict(sd)

    def unwrap(self):
        return self.model

    def shutdown(self):
        """Release communication resources (no-op here)."""

    def timed(self):
        """Wall-clock timer of step parts. On CUDA each lap first waits for the queued device work, so parts
        are attributed right, but only while `logged_step` is on (the loop turns it on at logging steps):
        otherwise its laps are None, since without the wait they would time only the queueing."""
        return _Timer(self.device.type == "cuda", self.logged_step)


class _Timer:
    def __init__(self, cuda, exact):
        self.sync, self.blind = cuda and exact, cuda and not exact
        self.start = None

    def lap(self):
        if self.blind:
            return None
        if self.sync:
            torch.cuda.synchronize()
        now = time.perf_counter()
        dt = 0.0 if self.start is None else now - self.start
        self.start = now
        return dt


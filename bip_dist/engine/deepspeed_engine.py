"""DeepSpeed (ZeRO stage 1 / 2) for the theta optimizer; scores through the same bucketed reducer as DDP.

`dist.backend: deepspeed` with `dist.deepspeed_config` pointing at a JSON (configs/deepspeed/zero1.json,
zero2.json). The JSON's micro batch is replaced by the engine's `micro_batch` (data.batch_size) and the gradient-accumulation steps
forced to 1, so the same experiment config means the same global batch under either backend.

What DeepSpeed manages: the weights, biases and BatchNorm parameters (the torch SGD built by the trainer,
wrapped by ZeRO, which partitions its momentum across ranks). What it must never see: the scores. They
are switched to requires_grad=False while `deepspeed.initialize` runs (so it registers nothing on them)
and the steps switch them back on for the score pass, whose backward runs on the unwrapped module.
With `dist.channels_last`, only the activations take that layout: ZeRO holds the weights in a flat
buffer of the standard layout.

ZeRO-2 reduces weight gradients from autograd hooks in *every* backward. A score pass that also
differentiates weights (bip.fused=false's "bilevel" pass, or bip.implicit=paper) would feed those hooks
and corrupt the next theta step, so that combination is refused; ZeRO-1 (no hooks: overlap_comm and
contiguous_gradients off in zero1.json) runs every trainer. First-order BiP's one backward is the theta
backward itself, so it runs under either stage (but not with bip.implicit=paper, which squares the whole
weight gradients that ZeRO frees).
"""

import json
import logging
import os

import torch

from bip_dist.engine.ddp import DDPEngine, init_process_group, nbytes
from bip_dist.engine.dist_env import DistEnv
from bip_dist.engine.watchdog import watched


def load_ds_config(path, micro_batch):
    """The DeepSpeed JSON with the run's per-rank batch and no gradient accumulation."""
    with open(path) as f:
        conf = json.load(f)
    stage = conf.get("zero_optimization", {}).get("stage", 0)
    if stage not in (1, 2):
        # Stage 3 partitions the weights themselves, which the score pass and the masks read whole.
        raise ValueError(f"dist.deepspeed_config = {path!r}: zero_optimization.stage = {stage!r}; bip-dist "
                         f"runs ZeRO stage 1 or 2")
    conf["train_micro_batch_size_per_gpu"] = int(micro_batch)
    conf["gradient_accumulation_steps"] = 1
    conf.pop("train_batch_size", None)  # derived by DeepSpeed: micro * world * 1
    # The theta optimizer is plain torch SGD, which ZeRO only accepts with this flag.
    conf["zero_allow_untested_optimizer"] = True
    return conf


def standard_layout_(model):
    """Give every parameter the standard (row-major) strides, in place.

    ZeRO keeps the weights as views of one flat buffer, and its start-up broadcast views each parameter
    as bytes, which needs stride 1 in the last dimension: channels_last weights fail, 1x1 kernels too
    (is_contiguous() is true for them, their strides are not). So under DeepSpeed channels_last stays on
    the activations; convolutions take the layout from their input."""
    for p in model.parameters():
        standard, step = [], 1
        for size in reversed(p.shape):
            standard.insert(0, step)
            step *= size
        if p.stride() != tuple(standard):
            p.data = p.data.clone(memory_format=torch.contiguous_format)


class DeepSpeedEngine(DDPEngine):
    """DDPEngine's collectives and score reducer, DeepSpeed's engine for the theta pass."""

    def __init__(self, dist, micro_batch, env=None):
        if not torch.cuda.is_available():
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        env = env or DistEnv.from_environ()
        init_process_group(env, dist.timeout_s)  # gloo / nccl per DistEnv; DeepSpeed reuses the default group
        super().__init__(dist, micro_batch, env)
        self.ds_conf = load_ds_config(dist.deepspeed_config, micro_batch)
        self.stage = self.ds_conf.get("zero_optimization", {}).get("stage", 0)

    def _wrap_theta(self, model):
        import deepspeed
        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        weights = [p for g in self.weight_opt.param_groups for p in g["params"]]
        self.group_sizes = [len(g["params"]) for g in self.weight_opt.param_groups]
        scores = self.store.params if self.store is not None else []
        standard_layout_(model)
        trainable = [p.requires_grad for p in scores]
        for p in scores:
            p.requires_grad_(False)
        try:
            ds, opt, _, _ = deepspeed.initialize(model=model, model_parameters=weights, optimizer=self.weight_opt,
                                                 config=self.ds_conf, dist_init_required=False)
        finally:
            for p, flag in zip(scores, trainable):
                p.requires_grad_(flag)
        self.ds, self.theta_model = ds, ds
        # Steps set learning rates through engine.weight_opt.param_groups: the ZeRO wrapper exposes the
        # torch optimizer's groups, and ZeRO's step reads them.
        self.weight_opt = opt
        self.weights = weights
        # Weight-gradient traffic per step: all-reduce (stage 1) or reduce-scatter (stage 2) of every weight.
        self.theta_bytes = nbytes(weights)
        if self.store is not None:
            # initialize may have re-pointed parameter storage; the store's views must still be the params
            for p, (a, b) in zip(self.store.params, zip(self.store.offsets[:-1], self.store.offsets[1:])):
                assert p.data_ptr() == self.store.scores[a:b].data_ptr(), "DeepSpeed moved a score tensor"

    # --- passes ----------------------------------------------------------------------------------
    @watched("the weight-gradient reduction (ZeRO)")
    def backward_theta(self, loss):
        self.ds.backward(loss)  # backward + ZeRO gradient reduction (mean over ranks)
        self.comm_bytes += self.theta_bytes

    @watched("the ZeRO step (parameter all-gather)")
    def step_theta(self):
        self.ds.step()  # ZeRO step on the partitioned SGD state, then it clears the gradients

    def zero_theta(self):
        # Drop weight gradients the score pass may have left (paper IG / three-pass) before the
        # theta backward accumulates into them; ZeRO clears its own partitions in step().
        for p in self.weights:
            p.grad = None

    @torch.no_grad()
    def assign_weights(self, weights, values):
        """Also into ZeRO's fp32 master partition, which the next ds.step() starts from (it would
        otherwise undo the write): each rank sets the fragment it owns through the tensor-fragment API,
        no communication."""
        from deepspeed.utils import safe_set_full_fp32_param
        super().assign_weights(weights, values)
        for p, v in zip(weights, values):
            safe_set_full_fp32_param(p, v.detach())

    def backward_scores(self, loss):
        if self.stage >= 2 and any(p.requires_grad for p in self.weights):
            raise ValueError("DeepSpeed ZeRO-2 reduces weight gradients in backward hooks, so the score pass "
                             "must not differentiate weights: use configs/deepspeed/zero1.json, or "
                             "bip.fused=true with bip.implicit=reference|none")
        super().backward_scores(loss)

    def backward_both(self, loss, keep_weight_grads=False):
        """ZeRO reduces the weight gradients (stage 2 from its hooks, stage 1 after the backward) while the
        score reducer's hooks reduce the score gradients; ZeRO then frees the whole weight gradients."""
        if keep_weight_grads:
            raise ValueError("trainer bip_first_order with bip.implicit=paper squares the averaged weight "
                             "gradients, which DeepSpeed's ZeRO partitions and frees in backward: use "
                             "dist.backend=ddp, or bip.implicit=reference|none")
        super().backward_both(loss)

    # --- checkpoint state ------------------------------------------------------------------------
    # ZeRO partitions SGD's momentum across ranks. Checkpoints hold it whole, per weight, in torch SGD's
    # own format (DeepSpeed's tensor-fragment API gathers / scatters it), so a DeepSpeed checkpoint
    # resumes at any world size and under either backend, and nothing is read back with pickle.
    def weight_opt_state(self):
        from deepspeed.utils import safe_get_full_optimizer_state
        inner = self.weight_opt.optimizer
        state = {}
        if any("momentum_buffer" in st for st in inner.state.values()):  # none before the first step
            for i, p in enumerate(self.weights):
                state[i] = {"momentum_buffer": safe_get_full_optimizer_state(p, "momentum_buffer").detach().clone()}
        groups, start = [], 0
        for g, n in zip(inner.param_groups, self.group_sizes):
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": list(range(start, start + n))})
            start += n
        return {"state": state, "param_groups": groups}

    def load_weight_opt_state(self, sd):
        from deepspeed.utils import safe_set_full_optimizer_state
        opt = self.weight_opt
        opt.refresh_fp32_params()  # ZeRO's fp32 partitions take the weights just loaded into the model
        if not sd["state"]:
            return
        for flat in opt.single_partition_of_fp32_groups:
            opt.optimizer.state[flat].setdefault("momentum_buffer", torch.zeros_like(flat))
        # Link each weight's fragment to the momentum buffers now present (DeepSpeed does this lazily
        # after its first step); SGD then updates the buffers in place.
        opt._hp_optimizer_states_linked = False
        opt._lazy_init_hp_params_optimizer_state()
        for i, p in enumerate(self.weights):
            safe_set_full_optimizer_state(p, sd["state"][i]["momentum_buffer"].to(p.device), "momentum_buffer")

    def shutdown(self):
        """Drop the DeepSpeed engine, then leave the process group."""
        self.ds = self.theta_model = None
        super().shutdown()

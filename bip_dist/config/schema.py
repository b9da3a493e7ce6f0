"""The experiment schema: one frozen dataclass per concern, each field with help text.

`choices`, `min`, `gt` (strictly greater) and `max` in a field's metadata are checked by the loader
(bip_dist.fields), so every bad value is rejected with a message naming the key before anything runs; a
section's `validate()` checks what only fails in combination.
"""

from dataclasses import dataclass, field
from typing import Tuple

from bip_dist.config.point import parse_point
from bip_dist.data.config import DataConfig
from bip_dist.fields import opt
from bip_dist.pruning.budget import BUDGETS


MODES = ("pretrain", "prune", "finetune")
LAYER_TYPES = ("dense", "unstructured", "filter", "channel")
SCHEDULES = ("cosine", "step", "constant", "step_epoch", "cosine_epoch_reference")


@dataclass(frozen=True)
class ModelConfig:
    arch: str = opt("resnet20s", "model name from the registry (bip_dist.models.MODELS)")
    num_classes: int = opt(0, "number of classes; 0 = take it from the dataset", min=0)


@dataclass(frozen=True)
class PruneConfig:
    layer_type: str = opt("dense", "dense: no masks; unstructured: one global top-k over all prunable "
                          "weights; filter / channel: per-layer top-k of output filters / input channels",
                          choices=LAYER_TYPES)
    k: float = opt(1.0, "remaining fraction of weights (unstructured, global) or of filters/channels "
                   "(structured, per layer), in (0, 1]", gt=0.0, max=1.0)
    score_init: str = opt("magnitude", "magnitude: scores = sqrt(6/fan_in) * |w| / max|w| per layer "
                          "(HYDRA's scaled init on |w|; with the signed score gradient the sign of s changes "
                          "nothing but the sign of its trajectory); abs: scores = |w|, one scale for every "
                          "layer, moved by the score optimizer alone; kaiming: kaiming-uniform random scores; "
                          "shared: scores and weights are one variable, s = w, moved by both optimizers (the "
                          "reference code's scaled_score_init; unstructured only; see docs/fidelity.md)",
                          choices=("magnitude", "abs", "kaiming", "shared"))
    kept_count: str = opt("round", "entries a top-k keeps out of n: round = max(1, round(k*n)); reference = "
                          "n - int((1-k)*n), the reference code's count (about ceil(k*n)), with its tie order "
                          "(of scores tied at the threshold, the last in module order are kept) and its "
                          "rounding of the implicit gradient, g + (-lr2 * g) * g (see docs/fidelity.md)",
                          choices=("round", "reference"))
    scope: str = opt("auto", "unstructured masks: global = one top-k over every prunable weight (the "
                     "scores set each layer's share); layerwise = a top-k inside each layer with a kept "
                     "count fixed by prune.budget, so no layer can lose all its weights; auto = layerwise "
                     "for separate scores, global for score_init: shared (the reference's formulation, "
                     "which ranks the weights themselves on one scale). Filter / channel masks are always "
                     "per layer", choices=("auto", "global", "layerwise"))
    budget: str = opt("erk", "prune.scope: layerwise: each layer's kept fraction. uniform = k in every "
                      "layer; erk = Erdos-Renyi-kernel, density ~ sum(shape) / prod(shape), scaled to keep k "
                      "of all weights (pruning/budget.py)", choices=BUDGETS)
    on_collapse: str = opt("warn", "a layer left with no kept weight, or validation top-1 at chance: warn = "
                           "one line naming the layer / accuracy and the step (log.txt, stderr); stop = the "
                           "same line, then the run stops with exit status 2", choices=("warn", "stop"))
    from_scratch: bool = opt(False, "bip / hydra: prune the randomly initialised weights. Both normally start "
                             "from the pretrained source_net, and without one they refuse to run unless this "
                             "is true")

    @property
    def resolved_scope(self):
        """prune.scope with auto resolved: global for shared scores, layerwise otherwise."""
        if self.scope != "auto":
            return self.scope
        return "global" if self.score_init == "shared" else "layerwise"

    def validate(self):
        if self.score_init == "shared" and self.layer_type in ("filter", "channel"):
            raise ValueError(f"prune.score_init = 'shared' needs prune.layer_type: unstructured (got "
                             f"{self.layer_type!r}: one score per filter / channel cannot be the weights)")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = opt(0.1, "peak learning rate (per the global batch of `dist.base_batch` if scaling)", min=0.0)
    momentum: float = opt(0.9, "SGD momentum", min=0.0, max=1.0)
    weight_decay: float = opt(1e-4, "L2 weight decay", min=0.0)
    nesterov: bool = opt(False, "Nesterov momentum")
    schedule: str = opt("cosine", "cosine / step / constant: set every iteration; step_epoch: the step "
                        "schedule set once per epoch (milestone epoch = first epoch >= fraction * epochs); "
                        "cosine_epoch_reference: the reference code's per-epoch cosine "
                        "lr * (1 + cos(pi * (epoch - 1) / epochs)) / 2, which never reaches 0",
                        choices=SCHEDULES)
    milestones: Tuple[float, ...] = opt((0.5, 0.75), "step schedules: fractions of the run where lr *= gamma")
    gamma: float = opt(0.1, "step schedule decay factor", gt=0.0)
    warmup_epochs: float = opt(0.0, "linear warm-up length in epochs", min=0.0)

    def validate(self):
        # Fractions of the run's iterations (bip_dist.optim.schedule): 0 or 1 would decay at the first step or
        # never, and a list out of order is most likely a typo.
        m = self.milestones
        if any(not 0.0 < f < 1.0 for f in m) or any(a >= b for a, b in zip(m, m[1:])):
            raise ValueError(f"milestones = {list(m)} must be strictly increasing fractions of the run, "
                             f"each in (0, 1)")


@dataclass(frozen=True)
class ScoreOptimConfig(OptimConfig):
    schedule: str = opt("step", "schedule of the score lr (beta); as optim.schedule", choices=SCHEDULES)
    weight_decay: float = opt(0.0, "L2 decay on scores", min=0.0)
    lr: float = opt(0.01, "peak score learning rate (beta); with normalize: layer a step relative to each "
                    "layer's score norm", min=0.0)
    normalize: str = opt("auto", "none: SGD on the score gradient as it is; layer: each layer's gradient is "
                         "rescaled to the L2 norm of that layer's scores before momentum and the step, so lr "
                         "is a step relative to each layer's own score scale (scale-free); auto = layer for "
                         "separate scores, none for prune.score_init: shared (the reference's formulation)",
                         choices=("auto", "none", "layer"))


@dataclass(frozen=True)
class BipConfig:
    fused: bool = opt(True, "true: two forward/backward passes per iteration; false: the reference code's "
                      "literal three passes plus a logging forward (for comparison)")
    implicit: str = opt("reference", "implicit-gradient formula. reference: g_s <- g_s - lr2 * g_s*g_s "
                        "(OPTML-Group/BiP trainer/bilevel.py); paper: g_s <- g_s - lr2 * sum((dL/dtheta)^2) "
                        "(Hessian-free bi-linear IG, grad at the updated theta on B_m; bip_first_order: at "
                        "theta_t on its one batch); none: no IG term",
                        choices=("reference", "paper", "none"))
    lr2: float = opt(1e-4, "implicit-gradient scale (1/gamma of the lower-level regulariser)", min=0.0)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = opt(100, "training epochs", min=1)
    max_steps: int = opt(0, "stop after this many iterations (0 = run all epochs); for smoke runs", min=0)
    eval_every: int = opt(1, "evaluate every N epochs (and always after the last)", min=1)
    log_every: int = opt(20, "log metrics every N iterations", min=1)
    deterministic: bool = opt(False, "torch deterministic algorithms (bitwise reproducible on CPU)")
    progress: bool = opt(True, "progress bar on rank 0")


@dataclass(frozen=True)
class DistConfig:
    backend: str = opt("ddp", "ddp: torch DDP for weights + our bucketed score all-reduce; deepspeed: "
                       "DeepSpeed engine for weights", choices=("ddp", "deepspeed"))
    bucket_mb: float = opt(25.0, "score-gradient bucket size in MiB", gt=0.0)
    score_grad_dtype: str = opt("fp32", "dtype score gradients travel in", choices=("fp32", "bf16"))
    precision: str = opt("fp32", "bf16 autocast on GPU; fp32 everywhere else", choices=("fp32", "bf16"))
    channels_last: bool = opt(False, "channels_last memory format (GPU)")
    scale_lr: bool = opt(False, "linear scaling rule: lr *= global_batch / base_batch")
    base_batch: int = opt(128, "global batch the configured learning rates are meant for", min=1)
    deepspeed_config: str = opt("configs/deepspeed/zero1.json", "DeepSpeed JSON (backend deepspeed)")
    check_masks: bool = opt(False, "debug: compare a hash of the mask across ranks every refresh")
    sync_bn: bool = opt(False, "SyncBatchNorm: batch statistics over the global batch (GPU only); false = "
                        "each rank keeps running statistics of its own shard during an epoch (see bn_stats)")
    bn_stats: str = opt("reduce", "BatchNorm running statistics at every epoch end, before evaluation and the "
                        "epoch checkpoint: reduce = average over ranks, so every rank evaluates and saves one "
                        "model; broadcast = rank 0's; local = each rank keeps its own",
                        choices=("reduce", "broadcast", "local"))
    timeout_s: int = opt(1800, "seconds a rank may wait in one collective before it stops with a line naming "
                         "the collective and exit status 69 (a peer rank stopped or lost); longer than the "
                         "slowest checkpoint write or evaluation imbalance", min=1)


@dataclass(frozen=True)
class CheckpointConfig:
    every_steps: int = opt(0, "save every N iterations (0 = only at epoch ends)", min=0)
    keep_last: int = opt(2, "keep the newest K checkpoints (the best one is kept apart)", min=1)
    async_save: bool = opt(False, "save in the background so training does not wait for the disk")
    resume: str = opt("", "'' = fresh start; 'auto' = newest complete checkpoint of this run; or a path")


@dataclass(frozen=True)
class LogConfig:
    tensorboard: bool = opt(True, "write TensorBoard scalars (rank 0)")
    per_layer: bool = opt(True, "per-layer TensorBoard scalars: sparsity at epoch ends; kept fraction, score norm "
                          "and score-gradient norm at logging steps of masked runs")


@dataclass(frozen=True)
class BaselineConfig:
    scope: str = opt("global", "omp / imp / random with unstructured masks: global = one ranking over all "
                     "prunable weights; layer = keep k of every layer (filter / channel masks are always "
                     "per layer)", choices=("global", "layer"))
    mask_from: str = opt("", "imp: checkpoint whose (masked) weights are ranked to prune this round: the "
                         "pretrained model in round 1, the previous round's final.pt after; '' = source_net")
    save_rewind: str = opt("", "save the weights at this point of the run as <run_dir>/rewind.pt, the IMP "
                           "rewinding point: e.g. '2ep', '100it', '0it' (initial weights); '' = off")

    def validate(self):
        if self.save_rewind:
            try:
                parse_point(self.save_rewind)
            except ValueError as e:
                raise ValueError(f"save_rewind = {e}") from None


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = opt("exp", "experiment name; run folder is <out_dir>/<name>/<mode>/<hash>")
    mode: str = opt("pretrain", "stage of the pretrain -> prune -> finetune pipeline", choices=MODES)
    trainer: str = opt("dense", "dense SGD; hydra: scores only; bip; bip_first_order: both BiP levels from one "
                       "pass (experimental, docs/first_order.md); finetune: weights under a fixed mask; "
                       "omp / imp / random: magnitude, iterative-magnitude and random baselines "
                       "(the names of bip_dist.train.registry.TRAINERS, checked by the loader)")
    seed: int = opt(0, "global seed", min=0, max=2**32 - 1)
    out_dir: str = opt("runs", "root of run folders")
    source_net: str = opt("", "checkpoint or exported state_dict of the previous stage. A '<hash>' folder in "
                          "the path (runs/NAME/pretrain/<hash>/final.pt) stands for the one run folder there "
                          "that holds the file; bip-train picks it, or names the candidates")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    score_optim: ScoreOptimConfig = field(default_factory=ScoreOptimConfig)
    bip: BipConfig = field(default_factory=BipConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    ckpt: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)

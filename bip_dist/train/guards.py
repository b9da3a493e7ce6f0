"""Stopping a run on purpose, at the same step on every rank: divergence and preemption.

Diverged: a loss, weight, buffer or score is nan / inf. Checked at logging steps and before every
checkpoint: the two step losses plus one fused norm kernel over all weights, buffers and the flat score
buffer, so no checkpoint, final.pt or result.json ever holds non-finite values; the run stops before
writing anything and names the step and the quantity.

Preempted: SIGTERM / SIGUSR1 / SIGHUP arrived, or Interrupted: SIGINT (train/preempt.py). The ranks
write one checkpoint together and stop, so `--resume auto` continues bitwise.

Agreement: a signal may reach one rank only and a loss may be nan on one rank only, so at those same
checked steps the ranks all-reduce (max) five numbers, [stop request (train/preempt.py's code), one code
per checked quantity], and act on the result together. Between them nothing is read from the device (no
host sync on GPU, no collective): several ranks stop at the next logging or checkpoint step after a
signal, a single process after the current step.
"""

import math
import re

import torch

from bip_dist import exit_codes
from bip_dist.train import preempt

# Codes per quantity; max over ranks keeps the worst (nan outranks inf outranks finite).
FINITE, INF, NAN = 0, 1, 2
WORDS = {INF: "inf", NAN: "nan"}
CHECKED = ("loss_theta", "loss_score", "weights", "scores")
PHRASES = {"weights": "the weights or buffers hold {}", "scores": "the scores hold {}"}
STEP_OF_FOLDER = re.compile(r"step_(\d+)_")  # checkpoint folder names (checkpoint/layout.py)


class RunStopped(Exception):
    """A deliberate stop, the same on every rank: a one-line message, the raising `rank`, the exit status
    bip-train returns and the `kind` of the record metrics.jsonl gets."""
    kind = "error"
    exit_code = 1

    def __init__(self, msg, rank):
        super().__init__(msg)
        self.rank = rank


class Diverged(RunStopped):
    exit_code = exit_codes.DIVERGED


class Preempted(RunStopped):
    kind = "preempted"
    exit_code = exit_codes.PREEMPTED


class Interrupted(Preempted):
    """Ctrl-C: a preemption the user asked for, with the shell's exit status for it."""
    kind = "interrupted"
    exit_code = exit_codes.INTERRUPTED


def finiteness_codes(values):
    """FINITE / INF / NAN per element of a 1-d float tensor, as floats (all-reducible)."""
    return values.isinf().float() + NAN * values.isnan().float()


def tensor_codes(model, store):
    """[code of the weights and float buffers, code of the scores]: one fused L2-norm kernel over all of
    them (nan and inf propagate into a norm; on CPU ~6x faster than the inf-norm). Huge finite values
    overflow a norm too, so an inf norm is confirmed tensor by tensor, which only a diverging run pays."""
    groups = [[t for name, t in model.state_dict().items()  # scores: the store's flat buffer instead
               if t.is_floating_point() and not name.endswith(".scores")],
              [store.scores] if store is not None else []]
    norms = [n.float() for n in torch._foreach_norm(groups[0] + groups[1], 2)]
    norms.append(norms[0].new_zeros(()))  # the scores' norm when there are none
    split = len(groups[0])
    codes = finiteness_codes(torch.stack([torch.stack(norms[:split]).max(), torch.stack(norms[split:]).max()]))
    return [FINITE if c == INF and all(torch.isfinite(t).all() for t in g) else c
            for c, g in zip(codes.tolist(), groups)]


def _phrase(quantity, code):
    return PHRASES.get(quantity, quantity + " is {}").format(WORDS[code])


class StepGuard:
    """The loop's stop checks; every rank constructs one and calls it at the same points."""

    def __init__(self, cfg, engine, parts, ckpt):
        self.engine, self.parts, self.ckpt = engine, parts, ckpt
        self.log_every, self.ckpt_every = cfg.train.log_every, cfg.ckpt.every_steps
        self.stop_code = 0  # the ranks' agreed stop request (train/preempt.py codes)

    def after_step(self, step, out):
        """At a logging or checkpoint step (or on a signal, in a single process): raise Diverged if a
        checked quantity of step `step` is not finite; True when the ranks agree a preemption was
        requested (the caller then logs the step and calls checkpoint_and_stop)."""
        self.engine.step_done(step)
        checked = step % self.log_every == 0 or (self.ckpt_every and step % self.ckpt_every == 0)
        if not (checked or (self.engine.world_size == 1 and preempt.requested())):
            return False
        stop, codes = self._agree(out)
        self._raise_if_bad(step, codes)
        return stop

    def at_epoch_end(self, step, metrics):
        """Before the epoch's callbacks and checkpoint: Diverged if the weights, scores or evaluation
        metrics (already identical on every rank) are not finite; True when a preemption is requested."""
        stop, codes = self._agree({})
        codes.update({k: NAN if math.isnan(v) else INF for k, v in metrics.items()
                      if isinstance(v, float) and not math.isfinite(v)})
        self._raise_if_bad(step, codes)
        return stop

    def checkpoint_and_stop(self, state, loaders, saved=False):
        """Write a checkpoint of this step (unless `saved`), wait until it is published, raise Preempted."""
        with self.engine.watch("the preemption checkpoint save"):
            if not saved:
                self.ckpt.save_now(state, self.parts, loaders)
            self.ckpt.close()
        mine, interrupted = preempt.requested(), self.stop_code == preempt.INTERRUPT
        if mine and preempt.request_code(mine) == self.stop_code:
            why = f"{mine} received"
        else:
            why = "a peer rank received " + ("SIGINT" if interrupted else "SIGTERM or SIGUSR1")
        raise (Interrupted if interrupted else Preempted)(
            f"step {state.step}: {why}; stopped after writing checkpoint {self.ckpt.layout.newest().name}; "
            f"continue with --resume auto", self.engine.rank)

    def _agree(self, out):
        """(preemption requested on some rank, {quantity: code}) over all ranks; `out` holds the step's
        losses ({} at an epoch end)."""
        dev = self.engine.device
        losses = [torch.as_tensor(out.get(k, 0.0), device=dev).float().reshape(()) for k in CHECKED[:2]]
        flags = torch.cat([torch.tensor([float(preempt.request_code())], device=dev),
                           finiteness_codes(torch.stack(losses)),
                           torch.tensor(tensor_codes(self.parts.model, self.parts.store), device=dev)])
        flags = self.engine.agree(flags).tolist()
        self.stop_code = int(flags[0])
        return flags[0] > 0, dict(zip(CHECKED, flags[1:]))

    def _raise_if_bad(self, step, codes):
        bad = [(k, int(c)) for k, c in codes.items() if c != FINITE]
        if not bad:
            return
        self.ckpt.close()  # publish a save still in flight: it was checked before it started
        newest = self.ckpt.layout.newest()
        kept = "no checkpoint was written" if newest is None else \
            f"the last checkpoint, step {int(STEP_OF_FOLDER.match(newest.name).group(1))}, is intact"
        raise Diverged(f"step {step}: {_phrase(*bad[0])}; stopping ({kept})", self.engine.rank)

"""IMP / lottery-ticket weight rewinding: save the weights at a point of a run, and the round schedule."""

from pathlib import Path

from bip_dist.config.point import parse_point
from bip_dist.train.callbacks import Callback


class RewindSaver(Callback):
    """Writes <run_dir>/rewind.pt (model state_dict + meta, the format of a source_net) when the run reaches
    `spec` ('0it' = before the first step, 'Nit' after step N, 'Nep' after epoch N). Rank 0 only; a file
    left by an earlier (resumed) attempt is kept, since it holds the same point of the same run."""

    def __init__(self, spec, is_main=True):
        self.unit, self.n = parse_point(spec)
        self.is_main = is_main
        self.parts, self.path = None, None

    def on_start(self, state, parts, loaders, run_dir):
        self.parts, self.path = parts, Path(run_dir) / "rewind.pt"
        if self.n == 0:
            self._save(state)

    def on_step(self, state, out):
        if self.unit == "it" and state.step == self.n:
            self._save(state)

    def on_epoch_end(self, state, metrics):
        if self.unit == "ep" and state.epoch == self.n:
            self._save(state)

    def _save(self, state):
        if not self.is_main or self.path.exists():
            return
        from bip_dist.checkpoint.io import save_atomic
        save_atomic({"model": self.parts.model.state_dict(), "meta": self.parts.meta,
                     "state": {"step": state.step, "epoch": state.epoch}}, self.path)


def imp_schedule(targets, rate=0.2, tol=0.02):
    """IMP rounds reaching every k in `targets`: each round keeps (1 - rate) of the previous one's
    survivors, and a requested k is taken as a round of its own once the next geometric step would not
    stay above it by more than `tol` (relative; the paper's series is rounded: 0.41 for 0.8^4). Returns
    the descending list of rounds, rounded to 6 digits so run hashes are stable."""
    rounds, k = [], 1.0
    for t in sorted({float(x) for x in targets}, reverse=True):
        while k * (1.0 - rate) > t * (1.0 + tol):
            k *= 1.0 - rate
            rounds.append(round(k, 6))
        if t < k:
            rounds.append(round(t, 6))
            k = t
    return rounds

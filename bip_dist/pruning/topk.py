"""Exact top-k masks of |s|, the fastest way each device allows.

Two methods, both exact (exactly `keep` entries set, none smaller than one left out), both returning the
number of entries that changed as a 0-dim int64 tensor on the scores' device:

- `topk_mask_` (CUDA, any device, small selections): `torch.topk(sorted=False)` and a scatter. Nothing
  is read back to the host, so a GPU step never waits for the selection.
- `BandedTopK` (large CPU selections): scores move little per step, so the previous threshold brackets
  the new one. One chunked read of the scores and of the old mask counts what lies above the bracket and
  finds the few entries inside it or whose side of the bracket disagrees with the old mask; the threshold
  comes from the entries inside, and only entries that change are written. It needs Python numbers (band
  edges, counts), which on a GPU would mean a host sync per step: CPU only.

Ties at the threshold: `BandedTopK` keeps the tied entries of lowest index, so the mask is a function of
the scores alone and identical on every rank; `topk_mask_` keeps whichever ties `torch.topk` returns
(deterministic for a given device and input).
"""

import torch

_CHUNK = 1 << 17  # elements per scan chunk: its two work buffers (2 x 512 KiB) stay in cache
_ROWS = 32  # a chunk is viewed as (_ROWS, chunk / _ROWS); a column is skipped when nothing in it changes
_SAMPLE = 1 << 17


@torch.no_grad()
def topk_mask_(mag, mask, keep):
    """mask <- 1 at the `keep` largest entries of `mag`, 0 elsewhere (mask holds 0/1 before and after).
    Returns the number of changed entries: |old| + |new| - 2 |old & new|, all on the device."""
    idx = torch.topk(mag, keep, sorted=False).indices
    kept_before = torch.count_nonzero(mask)
    overlap = torch.count_nonzero(mask[idx])
    mask.zero_()
    mask.index_fill_(0, idx, 1)
    return kept_before + keep - 2 * overlap


class BandedTopK:
    """Exact global top-k of |s| on the CPU, bracketed by the previous step's threshold.

    State between calls: the last threshold and the band's relative half-width, adapted so that the
    band holds the new threshold (a miss costs a second scan) while holding few entries."""

    def __init__(self):
        self.thr, self.width = None, 1e-3  # relative half-width of the band
        self._buf = None

    def __call__(self, scores, mask, keep):
        """Write the top-`keep` mask of |scores| into `mask` (flat, 0/1). Returns the number of flipped
        entries (0-dim int64 tensor), or None if no band held the threshold (the caller falls back)."""
        n = scores.numel()
        if self._buf is None:
            self._buf = torch.empty(2, min(_CHUNK, n), dtype=scores.dtype)
        for missed in (False, True):
            lo, hi = self._sample_band(scores, keep) if missed or self.thr is None else self._band()
            above, pos = self._scan(scores, mask, lo, hi)
            mag = scores[pos].abs()
            inside = (mag >= lo) & (mag <= hi)
            need = keep - above  # how many of the band's entries are kept
            if 0 < need <= int(inside.sum()):
                break
        else:
            self.thr = None
            return None
        idx, vals = pos[inside], mag[inside]
        thr = torch.kthvalue(vals, vals.numel() - need + 1).values
        new = vals > thr
        tied = (vals == thr).nonzero().squeeze(1)
        new[tied[:need - int(new.sum())]] = True  # positions ascend: ties kept at the lowest index
        new = new.to(mask.dtype)
        flips = torch.count_nonzero(mask[idx] != new) + (pos.numel() - idx.numel())
        diff = pos[~inside]
        mask[diff] = 1 - mask[diff]  # outside the band an entry changes exactly when it disagrees
        mask[idx] = new
        self._adapt(float(thr), vals.numel(), scores.numel(), missed)
        return flips

    # --- the band --------------------------------------------------------------------------------
    def _band(self):
        return self.thr * (1 - self.width), self.thr * (1 + self.width)

    def _sample_band(self, scores, keep):
        """Quantiles q +- 0.5 % of a fixed-seed sample of |s| (the same on every rank): 6 standard errors
        of the sample's quantile."""
        n = scores.numel()
        gen = torch.Generator().manual_seed(0)
        sample = scores[torch.randint(0, n, (_SAMPLE,), generator=gen)].abs()
        q = 1.0 - keep / n
        lo, hi = torch.quantile(sample, torch.tensor([max(0.0, q - 0.005), min(1.0, q + 0.005)],
                                                     dtype=sample.dtype)).tolist()
        return lo, hi

    def _adapt(self, thr, in_band, n, missed):
        """Next band: centred on this threshold, at least 4x this step's move of the threshold wide,
        wider after a miss, slowly narrower while hits come easily (fewer entries to look at)."""
        move = 0.0 if self.thr is None or thr == 0 else abs(thr - self.thr) / thr
        width = self.width * (2.0 if missed else 0.5 if in_band > 5e-3 * n else 0.9)
        self.width = min(max(width, 4 * move, 1e-4), 0.5)
        self.thr = thr

    # --- the scan --------------------------------------------------------------------------------
    def _scan(self, scores, mask, lo, hi):
        """The count of |s| > hi, and the ascending positions of every entry inside the band or outside it
        on the other side than its old mask says."""
        above, pos = [], [torch.empty(0, dtype=torch.long)]
        for a in range(0, scores.numel(), _CHUNK):
            k = min(_CHUNK, scores.numel() - a)
            above.append(self._scan_chunk(scores[a:a + k], mask[a:a + k], lo, hi, pos, a))
        return int(torch.stack(above).sum(dtype=torch.float64)), torch.cat(pos)

    def _scan_chunk(self, s, old, lo, hi, pos, start):
        k = s.numel()
        z, gt_hi = (b[:k] for b in self._buf)
        torch.abs(s, out=z)
        torch.gt(z, hi, out=gt_hi)
        above = gt_hi.sum()
        # z = [|s| >= lo] + old - 2 old [|s| > hi] is >= 0, and 0 exactly where the entry is outside the
        # band and its old mask already says which side of the band it is on: nothing to do there.
        torch.ge(z, lo, out=z)
        z.add_(old).addcmul_(old, gt_hi, value=-2)
        rows = _ROWS if k % _ROWS == 0 else 1
        width = k // rows
        cols = z.view(rows, width).sum(0).nonzero().squeeze(1)
        if cols.numel():  # row-major nonzero over (rows, cols): positions come out ascending
            r, c = z.view(rows, width).index_select(1, cols).nonzero().unbind(1)
            pos.append(r * width + cols[c] + start)
        return above

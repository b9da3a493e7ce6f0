"""Exact top-k masks of |s|, the fastest way each device allows.

Two methods, both exact (exactly `keep` entries set, none smaller than one left out), both returning the
number of entries that changed as a 0-dim int64 tensor on the scores' device:

- `topk_mask_` (CUDA, any device, small selections): `torch.topk(sorted=False)` and a scatter. Nothing
  is read back to the host, so a GPU step never waits for the selection.
- `BandedTopK` (large CPU selections): scores move little per step, so the previous threshold brackets
  the new one. One chunked read of the scores and the old mask finds the few entries inside the band or
  on the other side of it than their old mask says; the threshold comes from the entries inside, and only
  entries that change are written. It needs Python numbers (band edges, counts), which on a GPU would
  mean a host sync per step: CPU only. (A NaN score keeps its mask entry.)

Ties at the threshold: `BandedTopK` keeps the tied entries of lowest index, so the mask is a function of
the scores alone and identical on every rank; `topk_mask_` keeps whichever ties `torch.topk` returns
(deterministic for a given device and input). Float32 scores do tie there. The reference code's order
(`prune.kept_count: reference`): a stable ascending sort, the last `keep` entries kept, i.e. the tied
entries of highest index: `reference_topk_mask_`, or `BandedTopK(last_ties=True)`.
"""

import torch

_CHUNK = 1 << 20  # elements per scan chunk: its work buffer (4 MiB) stays in the last-level cache, and
# each op on it is long enough to amortise its thread start-up (1 << 18 measured 15 % slower on 11 M scores)
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


@torch.no_grad()
def reference_topk_mask_(mag, mask, keep):
    """As `topk_mask_`, with the reference's ties: the mask `idx[n - keep:]` of a stable ascending sort of
    `mag` sets, without the sort: every entry above the keep-th largest value t, and of those equal to t
    the ones of highest index. All on the device, as `topk_mask_`."""
    thr = torch.kthvalue(mag, mag.numel() - keep + 1).values
    new = mag > thr
    tied = mag == thr
    need = keep - torch.count_nonzero(new)
    # Count the tied entries from the end: the last `need` of them have a count <= need.
    new |= tied & (tied.flip(0).cumsum(0).flip(0) <= need)
    flips = torch.count_nonzero(new != mask.bool())
    mask.copy_(new)
    return flips


class BandedTopK:
    """Exact global top-k of |s| on the CPU, bracketed by the previous step's threshold.

    The band is |d| <= w with d = |s| - c (float32, as the scan computes it): entries with d > w are kept,
    entries with d < -w dropped, and the threshold lies among the entries inside. State between calls:
    the last threshold and the band's relative half-width, adapted so that the band holds the new
    threshold (a miss costs a second scan) while holding few entries."""

    def __init__(self, last_ties=False):
        self.last_ties = last_ties  # keep the tied entries of highest index (the reference's), else lowest
        self.thr, self.width = None, 1e-3  # relative half-width of the band
        self._buf = None
        # The mask's kept count as this selection left it, valid while the mask's version counter (shared
        # by every view, bumped by every in-place write) has not moved since: saves a pass per step.
        self._kept, self._version = None, None

    def __call__(self, scores, mask, keep):
        """Write the top-`keep` mask of |scores| into `mask` (flat, 0/1). Returns the number of flipped
        entries (0-dim int64 tensor), or None if no band held the threshold (the caller falls back)."""
        if self._buf is None:
            self._buf = torch.empty(min(_CHUNK, scores.numel()), dtype=scores.dtype)
        for missed in (False, True):
            c, w = self._sample_band(scores, keep) if missed or self.thr is None else self._band()
            known = self._kept if self._version == mask._version else None
            kept_before, pos = self._scan(scores, mask, c, w, count=known is None)
            kept_before = known if known is not None else kept_before
            mag, old = scores[pos].abs(), mask[pos]
            d = mag - c
            inside, above = d.abs() <= w, d > w
            # Outside `pos` an entry is kept exactly when it was, so d > w counts the kept ones there.
            need = keep - (kept_before - int(old.sum()) + int(above.sum()))  # kept from the band
            if 0 < need <= int(inside.sum()):
                break
        else:
            self.thr = None
            return None
        idx, vals = pos[inside], mag[inside]
        thr = torch.kthvalue(vals, vals.numel() - need + 1).values
        new = vals > thr
        tied = (vals == thr).nonzero().squeeze(1)
        # Positions ascend, and every entry equal to thr is inside the band: these are all the ties.
        n_tied = need - int(new.sum())
        new[tied[tied.numel() - n_tied:] if self.last_ties else tied[:n_tied]] = True
        new = new.to(mask.dtype)
        flips = torch.count_nonzero(old[inside] != new) + (pos.numel() - idx.numel())
        diff = pos[~inside]
        mask[diff] = 1 - mask[diff]  # outside the band an entry in `pos` is on the other side than it was
        mask[idx] = new
        self._adapt(float(thr), vals.numel(), scores.numel(), missed)
        self._kept, self._version = keep, mask._version
        return flips

    # --- the band --------------------------------------------------------------------------------
    def _band(self):
        return self.thr, self.thr * self.width

    def _sample_band(self, scores, keep):
        """From quantile q - 0.5 % to q + 0.5 % of a fixed-seed sample of |s| (the same on every rank),
        6 standard errors of the sample's quantile, and a little beyond: tied scores at both ends are in."""
        n = scores.numel()
        gen = torch.Generator().manual_seed(0)
        sample = scores[torch.randint(0, n, (_SAMPLE,), generator=gen)].abs()
        q = 1.0 - keep / n
        lo, hi = torch.quantile(sample, torch.tensor([max(0.0, q - 0.005), min(1.0, q + 0.005)],
                                                     dtype=sample.dtype)).tolist()
        return (lo + hi) / 2, 0.51 * (hi - lo) + 1e-6 * hi

    def _adapt(self, thr, in_band, n, missed):
        """Next band: centred on this threshold, at least 4x this step's move of the threshold wide,
        wider after a miss, slowly narrower while hits come easily (fewer entries to look at)."""
        move = 0.0 if self.thr is None or thr == 0 else abs(thr - self.thr) / thr
        width = self.width * (2.0 if missed else 0.5 if in_band > 5e-3 * n else 0.9)
        self.width = min(max(width, 4 * move, 1e-4), 0.5)
        self.thr = thr

    # --- the scan --------------------------------------------------------------------------------
    def _scan(self, scores, mask, c, w, count=True):
        """One chunked pass: the old mask's kept count (None unless `count`), and the ascending positions
        of every entry that is inside the band or outside it on the other side than its old mask says."""
        kept, pos = [], [torch.empty(0, dtype=torch.long)]
        for a in range(0, scores.numel(), _CHUNK):
            k = min(_CHUNK, scores.numel() - a)
            self._scan_chunk(scores[a:a + k], mask[a:a + k], c, w, pos, a)
            if count:
                kept.append(mask[a:a + k].sum())
        return int(torch.stack(kept).sum(dtype=torch.float64)) if count else None, torch.cat(pos)

    def _scan_chunk(self, s, old, c, w, pos, start):
        k = s.numel()
        z = self._buf[:k]
        # z = d for old = 0 and -d for old = 1 (exact: old is 0 or 1), so z >= -w exactly where an entry
        # is inside the band or on the other side than its old mask says; elsewhere nothing changes.
        torch.abs(s, out=z)
        z.sub_(c).addcmul_(old, z, value=-2)
        rows = _ROWS if k % _ROWS == 0 else 1
        width = k // rows
        cols = (z.view(rows, width).amax(0) < -w).logical_not_().nonzero().squeeze(1)  # NaN: look inside
        if cols.numel():  # row-major nonzero over (rows, cols): positions come out ascending
            r, j = (z.view(rows, width).index_select(1, cols) >= -w).nonzero().unbind(1)
            pos.append(cols.add_(start)[j].add_(r, alpha=width))

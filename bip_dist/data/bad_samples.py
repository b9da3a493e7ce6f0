"""What training does with a sample that cannot be decoded (a non-image .jpg in a class folder, an LMDB
record whose JPEG is damaged).

Default: stop with one line naming the file (and record). With `data.skip_bad: true`: read the next
readable sample (i+1, i+2, ..., wrapping) in its place, so the replacement depends on the data alone, not
on worker count, rank or timing, and report each bad sample once with the running count.
"""

import copy
import itertools
import sys

import torch
from PIL import Image, UnidentifiedImageError

from bip_dist.data.files import DataFileError

# What PIL and the LMDB record parser raise for bytes that are not a (whole) image.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _reason(e):
    if isinstance(e, UnidentifiedImageError):
        return "unknown image format"  # PIL's own text repeats the file name
    return f"{type(e).__name__}: {e}".replace("\n", " ")


class SampleGuard(torch.utils.data.Dataset):
    """Wraps a dataset that has `decode(i)` -> (PIL image, label), `describe(i)` -> where sample i lives,
    `transform` and `classes`; items are (transform(image), label) as the wrapped dataset's."""

    def __init__(self, dataset, skip_bad=False):
        self.dataset, self.skip_bad = dataset, skip_bad
        self.classes = dataset.classes
        # Shared memory: every DataLoader worker sees the marks, so a bad sample is reported once and
        # never decoded again, whichever worker meets it.
        self.bad = torch.zeros(len(dataset), dtype=torch.uint8).share_memory_()

    def __len__(self):
        return len(self.dataset)

    @property
    def bad_count(self):
        """Bad samples met so far (by any worker)."""
        return int(self.bad.sum())

    def with_transform(self, transform):
        """The same samples through `transform` (the holdout reads the training file with the evaluation
        transform). It shares the wrapped dataset, so an LMDB keeps one environment per process (lmdb
        refuses a second), and the bad-sample marks."""
        view = copy.copy(self)
        view.transform = transform
        return view

    def __getitem__(self, i):
        n = len(self.dataset)
        for j in itertools.chain(range(i, n), range(i)) if self.skip_bad else (i,):
            if self.bad[j]:
                continue
            try:
                img, label = self.dataset.decode(j)
            except DataFileError:
                raise  # the whole file is unusable (checked on open), not this sample
            except DECODE_ERRORS as e:
                problem = f"{self.dataset.describe(j)}: not a readable image ({_reason(e)})"
                if not self.skip_bad:
                    raise DataFileError(f"{problem}; fix the data or set data.skip_bad: true") from None
                self._report(j, problem)
                continue
            transform = getattr(self, "transform", self.dataset.transform)  # with_transform's, else its own
            return (transform(img) if transform else img), label
        raise DataFileError(f"{self.dataset.describe(i)}: bad, and so are all other {n - 1} samples")

    def _report(self, j, problem):
        self.bad[j] = 1
        print(f"[data] warning: {problem}; skipped (data.skip_bad), the next readable sample is used "
              f"({self.bad_count} bad so far)", file=sys.stderr, flush=True)


class _Probe(torch.utils.data.Dataset):
    """Chunk c of a dataset's samples -> [(index, problem)] of those that do not decode."""

    CHUNK = 64

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return -(-len(self.dataset) // self.CHUNK)

    def __getitem__(self, c):
        out = []
        for i in range(c * self.CHUNK, min((c + 1) * self.CHUNK, len(self.dataset))):
            try:
                self.dataset.decode(i)
            except DataFileError:
                raise
            except DECODE_ERRORS as e:
                out.append((i, f"{self.dataset.describe(i)}: not a readable image ({_reason(e)})"))
        return out


def _as_is(batch):
    return batch


def unreadable(dataset, workers=0):
    """[(index, problem)] of every sample of `dataset` (with decode / describe) that does not decode:
    all of them, in one pass over the data, decoded by `workers` processes (0 = this one)."""
    loader = torch.utils.data.DataLoader(_Probe(dataset), batch_size=None, num_workers=workers,
                                         collate_fn=_as_is)
    return [found for chunk in loader for found in chunk]


def check_images(guards, workers=0):
    """data.check_images: decode every sample of each SampleGuard before training. Bad samples stop the
    run with one line per file (all of them, not just the first met), or with skip_bad are reported
    now and marked, so training never tries them."""
    found = [(g, i, problem) for g in guards for i, problem in unreadable(g.dataset, workers)]
    if not found:
        return
    if not all(g.skip_bad for g, _, _ in found):
        lines = [f"  {problem}" for _, _, problem in found]
        raise DataFileError("\n".join([f"data.check_images: {len(found)} unreadable image(s); fix or remove "
                                       f"them, or set data.skip_bad: true", *lines]))
    for g, i, problem in found:
        g._report(i, problem)

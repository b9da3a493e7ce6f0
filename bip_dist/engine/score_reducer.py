"""Bucketed, backward-overlapped all-reduce of the flat score gradient (`ScoreStore.grad`).

DDP wraps a fixed parameter set and would see the score pass as a second, differently shaped use of the
model, so the score gradients travel through this reducer instead:
- buckets are contiguous slices of `store.grad` of about `bucket_mb`, built from the END of the flat buffer
  because backward finishes the last layers first;
- a post-accumulate-grad hook on every score parameter counts down its bucket; a full bucket is all-reduced
  with `async_op=True` while backward keeps computing the earlier layers;
- buckets are launched strictly in index order (a ready bucket waits for its predecessors), so every rank
  issues the same sequence of collectives even if hooks fire in a slightly different order;
- optional bf16 transport halves the bytes (cast into a scratch buffer, reduce, cast back once).
"""

import time

import torch
import torch.distributed as dist


class ScoreGradReducer:
    """Averages `store.grad` across ranks during `backward(loss)`. Counts bytes and exposed seconds."""

    def __init__(self, store, world_size, bucket_mb=25.0, dtype="fp32", group=None):
        self.store, self.world_size, self.group = store, world_size, group
        self.wire_dtype = torch.bfloat16 if dtype == "bf16" else store.grad.dtype
        # bf16 needs a separate transport buffer; fp32 reduces the gradient buffer in place.
        self.wire = store.grad if self.wire_dtype == store.grad.dtype else \
            torch.empty(store.numel, dtype=self.wire_dtype, device=store.grad.device)
        self.buckets, self.bucket_of = _build_buckets(store.offsets, store.grad.element_size(), bucket_mb)
        self.sizes = [len(layers) for _, _, layers in self.buckets]
        self.bytes = 0
        self.seconds = 0.0
        self.overlapped = 0  # buckets launched from hooks, i.e. while backward was still running
        self._active = False
        # One hook per score parameter; they are inert outside `backward` (see _ready).
        self._hooks = [p.register_post_accumulate_grad_hook(self._hook_for(i))
                       for i, p in enumerate(store.params)]

    def _hook_for(self, layer):
        def hook(_param):
            self._ready(layer)
        return hook

    def _reset(self):
        self._left = list(self.sizes)
        self._seen = set()
        self._next = 0
        self._handles = []

    def _ready(self, layer):
        """Called by autograd after the layer's score gradient is accumulated into the flat buffer."""
        if not self._active or layer in self._seen:
            return
        self._seen.add(layer)
        b = self.bucket_of[layer]
        self._left[b] -= 1
        while self._next < len(self.buckets) and self._left[self._next] == 0:
            self._launch(self._next)
            self.overlapped += 1

    def _launch(self, b):
        t0 = time.perf_counter()
        lo, hi, _ = self.buckets[b]
        buf = self.wire[lo:hi]
        if buf.data_ptr() != self.store.grad[lo:hi].data_ptr():
            buf.copy_(self.store.grad[lo:hi])
        self._handles.append(dist.all_reduce(buf, group=self.group, async_op=True))
        self.bytes += buf.numel() * buf.element_size()
        self._next += 1
        self.seconds += time.perf_counter() - t0

    def backward(self, loss, run=torch.Tensor.backward):
        """Backward with overlapped reduction; on return `store.grad` is the mean over ranks. `run(loss)`
        is the call that runs the backward (an engine's theta backward when one pass feeds both levels)."""
        self._reset()
        self._active = True
        try:
            run(loss)
        finally:
            self._active = False
        t0 = time.perf_counter()
        # Scores that received no gradient (unused layers) still take part: their zeros are reduced too,
        # so every rank issues the same collectives.
        while self._next < len(self.buckets):
            self._launch_unhooked()
        for h in self._handles:
            h.wait()
        grad = self.store.grad
        if self.wire.data_ptr() != grad.data_ptr():
            grad.copy_(self.wire)
        grad.div_(self.world_size)
        self.seconds += time.perf_counter() - t0

    def _launch_unhooked(self):
        self._left[self._next] = 0
        self._launch(self._next)

    def remove(self):
        """Detach the hooks (the engine is being torn down)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []


def _build_buckets(offsets, elem_bytes, bucket_mb):
    """Group consecutive layers into slices of at least `bucket_mb` MiB, starting from the last layer.
    Returns [(lo, hi, layers)] in launch order and a layer -> bucket index map."""
    cap = max(1, int(bucket_mb * 2 ** 20 / elem_bytes))
    n = len(offsets) - 1
    buckets, bucket_of = [], [0] * n
    hi, layers = offsets[n], []
    for i in range(n - 1, -1, -1):
        layers.append(i)
        bucket_of[i] = len(buckets)
        if hi - offsets[i] >= cap or i == 0:
            buckets.append((offsets[i], hi, layers))
            hi, layers = offsets[i], []
    return buckets, bucket_of

"""Flat tensor dicts written and read with torch.distributed.checkpoint (DCP), never unpickling objects.

DCP spreads the writing of a state dict over the ranks (replicated entries are deduplicated, each rank
writes a share), so a sharded checkpoint costs every rank about 1/world of the bytes. Its `.metadata`
file is a pickle, and its reader calls plain `pickle.load`; `SafeReader` replaces that with an unpickler
that only builds DCP's own metadata records, torch dtypes and sizes, so a foreign or tampered folder fails
to load instead of running code. Tensor payloads are already read by DCP with `weights_only=True`.

Only tensors go into DCP: non-tensor values would be stored as pickled bytes (and read back with
`weights_only=False`), so those live in small `weights_only` files beside it (see state.py).
"""

import io
import pathlib
import pickle
import warnings
from contextlib import contextmanager

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import metadata as dcp_meta
from torch.distributed.checkpoint.filesystem import FileSystem

from bip_dist.checkpoint.io import Summing, write_json

MANIFEST = "checksums_{:05d}.json"  # per rank: {file name: {"crc32", "size"}} of the files it wrote

_META_CLASSES = {"Metadata", "TensorStorageMetadata", "TensorProperties", "ChunkStorageMetadata",
                 "MetadataIndex", "StorageMeta", "BytesStorageMetadata", "_MEM_FORMAT_ENCODING"}
_ALLOWED = {
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"), ("pathlib", "PurePosixPath"),
    ("pathlib._local", "PosixPath"), ("pathlib._local", "WindowsPath"),
    ("collections", "OrderedDict"),
}


class _MetaUnpickler(pickle.Unpickler):
    """Builds DCP metadata records only; any other global is refused."""

    def find_class(self, module, name):
        if module == "torch.distributed.checkpoint.metadata" and name in _META_CLASSES:
            return getattr(dcp_meta, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if (module, name) in _ALLOWED:
            mod = __import__(module, fromlist=[name])
            return getattr(mod, name)
        raise pickle.UnpicklingError(f"DCP metadata refers to {module}.{name}, which is not allowed")


class SafeReader(dcp.FileSystemReader):
    """FileSystemReader whose metadata is read with the restricted unpickler."""

    def read_metadata(self, *args, **kwargs):
        path = pathlib.Path(self.path) / ".metadata"
        if not path.is_file():
            raise FileNotFoundError(f"{self.path}: no DCP .metadata (not a complete checkpoint)")
        md = _MetaUnpickler(io.BytesIO(path.read_bytes())).load()
        if getattr(md, "storage_meta", None) is None:
            md.storage_meta = dcp_meta.StorageMeta()
        md.storage_meta.load_id = self.load_id
        return md


def entries(path):
    """{key: (shape, dtype)} of every tensor stored in the DCP folder `path`."""
    md = SafeReader(str(path)).read_metadata()
    out = {}
    for k, v in md.state_dict_metadata.items():
        if isinstance(v, dcp_meta.TensorStorageMetadata):
            out[k] = (tuple(v.size), v.properties.dtype)
    return out


def storage_files(path):
    """{file name: bytes it must hold at least} of every data file the `.metadata` of `path` refers to."""
    md = SafeReader(str(path)).read_metadata()
    need = {}
    for info in md.storage_data.values():
        need[info.relative_path] = max(need.get(info.relative_path, 0), info.offset + info.length)
    return need


def load_flat(path, keys=None):
    """Read the tensors of `path` (all, or those in `keys` present there) into a fresh CPU dict.

    Runs without a process group (no_dist): every entry our checkpoints hold is replicated or keyed by
    rank, so each process reads what it needs on its own, whatever the world size that wrote it.
    """
    have = entries(path)
    want = have if keys is None else {k: have[k] for k in keys if k in have}
    flat = {k: torch.empty(shape, dtype=dt) for k, (shape, dt) in want.items()}
    if flat:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "assuming the intent is to load in a single process"
            dcp.load(flat, storage_reader=SafeReader(str(path)), no_dist=True)
    return flat


class _SummingFS(FileSystem):
    """DCP's file system with every written file's CRC-32 and size kept in `sums`."""

    def __init__(self):
        super().__init__()
        self.sums = {}

    @contextmanager
    def create_stream(self, path, mode):
        with super().create_stream(path, mode) as f:
            if "w" not in mode:
                yield f
                return
            s = Summing(f)
            yield s
            self.sums[pathlib.Path(path).name.removesuffix(".tmp")] = s.record()  # .metadata.tmp is renamed


class _SummingWriter(dcp.FileSystemWriter):
    """FileSystemWriter that leaves MANIFEST for this rank: its shards, the files in `beside` it wrote
    itself, and on the coordinator `.metadata`. Written inside DCP's write step (the coordinator's after
    its finish), so a save counts as complete only once every rank's manifest is on disk."""

    def __init__(self, path, beside):
        super().__init__(str(path), sync_files=True)
        self.fs, self.beside, self.coordinator, self.my_rank = _SummingFS(), dict(beside), True, 0

    def set_up_storage_writer(self, is_coordinator, *args, **kwargs):
        super().set_up_storage_writer(is_coordinator, *args, **kwargs)
        self.coordinator, self.my_rank = is_coordinator, kwargs.get("rank") or 0

    def _write_manifest(self):
        write_json(pathlib.Path(self.path) / MANIFEST.format(self.my_rank), {**self.beside, **self.fs.sums})

    def write_data(self, plan, planner):
        fut = super().write_data(plan, planner)
        if not self.coordinator:
            self._write_manifest()
        return fut

    def finish(self, metadata, results):
        super().finish(metadata, results)
        self._write_manifest()


def save_flat(flat, path, group=None, async_save=False, beside=None):
    """Write the flat tensor dict `flat` to the DCP folder `path` (collective when `group` is given), with
    this rank's checksum manifest; `beside` holds the checksum records of files it wrote there itself.

    Returns None, or with `async_save` a future that completes once this rank's share is on disk; on the
    coordinating rank (0) that also means every rank's share and the metadata are written.
    """
    writer = _SummingWriter(path, beside or {})
    no_dist = group is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if async_save:
            return dcp.async_save(flat, storage_writer=writer, process_group=group, no_dist=no_dist)
        dcp.save(flat, storage_writer=writer, process_group=group, no_dist=no_dist)
    return None

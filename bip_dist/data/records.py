"""The LMDB record layout written by data_prep and read by the loaders (no pickle anywhere).

Keys: b"%010d" % index for images 0..count-1, plus b"__meta__" (UTF-8 JSON) and, while a conversion is
in progress, b"__progress__" (JSON). Each image value is

    HEADER = struct "<4sq32sI": magic b"BIPR", label (int64), sha256 of the payload (32 bytes),
             payload length (uint32)
    payload: the encoded image (JPEG, RGB, longest side <= the file's max_side)
"""

import hashlib
import json
import struct

MAGIC = b"BIPR"
HEADER = struct.Struct("<4sq32sI")
FORMAT_VERSION = 1
META_KEY = b"__meta__"
PROGRESS_KEY = b"__progress__"


def record_key(index):
    """Zero-padded key: LMDB's byte order equals index order."""
    return b"%010d" % index


def pack_record(label, payload):
    """Header + payload bytes for one image."""
    return HEADER.pack(MAGIC, int(label), hashlib.sha256(payload).digest(), len(payload)) + payload


def unpack_record(buf, check=False):
    """(label, payload, sha256 digest) of a record; ValueError when it is malformed (or, with `check`,
    when the payload does not match its stored hash)."""
    buf = bytes(buf)
    if len(buf) < HEADER.size:
        raise ValueError(f"record of {len(buf)} bytes is shorter than its header")
    magic, label, digest, nbytes = HEADER.unpack_from(buf)
    if magic != MAGIC:
        raise ValueError(f"bad record magic {magic!r}")
    payload = buf[HEADER.size:]
    if len(payload) != nbytes:
        raise ValueError(f"payload is {len(payload)} bytes, header says {nbytes}")
    if check and hashlib.sha256(payload).digest() != digest:
        raise ValueError("payload does not match its sha256")
    return label, payload, digest


def read_meta(txn):
    """The `__meta__` JSON of an open LMDB transaction (None when absent)."""
    raw = txn.get(META_KEY)
    return None if raw is None else json.loads(bytes(raw).decode("utf-8"))

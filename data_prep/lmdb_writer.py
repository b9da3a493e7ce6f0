"""Resumable, parallel Source -> LMDB conversion.

Workers decode / clean / resize / encode; this process is the single writer. Records and a
`__progress__` key are committed in the same LMDB transaction every `chunk` source items, into
`<out>.partial`. A conversion killed at any moment (kill -9) restarts from the last committed progress
and, since encoding is deterministic, ends with the same records as an uninterrupted run. Only a complete
file is renamed (atomically) to its final name, so a half-written file is never taken as done.
"""

import hashlib
import json
import multiprocessing as mp
import os
import sys
import time

from tqdm import tqdm

from bip_dist.data.files import DataFileError, open_lmdb
from bip_dist.data.records import FORMAT_VERSION, META_KEY, PROGRESS_KEY, pack_record, read_meta, record_key
from data_prep.images import prepare

MAP_SIZE = 1 << 40  # address space only; the file grows with its content
REBUILD = "rerun with --force to rebuild it"
SLEEP_ENV = "BIP_PREP_SLEEP_PER_CHUNK"  # test hook: seconds to sleep after each commit


class BadInputError(RuntimeError):
    """Some source images cannot be decoded; `bad` lists (path, reason)."""

    def __init__(self, bad):
        super().__init__("\n".join(f"{p}: {r}" for p, r in bad))
        self.bad = bad


def _open_writer(path):
    import lmdb  # here: preparing in-memory or FFCV files needs no lmdb installed

    return lmdb.open(path, subdir=False, map_size=MAP_SIZE, lock=True, readahead=False, meminit=False)


def _drop_damaged(partial):
    """Remove a .partial that is not a whole LMDB (cut short, say), with one line saying so.

    The writer maps the file: reading a page past its end would kill this process with SIGBUS. Which
    chunks of a cut file are intact is not knowable (LMDB reuses freed pages), so it restarts cleanly.
    """
    if not os.path.exists(partial) or os.path.getsize(partial) == 0:
        return
    try:
        open_lmdb(partial).close()
        return
    except DataFileError as e:
        reason = str(e).split("; ")[0]  # the problem, without the advice for a finished file
    for p in (partial, partial + "-lock"):
        if os.path.exists(p):
            os.remove(p)
    print(f"[prep] warning: {reason}: the unfinished file of an earlier run is damaged; starting over from "
          f"item 0", file=sys.stderr, flush=True)


def _tasks(source, start, max_side, quality):
    for i in range(start, len(source)):
        yield i, source.task_src(i), max_side, quality


def _results(source, start, max_side, quality, workers):
    """Ordered (index, payload, error) results; a pool when workers > 0."""
    tasks = _tasks(source, start, max_side, quality)
    if workers <= 0:
        yield from map(prepare, tasks)
        return
    # fork: workers inherit the source (array sources would be slow to pickle) and start instantly.
    with mp.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(prepare, tasks, chunksize=8)


def _resume_state(env, settings):
    """Committed progress of a .partial made with the same settings, else None."""
    with env.begin() as txn:
        raw = txn.get(PROGRESS_KEY)
    if raw is None:
        return None
    prog = json.loads(bytes(raw).decode())
    return prog if prog.get("settings") == settings else None


def write_lmdb(source, out, *, max_side, quality, workers=2, skip_bad=False, chunk=256, force=False,
               report_path=None):
    """Convert `source` into the LMDB file `out`; returns the meta dict (or the existing file's).

    Bad images: by default none is written past the first bad one, every bad file is still found, and
    BadInputError (one line per file) is raised with `out` left unfinished; with `skip_bad` they are
    left out and listed in the meta and in `report_path` (JSON).
    """
    if os.path.exists(out) and not force:
        # A truncated copy fails with one line here instead of SIGBUS at first read.
        env = open_lmdb(out, rebuild=REBUILD)
        with env.begin() as txn:
            meta = read_meta(txn)
        env.close()
        if meta is None:
            raise DataFileError(f"{out}: no __meta__ record, not a finished data_prep LMDB; {REBUILD}")
        print(f"[prep] {out}: exists, kept (use --force to rebuild)", flush=True)
        return meta
    partial = out + ".partial"
    settings = {"max_side": max_side, "quality": quality, "source": source.name, "count": len(source),
                "source_digest": source.digest()}
    _drop_damaged(partial)
    env = _open_writer(partial)
    with env.begin() as txn:
        done = read_meta(txn)
    if done is not None and done.get("settings") == settings:  # killed between final commit and rename
        return _finish(env, partial, out, done, skip_bad, report_path)
    prog = _resume_state(env, settings)
    if prog is not None and prog["skipped"] and not skip_bad:
        env.close()  # an earlier --skip-bad run left these out; a strict run must name them
        raise BadInputError([(s["path"], s["error"]) for s in prog["skipped"]])
    if prog is None:  # nothing committed yet, or made with other settings: start clean
        env.close()
        for p in (partial, partial + "-lock"):
            if os.path.exists(p):
                os.remove(p)
        env = _open_writer(partial)
        prog = {"settings": settings, "next": 0, "count": 0, "chain": "", "skipped": [],
                "per_class": [0] * len(source.classes)}
    elif prog["next"]:
        print(f"[prep] {partial}: resuming at item {prog['next']} ({prog['count']} records committed)",
              flush=True)
    sleep = float(os.environ.get(SLEEP_ENV, "0") or 0)
    bad, stopped = [], False
    txn = env.begin(write=True)
    bar = tqdm(total=len(source), initial=prog["next"], unit="img", desc=os.path.basename(out),
               smoothing=0.05, mininterval=1.0)
    for i, payload, err in _results(source, prog["next"], max_side, quality, workers):
        bar.update(1)
        if err is not None:
            bad.append((source.describe(i), err))
            if skip_bad:
                prog["skipped"].append({"index": i, "path": source.describe(i), "error": err})
            else:
                stopped = True  # keep decoding to name every bad file, but write nothing more
        if stopped:
            continue
        if err is None:
            rec = pack_record(source.labels[i], payload)
            txn.put(record_key(prog["count"]), rec)
            # Chained over label + payload hash: any edit, swap or deletion changes the final digest.
            prog["chain"] = hashlib.sha256((prog["chain"] + rec[4:44].hex()).encode()).hexdigest()
            prog["count"] += 1
            prog["per_class"][source.labels[i]] += 1
        prog["next"] = i + 1
        if prog["next"] % chunk == 0:
            txn.put(PROGRESS_KEY, json.dumps(prog).encode())
            txn.commit()
            if sleep:
                time.sleep(sleep)
            txn = env.begin(write=True)
    bar.close()
    if stopped:
        txn.put(PROGRESS_KEY, json.dumps(prog).encode())
        txn.commit()
        env.close()
        raise BadInputError(bad)
    meta = {"format_version": FORMAT_VERSION, "kind": "bip-lmdb", "count": prog["count"],
            "classes": source.classes, "settings": settings,
            "records_digest": prog["chain"], "skipped": prog["skipped"], "encoding": "jpeg"}
    # Per-class counts let users spot a lost class without reading the records.
    meta["labels_per_class"] = prog["per_class"]
    txn.put(META_KEY, json.dumps(meta).encode())
    txn.delete(PROGRESS_KEY)
    txn.commit()
    return _finish(env, partial, out, meta, skip_bad, report_path)


def _finish(env, partial, out, meta, skip_bad, report_path):
    env.sync(True)
    env.close()
    os.replace(partial, out)  # atomic: `out` exists only when complete
    if os.path.exists(partial + "-lock"):
        os.remove(partial + "-lock")
    if skip_bad and meta["skipped"]:
        report = report_path or out + ".skipped.json"
        _write_json(report, {"file": out, "skipped": meta["skipped"]})
        print(f"[prep] skipped {len(meta['skipped'])} bad images; report: {report}", flush=True)
    return meta


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)

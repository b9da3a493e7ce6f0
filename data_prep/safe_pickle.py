"""Reading the CIFAR python pickles without executing anything: only numpy's array reconstructors may
be referenced, so a tampered or malicious archive fails instead of running code."""

import io
import pickle

import numpy as np

class UnsafePickleError(ValueError):
    """A pickle that references a global outside ALLOWED."""


_NP_CORE = getattr(np, "_core", None) or np.core


def _latin1_encode(text, encoding="utf-8"):
    """What Python 3 protocol-2 pickles use for bytes: `_codecs.encode(str, 'latin1')`; only that."""
    if encoding != "latin1" or not isinstance(text, str):
        raise UnsafePickleError(f"refuses _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


ALLOWED = {
    ("_codecs", "encode"): _latin1_encode,
    ("numpy.core.multiarray", "_reconstruct"): _NP_CORE.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _NP_CORE.multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose find_class resolves only the numpy array globals in ALLOWED."""

    def __init__(self, file, name):
        super().__init__(file, encoding="bytes")
        self.name = name

    def find_class(self, module, name):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"{self.name}: refuses to unpickle global {module}.{name} "
                                    f"(only numpy arrays are allowed)") from None


def safe_loads(data, name):
    """Unpickle `data` (bytes) with RestrictedUnpickler; `name` labels errors (the file it came from)."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), name).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(str(e) if str(e).startswith(name) else f"{name}: {e}") from None
    except Exception as e:  # truncated / garbage pickles raise many types; report them uniformly
        raise ValueError(f"{name}: not a readable CIFAR pickle ({type(e).__name__}: {e})") from None

"""Restricted unpickling for files from outside (calibration pickles, dataset labels, npz object arrays).

A pickle can run arbitrary code when it is loaded. :class:`SafeUnpickler` resolves only the globals
that numpy arrays, dtypes and scalars need to rebuild (under their numpy 1 and numpy 2 names), the
latin-1 ``_codecs.encode`` through which protocol-2 pickles store array bytes, and a few plain
containers; any other global is refused before it is imported. Subclasses turn the refusal into the
error type of their file family (see :meth:`SafeUnpickler.error`).
"""

from __future__ import annotations

import collections
import pickle
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["SafeUnpickler", "allowed_globals"]


def _encode_latin1(text, encoding="latin1"):
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return str(text).encode("latin1")


@lru_cache(maxsize=1)
def allowed_globals() -> dict[tuple[str, str], Any]:
    """``(module, name) -> object`` of every global a :class:`SafeUnpickler` resolves."""
    try:
        from numpy._core import multiarray as ma  # numpy >= 2
        from numpy._core import numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as ma
        from numpy.core import numeric
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = ma._reconstruct
        allowed[(mod, "scalar")] = ma.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = numeric._frombuffer  # protocol 5
    # numpy 2 pickles dtypes of some kinds by their class, e.g. numpy.dtypes.Float64DType
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25
    for name in dir(dtypes) if dtypes is not None else ():
        cls = getattr(dtypes, name)
        if isinstance(cls, type) and issubclass(cls, np.dtype):
            allowed[("numpy.dtypes", name)] = cls
    allowed[("_codecs", "encode")] = _encode_latin1  # protocol 2 stores bytes as encode(text, "latin1")
    for mod in ("builtins", "__builtin__"):
        for name, obj in (("set", set), ("frozenset", frozenset), ("slice", slice), ("complex", complex)):
            allowed[(mod, name)] = obj
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    return allowed


_UNREADABLE = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError)


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that admits only numpy array/dtype/scalar reconstruction and plain containers.

    ``encoding="latin1"`` lets Python 2 pickles of arrays load. Override :meth:`error` to raise the
    caller's own error type (naming the file); by default it is a ``pickle.UnpicklingError``.
    :meth:`load_checked` also turns a corrupt or truncated pickle into that error.
    """

    def __init__(self, file, path=None):
        super().__init__(file, encoding="latin1")
        self._path = path
        self._refused: Exception | None = None

    def error(self, message: str) -> Exception:
        """The exception to raise for ``message`` (subclasses: their file family's error)."""
        return pickle.UnpicklingError(f"{self._path}: {message}")

    def _refuse(self, what: str) -> Exception:
        self._refused = self.error(f"{what}; the file was not loaded")
        return self._refused

    def find_class(self, module, name):
        obj = allowed_globals().get((module, name))
        if obj is None:
            raise self._refuse(
                f"the pickle refers to the global '{module}.{name}', which is not allowed (only numpy "
                "arrays, dtypes and plain containers are admitted)"
            )
        return obj

    def persistent_load(self, pid):
        raise self._refuse("the pickle uses persistent ids, which are not allowed")

    def load_checked(self):
        """:meth:`load`, with any failure to read raised as :meth:`error` (refusals unchanged)."""
        try:
            return self.load()
        except _UNREADABLE as e:
            if e is self._refused:
                raise
            raise self.error(f"not a readable pickle of numpy arrays ({type(e).__name__}: {e})") from None

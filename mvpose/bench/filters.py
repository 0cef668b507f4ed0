"""``mvpose bench filters``: the classic trajectory filters against plain references (see
:mod:`mvpose.filters.bench`)."""

from mvpose.filters.bench import main

__all__ = ["main"]

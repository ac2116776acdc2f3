"""moviedb: a distributed movie-information database.

Use from Python::

    from moviedb import Cluster
    async with Cluster(["127.0.0.1:7001", "127.0.0.1:7002"]) as cluster:
        results = await cluster.get("Alien")

Names are imported on first use, so that `moviedb.server` never loads the client library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moviedb.client import (
        Address,
        Cluster,
        MovieView,
        ReadResult,
        ReadStatus,
        ServerInfo,
        WriteResult,
        WriteStatus,
    )
    from moviedb.errors import InvalidMovie, MoviedbError, ServerUnavailable
    from moviedb.model import Movie, fold_title
    from moviedb.versions import Copy

_HOMES = {
    "Address": "moviedb.client",
    "Cluster": "moviedb.client",
    "Copy": "moviedb.versions",
    "InvalidMovie": "moviedb.errors",
    "Movie": "moviedb.model",
    "MovieView": "moviedb.client",
    "MoviedbError": "moviedb.errors",
    "ReadResult": "moviedb.client",
    "ReadStatus": "moviedb.client",
    "ServerInfo": "moviedb.client",
    "ServerUnavailable": "moviedb.errors",
    "WriteResult": "moviedb.client",
    "WriteStatus": "moviedb.client",
    "fold_title": "moviedb.model",
}

__all__ = [
    "Address",
    "Cluster",
    "Copy",
    "InvalidMovie",
    "Movie",
    "MovieView",
    "MoviedbError",
    "ReadResult",
    "ReadStatus",
    "ServerInfo",
    "ServerUnavailable",
    "WriteResult",
    "WriteStatus",
    "fold_title",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'moviedb' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)

"""moviedb: a distributed movie-information database.

Use from Python::

    from moviedb import Cluster
    async with Cluster(["127.0.0.1:7001", "127.0.0.1:7002"]) as cluster:
        results = await cluster.get("Alien")
"""

from moviedb.client import (
    Address,
    Cluster,
    MovieView,
    ReadResult,
    ReadStatus,
    ServerInfo,
    WriteResult,
    WriteStatus,
    reconcile,
)
from moviedb.errors import InvalidMovie, MoviedbError, ServerUnavailable
from moviedb.model import Movie, fold_title
from moviedb.versions import Copy

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
    "reconcile",
]

"""The client library: many servers at once, one result per server."""

from moviedb.client.address import Address, parse_address
from moviedb.client.cluster import (
    Cluster,
    ReadResult,
    ReadStatus,
    ServerInfo,
    WriteResult,
    WriteStatus,
)
from moviedb.client.reconcile import MovieView, reconcile

__all__ = [
    "Address",
    "Cluster",
    "MovieView",
    "ReadResult",
    "ReadStatus",
    "ServerInfo",
    "WriteResult",
    "WriteStatus",
    "parse_address",
    "reconcile",
]

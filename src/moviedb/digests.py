"""Catalog digests: what lets two servers compare a million movies in one small exchange (pure).

Every stored copy (tombstones too) contributes `entry_hash(key, rev)`, a 64-bit hash, to the
bucket `bucket_of(key)`. A bucket's digest is the XOR of its entries' hashes, so a write updates
it in O(1) (XOR out the old revision, XOR in the new) and the order of writes does not matter.
The catalog digest is the XOR of every bucket. Two servers holding the same revision of every
movie have equal digests; a differing bucket names the only keys worth listing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

BUCKET_BITS: Final = 10
BUCKETS: Final = 1 << BUCKET_BITS  # 1024: about 1,000 movies per bucket at a million
_MASK: Final = (1 << 64) - 1


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def bucket_of(key: str) -> int:
    """The bucket of a movie key: the leading BUCKET_BITS bits of the key's hash."""
    return _hash64(key.encode()) >> (64 - BUCKET_BITS)


def entry_hash(key: str, rev: str) -> int:
    """A stored copy's contribution to its bucket's digest."""
    return _hash64(key.encode() + b"\x00" + rev.encode())


def combine(digests: Iterable[int]) -> int:
    """The XOR of digests (the catalog digest, from the bucket digests)."""
    result = 0
    for digest in digests:
        result ^= digest
    return result


def to_hex(digest: int) -> str:
    return f"{digest & _MASK:016x}"


def from_hex(text: str) -> int:
    return int(text, 16)


def to_signed(digest: int) -> int:
    """As SQLite stores it (a signed 64-bit integer)."""
    return digest - (1 << 64) if digest >= 1 << 63 else digest


def from_signed(value: int) -> int:
    return value & _MASK


def differing_buckets(a: Iterable[int], b: Iterable[int]) -> list[int]:
    """The buckets whose digests differ between two servers' lists."""
    return [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]

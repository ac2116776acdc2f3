"""Tokens: who may use a server, and whether to write (`--token-file`).

The token file holds one token a line, optionally followed by `read-only`; `#` starts a comment.
Only SHA-256 digests of the tokens are kept, and a presented token is compared with every one
of them in constant time (hmac.compare_digest), so neither the time taken nor an early exit
tells how much of a guess was right.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from moviedb.protocol import is_loopback, token_lines

__all__ = ["Access", "TokenFileError", "Tokens", "is_loopback", "load_tokens", "parse_tokens"]

MIN_TOKEN_CHARS: Final = 16
READ_ONLY_WORDS: Final = ("read-only", "ro")


class Access(enum.Enum):
    READ_ONLY = "read-only"
    READ_WRITE = "read-write"


class TokenFileError(Exception):
    """The token file cannot be used; the message names the file, the line and the rule."""


@dataclass(frozen=True)
class Tokens:
    digests: tuple[tuple[bytes, Access], ...]

    def check(self, presented: str) -> Access | None:
        """The access the token grants, or None; takes the same time whichever token matches."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        granted: Access | None = None
        for stored, access in self.digests:
            if hmac.compare_digest(digest, stored) and granted is None:
                granted = access
        return granted


def parse_tokens(text: str, source: str = "the token file") -> Tokens:
    accepted = (
        f"accepted: one token of at least {MIN_TOKEN_CHARS} printable ASCII characters a line, "
        "optionally followed by `read-only`; # starts a comment"
    )
    entries: dict[bytes, Access] = {}
    for number, token, rest in token_lines(text):
        if len(rest) > 1 or (rest and rest[0] not in READ_ONLY_WORDS):
            unexpected = " ".join(rest)
            raise TokenFileError(f"{source} line {number}: unexpected {unexpected!r}; {accepted}")
        if len(token) < MIN_TOKEN_CHARS or not (token.isascii() and token.isprintable()):
            raise TokenFileError(
                f"{source} line {number}: the token is too short or not printable ASCII; {accepted}"
            )
        access = Access.READ_ONLY if rest else Access.READ_WRITE
        digest = hashlib.sha256(token.encode()).digest()
        if entries.get(digest) not in (None, access):
            raise TokenFileError(
                f"{source} line {number}: the same token is listed read-only and read-write"
            )
        entries[digest] = access
    if not entries:
        raise TokenFileError(f"{source} holds no token; {accepted}")
    return Tokens(tuple(entries.items()))


def load_tokens(path: str | os.PathLike[str]) -> Tokens:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise TokenFileError(f"cannot read the token file {path}: {reason}") from None
    return parse_tokens(text, str(path))


def readable_by_others(path: str | os.PathLike[str]) -> bool:
    """The token file grants access: anyone who can read it can use the server."""
    try:
        return bool(os.stat(path).st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False

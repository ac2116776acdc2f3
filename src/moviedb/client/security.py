"""How the client reaches one server: a token for `hello`, and TLS with the CA to trust.

Kept per server in the config (docs/client.md#configuration); a server without an entry is
reached over plain TCP without a token, as before.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from moviedb.errors import ConfigError


@dataclass(frozen=True)
class ServerSecurity:
    token: str | None = None  # sent in the first `hello` of every connection
    token_file: Path | None = None  # where the token was read from (kept in the config instead)
    tls: bool = False
    ca: Path | None = None  # trust this CA file instead of the system's store (implies tls)

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.ca is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        """A context that verifies the server's certificate and name, or None for plain TCP."""
        if not self.uses_tls:
            return None
        try:
            context = ssl.create_default_context(
                cafile=str(self.ca) if self.ca is not None else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the CA file {self.ca}: {exc}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def describe(self) -> str:
        parts = []
        if self.uses_tls:
            parts.append(f"TLS (CA {self.ca})" if self.ca else "TLS")
        if self.token is not None:
            parts.append("token")
        return ", ".join(parts) or "plain TCP"


PLAIN = ServerSecurity()


def read_token_file(path: Path) -> str:
    """The token in `path`: its first line that is not blank or a # comment."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"cannot read the token file {path}: {reason}") from None
    for line in text.splitlines():
        token = line.split("#", 1)[0].strip()
        if token:
            return token.split()[0]
    raise ConfigError(f"the token file {path} holds no token")

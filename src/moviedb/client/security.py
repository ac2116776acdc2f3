"""How the client reaches one server: a token for `hello`, and TLS with the CA to trust.

Kept per server in the config (docs/client.md#configuration); a server without an entry is
reached over plain TCP without a token, as before.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from moviedb.client.address import Address
from moviedb.errors import ConfigError
from moviedb.protocol import is_loopback, token_lines


@dataclass(frozen=True)
class ServerSecurity:
    token: str | None = field(default=None, repr=False)  # sent first on every connection
    token_file: Path | None = None  # where the token was read from (kept in the config instead)
    tls: bool = False
    ca: Path | None = None  # trust this CA file instead of the system's store (implies tls)
    insecure: bool = False  # allow sending the token to another machine without TLS

    def check(self, address: Address) -> None:
        """Refuse to send a token in clear text across a network (loopback is fine)."""
        if self.token is None or self.uses_tls or self.insecure or is_loopback(address.host):
            return
        raise ConfigError(
            f"{address}: a token would cross the network unencrypted; use TLS (--tls or --ca), "
            "or accept the risk with insecure = true (addserver --insecure)"
        )

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
            where = f"the CA file {self.ca}" if self.ca else "the system's trusted CAs"
            raise ConfigError(f"cannot load {where}: {exc}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def updated(
        self,
        *,
        token_file: Path | None = None,
        tls: bool = False,
        ca: Path | None = None,
        insecure: bool = False,
    ) -> ServerSecurity:
        """These settings with the given ones changed (a new token file is read now)."""
        return ServerSecurity(
            read_token_file(token_file) if token_file else self.token,
            token_file or self.token_file,
            tls or self.tls,
            ca or self.ca,
            insecure or self.insecure,
        )

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
    for _, token, _ in token_lines(text):
        return token
    raise ConfigError(f"the token file {path} holds no token")

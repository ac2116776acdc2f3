"""The client's server list (the successor of the original design's serverdb.p), as TOML.

Found at `--config PATH`, else `$MOVIEDB_CONFIG`, else the platform's user config directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from moviedb.client.address import Address, parse_address
from moviedb.client.cluster import DEFAULT_TIMEOUT
from moviedb.client.security import PLAIN, ServerSecurity, read_token_file
from moviedb.errors import ConfigError, InvalidAddress


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    from_env = os.environ.get("MOVIEDB_CONFIG")
    if from_env:
        return Path(from_env)
    import platformdirs  # 4 ms, and not needed when the environment names the file

    return platformdirs.user_config_path("moviedb") / "config.toml"


QUEUE_FILE: Final = "queue.sqlite3"  # in state_dir(): the writes waiting for servers


def queue_path(location: str | os.PathLike[str] | None = None) -> Path:
    """The queue's file: `queue.sqlite3` in a directory (an existing one, or a name without a
    suffix), else the file named; by default in state_dir()."""
    path = state_dir() if location is None else Path(location)
    if path.is_dir() or not path.suffix:
        return path / QUEUE_FILE
    return path


def state_dir() -> Path:
    """Where the client keeps its history (and, later, queued writes)."""
    from_env = os.environ.get("MOVIEDB_STATE_DIR")
    if from_env:
        return Path(from_env)
    import platformdirs

    return platformdirs.user_state_path("moviedb")


@dataclass
class Config:
    path: Path
    servers: list[Address] = field(default_factory=list)
    timeout: float | None = None
    security: dict[Address, ServerSecurity] = field(default_factory=dict)  # token, TLS

    def add_server(self, address: Address, security: ServerSecurity | None = None) -> bool:
        """Add to the list, or change how it is reached; False when nothing changed."""
        if security is not None:
            security.check(address)
        changed = False
        if address not in self.servers:
            self.servers.append(address)
            changed = True
        if security is not None and security != self.security.get(address, PLAIN):
            if security == PLAIN:
                self.security.pop(address, None)
            else:
                self.security[address] = security
            changed = True
        return changed

    def servers_for(self, given: str | None) -> list[Address]:
        """The servers a command talks to: those `given` (HOST:PORT,...), else the list."""
        if given:
            return [parse_address(s) for s in given.split(",") if s.strip()]
        return list(self.servers)

    def timeout_for(self, given: float | None) -> float:
        """Seconds a command waits for each server: `given`, else the config's, else 2."""
        if given is not None:
            return given
        return self.timeout or DEFAULT_TIMEOUT

    def remove_server(self, address: Address) -> bool:
        if address not in self.servers:
            return False
        self.servers.remove(address)
        self.security.pop(address, None)
        return True


def load(path: Path) -> Config:
    """Read the config; a missing file is an empty server list."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    import tomllib  # here: a command given --servers and no config file never parses TOML

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    entries = data.get("servers", [])
    if not isinstance(entries, list):
        raise ConfigError(f'{path}: servers must be a list: [[servers]] address = "HOST:PORT"')
    servers: list[Address] = []
    security: dict[Address, ServerSecurity] = {}
    for i, entry in enumerate(entries):
        address = entry.get("address") if isinstance(entry, dict) else None
        if not isinstance(address, str):
            raise ConfigError(f'{path}: servers[{i}] needs address = "HOST:PORT"')
        try:
            servers.append(parse_address(address))
        except InvalidAddress as exc:
            raise ConfigError(f"{path}: servers[{i}]: {exc}") from None
        assert isinstance(entry, dict)
        entry_security = _security(entry, f"{path}: servers[{i}]", path.parent)
        if entry_security != PLAIN:
            security[servers[-1]] = entry_security
    timeout = data.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout < float("inf")
    ):
        raise ConfigError(f"{path}: timeout must be a positive number of seconds")
    return Config(
        path,
        list(dict.fromkeys(servers)),
        None if timeout is None else float(timeout),
        security,
    )


_SECURITY_KEYS = ("address", "token", "token_file", "tls", "ca", "insecure")


def _security(entry: dict[str, Any], where: str, base: Path) -> ServerSecurity:
    """How to reach one server: `token` or `token_file`, `tls`, `ca` (relative to the config)."""
    unknown = sorted(set(entry) - set(_SECURITY_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown {', '.join(unknown)}; accepted: {', '.join(_SECURITY_KEYS)}"
        )
    for name in ("token", "token_file", "ca"):
        if name in entry and (not isinstance(entry[name], str) or not entry[name].strip()):
            raise ConfigError(f"{where}: {name} must be a non-empty string")
    for name in ("tls", "insecure"):
        if name in entry and not isinstance(entry[name], bool):
            raise ConfigError(f"{where}: {name} must be true or false")
    if "token" in entry and "token_file" in entry:
        raise ConfigError(f"{where}: give token or token_file, not both")
    token_file = base / entry["token_file"] if "token_file" in entry else None
    token = entry.get("token")
    if token_file is not None:
        token = read_token_file(token_file)
    ca = base / entry["ca"] if "ca" in entry else None
    security = ServerSecurity(
        token, token_file, bool(entry.get("tls", False)), ca, bool(entry.get("insecure", False))
    )
    try:
        security.check(parse_address(entry["address"]))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return security


def save(config: Config) -> None:
    """Write the config atomically (a crash leaves the old file or the new one, never half)."""
    data: dict[str, Any] = {}
    if config.timeout is not None:
        data["timeout"] = config.timeout
    data["servers"] = [_entry(a, config.security.get(a, PLAIN)) for a in config.servers]
    import tomli_w  # only commands that change the server list write the config

    text = "# moviedb client configuration\n" + tomli_w.dumps(data)
    tmp = config.path.with_name(config.path.name + ".tmp")
    try:
        config.path.parent.mkdir(parents=True, exist_ok=True)
        # Only its owner may read it: it may hold tokens.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a leftover tmp file keeps its old mode through O_CREAT
        with open(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, config.path)
    except OSError as exc:
        raise ConfigError(f"cannot save {config.path}: {exc.strerror or exc}") from None


def _entry(address: Address, security: ServerSecurity) -> dict[str, Any]:
    entry: dict[str, Any] = {"address": str(address)}
    if security.token_file is not None:
        entry["token_file"] = str(security.token_file.absolute())
    elif security.token is not None:
        entry["token"] = security.token
    if security.tls:
        entry["tls"] = True
    if security.ca is not None:
        entry["ca"] = str(security.ca.absolute())
    if security.insecure:
        entry["insecure"] = True
    return entry

"""The client's server list (the successor of the original design's serverdb.p), as TOML.

Found at `--config PATH`, else `$MOVIEDB_CONFIG`, else the platform's user config directory.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
import tomli_w

from moviedb.client.address import Address, parse_address
from moviedb.errors import ConfigError, InvalidAddress


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    from_env = os.environ.get("MOVIEDB_CONFIG")
    if from_env:
        return Path(from_env)
    return platformdirs.user_config_path("moviedb") / "config.toml"


def state_dir() -> Path:
    """Where the client keeps its history (and, later, queued writes)."""
    from_env = os.environ.get("MOVIEDB_STATE_DIR")
    return Path(from_env) if from_env else platformdirs.user_state_path("moviedb")


@dataclass
class Config:
    path: Path
    servers: list[Address] = field(default_factory=list)
    timeout: float | None = None

    def add_server(self, address: Address) -> bool:
        """Add to the list; False when it was there already."""
        if address in self.servers:
            return False
        self.servers.append(address)
        return True

    def remove_server(self, address: Address) -> bool:
        if address not in self.servers:
            return False
        self.servers.remove(address)
        return True


def load(path: Path) -> Config:
    """Read the config; a missing file is an empty server list."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Config(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    entries = data.get("servers", [])
    if not isinstance(entries, list):
        raise ConfigError(f'{path}: servers must be a list: [[servers]] address = "HOST:PORT"')
    servers: list[Address] = []
    for i, entry in enumerate(entries):
        address = entry.get("address") if isinstance(entry, dict) else None
        if not isinstance(address, str):
            raise ConfigError(f'{path}: servers[{i}] needs address = "HOST:PORT"')
        try:
            servers.append(parse_address(address))
        except InvalidAddress as exc:
            raise ConfigError(f"{path}: servers[{i}]: {exc}") from None
    timeout = data.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout < float("inf")
    ):
        raise ConfigError(f"{path}: timeout must be a positive number of seconds")
    return Config(path, list(dict.fromkeys(servers)), None if timeout is None else float(timeout))


def save(config: Config) -> None:
    """Write the config atomically (a crash leaves the old file or the new one, never half)."""
    data: dict[str, Any] = {}
    if config.timeout is not None:
        data["timeout"] = config.timeout
    data["servers"] = [{"address": str(a)} for a in config.servers]
    text = "# moviedb client configuration\n" + tomli_w.dumps(data)
    tmp = config.path.with_name(config.path.name + ".tmp")
    try:
        config.path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, config.path)
    except OSError as exc:
        raise ConfigError(f"cannot save {config.path}: {exc.strerror or exc}") from None

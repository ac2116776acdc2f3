"""The exception hierarchy: one base, a few kinds, messages that say what to do next."""

from __future__ import annotations


class MoviedbError(Exception):
    """Base of every error moviedb raises on purpose."""


class InvalidMovie(MoviedbError):
    """A movie record (or a field of one) is not acceptable; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class InvalidAddress(MoviedbError):
    """A server address is not HOST:PORT."""


class ProtocolError(MoviedbError):
    """A peer sent something that is not valid moviedb protocol."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ServerUnavailable(MoviedbError):
    """A server could not be reached or stopped answering."""


class ConfigError(MoviedbError):
    """The client configuration file cannot be read or is not valid."""

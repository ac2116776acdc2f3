"""The exit codes of every command (README, "Exit codes"), and the error that ends a command
that cannot run as asked. Apart from commands.py so that the one-shot `get` needs neither it
nor what it imports."""

from __future__ import annotations

OK = 0
NOT_FOUND = 1
USAGE = 2
NO_SERVER = 3
PARTIAL_WRITE = 4
REFUSED = 5  # a conflict, or a change that needs --yes: nothing was written


class CommandError(Exception):
    """A command cannot run as asked; the message says why and what is accepted."""

    def __init__(self, message: str, exit_code: int = USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code

"""The interactive shell: a prompt loop that runs the very same click commands as the CLI."""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterable

import click
from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.shortcuts import CompleteStyle

from moviedb import commands
from moviedb.client.config import state_dir
from moviedb.model import fold_title
from moviedb.session import Session

QUIT_WORDS = frozenset({"quit", "exit"})
TITLE_COMMANDS = frozenset({"get", "edit", "add", "delete", "resolve", "sync", "search"})
PREFETCH_TITLES = 5000


class ShellCompleter(Completer):
    """Commands first; then titles for commands that take one; then that command's options."""

    def __init__(self, group: click.Group, session: Session) -> None:
        self.group = group
        self.session = session

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        text = document.text_before_cursor
        words = text.split()
        if not words or (len(words) == 1 and not text.endswith(" ")):
            prefix = words[0] if words else ""
            for name in [*self.group.list_commands(click.Context(self.group)), "quit"]:
                if name.startswith(prefix):
                    yield Completion(name, start_position=-len(prefix))
            return
        command = words[0]
        current = "" if text.endswith(" ") else words[-1]
        if current.startswith("-"):
            yield from self._options(command, current)
            return
        if (command in TITLE_COMMANDS and len(words) <= 2 and not text.endswith(" ")) or (
            command in TITLE_COMMANDS and len(words) == 1
        ):
            yield from self._titles(text[len(command) :].lstrip())

    def _options(self, command: str, prefix: str) -> Iterable[Completion]:
        sub = self.group.commands.get(command)
        if sub is None:
            return
        for param in sub.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt.startswith(prefix):
                    yield Completion(opt, start_position=-len(prefix))

    def _titles(self, typed: str) -> Iterable[Completion]:
        prefix = fold_title(typed.strip("\"'")) if typed.strip("\"'") else ""
        for title in sorted(self.session.known_titles):
            if fold_title(title).startswith(prefix):
                shown = shlex.quote(title) if any(c in title for c in " '\"") else title
                yield Completion(shown, start_position=-len(typed), display=title)


def _prefetch_titles(session: Session) -> None:
    """Learn some titles for completion; a server that does not answer is simply skipped."""

    async def fetch() -> None:
        scan = commands.CatalogScan()
        async for row in commands.catalog(session.cluster(), scan, limit=PREFETCH_TITLES):
            session.known_titles.add(row.title)

    with contextlib.suppress(commands.CommandError):
        session.run(fetch())


def _history() -> FileHistory | InMemoryHistory:
    try:
        directory = state_dir()
        directory.mkdir(parents=True, exist_ok=True)
        return FileHistory(str(directory / "shell-history"))
    except OSError:
        return InMemoryHistory()


def run_shell(session: Session, group: click.Group) -> int:
    """Read commands until quit or end of input; returns the exit status of the shell."""
    from moviedb.cli import command_list

    console = session.console
    session.interactive = True
    console.print("[bold]moviedb shell[/] — every command goes to every server at once.")
    console.print(command_list({"quit": "leave the shell"}), highlight=False)
    _prefetch_titles(session)
    prompt: PromptSession[str] = PromptSession(
        history=_history(),
        completer=ShellCompleter(group, session),
        complete_while_typing=False,
        complete_style=CompleteStyle.READLINE_LIKE,  # Tab inserts a single match, lists many
    )
    while True:
        try:
            line = prompt.prompt("moviedb> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            return 0
        try:
            words = shlex.split(line)
        except ValueError as exc:
            console.print(f"[red]error:[/] {exc} (close the quote)")
            continue
        if not words:
            continue
        if words[0] in QUIT_WORDS:
            return 0
        if words[0] == "shell":
            console.print("already in the shell")
            continue
        run_line(group, session, words)


def run_line(group: click.Group, session: Session, words: list[str]) -> int:
    """Run one command line exactly as the CLI would; returns its exit code."""
    json_before = session.json_output
    try:
        result = group.main(words, prog_name="moviedb", obj=session, standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 1
    finally:
        session.json_output = json_before
    return result if isinstance(result, int) else 0

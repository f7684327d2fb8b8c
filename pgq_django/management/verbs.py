"""``manage.py pgq_<verb>``: the ``pgq`` CLI's verbs as Django commands.

One parser per verb: each command reads its arguments from the click command of
``pgq.cli`` (names, types, ranges, choices, defaults, help) and builds the
argparse parser Django's ``BaseCommand`` wants from them, so ``manage.py
pgq_retry --help`` looks like every other Django command while the option set
cannot drift from ``pgq retry``'s. The verb's own body then runs with a
``pgq.cli.Context`` whose App is ``pgq_django.app``, i.e. on the project's
database and Django's connection.

Errors come out the Django way: one ``CommandError: ...`` line (a traceback
only with ``--traceback``); usage errors exit with status 2, failures with 1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import click
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pgq import App
from pgq.cli import Context, cli
from pgq.exceptions import PgqError

from ..registry import app


class DjangoContext(Context):
    """The CLI's context for manage.py: the project's App and database."""

    def __init__(self) -> None:
        super().__init__(dsn=None)

    @property
    def dsn(self) -> str:
        return app.dsn

    def app(self, spec: str | None = None) -> App:
        return app


def add_click_parameters(
    parser: argparse.ArgumentParser,
    params: Iterable[click.Parameter],
    *,
    defaults: Mapping[str, Any] | None = None,
    help_texts: Mapping[str, str] | None = None,
) -> None:
    """Declare click parameters on an argparse parser (defaults may be overridden)."""
    defaults = defaults or {}
    help_texts = help_texts or {}
    params = list(params)
    context = click.Context(click.Command(None, params=params))
    for param in params:
        assert param.name is not None
        text = help_texts.get(param.name) or getattr(param, "help", None) or None
        default = defaults.get(param.name, _click_default(param, context))
        if isinstance(param, click.Argument):
            _add_argument(parser, param, default, text)
        elif isinstance(param, click.Option):
            _add_option(parser, param, default, text)


# Click (8.3+) marks "no default" with a sentinel that must not reach the verb.
_UNSET = getattr(click.core, "UNSET", None)


def _click_default(param: click.Parameter, context: click.Context) -> Any:
    value = param.get_default(context)
    return None if value is _UNSET else value


def _add_argument(
    parser: argparse.ArgumentParser, param: click.Argument, default: Any, text: str | None
) -> None:
    assert param.name is not None
    kwargs: dict[str, Any] = {"metavar": param.name.upper(), "help": text}
    if param.nargs == -1:
        kwargs["nargs"] = "+" if param.required else "*"
    elif not param.required:
        kwargs["nargs"] = "?"
        kwargs["default"] = default
    kwargs["type"] = _converter(param)
    parser.add_argument(param.name, **kwargs)


def _add_option(
    parser: argparse.ArgumentParser, param: click.Option, default: Any, text: str | None
) -> None:
    kwargs: dict[str, Any] = {"dest": param.name}
    if param.is_flag:
        kwargs["action"] = "store_true"
        kwargs["default"] = bool(default)
    else:
        kwargs["type"] = _converter(param)
        kwargs["default"] = default
        if getattr(param, "_flag_needs_value", False):  # an optional value: --watch [SECONDS]
            kwargs["nargs"] = "?"
            kwargs["const"] = param.flag_value
            if param.metavar:  # argparse adds the brackets of an optional value itself
                kwargs["metavar"] = param.metavar.strip("[]")
        if isinstance(param.type, click.Choice):
            kwargs["choices"] = list(param.type.choices)
        if default is not None and (param.show_default or param.name in _SHOWN):
            shown = ",".join(default) if isinstance(default, (list, tuple)) else default
            text = f"{text + ' ' if text else ''}Default: {shown}."
    kwargs["help"] = text
    parser.add_argument(*param.opts, **kwargs)


# Options whose default comes from PGQ["WORKER"] show it even if click did not.
_SHOWN = {"queues"}


def _converter(param: click.Parameter) -> Callable[[str], Any]:
    """click's conversion and checks (ranges, types), reported by argparse."""

    def convert(text: str) -> Any:
        try:
            return param.type.convert(text, param, None)
        except click.BadParameter as exc:
            raise argparse.ArgumentTypeError(exc.message) from None

    convert.__name__ = param.type.name
    return convert


class VerbCommand(BaseCommand):
    """Runs the ``pgq`` CLI verb named ``verb``; subclasses only name it."""

    verb: ClassVar[str]
    # Parameters of the verb that manage.py fills itself, not the user.
    fixed: ClassVar[Mapping[str, Any]] = {}
    help_texts: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "verb" in cls.__dict__ and "help" not in cls.__dict__:
            cls.help = click_command(cls.verb).help or ""

    def add_arguments(self, parser: CommandParser) -> None:
        add_click_parameters(parser, self.parameters(), help_texts=self.help_texts)

    def parameters(self) -> list[click.Parameter]:
        return [p for p in click_command(self.verb).params if p.name not in self.fixed]

    def handle(self, *args: Any, **options: Any) -> None:
        values = {
            p.name: tuple(options[p.name]) if p.nargs == -1 else options[p.name]
            for p in self.parameters()
            if p.name is not None
        }
        run_verb(self.verb, {**values, **self.fixed}, self.stdout)


def click_command(verb: str) -> click.Command:
    command = cli.commands.get(verb)
    if command is None:
        raise LookupError(f"the pgq CLI has no verb {verb!r}")
    return command


def run_verb(verb: str, params: Mapping[str, Any], stdout: Any) -> None:
    """Run a CLI verb's body with the project's context; errors become CommandError."""
    command = click_command(verb)
    assert command.callback is not None
    output = io.StringIO()
    try:
        with (
            click.Context(command, info_name=f"pgq_{verb}", obj=DjangoContext()) as ctx,
            contextlib.redirect_stdout(output),
        ):
            ctx.invoke(command.callback, **params)
    except click.exceptions.Exit as exc:
        if exc.exit_code:
            raise CommandError(f"pgq {verb} exited with status {exc.exit_code}") from exc
    except click.UsageError as exc:
        raise CommandError(exc.format_message(), returncode=2) from exc
    except click.ClickException as exc:
        raise CommandError(exc.format_message()) from exc
    except PgqError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        stdout.write(output.getvalue(), ending="")

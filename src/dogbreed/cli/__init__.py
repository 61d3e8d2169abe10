"""The `dogbreed` command. User mistakes end as one line on stderr and exit code 2, never a traceback.

The subcommand is parsed first; only `train` (and `tune run`, for static values) take hyperparameter flags, so
`--top-k` on `predict` is `predict`'s own option and not a hyperparameter.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from typing import Any, NoReturn

from dogbreed.config import UserError

EXIT_USER_ERROR, EXIT_JOB_FAILED = 2, 1


class Parser(argparse.ArgumentParser):
    """argparse whose errors are UserErrors (one line), with "did you mean" for mistyped options."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)  # `--learn` must not silently mean `--learning_rate`
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments: "):
            message = unknown_option_message(self, message.removeprefix("unrecognized arguments: ").split())
        raise UserError(f"{message} (see `{self.prog} --help`)")


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return [o for a in parser._actions for o in a.option_strings if a.help != argparse.SUPPRESS]


def unknown_option_message(parser: argparse.ArgumentParser, unknown: list[str]) -> str:
    bad = next((u for u in unknown if u.startswith("-")), unknown[0])
    if not bad.startswith("-"):
        return f"unexpected argument {bad!r}"
    name = bad.split("=", 1)[0]
    close = difflib.get_close_matches(name.replace("-", "_"), [o.replace("-", "_") for o in option_strings(parser)],
                                      n=1, cutoff=0.75)
    hint = ""
    if close:
        original = next(o for o in option_strings(parser) if o.replace("-", "_") == close[0])
        hint = f"; did you mean {original}?"
    return f"unknown option {name}{hint}"


def leaf_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser of the command named in `argv`, for error messages about its options."""
    for token in argv:
        subs = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if subs is None:
            break
        if token in subs.choices:
            parser = subs.choices[token]
    return parser


def build_parser() -> Parser:
    from dogbreed import __version__
    from dogbreed.cli import data_commands, job_commands, model_commands, pipeline_commands, tune_commands
    from dogbreed.cli import train_commands

    p = Parser(prog="dogbreed", description="Train, tune, debug, register and serve dog-breed classifiers.")
    p.add_argument("--version", action="version", version=f"dogbreed {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    train_commands.add(sub)
    job_commands.add(sub)
    tune_commands.add(sub)
    model_commands.add(sub)
    data_commands.add(sub)
    pipeline_commands.add(sub)
    return p


def configure_logging() -> None:
    from dogbreed.progress import ensure_visible_logs

    # MLflow resets its own logger to INFO when it is imported (after this), and would print lines such as
    # "INFO mlflow.store.db.utils: Creating initial MLflow database tables..." on a command's stderr; its warnings
    # still show. A value the user set is kept.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    ensure_visible_logs()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        configure_logging()
        parser = build_parser()
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            leaf = leaf_parser(parser, argv)
            raise UserError(f"{unknown_option_message(leaf, unknown)} (see `{leaf.prog} --help`)")
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dogbreed jobs list | head -1`: the reader left; nothing to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    finally:
        logging.shutdown()


if __name__ == "__main__":
    sys.exit(main())

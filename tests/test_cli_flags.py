"""Every documented flag of every command parses (parse level: cheap, no jobs run): the subcommand is parsed
first, so no command's option is stolen by another's (the old `--top-k is a hyperparameter` trap), and options
of one command are errors on another."""

from __future__ import annotations

import argparse

import pytest

from dogbreed.cli import build_parser


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, sub in subs[0].choices.items():
        yield from _leaves(sub, path + (name,))


def _documented(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.help != argparse.SUPPRESS
            and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]


def _value(action: argparse.Action) -> list[str]:
    if action.nargs == 0:
        return []
    return [str(next(iter(action.choices)))] if action.choices else ["3"]


def _required(parser: argparse.ArgumentParser, but: argparse.Action | None = None) -> list[str]:
    argv: list[str] = []
    for a in _documented(parser):
        if a is but or not a.required and a.option_strings or a.nargs == "?":
            continue
        argv += ([a.option_strings[0]] if a.option_strings else []) + _value(a)
    return argv


LEAVES = [(" ".join(path), parser) for path, parser in _leaves(build_parser())]


def test_the_command_tree_is_what_the_readme_documents():
    names = {name for name, _ in LEAVES}
    assert {"train", "evaluate", "predict", "batch-transform", "deploy", "tune run", "tune describe", "jobs list",
            "jobs resume",
            "models delete", "models alias", "logs", "pipeline run", "data check"} <= names
    assert len(names) == 30  # a new command gets its flags checked here automatically; update the count


@pytest.mark.parametrize("command", [name for name, _ in LEAVES])
def test_every_documented_flag_of_every_command_parses(command):
    parser = dict(LEAVES)[command]
    root = build_parser()
    for action in _documented(parser):
        if not action.option_strings:
            continue
        for flag in action.option_strings:
            argv = [*command.split(), *_required(parser, but=action), flag, *_value(action)]
            args = root.parse_args(argv)
            got = getattr(args, action.dest)
            if action.nargs == 0:
                assert got not in (None, False), (argv, got)
            else:
                want = action.type(_value(action)[0]) if callable(action.type) else _value(action)[0]
                assert got == want or got == [want], (argv, got)
            assert callable(args.func)


@pytest.mark.parametrize("command", ["predict", "evaluate", "batch-transform"])
def test_top_k_is_the_commands_own_option(command):
    parser = dict(LEAVES)[command]
    args = build_parser().parse_args([command, *_required(parser), "--top-k", "3"])
    assert args.top_k == 3


def test_options_of_another_command_are_errors():
    from dogbreed.cli import main

    for argv in (["tune", "list", "--max-jobs", "3"], ["tune", "describe", "x", "--data", "d"],
                 ["predict", "x.jpg", "--learning_rate", "0.1"], ["jobs", "list", "--top-k", "3"]):
        assert main(argv) == 2, argv


def test_a_typo_gets_did_you_mean(capsys):
    from dogbreed.cli import main

    assert main(["train", "--data", "d", "--job-name", "j", "--learning_rat", "0.1"]) == 2
    assert "did you mean --learning_rate?" in capsys.readouterr().err
    assert main(["predict", "x.jpg", "--top_k", "3"]) == 2
    assert "did you mean --top-k?" in capsys.readouterr().err


def test_train_help_lists_every_hyperparameter_with_default_range_and_meaning(capsys):
    from dogbreed.config import Hyperparameters

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for field in ("learning_rate", "mini_batch_size", "optimizer", "momentum", "eps", "weight_decay", "epochs"):
        assert field in Hyperparameters.__dataclass_fields__
        assert f"--{field} VALUE" in out, field
    assert "learning rate of the trained stage; > 0; default 0.001" in out


"""Every command's --help is complete: a one-line summary, a description with an example, help on every option,
and the same wording for the options shared by many commands."""

import pytest
import typer

from edgevid.cli import app, main


def _commands(command=None, path=("edgevid",)):
    """(path, command) for the root, every group and every command under it."""
    command = command or typer.main.get_command(app)
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands())
LEAVES = {path: command for path, command in COMMANDS.items() if not hasattr(command, "commands")}
SHARED = ("--threads", "--device", "--verbose")


def test_the_walk_finds_every_command():
    names = {" ".join(path[1:]) for path in LEAVES}
    assert {"models", "data synth", "data info", "train", "eval", "predict", "export", "quantize", "calib build",
            "prune", "bench", "live", "demo", "tune"} <= names


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_command_has_a_summary_line_and_a_description(path):
    command = COMMANDS[path]
    paragraphs = [p.strip() for p in (command.help or "").split("\n\n") if p.strip()]
    assert paragraphs, f"{' '.join(path)} has no help text"
    summary = paragraphs[0]
    assert "\n" not in summary and len(summary) <= 110 and summary.endswith("."), summary
    if path in LEAVES:
        assert len(paragraphs) >= 2, f"{' '.join(path)}: a description after the summary line"
        assert f"Example: {' '.join(path)} " in command.help, f"{' '.join(path)}: an example command line"


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_visible_parameter_has_help(path):
    undocumented = [param.name for param in COMMANDS[path].params
                    if not getattr(param, "hidden", False) and not (getattr(param, "help", None) or "").strip()]
    assert not undocumented, f"{' '.join(path)}: options without help: {undocumented}"


def test_shared_options_use_the_same_words():
    """Shared options read alike up to their parenthesised details; every output option starts with 'Output'."""
    helps: dict[str, set[str]] = {}
    for command in COMMANDS.values():
        for param in command.params:
            for flag in param.opts:
                if flag in SHARED or flag in ("--out", "--output") or (flag == "--json" and param.is_flag):
                    helps.setdefault(flag, set()).add(param.help.split(" (")[0])
    assert helps["--json"] == {"Print the result as JSON instead of a table."}
    assert helps["--threads"] == {"CPU threads of each runtime"}
    assert helps["--device"] == {"Device to run on"}
    assert all(text.startswith("Output ") for text in helps["--out"] | helps["--output"]), helps["--out"]


def test_help_renders_for_every_command(capsys):
    for path in COMMANDS:
        assert main([*path[1:], "--help"]) == 0, path
        assert "Usage: edgevid" in capsys.readouterr().out


def test_output_off_a_terminal_is_not_cut_to_80_columns():
    import os
    import subprocess
    import sys

    code = "from edgevid.utils.console import PIPED_WIDTH, console; print(console.width == PIPED_WIDTH)"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    piped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert piped.stdout.strip() == "True"

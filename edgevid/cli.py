"""The ``edgevid`` command line: thin wrappers over the Python API.

Every command is a plain function of the API; this module only parses options and prints results.
User errors (:class:`EdgevidError`, ``ValueError``, missing files) are shown as one line with exit code 2;
``--verbose`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys

import typer

from edgevid import __version__
from edgevid.errors import EdgevidError
from edgevid.utils.console import console, err_console, make_table

app = typer.Typer(
    name="edgevid",
    help="Compact video action-recognition models: train, compress, export and run them on edge hardware.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
_state = {"verbose": False}


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"edgevid {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    _state["verbose"] = verbose


# ----------------------------------------------------------------------------------------------------- models
@app.command("models")
def models_cmd(
    pattern: str = typer.Argument("*", help="Glob over model names, e.g. 'x3d_*'."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    num_classes: int = typer.Option(400, "--classes", help="Classes used for the params/MACs figures."),
) -> None:
    """List the model zoo: family, params, GMACs at the default input, frames x size, sampling rate."""
    from edgevid.models.summary import zoo_summary

    rows = zoo_summary(pattern, num_classes)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    columns = ["name", "family", "params_m", "gmacs", "input", "sampling_rate"]
    console.print(make_table(rows, columns, title=f"edgevid model zoo ({num_classes} classes)",
                             formats={"params_m": ".2f", "gmacs": ".3f"}))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edgevid`` console script and ``python -m edgevid``."""
    try:
        app(args=argv, prog_name="edgevid")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except (EdgevidError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        if _state["verbose"]:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        return 2
    return 0

if __name__ == "__main__":
    sys.exit(main())

"""The ``captum-gmar`` command line: ``demo``, ``compare``, ``export-scenes``, ``explain``, ``explore``, ``heads`` and ``repair``.

:data:`COMMANDS` maps each command to its module, imported only when that command runs;
each module has ``add_parser(commands, help)`` and ``run(options)``, which takes the
command's typed options (:mod:`.options`). Every argument is checked by the parser and the
options, and every file named on the command line before any model loads, so a mistake
costs a one-line error, not a run. torch, transformers and matplotlib are imported only
once the arguments are good: ``--help``, ``--version`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, NoReturn

from .. import __version__
from ..errors import DiskFullError, InsufficientMemoryError, NonFiniteError, RankFailedError, TooSlowError, UnsupportedModelError
from ..loading import hub_snapshot, load_model, model_folder
from .options import CommandError

__all__ = ["COMMANDS", "CommandError", "hub_snapshot", "load_model", "main", "model_folder"]


class Command(NamedTuple):
    """A command's module (in this package) and its one-line help."""

    module: str
    help: str


#: command name -> its module and help, in the order ``--help`` lists them
COMMANDS = {
    "demo": Command(
        ".demo",
        "GMAR beside rollout and IG on a reference classifier's bundled scenes, or beside rollout, AttnLRP and GAE "
        "on composites of real photos (--model dinov2-small-backbone)",
    ),
    "compare": Command(
        ".compare",
        "compare methods on evaluation scenes, on your own images (--data), or on the similarity of real photos (--task similarity)",
    ),
    "export-scenes": Command(
        ".export_scenes", "write scenes of the test split (or --split train) as an image folder with masks, for explain and --data"
    ),
    "explain": Command(".explain", "explain one image file, or every image of a folder into a maps folder"),
    "explore": Command(
        ".explore",
        "find the strategies in a maps folder (clusters of each class's maps, most suspicious first) and where the methods "
        "disagree, with an offline page to browse them",
    ),
    "heads": Command(
        ".heads",
        "which heads make a strategy's cluster differ from the rest of its class (every head score against the exact "
        "ablation), and the model without them (--remove)",
    ),
    "repair": Command(
        ".repair",
        "the model repaired of a confirmed shortcut's cluster: its heads removed, or a counterfactual fine-tune, "
        "measured by the shortcut pasted on held-out images of other classes",
    ),
}
#: errors reported as one line (``captum-gmar CMD: error: ...``, exit status 2)
_USER_ERRORS = (
    CommandError,
    DiskFullError,
    InsufficientMemoryError,
    NonFiniteError,
    TooSlowError,
    UnsupportedModelError,
    FileNotFoundError,
    FileExistsError,
    ValueError,
    ImportError,  # a library the command needs is missing: the message says what to install
)


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line (the usage block would bury the one
    line that matters); ``--help`` still shows the usage. Subcommands' parsers are of
    this class too (``add_subparsers`` makes them so)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command of ``argv`` (default: the process's arguments); returns 0, or exits
    with status 2 on a wrong argument or file, 1 on a failure and 130 when interrupted."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _Parser(prog="captum-gmar", description="GMAR attributions for Hugging Face vision transformers")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)  # the top level's options take no value
    module = None
    for name, command in COMMANDS.items():
        if name == chosen:  # only this command's module is imported
            module = importlib.import_module(command.module, __name__)
            module.add_parser(commands, command.help)
        else:
            commands.add_parser(name, help=command.help)
    args = parser.parse_args(argv)
    assert module is not None  # the parser accepts only the commands of the table
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")  # files only
    # torchrun and accelerate launch set these; errors then name the process
    rank = int(os.environ.get("RANK", "0"))
    where = f" (rank {rank})" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    try:
        module.run(args.options(args))
    except RankFailedError as error:  # raised on every rank; the failing one reports it
        user_error = isinstance(error.error, _USER_ERRORS)
        if error.rank != rank:
            raise SystemExit(2 if user_error else 1) from None
        if not user_error:
            sys.stderr.write(error.remote_traceback)
        parser.exit(2 if user_error else 1, f"captum-gmar {args.command}{where}: error: {error.error}\n")
    except _USER_ERRORS as error:
        parser.exit(2, f"captum-gmar {args.command}{where}: error: {error}\n")
    except KeyboardInterrupt:
        kept = f"; the finished batches are in {Path(args.out) / 'results.csv'}: add --resume to go on" if args.command == "compare" else ""
        parser.exit(130, f"captum-gmar {args.command}{where}: interrupted{kept}\n")
    return 0

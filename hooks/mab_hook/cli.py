"""The `mab-hook` command: arguments, signals and exit codes; the commands do the rest.

git runs a pre-push hook as `hook <remote> <url>`, pre-commit runs it with neither; a first word
that is a command (`doctor`, `install`) runs that command instead.
"""

from __future__ import annotations

import argparse
import difflib
import gc
import importlib
import os
import shutil
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TextIO, cast

from mab_hook import __version__, input_digest, output
from mab_hook.commands import COMMANDS
from mab_hook.errors import EXIT_BUG, EXIT_FAIL, EXIT_HANGUP, EXIT_INTERRUPTED, FatalError
from mab_hook.output import Printer
from mab_hook.results import Interrupted

# `mab-hook WORD` runs module `commands.<module>`; no word: the gate.
MODULES = {**{name: name for name in COMMANDS}, "": "gate"}


class Command(Protocol):
    """What `mab_hook.commands.<module>` holds."""

    def parse_args(self, argv: Sequence[str]) -> argparse.Namespace: ...
    def options(self, args: argparse.Namespace) -> Any: ...
    def run(self, options: Any, env: Mapping[str, str], stdin: TextIO, printer: Printer) -> int: ...


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, Command]:
    """The command a command line asks for, with its arguments; only its module is loaded."""
    word = argv[0] if argv[:1] and argv[0] in COMMANDS else ""
    command = cast("Command", importlib.import_module(f"mab_hook.commands.{MODULES[word]}"))
    args = command.parse_args(argv[1:] if word else argv)
    if not word and args.remote is not None and args.url is None and not args.remote.startswith("-"):
        args.command_word = args.remote  # one word: a remote by hand, or a mistyped command
    return args, command


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ)
    json_wanted = "--json" in argv
    printer = _printer(env, json_wanted or "--bake" in argv, _color(argv), verbose=False)
    with _signals():
        try:
            if shutil.which("git", path=env.get("PATH")) is None:
                raise FatalError("git is not installed (or not on PATH): install git, then run again")
            args, command = parse(argv)
            printer = _printer(
                env, args.json or getattr(args, "bake", False), args.color, verbose=args.verbose
            )
            _check_word(args)
            return command.run(command.options(args), env, sys.stdin, printer)
        except FatalError as e:
            return _fatal(str(e), printer, json_wanted)
        except Interrupted as e:
            return _interrupted(e, printer)
        except KeyboardInterrupt as e:
            return _interrupted(Interrupted((), str(e)), printer)
        except BrokenPipeError:
            # The reader went away (`mab-hook --json | head`): not a bug, and nothing left to say.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_FAIL
        except Exception:
            traceback.print_exc()
            printer.error(f"this is a bug in mab-hook {__version__}; please report it with the output above")
            return EXIT_BUG


# Objects the young generation holds before the garbage collector runs (Python's default: 700).
# Planning loads its kept records (100,000s of objects at 5,000 images) and frees them by
# reference count: collections that find nothing cost a push's planning 5-10% (bench/RESULTS.md).
# mypy raises it for the same reason.
YOUNG_OBJECTS = 100_000


def entry() -> int:
    """The `mab-hook` program (and `python -m mab_hook`): `main` in a process of its own, with
    the garbage collector set for one that ends when it does."""
    gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])
    try:
        return main()
    finally:
        # What is left goes with the process: not walked once more by a collection at exit.
        gc.freeze()


def _printer(env: Mapping[str, str], json_wanted: bool, color: str, *, verbose: bool) -> Printer:
    """Results on stdout (with --json, stdout is the JSON's alone); everything said about the
    run on stderr. Each coloured when it goes to a terminal."""
    stream = sys.stderr if json_wanted else sys.stdout
    painted = output.use_color(color, env, stream.isatty())
    return Printer(stream, painted, verbose, sys.stderr, output.use_color(color, env, sys.stderr.isatty()))


def _color(argv: Sequence[str]) -> str:
    for i, arg in enumerate(argv):
        if arg.startswith("--color="):
            return arg.partition("=")[2]
        if arg == "--color" and i + 1 < len(argv):
            return argv[i + 1]
    return "auto"


def _check_word(args: argparse.Namespace) -> None:
    """One positional word that names no remote of the repository is a mistyped command."""
    word = getattr(args, "command_word", None)
    if word is None:
        return
    from mab_hook.repository import configured_remotes  # noqa: PLC0415 - only for a lone word

    if word in configured_remotes(args.repo or Path.cwd()):
        return
    if word in COMMANDS:  # after an option: `mab-hook --color never verify`
        raise FatalError(
            f"{word!r} is a command: name it first, before its options "
            f"(`mab-hook {word} [options]`); see `mab-hook {word} --help`"
        )
    close = difflib.get_close_matches(word, COMMANDS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise FatalError(
        f"{word!r} is not a command{hint} nor a remote of this repository; commands: "
        f"{', '.join(COMMANDS)}; see `mab-hook --help`"
    )


def _fatal(message: str, printer: Printer, json_wanted: bool) -> int:
    printer.error(message)
    if json_wanted:
        output.dump_json({"error": message, "exit_code": EXIT_FAIL}, sys.stdout)
    return EXIT_FAIL


def _interrupted(stopped: Interrupted, printer: Printer) -> int:
    how = f"interrupted by {stopped.signal_name}" if stopped.signal_name else "interrupted"
    public = [ref for ref in stopped.published if not input_digest.is_staging(ref)]
    if public:
        printer.error(f"{how}: builds stopped; these tags had reached the registry: {', '.join(public)}")
    else:
        printer.error(f"{how}: builds stopped, no tag was published")
    return EXIT_HANGUP if stopped.signal_name == "SIGHUP" else EXIT_INTERRUPTED


def _raise(signum: int, frame: FrameType | None) -> None:
    """SIGTERM and SIGHUP (a closed terminal, a dropped ssh) stop builds the way ^C does."""
    if not _later(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """^C, as Python's own handler takes it."""
    if not _later(signum, frame):
        signal.default_int_handler(signum, frame)


def _later(signum: int, frame: FrameType | None, again: float = 0.05) -> bool:
    """A signal that lands in a finalizer (the garbage collector running GitPython's `__del__`)
    would be lost: Python drops what a `__del__` raises, and the builds would run on. It is sent
    again a moment later, once the finalizer is done (where signals can be sent to oneself)."""
    if frame is None or frame.f_code.co_name != "__del__" or not hasattr(signal, "pthread_kill"):
        return False
    threading.Timer(again, os.kill, (os.getpid(), signum)).start()
    return True


@contextmanager
def _signals() -> Iterator[None]:
    wanted = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {sig: signal.signal(sig, _raise) for sig in wanted}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where ^C is ignored (`&`, nohup)
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

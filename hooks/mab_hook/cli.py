"""The `mab-hook` command: arguments, signals and exit codes; the commands do the rest.

git runs a pre-push hook as `hook <remote> <url>`, pre-commit runs it with neither; a first word
that is a command (`doctor`, `install`) runs that command instead.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TextIO

from mab_hook import __version__, budget, input_digest, output
from mab_hook.errors import FatalError
from mab_hook.output import Printer
from mab_hook.results import Interrupted

EXIT_OK, EXIT_FAIL, EXIT_BUG, EXIT_INTERRUPTED, EXIT_HANGUP = 0, 1, 3, 130, 129
COMMANDS = ("doctor", "install", "verify", "build", "publish", "status", "gc")
EXAMPLES = """\
examples:
  git push                        the hook builds what the pushed commits affect
  mab-hook --all                  build every image of HEAD
  mab-hook --from origin/main     build what changed since a ref
  mab-hook --dry-run --json       the plan, machine-readable
  mab-hook --explain api          why image api is or is not affected
  mab-hook doctor                 can this host build every platform?
  mab-hook install                have every ref of a push checked under pre-commit
  mab-hook verify --from HEAD^     in CI: were the images of this commit built by the gate?
  mab-hook status                 what the last pushes published, or why not
  mab-hook gc --dry-run           staging uploads older than 14 days that nothing needs
"""

Command = Callable[[argparse.Namespace, Mapping[str, str], TextIO, Printer], int]


def hook_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mab-hook",
        description="Build the Docker images affected by the commits being pushed, for every "
        "platform in [tool.multiarch] of pyproject.toml; fail if any build fails. "
        f"Commands: {', '.join(COMMANDS)} (mab-hook COMMAND --help).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mab-hook {__version__}")
    parser.add_argument("remote", nargs="?", help="as a git pre-push hook: the remote's name "
                        "(the refs being pushed are read from standard input)")  # fmt: skip
    parser.add_argument("url", nargs="?", help="as a git pre-push hook: the remote's URL")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--all", action="store_true", help="build every image of the commit (--to, default HEAD)"
    )
    scope.add_argument("--from", dest="from_ref", metavar="REF", help="build what changed since REF")
    parser.add_argument("--to", dest="to_ref", metavar="REF", help="the commit to build (default HEAD)")
    parser.add_argument("--work-tree", action="store_true", help="by hand, while iterating: plan and build "
                        "the work tree as it is (uncommitted changes and new files included) against HEAD, "
                        "or every image with --all; never publishes")  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="print the plan; build nothing")
    parser.add_argument("--publish", action="store_true", help="by hand: also move the public tags, as "
                        "the publishing policy says for the branch (a push publishes once the remote "
                        "accepts it; by hand, without this, images go to staging tags only)")  # fmt: skip
    parser.add_argument(
        "--bake",
        action="store_true",
        help="print the affected images as a bake definition (JSON) that `docker buildx bake -f -` "
        "builds at the repository's root; build nothing",
    )
    parser.add_argument(
        "--explain", metavar="NAME", help="say why image NAME is or is not affected; build nothing"
    )
    add_common(parser)
    parser.add_argument(
        "--timeout",
        type=budget.seconds,
        metavar="SECONDS",
        help="stop any image's build that takes longer (overrides the configured timeout)",
    )
    budget.add_argument(parser)
    return parser


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    parser.add_argument("-C", "--repo", type=Path, default=None, metavar="DIR",
                        help="the repository (default: the one around the current directory)")  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true", help="show buildx's output as it comes")


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, Command]:
    """The command a command line asks for, with its arguments."""
    if argv[:1] and argv[0] in COMMANDS:
        return command(argv[0], argv[1:])
    args = hook_parser().parse_args(argv)
    if args.remote is not None and args.url is None and not args.remote.startswith("-"):
        args.command_word = args.remote  # one word: a remote by hand, or a mistyped command
    from mab_hook.hook import hook  # noqa: PLC0415

    return args, hook


def command(name: str, argv: Sequence[str]) -> tuple[argparse.Namespace, Command]:
    """A command's arguments and function; what only some runs need loads when needed."""
    if name == "doctor":
        from mab_hook import doctor  # noqa: PLC0415

        return doctor.parse_args(argv), doctor.doctor
    if name == "install":
        from mab_hook import install  # noqa: PLC0415

        return install.parse_args(argv), install.install
    if name == "verify":
        from mab_hook import verify  # noqa: PLC0415

        return verify.parse_args(argv), verify.verify
    if name == "status":
        from mab_hook import publisher  # noqa: PLC0415

        return publisher.status_parser().parse_args(argv), publisher.status
    if name == "gc":
        from mab_hook import cleanup  # noqa: PLC0415

        return cleanup.parse_args(argv), cleanup.gc
    from mab_hook import ci  # noqa: PLC0415

    if name == "build":
        return ci.build_parser().parse_args(argv), ci.build
    return ci.publish_parser().parse_args(argv), ci.publish


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
            return command(args, env, sys.stdin, printer)
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
    from mab_hook.hook import configured_remotes  # noqa: PLC0415

    if word in configured_remotes(args.repo or Path.cwd()):
        return
    if word in COMMANDS:  # after an option: `mab-hook --color never verify`
        raise FatalError(f"{word!r} is a command: name it first, before its options "
                         f"(`mab-hook {word} [options]`); see `mab-hook {word} --help`")  # fmt: skip
    close = difflib.get_close_matches(word, COMMANDS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise FatalError(f"{word!r} is not a command{hint} nor a remote of this repository; commands: "
                     f"{', '.join(COMMANDS)}; see `mab-hook --help`")  # fmt: skip


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
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def _signals() -> Iterator[None]:
    wanted = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {sig: signal.signal(sig, _raise) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

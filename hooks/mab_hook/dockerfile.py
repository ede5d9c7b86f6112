"""Reading Dockerfiles the way BuildKit does, behind a small interface of our own.

Parsing and variable expansion come from e2b-dockerfile-utils, a port of BuildKit's parser and
shell lexer: heredocs, escape directives and `${VAR:-default}` forms behave as in a real build.
On top of it this module models what a build can read: the stages, how they depend on each
other, and every COPY/ADD source and bind mount, with ARG/ENV expanded per stage.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from e2b_dockerfile_utils import DockerfileInstruction, DockerfileSyntaxError, ShellLex, parse_dockerfile_ast

from mab_hook import platforms, specs
from mab_hook.errors import FatalError

# The platform ARGs BuildKit defines by itself (in the global scope, and in a stage once it
# declares them without a value).
PLATFORM_ARGS = (
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
)


class Source(NamedTuple):
    """Something a stage reads from a build context."""

    kind: str  # "COPY", "ADD" or "bind mount"
    origin: str | None  # None: the main build context; else the --from name, expanded
    pattern: str  # path or glob, relative to that context's root
    excludes: tuple[str, ...]  # COPY/ADD --exclude patterns
    line: int
    parents: bool = False  # COPY --parents: `**` matches any depth
    trigger: str = ""  # an ONBUILD trigger: whose ("stage 's0'", "base image base (base/Dockerfile)")


class Stage(NamedTuple):
    number: int  # position in the file, as `--from=0` names it
    name: str | None  # the `AS name`, lowercased as BuildKit does
    base: str  # the FROM reference, with ARGs expanded
    line: int
    sources: tuple[Source, ...]  # ONBUILD triggers of a stage it starts FROM included
    # Names used by --from= (COPY/ADD) and --mount=...,from= (RUN): stages, contexts or images.
    uses: tuple[str, ...]
    # What its ONBUILD COPY/ADD/RUN --mount triggers read from the build context of a later
    # stage FROM it (expanded with its ARGs and ENV, which that stage starts with)...
    onbuild: tuple[Source, ...] = ()
    onbuild_uses: tuple[str, ...] = ()  # what its triggers name with --from / from=
    # ... and of another image's build FROM the image it is (only its ENV is in the image).
    image_onbuild: tuple[Source, ...] = ()
    args: tuple[tuple[str, str], ...] = ()  # its ARGs at the end: a stage FROM it has them
    env: tuple[tuple[str, str], ...] = ()  # its ENV at the end: a stage FROM it has them too
    platform: str = ""  # `FROM --platform=...`, expanded: the platform its base is pulled for


class Dockerfile(NamedTuple):
    stages: tuple[Stage, ...]

    def stage(self, ref: str) -> Stage | None:
        """A stage by name (case-insensitive) or by index, as --from and FROM resolve them."""
        for stage in self.stages:
            if stage.name is not None and stage.name == ref.lower():
                return stage
        if ref.isdigit() and int(ref) < len(self.stages):
            return self.stages[int(ref)]
        return None

    def resolve(self, ref: str, user: Stage) -> Stage | None:
        """The stage `ref` names in `user`, or None for an image or named context.

        A stage cannot build on itself: in `FROM alpine AS alpine`, alpine is the image.
        """
        stage = self.stage(ref)
        return stage if stage is not None and stage.number != user.number else None

    def target(self, name: str | None, *, source: str) -> Stage:
        if name is None:
            return self.stages[-1]
        stage = self.stage(name)
        if stage is None or name.isdigit():
            known = ", ".join(s.name for s in self.stages if s.name) or "none"
            raise FatalError(
                f"{source}: target stage {name!r} is not in the Dockerfile (named stages: {known})"
            )
        return stage

    def reachable(self, target: Stage) -> tuple[Stage, ...]:
        """The stages a build of `target` runs, in file order: its FROM chain and every --from."""
        seen: set[int] = set()
        todo = [target]
        while todo:
            stage = todo.pop()
            if stage.number in seen:
                continue
            seen.add(stage.number)
            todo.extend(used for ref in (stage.base, *stage.uses) if (used := self.resolve(ref, stage)))
        return tuple(stage for stage in self.stages if stage.number in seen)

    def external(self, stages: Iterable[Stage]) -> tuple[str, ...]:
        """References that are no stage: images (or named contexts) the given stages read."""
        found: list[str] = []
        for stage in stages:
            for ref in (stage.base, *stage.uses):
                if self.resolve(ref, stage) is None and ref != "scratch" and ref not in found:
                    found.append(ref)
        return tuple(found)


def parse(
    text: str, build_args: Mapping[str, str], *, platform: str, build_platform: str, source: str
) -> Dockerfile:
    """The stages of a Dockerfile as built for `platform`, ARGs resolved like BuildKit."""
    try:
        ast = parse_dockerfile_ast(text)
    except DockerfileSyntaxError as e:
        raise FatalError(f"{source}: cannot parse Dockerfile: {e}") from None
    auto = platform_args(platform, build_platform)
    scope = _Scope(ast.escape_token, build_args, auto, source)
    global_args: dict[str, str] = dict(auto)
    stages: list[Stage] = []
    current: _StageBuilder | None = None
    for instruction in ast.instructions:
        name = instruction.name.lower()
        if name == "from":
            if current is not None:
                stages.append(current.finish(scope))
            current = _StageBuilder.start(len(stages), instruction, scope.lex(global_args), global_args)
            current.inherit(Dockerfile(tuple(stages)).stage(current.base), scope)
        elif current is None:
            if name == "arg":  # only ARGs before the first FROM are in scope for FROM lines
                scope.declare(instruction.args, global_args, global_args)
        else:
            current.add(instruction, scope)
    if current is None:
        raise FatalError(f"{source}: no FROM instruction")
    stages.append(current.finish(scope))
    return Dockerfile(tuple(stages))


def platform_args(platform: str, build_platform: str) -> dict[str, str]:
    target, build = platforms.parse(platform), platforms.parse(build_platform)
    values = (platform, *target, build_platform, *build)
    return dict(zip(PLATFORM_ARGS, values, strict=True))


class _Scope:
    """ARG and ENV values as BuildKit sees them while it walks a Dockerfile."""

    def __init__(
        self, escape: str, build_args: Mapping[str, str], auto: Mapping[str, str], source: str
    ) -> None:
        self.escape = escape
        self.build_args = build_args
        self.auto = auto
        self.source = source

    def lex(self, env: Mapping[str, str]) -> _Lexer:
        # Unset variables expand to "" in COPY/ADD/FROM, as in BuildKit.
        return _Lexer(ShellLex(self.escape, env=env, skip_unset_env=False), self.escape, self.source)

    def declare(self, words: Iterable[str], env: dict[str, str], global_args: Mapping[str, str]) -> None:
        for word in words:
            key, has_default, default = word.partition("=")
            if key in self.build_args:
                env[key] = self.build_args[key]
            elif has_default:
                env[key] = self.lex(env).word(default)
            elif key in global_args:
                env[key] = global_args[key]  # re-declaring a global ARG brings its value in
            elif key in self.auto:
                env[key] = self.auto[key]


# What a word may expand to: ARGs that double each other (`ARG B=$A$A`) would otherwise take
# every byte of memory in some 30 lines. Far past any real value; BuildKit has no such limit.
MAX_WORD = 256 << 10


class _Lexer(NamedTuple):
    """BuildKit's word processing, skipped for the many words it would leave as they are."""

    lex: ShellLex
    escape: str
    source: str

    def word(self, text: str) -> str:
        if not any(c in text for c in ("$", "'", '"', self.escape)):
            return text
        found = str(self.lex.process_word(text))
        if len(found) > MAX_WORD:
            raise FatalError(
                f"{self.source}: {text[:60]!r} expands to more than {MAX_WORD >> 10} KiB (ARGs or ENVs that "
                "repeat each other?); mab-hook does not plan such a build"
            )
        return found


class _StageBuilder:
    def __init__(
        self,
        number: int,
        name: str | None,
        base: str,
        line: int,
        *,
        global_args: Mapping[str, str],
        platform: str,
    ) -> None:
        self.number, self.name, self.base, self.line = number, name, base, line
        self.platform = platform
        self.global_args = global_args
        self.args: dict[str, str] = {}  # ARGs declared in the stage
        self.envs: dict[str, str] = {}  # ENV, which wins over an ARG of the same name
        self.sources: list[Source] = []
        self.uses: list[str] = []
        self.triggers: list[DockerfileInstruction] = []  # ONBUILD instructions, as written

    @property
    def env(self) -> dict[str, str]:
        """What words are expanded with: ARGs, and ENV over them."""
        return {**self.args, **self.envs}

    def inherit(self, base: Stage | None, scope: _Scope) -> None:
        """A stage FROM an earlier one starts with its ARGs and ENV (tried in the lab: BuildKit
        carries both over), and runs its ONBUILD triggers first."""
        if base is None or base.number == self.number:
            return
        self.args.update(base.args)
        self.envs.update(base.env)
        whose = f"stage {base.name!r}" if base.name else f"stage {base.number}"
        self.sources.extend(source._replace(trigger=whose) for source in base.onbuild)
        self.uses.extend(base.onbuild_uses)

    @classmethod
    def start(
        cls, number: int, instruction: DockerfileInstruction, lex: _Lexer, global_args: Mapping[str, str]
    ) -> _StageBuilder:
        args = instruction.args
        base = lex.word(args[0]) if args else ""
        alias = args[2].lower() if len(args) >= 3 and args[1].lower() == "as" else None
        platform = _flags(instruction.flags, lex).get("platform", [""])[-1]
        return cls(number, alias, base, instruction.start_line, global_args=global_args, platform=platform)

    def add(self, instruction: DockerfileInstruction, scope: _Scope) -> None:
        name = instruction.name.lower()
        if name == "arg":
            scope.declare(instruction.args, self.args, self.global_args)
        elif name == "env":
            lex = scope.lex(self.env)
            for key, value in zip(instruction.args[::2], instruction.args[1::2], strict=False):
                self.envs[key] = lex.word(value)
        elif name == "onbuild":
            trigger = _trigger(instruction)
            if trigger is not None:
                self.triggers.append(trigger)
        elif name in READING:
            sources, used = reads(instruction, scope.lex(self.env))
            self.sources.extend(sources)
            self.uses.extend(used)

    def finish(self, scope: _Scope) -> Stage:
        # Triggers run at the start of a build FROM this stage, in that build's context: a later
        # stage has this stage's ARGs and ENV then, another image only the ENV of the image.
        lex, image_lex = scope.lex(self.env), scope.lex(self.envs)
        onbuild = tuple(source for trigger in self.triggers for source in reads(trigger, lex)[0])
        onbuild_uses = tuple(origin for trigger in self.triggers for origin in reads(trigger, lex)[1])
        image_onbuild = tuple(source for trigger in self.triggers for source in reads(trigger, image_lex)[0])
        return Stage(
            self.number,
            self.name,
            self.base,
            self.line,
            tuple(self.sources),
            tuple(self.uses),
            onbuild,
            onbuild_uses,
            image_onbuild,
            tuple(sorted(self.args.items())),
            tuple(sorted(self.envs.items())),
            self.platform,
        )


def _trigger(instruction: DockerfileInstruction) -> DockerfileInstruction | None:
    """The instruction an ONBUILD carries (BuildKit keeps its text, and parses it downstream)."""
    text = instruction.original.split(None, 1)[1] if len(instruction.original.split(None, 1)) > 1 else ""
    try:
        parsed = parse_dockerfile_ast(f"FROM scratch\n{text}\n").instructions
    except DockerfileSyntaxError:
        return None  # BuildKit refuses it when it runs; nothing is read
    if len(parsed) != 2 or parsed[1].name.lower() in ("onbuild", "from", "maintainer"):
        return None  # BuildKit refuses these as triggers
    return dataclasses.replace(parsed[1], start_line=instruction.start_line, end_line=instruction.end_line)


READING = ("copy", "add", "run")  # the instructions that read from a build context


def reads(instruction: DockerfileInstruction, lex: _Lexer) -> tuple[list[Source], list[str]]:
    """What an instruction reads from a build context (COPY/ADD sources, RUN mounts), and the
    stages, contexts or images it names (--from, a mount's from=: BuildKit builds a stage a
    cache mount starts from too)."""
    name = instruction.name.lower()
    if name not in READING:
        return [], []
    flags = _flags(instruction.flags, lex)
    if name == "run":
        mounts = [parse_mount(spec) for spec in flags.get("mount", [])]
        return _mounts(mounts, instruction.start_line), [m["from"] for m in mounts if "from" in m]
    return _copy(instruction, flags, lex), flags.get("from", [])[:1]


def _copy(instruction: DockerfileInstruction, flags: Mapping[str, list[str]], lex: _Lexer) -> list[Source]:
    origin = flags.get("from", [None])[0]
    heredocs = {doc.name for doc in instruction.heredocs}
    excludes = tuple(flags.get("exclude", []))
    parents = flags.get("parents", ["false"])[-1] in ("", "true")
    found = []
    for word in instruction.args[:-1]:  # the last word is the destination
        if word.startswith("<<") and word.lstrip("<-").strip("'\"") in heredocs:
            continue  # a heredoc: content from the Dockerfile itself
        pattern = lex.word(word)  # the JSON form is expanded too
        if instruction.name.lower() == "add" and is_remote(pattern):
            continue  # a URL or a git repository: nothing from a context
        found.append(
            Source(instruction.name.upper(), origin, pattern, excludes, instruction.start_line, parents)
        )
    return found


def _mounts(mounts: Iterable[Mapping[str, str]], line: int) -> list[Source]:
    """Bind mounts read their source; a cache mount seeded `from=` a context reads its source
    there (from a stage or an image it reads nothing of a context, but that stage is built)."""
    found = []
    for options in mounts:
        kind = options.get("type", "bind")
        origin = options.get("from")
        if kind == "bind" or (kind == "cache" and origin is not None):
            pattern = options.get("source", options.get("src", "."))
            found.append(Source(f"{kind} mount", origin, pattern, (), line))
    return found


def _flags(flags: Iterable[str], lex: _Lexer) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for flag in flags:
        key, _, value = flag.removeprefix("--").partition("=")
        found.setdefault(key.lower(), []).append(lex.word(value))
    return found


def parse_mount(spec: str) -> dict[str, str]:
    """`type=bind,source=x,target=/y,rw` as a dict (CSV, like BuildKit's parser)."""
    return specs.parse(spec)


def is_remote(source: str) -> bool:
    """ADD sources fetched by BuildKit itself rather than read from a context."""
    lowered = source.lower()
    return "://" in lowered or lowered.startswith("git@") or (lowered.endswith(".git") and ":" in lowered)

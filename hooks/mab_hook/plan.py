"""From changed paths to the images to build, why, and in which order."""

from __future__ import annotations

import contextlib
import graphlib
import posixpath
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import NamedTuple

from mab_hook import budget, grants, input_digest, inputs, policy
from mab_hook.analysis import Analysis, Base
from mab_hook.budget import Deadline
from mab_hook.changes import Commit
from mab_hook.errors import FatalError
from mab_hook.ignore import OWN as OWN_IGNORE
from mab_hook.images import Config, Image, as_built
from mab_hook.inputs import Files, Inputs, Pull
from mab_hook.paths import in_directory, relative_to, shown
from mab_hook.patterns import watched
from mab_hook.validation import PYPROJECT


class PlannedImage(NamedTuple):
    image: Image
    reasons: tuple[str, ...]
    tags: tuple[str, ...]  # full references, every ref's: <registry>/<name>:<tag>
    bases: tuple[Base, ...]
    tags_by_ref: tuple[tuple[str, tuple[str, ...]], ...] = ()  # ("main", (references...)) per ref
    input_digest: str = ""  # "" when the plan was made without digests (a dry run)
    materialized: tuple[str, ...] = ()  # repository paths its build needs on disk
    submodules: tuple[str, ...] = ()  # submodules its build reads
    # Set when this is one platform of the image, built alone (a CI job of a fan-out): it is
    # uploaded under that platform's staging tag, and published only by `mab-hook publish`.
    one_platform: str = ""
    moving: tuple[str, ...] = ()  # those of `tags` that move from commit to commit: put last
    # The images from outside the repository its build pulls, per platform it is built for (its
    # own, and its dependants' when it is their base): what base coverage checks.
    pulls: tuple[Pull, ...] = ()
    # Per platform it is built for, the image from outside the repository its filesystem starts
    # from (through in-repo bases): its layers are that image's, not this build's.
    roots: tuple[Pull, ...] = ()


class Explanation(NamedTuple):
    """Why one image is or is not affected by one commit's changes."""

    name: str
    commit: str
    affected: bool
    reasons: tuple[str, ...]
    paths: tuple[tuple[str, str], ...]  # changed paths near the image, and why each counts or not
    inputs: tuple[str, ...]  # what the built stages read
    bases: tuple[str, ...]  # in-repo images it is built on


class Plan(NamedTuple):
    commit: Commit
    config: Config
    affected: tuple[PlannedImage, ...]  # in build order: bases before their dependants
    unaffected: tuple[str, ...]
    # Unaffected in-repo bases of affected images: built (from cache, usually) at the same
    # commit as named contexts, so a dependant never builds on a stale or missing base tag.
    context_only: tuple[PlannedImage, ...] = ()
    warnings: tuple[str, ...] = ()
    explanations: tuple[Explanation, ...] = ()  # for the images asked about


def make_plan(
    commit: Commit,
    config: Config,
    files: Files,
    *,
    build_platform: str,
    previous: Sequence[Config] | None = None,
    digests: bool = False,
    explain: Sequence[str] = (),
    deadline: Deadline = budget.NONE,
) -> Plan:
    """`previous`: the configuration at the commits the changes are relative to, when
    pyproject.toml is among the changes (an image whose settings changed is affected).
    `digests`: work out every planned image's input digest (what building needs, a dry run not).
    `explain`: images to say why they are or are not affected. Past `deadline`, planning stops."""
    analysis = Analysis(config, files, build_platform, deadline)
    reasons, near = _reasons(commit, config, files, analysis, previous)
    needed = _bases_needed(list(reasons), analysis.bases_of)
    order = build_order(config, {name: analysis.bases_of(name) for name in (*reasons, *needed)})
    by_name = analysis.by_name
    diffed = {name for name, why in reasons.items() if why != (KNOWN_REF,)}
    # An image only ever built as another's `target:` context is never built on its own.
    built = [name for name in order if name in reasons and not by_name[name].only_as_context]
    affected = tuple(_planned(name, reasons, analysis, commit, diffed=name in diffed) for name in built)
    beneath = set(_bases_needed(built, analysis.bases_of))
    context_only = tuple(
        _with_reads(PlannedImage(by_name[name], (), (), analysis.bases_of(name)), analysis)
        for name in order
        if name in beneath
    )
    if digests:
        context_only, affected = _for_building(analysis, context_only, affected)
    # A source that matches nothing, of every image a change comes near, affected or not.
    looked = dict.fromkeys((*(p.image.name for p in affected), *near))
    warnings = tuple(
        w for name in looked for w in inputs.unmatched(analysis.inputs_of(name), files, deadline=deadline)
    )
    warnings += tuple(w for p in affected for w in grants.secret_looking_args(p.image))
    warnings += (*policy.renamed_refs(config, commit), *config.notes) if affected else ()
    warnings += policy.staging_only(config, commit) if affected else ()
    warnings += removed_images(config, previous or ())
    unaffected = tuple(image.name for image in config.published if image.name not in reasons)
    planned = Plan(commit, config, affected, unaffected, context_only, warnings)
    one_build = {name: image.name for image in config.images for name in image.also}
    explained = (_explain(planned, analysis, one_build.get(name, name)) for name in explain)
    return planned._replace(explanations=tuple(explained))


def _for_building(
    analysis: Analysis, context_only: tuple[PlannedImage, ...], affected: tuple[PlannedImage, ...]
) -> tuple[tuple[PlannedImage, ...], tuple[PlannedImage, ...]]:
    """What building needs beyond the plan: input digests, and what each build pulls."""
    everything = (*context_only, *affected)
    digests, pulled = input_digests(analysis, everything), external_pulls(analysis, everything)

    def filled(p: PlannedImage) -> PlannedImage:
        pulls, roots = pulled[p.image.name]
        return p._replace(input_digest=digests[p.image.name], pulls=pulls, roots=roots)

    return tuple(map(filled, context_only)), tuple(map(filled, affected))


KNOWN_REF = "known ref"  # the reason of an image only a known ref's tags reach


def _planned(
    name: str, reasons: Mapping[str, tuple[str, ...]], analysis: Analysis, commit: Commit, *, diffed: bool
) -> PlannedImage:
    image = analysis.by_name[name]
    bases = analysis.bases_of(name)
    tags, by_ref, moving = policy.image_tags(analysis.config, image, commit, diffed=diffed)
    why = _explained_reasons(reasons[name], commit) + _via(bases, reasons, commit.changed)
    planned = PlannedImage(image, why, tags, bases, by_ref, moving=moving)
    return _with_reads(planned, analysis)


LARGE_CONTEXT = 5_000  # files: a context past this is checked out only as far as the build reads it


def _with_reads(planned: PlannedImage, analysis: Analysis) -> PlannedImage:
    found, files = analysis.inputs_of(planned.image.name), analysis.files
    wanted = found.materialized()
    large = [path for path in wanted if len(files.under(path)) > LARGE_CONTEXT]
    if large:  # a 200,000-file context for a one-file COPY: only what the build reads
        reads = input_digest.input_files(found, files.tree, files.gitlinks, deadline=analysis.deadline)
        kept = [path for path in wanted if path not in large]
        inside = sorted(p for p in reads if any(relative_to(p, d) is not None for d in large))
        wanted = tuple(dict.fromkeys((*kept, *inside)))
    return planned._replace(materialized=tuple(wanted), submodules=found.submodules(files.gitlinks))


def _reasons(
    commit: Commit, config: Config, files: Files, analysis: Analysis, previous: Sequence[Config] | None
) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
    """Every affected image and why: its own reasons (() when only a base makes it affected);
    and the images a changed path comes near."""
    changed = tuple(sorted(commit.changed)) if commit.changed is not None else None
    changed_set = frozenset(changed or ())
    names = _near(config, changed, files)
    near = {image.name: image for image in config.images if image.name in names}
    files.prefetch(
        read for image in near.values() for read in inputs.reads_needed(image, files, analysis.build_platform)
    )
    reasons: dict[str, tuple[str, ...]] = {}
    touched = sorted(set(commit.changed or ()) & {PYPROJECT, *config.definitions})
    for image in config.images:
        own = settings_changed(image, previous, touched) if previous is not None else ()
        if image.name in near:
            own += direct_reasons(analysis.inputs_of(image.name), changed, commit.why, changed_set)
        if own:
            reasons[image.name] = own
    todo = list(reasons) if changed is not None else []
    while todo:  # dependants of affected images are affected
        base = todo.pop()
        for name in analysis.may_build_on(base):
            if any(b.name == base for b in analysis.bases_of(name)) and name not in reasons:
                reasons[name] = ()
                todo.append(name)
    if config.push and policy.known_tags(config, commit):
        for image in config.published:  # a known ref's own tags go on every image
            reasons.setdefault(image.name, (KNOWN_REF,))
    return reasons, tuple(near)


def _near(config: Config, changed: Sequence[str] | None, files: Files) -> set[str]:
    """The images a changed path comes near (every one when everything counts as changed)."""
    if changed is None:
        return {image.name for image in config.images}
    index = Changed.of(changed)
    if files.symlinks:  # a Dockerfile or an ignore file may lead elsewhere: each image is asked
        return {
            image.name for image in config.images if index.near(image, changed, links=_links(image, files))
        }
    return index.images(config, changed)


def _explained_reasons(reasons: tuple[str, ...], commit: Commit) -> tuple[str, ...]:
    if reasons != (KNOWN_REF,):
        return reasons
    names = ", ".join(ref.name or "HEAD" for ref in commit.refs if ref.known)
    return (
        f"{names} is new to the remote, which has the commit: its tags go on the image from the registry",
    )


def input_digests(analysis: Analysis, planned: Sequence[PlannedImage]) -> dict[str, str]:
    """The input digest of every planned image, bases' digests folded into dependants'."""
    by_name = {p.image.name: p for p in planned}
    files = analysis.files
    found: dict[str, str] = {}

    def of(name: str) -> str:
        if name not in found:
            read = input_digest.input_files(
                analysis.inputs_of(name), files.tree, files.gitlinks, deadline=analysis.deadline
            )
            bases = {base.name: of(base.name) for base in by_name[name].bases}
            blobs = {path: entry for path in read if (entry := files.entry(path)) is not None}
            found[name] = input_digest.compute(analysis.inputs_of(name), blobs, bases)
        return found[name]

    for name in by_name:
        of(name)
    return found


def external_pulls(
    analysis: Analysis, planned: Sequence[PlannedImage]
) -> dict[str, tuple[tuple[Pull, ...], tuple[Pull, ...]]]:
    """What each planned image's build pulls from outside the repository, for every platform it
    is built for (a base is built for its dependants' platforms too, as their named context), and
    per platform the image its filesystem starts from. `planned`: bases before their dependants."""
    built_for = {p.image.name: dict.fromkeys(p.image.platforms) for p in planned}
    for dependant in reversed(planned):
        for base in dependant.bases:
            if base.name in built_for:
                built_for[base.name].update(built_for[dependant.image.name])
    roots: dict[str, dict[str, Pull]] = {}
    found = {}
    for p in planned:
        name = p.image.name
        pulls = inputs.pulls(
            p.image, analysis.files, build_platform=analysis.build_platform, platforms=tuple(built_for[name])
        )
        roots[name] = _roots(pulls, roots, partial(analysis.in_repo, name))
        external = tuple(pull for pull in pulls if analysis.in_repo(name, pull.ref) is None)
        found[name] = (external, tuple(roots[name].values()))
    return found


def _roots(
    pulls: Sequence[Pull], known: Mapping[str, Mapping[str, Pull]], in_repo: Callable[[str], Base | None]
) -> dict[str, Pull]:
    """Per platform, the image from outside the repository a filesystem starts from: its root
    FROM's, or, when that is an image of the repository, that image's (in `known`)."""
    found = {}
    for pull in pulls:
        base = in_repo(pull.ref) if pull.root else None
        through = pull if base is None else known.get(base.name, {}).get(pull.platform)
        if pull.root and through is not None:
            found[pull.platform] = through._replace(platform=pull.platform)
    return found


def removed_images(config: Config, previous: Sequence[Config]) -> tuple[str, ...]:
    """Images the commits the push is relative to had, and it has not: said, nothing else."""
    if all(old.images is config.images for old in previous):
        return ()  # the same configuration, kept: nothing to compare (5,000 images cost 2 ms)
    now = {name for image in config.images for name in image.names}
    gone = sorted({name for old in previous for image in old.published for name in image.names} - now)
    if not gone:
        return ()
    return (
        f"removed at this commit: {', '.join(gone)}: nothing is built for them, and what the registry "
        "holds of them stays",
    )


def settings_changed(
    image: Image, previous: Sequence[Config], touched: Sequence[str] = ()
) -> tuple[str, ...]:
    """A build arg, platform, target... of the image changed in [tool.multiarch] or in the
    compose or bake file that defines it (`touched`: those of them the changes touch), or it is
    new. An image whose resolved definition is the same as far as what is built (`as_built`:
    not its cache, time limit or defining file) is not affected, even when that file changed."""
    before = [_as_it_was(image, config) for config in previous]
    if not before or all(old is None for old in before):
        return (
            f"new image in {image.defined_in}"
            if image.defined_in
            else f"new image in [tool.multiarch] ({PYPROJECT})",
        )
    if any(old is None or as_built(old) != as_built(image) for old in before):
        if image.defined_in:
            return (f"its definition in {', '.join(touched or (image.defined_in,))} changed",)
        return (f"its [tool.multiarch] settings changed ({PYPROJECT})",)
    named = {name for old in before if old is not None for name in old.names}
    new = [name for name in image.names if name not in named]
    if not new:
        return ()
    return (f"{', '.join(new)}: new name{'s' * (len(new) > 1)} of its build in {image.defined_in}",)


def _as_it_was(image: Image, config: Config) -> Image | None:
    """The image in an earlier configuration: by its name, else the build that had one of its
    names (services that shared one build, or no longer do)."""
    same = next((old for old in config.images if old.name == image.name), None)
    return same or next((old for old in config.images if set(old.names) & set(image.names)), None)


def _via(bases: tuple[Base, ...], reasons: Mapping[str, tuple[str, ...]], changed: object) -> tuple[str, ...]:
    if changed is None:
        return ()  # everything is built anyway
    return tuple(
        f"base image {base.name} is rebuilt"
        for base in bases
        if base.name in reasons and reasons[base.name] != (KNOWN_REF,)
    )


class Changed(NamedTuple):
    """The changed paths as the prefilter asks about them: each image asks a few set questions,
    so that a push costs what its change costs, not what the number of images does."""

    paths: frozenset[str]
    directories: frozenset[str]  # every directory holding a changed path ("." and "" too)

    @classmethod
    def of(cls, changed: Sequence[str]) -> Changed:
        directories = {".", ""} if changed else set()
        for path in changed:
            parts = path.split("/")[:-1]
            directories.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return cls(frozenset(changed), frozenset(directories))

    def images(self, config: Config, changed: Sequence[str]) -> set[str]:
        """The images a changed path comes near (a commit without symlinks): looked up by each
        changed path and directory (`Config.where`), a `watch` glob only where a change lies
        below its literal directory."""
        where = config.where
        found = {name for path in self.paths for name in where.at_file(path)}
        found.update(
            name
            for path in self.paths
            if path.endswith(OWN_IGNORE)
            for name in where.at_file(path[: -len(OWN_IGNORE)])
        )
        found.update(name for directory in self.directories for name in where.at_directory(directory))
        for directory in self.directories:
            for name, glob in where.watching.get(directory, ()):
                if name not in found and watched(glob, changed):
                    found.add(name)
        return found

    def near(self, image: Image, changed: Sequence[str], *, links: Sequence[str] = ()) -> bool:
        """Whether any changed path (`changed`: the same, sorted) comes near the image: what
        `paths_near` finds, asked as set questions."""
        files = (image.dockerfile, image.dockerfile + OWN_IGNORE, *links)
        return (
            any(path in self.paths for path in files)
            or any(directory in self.directories for directory in _context_dirs(image))
            or any(watched(glob, changed) for glob in image.watches)
        )


def _context_dirs(image: Image, contexts: Sequence[str] = ()) -> Iterable[str]:
    return dict.fromkeys((*image.directories(), *contexts))


def paths_near(
    image: Image,
    changed: Sequence[str],
    changed_set: frozenset[str],
    *,
    links: Sequence[str] = (),
    contexts: Sequence[str] = (),
    watches: bool = True,
) -> Iterator[Sequence[str]]:
    """The changed paths (`changed` sorted, `changed_set` the same) that come near an image, a
    group at a time: the one notion of "near" that the prefilter (does any?), the reasons and
    --explain use. Its Dockerfile and the Dockerfile's own ignore file, where those lead through
    symlinks (`links`), anything under its context, a named context's directory or another
    context its build reads from (`contexts`), and, with `watches`, what a `watch` glob (or an
    OCI layout it reads) matches."""
    yield [path for path in (image.dockerfile, image.dockerfile + OWN_IGNORE, *links) if path in changed_set]
    for directory in _context_dirs(image, contexts):
        yield in_directory(changed, directory)
    for glob in image.watches if watches else ():
        yield watched(glob, changed)


def _links(image: Image, files: Files) -> tuple[str, ...]:
    """Where the image's Dockerfile and ignore files lead through the commit's symlinks (the
    usual commit has none); a link that leads nowhere allowed is said when the image is read."""
    if not files.symlinks:
        return ()
    found = []
    for path in (
        image.dockerfile,
        image.dockerfile + OWN_IGNORE,
        posixpath.join(image.context, ".dockerignore"),
    ):
        if posixpath.normpath(path) in files.symlinks:
            with contextlib.suppress(FatalError):
                found.append(files.followed(posixpath.normpath(path), "a link"))
    return tuple(found)


def _near_read(
    found: Inputs, changed: Sequence[str], changed_set: frozenset[str], *, watches: bool = True
) -> set[str]:
    """`near`, once the image's build is read: its ignore files and where its links lead, and
    every context a rule of it reads from. `changed_set`: `changed` as a set, made once per
    commit (a heavy push asks this of thousands of images)."""
    links = (*found.followed, *([found.ignore_file] if found.ignore_file else []))
    contexts = tuple(rule.context for rule in found.rules)
    groups = paths_near(found.image, changed, changed_set, links=links, contexts=contexts, watches=watches)
    return {path for group in groups for path in group}


def direct_reasons(
    found: Inputs, changed: Sequence[str] | None, why: str, changed_set: frozenset[str]
) -> tuple[str, ...]:
    """Every changed path the image's build reads (or watches), each with the rule that reads it
    (`changed_set`: `changed` as a set)."""
    if changed is None:
        return (f"every image is built ({why})",)
    near = _near_read(found, changed, changed_set, watches=False)
    read = {path: found.reason(path) for path in sorted(near)}
    reasons = [reason for reason in read.values() if reason is not None]
    for glob in found.image.watches:  # a watched path counts whether the build reads it or not
        reasons.extend(
            f"watch {glob!r} matched: {shown(path)}"
            for path in watched(glob, changed)
            if read.get(path) is None
        )
    return tuple(reasons)


def _bases_needed(affected: Sequence[str], bases_of: Callable[[str], tuple[Base, ...]]) -> list[str]:
    """The in-repo bases the affected images build on, transitively, that are not affected."""
    needed: dict[str, None] = {}
    todo = [base.name for name in affected for base in bases_of(name)]
    built = set(affected)
    while todo:
        name = todo.pop()
        if name not in needed and name not in built:
            needed[name] = None
            todo.extend(base.name for base in bases_of(name))
    return list(needed)


def build_order(config: Config, bases: Mapping[str, tuple[Base, ...]]) -> tuple[str, ...]:
    """Bases before their dependants, otherwise in configuration order."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for image in config.images:
        if image.name in bases:
            sorter.add(image.name, *(base.name for base in bases[image.name]))
    try:
        return tuple(sorter.static_order())
    except graphlib.CycleError as e:
        cycle = " -> ".join(reversed(e.args[1]))
        raise FatalError(
            f"{config.source}: images are built on each other in a cycle: {cycle}. "
            "Change a FROM line to break it."
        ) from None


def _counts(found: Inputs, path: str) -> str:
    """Why a changed path near the image counts or not: what its build reads, else a watch."""
    if found.reason(path) is None:
        for glob in found.image.watches:
            if watched(glob, (path,)):
                return f"counts: watch {glob!r} matched"
    return found.explain(path)


def _explain(plan: Plan, analysis: Analysis, name: str) -> Explanation:
    found = analysis.inputs_of(name)
    planned = next((p for p in plan.affected if p.image.name == name), None)
    changed = sorted(plan.commit.changed or ())
    close = _near_read(found, changed, frozenset(changed))
    paths = tuple((shown(path), _counts(found, path)) for path in changed if path in close)
    described = tuple(dict.fromkeys(rule.describe() for rule in found.rules if rule.reachable))
    return Explanation(
        name=name,
        commit=plan.commit.sha,
        affected=planned is not None,
        reasons=planned.reasons if planned else (),
        paths=paths,
        inputs=described,
        bases=tuple(base.name for base in analysis.bases_of(name)),
    )

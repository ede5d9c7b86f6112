"""One commit's images built across engines (`engines`): each engine builds its platforms of
every image at the same time as the others, from a definition of its own narrowed to them,
and uploads them under a staging tag of their own; once every engine built an image, its
uploads are merged by digest into one index under the image's staging tag, which the rest of
the push (the check of what was built, publishing) reads as if one builder had made it."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import re
from collections.abc import Callable, Sequence

from mab_hook import input_digest, merging
from mab_hook.plan import Plan, PlannedImage
from mab_hook.registry import Registry
from mab_hook.results import BuildResult, Failure, Status
from mab_hook.routing import Engine

Part = tuple[Engine, tuple[str, ...]]  # an engine and the platforms it builds


def narrowed(plan: Plan, platforms: Sequence[str]) -> Plan:
    """The plan as one engine builds it: every image for its platforms among `platforms`. An
    image with none of them is only a base there (buildx builds a base for the platforms of
    the image built on it)."""
    wanted = set(platforms)

    def narrow(planned: PlannedImage) -> PlannedImage:
        kept = tuple(p for p in planned.image.platforms if p in wanted)
        return planned._replace(image=dataclasses.replace(planned.image, platforms=kept))

    affected = tuple(narrow(p) for p in plan.affected)
    bases_only = tuple(p for p in affected if not p.image.platforms)
    return plan._replace(
        affected=tuple(p for p in affected if p.image.platforms),
        context_only=(*(narrow(p) for p in plan.context_only), *bases_only),
    )


def part_reference(plan: Plan, planned: PlannedImage, platforms: Sequence[str]) -> str:
    """Where one engine uploads its platforms of an image, until they are merged: beside the
    image's staging tag (`mab-<digest>-linux-arm64_linux-arm-v7`), as a CI job's upload."""
    part = input_digest.engine_part(platforms)
    return input_digest.staged(plan.config, planned.image, planned.input_digest, part)


def slug(engine: Engine) -> str:
    """The engine's name where a file name is made of it."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", engine.name) or "default"


def build_parts(
    parts: Sequence[Part], build: Callable[[Part], list[BuildResult]], stop: Callable[[], None]
) -> list[list[BuildResult]]:
    """Every engine's share at once; each engine's results, in the order of `parts`. Anything
    that ends the wait (^C, a signal) first `stop`s every build, then waits for them to end."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(parts)) as pool:
        try:
            running = [pool.submit(build, part) for part in parts]
            # Waited for in short spells: a signal the kernel hands another thread is acted on
            # only when this one runs again.
            while concurrent.futures.wait(running, timeout=WAKE).not_done:
                pass
            return [future.result() for future in running]
        except BaseException:
            stop()
            raise


WAKE = 0.2  # seconds the wait for the engines sleeps at most before it looks for a signal


def combined(
    planned: PlannedImage, got: Sequence[tuple[Part, BuildResult]], merge: Callable[[], str] | None
) -> BuildResult:
    """An image's result from those of the engines that built it: built when each built its
    platforms (`merge`, with a push: merges their uploads and says the index's digest), else
    the failure of the first engine that failed at its own build, named."""
    published = tuple(ref for _part, r in got for ref in r.published)
    steps = tuple(step for _part, r in got for step in r.steps)
    seconds = max(r.seconds for _part, r in got)  # an image is built by one engine at least
    first = got[0][1]
    failed = [(part, r) for part, r in got if not r.ok]
    whole = first._replace(
        seconds=seconds, platforms=planned.image.platforms, published=published, steps=steps
    )
    if failed:
        (engine, platforms), result = min(failed, key=lambda pr: pr[1].failure is Failure.BASE)
        detail = f"on {engine.label} ({', '.join(platforms)}): {result.detail}"
        return result._replace(
            seconds=seconds,
            detail=detail,
            platforms=planned.image.platforms,
            published=published,
            steps=steps,
        )
    if merge is None:
        return whole._replace(image_digest="")
    try:
        digest = merge()
    except OSError as e:  # RegistryError included
        detail = f"the engines' uploads could not be merged: {e}"
        return whole._replace(status=Status.FAILED, detail=detail, failure=Failure.REGISTRY)
    return whole._replace(image_digest=digest)


def merge_uploads(registry: Registry, staged: str, got: Sequence[tuple[Part, BuildResult]]) -> str:
    """Each engine's upload of an image, merged by digest into one index under `staged`: its
    digest. Nothing is uploaded again but the index."""
    manifests = []
    for (_engine, platforms), result in got:
        reference = result.published[0]
        manifest = registry.manifest(reference)
        if manifest is None:
            raise OSError(f"{reference} is not in the registry")
        manifests.append((platforms[0], manifest))
    index = merging.merged(manifests)
    registry.put_manifest(staged, index)
    return index.digest

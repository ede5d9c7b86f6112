"""Everything the user reads: color decided once, the plan, progress lines and the summary.

pre-commit captures a hook's output, so without a terminal everything is plain lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from mab_hook import input_digest
from mab_hook.results import BuildResult, Status

if TYPE_CHECKING:
    from mab_hook.plan import Explanation, Plan, PlannedImage
    from mab_hook.readiness import Check, Report

COLORS = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2"}


# Control characters but newline and tab, other than the colour codes (SGR) we write ourselves.
_UNSAFE_RE = re.compile(r"\x1b\[[0-9;]*m|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """Text from anywhere (a file's name, a build's output) can move no cursor and clear no
    screen: control characters are spelled out; colour codes and line breaks stay."""
    return _UNSAFE_RE.sub(
        lambda m: m.group() if m.group().startswith("\x1b[") else f"\\x{ord(m.group()):02x}", text
    )


def use_color(choice: str, env: Mapping[str, str], isatty: bool) -> bool:
    """--color wins; then NO_COLOR / FORCE_COLOR (no-color.org, force-color.org); then the TTY.

    PRE_COMMIT_COLOR is how pre-commit passes its own --color on to hooks.
    """
    if choice != "auto":
        return choice == "always"
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR"):
        return True
    if env.get("PRE_COMMIT_COLOR") in ("always", "never"):
        return env["PRE_COMMIT_COLOR"] == "always"
    return isatty and env.get("TERM") != "dumb"


class Printer(NamedTuple):
    """Results (the plan, the summary, doctor's checks) to `stream`; what is said about the
    run (notes, warnings, errors, build output, progress) to `messages`, as terminal programs
    do: `2>/dev/null` hides the talk, `> file` keeps the results. None: both to `stream`."""

    stream: TextIO
    color: bool  # for the results
    verbose: bool = False
    messages: TextIO | None = None
    messages_color: bool | None = None  # None: as the results

    @property
    def talk(self) -> TextIO:
        return self.messages if self.messages is not None else self.stream

    def paint(self, text: str, color: str) -> str:
        return _painted(text, color, self.color)

    def _tint(self, text: str, color: str) -> str:
        return _painted(text, color, self.color if self.messages_color is None else self.messages_color)

    def line(self, text: str = "") -> None:
        print(terminal_safe(text), file=self.stream, flush=True)

    def outcome(self, text: str) -> None:
        """A command's own result, said as a sentence (`mab-hook: installed ...`): on stdout."""
        self.line(f"mab-hook: {text}")

    def say(self, text: str) -> None:
        print(terminal_safe(text), file=self.talk, flush=True)

    def info(self, text: str) -> None:
        self.say(f"mab-hook: {text}")

    def warn(self, text: str) -> None:
        self.say(f"mab-hook: {self._tint('warning', 'yellow')}: {text}")

    def error(self, text: str) -> None:
        self.say(f"mab-hook: {self._tint('error', 'red')}: {text}")

    def build_line(self, text: str) -> None:
        if self.verbose:
            self.say(self._tint(f"  | {text}", "dim"))


def _painted(text: str, color: str, on: bool) -> str:
    return f"\033[{COLORS[color]}m{text}\033[0m" if on else text


def plan_text(plans: Sequence[Plan], printer: Printer) -> str:
    lines = []
    for plan in plans:
        commit = plan.commit
        lines.append(printer.paint(f"commit {commit.sha[:12]}", "bold") + f" ({commit.why})")
        if not plan.affected:
            lines.append("  no image is affected")
        for number, planned in enumerate(plan.affected, 1):
            image = planned.image
            lines.append(f"  {number}. {printer.paint(image.name, 'bold')} [{', '.join(image.platforms)}]")
            if image.also:
                lines.append(f"       one build, also published as: {', '.join(image.also)}")
            if planned.bases:
                lines.append(f"       built on: {', '.join(base.name for base in planned.bases)}")
            lines.extend(f"       because {reason}" for reason in planned.reasons)
            lines.append(f"       tags: {tags_text(planned)}")
            if planned.submodules:
                lines.append(
                    f"       submodules it reads: {', '.join(planned.submodules)} (checked out for the build)"
                )
        if plan.unaffected:
            lines.append(f"  unaffected: {', '.join(plan.unaffected)}")
        if plan.config.push and plan.affected:
            lines.append(f"  push: after every image above built, to {plan.config.registry or 'Docker Hub'}")
        lines.extend(f"  {printer.paint('warning', 'yellow')}: {warning}" for warning in plan.warnings)
    return "\n".join(lines)


def tags_text(planned: PlannedImage) -> str:
    """Every tag, and with several refs, which ref gives which: `main: a, b; v1.4.0: c`."""
    if len(planned.tags_by_ref) < 2:
        return ", ".join(planned.tags) or "none: its staging tag only (the ref publishes nothing)"
    return "; ".join(f"{ref}: {', '.join(tags) or 'none'}" for ref, tags in planned.tags_by_ref)


def explain_text(explanations: Sequence[Explanation], printer: Printer) -> str:
    lines = []
    for item in explanations:
        verdict = printer.paint("affected", "bold") if item.affected else "not affected"
        lines.append(f"{printer.paint(item.name, 'bold')} at {item.commit[:12]}: {verdict}")
        lines.extend(f"  because {reason}" for reason in item.reasons)
        if item.paths:
            lines.append("  changed paths near it:")
            lines.extend(f"    {path}: {why}" for path, why in item.paths)
        elif not item.affected:
            lines.append("  no changed path is in its build contexts")
        lines.append(f"  its build reads: {'; '.join(item.inputs) or 'nothing from the repository'}")
        if item.bases:
            lines.append(f"  built on: {', '.join(item.bases)}")
    return "\n".join(lines)


def explain_json(explanations: Sequence[Explanation]) -> list[dict[str, Any]]:
    return [
        {
            "name": item.name,
            "commit": item.commit,
            "affected": item.affected,
            "reasons": list(item.reasons),
            "paths": [{"path": path, "why": why} for path, why in item.paths],
            "inputs": list(item.inputs),
            "bases": list(item.bases),
        }
        for item in explanations
    ]


def plan_json(plans: Sequence[Plan]) -> dict[str, Any]:
    affected: list[dict[str, Any]] = []
    unaffected: dict[str, None] = {}  # each once, in order (a list's `in` is quadratic at 5,000 images)
    commits: list[dict[str, Any]] = []
    warnings: list[str] = []
    for plan in plans:
        commits.append(
            {
                "sha": plan.commit.sha,
                "refs": [ref.name for ref in plan.commit.refs],
                "range": plan.commit.why,
                "push": plan.config.push,
            }
        )
        for planned in plan.affected:
            image = planned.image
            affected.append(
                {
                    "name": image.name,
                    "also": list(image.also),
                    "commit": plan.commit.sha,
                    "platforms": list(image.platforms),
                    "reasons": list(planned.reasons),
                    "tags": list(planned.tags),
                    "tags_by_ref": {ref: list(tags) for ref, tags in planned.tags_by_ref},
                    "bases": [base.name for base in planned.bases],
                    "context": image.context,
                    "dockerfile": image.dockerfile,
                    "target": image.target,
                    "submodules": list(planned.submodules),
                }
            )
        unaffected.update(dict.fromkeys(plan.unaffected))
        warnings.extend(plan.warnings)
    return {"commits": commits, "affected": affected, "unaffected": list(unaffected), "warnings": warnings}


def results_json(results: Sequence[BuildResult]) -> list[dict[str, Any]]:
    return [
        {
            "name": r.name,
            "status": r.status.value,
            "platforms": list(r.platforms),
            "seconds": round(r.seconds, 2),
            "detail": r.detail,
            "input_digest": r.input_digest or None,
            "image_digest": r.image_digest or None,
            "failure": r.failure.value or None,
            "published": list(r.published),
            "log": str(r.log) if r.log else None,
        }
        for r in results
    ]


def summary(results: Sequence[BuildResult], printer: Printer) -> str:
    """A table: image, platforms, result, time; then the log tail of each failure."""
    rows = [("image", "platforms", "result", "time")]
    rows += [(r.name, ", ".join(r.platforms), r.status.value, f"{r.seconds:.1f} s") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for number, (name, platforms, status, seconds) in enumerate(rows):
        color = {
            "built": "green",
            "pushed": "green",
            "skipped": "green",
            "failed": "red",
            "timed out": "red",
        }.get(status)
        painted = (
            printer.paint(f"{status:<{widths[2]}}", color) if number and color else f"{status:<{widths[2]}}"
        )
        detail = f"  {_detail(results[number - 1])}" if number and _detail(results[number - 1]) else ""
        lines.append(f"  {name:<{widths[0]}}  {platforms:<{widths[1]}}  {painted}  {seconds:>7}{detail}")
    lines += _uploads(results)
    for result in results:
        if result.status in (Status.FAILED, Status.TIMED_OUT):
            lines.append("")
            lines.append(printer.paint(f"--- {result.name}: {result.detail}", "red"))
            lines.extend(f"  {line}" for line in result.tail)
            if result.log:
                lines.append(f"  full log: {result.log}")
    return "\n".join(lines)


def _uploads(results: Sequence[BuildResult]) -> list[str]:
    """Where each image built now was uploaded: its staging reference, by input digest (what
    publishing tags, and what `docker pull` fetches to try it)."""
    staged = [
        (r.name, ref)
        for r in results
        if r.status in (Status.BUILT, Status.PUSHED)
        for ref in r.published
        if input_digest.is_staging(ref)
    ]
    if not staged:
        return []
    return ["uploaded to staging (by input digest):", *(f"  {name}: {ref}" for name, ref in staged)]


def _detail(result: BuildResult) -> str:
    """What the table says after the time: an image skipped (nothing built) that got public
    tags says so, with the tags (their tag part)."""
    tags = [ref.rpartition(":")[2] for ref in result.published if not input_digest.is_staging(ref)]
    if result.status is Status.SKIPPED and tags:
        return "; ".join(part for part in (result.detail, f"tagged {', '.join(tags)}") if part)
    return result.detail


def dump_json(data: Any, stream: TextIO) -> None:
    """Indented for a person at a terminal; on one line for a program reading a pipe. Made
    whole by `json.dumps`, whose one-line form is C's: `json.dump`, and any indent, encode in
    Python, and a push of thousands of images spent a third of a second on it."""
    stream.write(json.dumps(data, indent=2 if stream.isatty() else None) + "\n")


def checks_text(checks: Sequence[Check], printer: Printer) -> str:
    colors = {"ok": "green", "warn": "yellow", "fail": "red"}
    width = max((len(check.name) for check in checks), default=0)
    lines = []
    for check in checks:
        status = printer.paint(f"{check.status:<4}", colors[check.status])
        lines.append(f"  {status}  {check.name:<{width}}  {check.finding}")
        if check.fix and check.status != "ok":
            lines.append(f"        {'':<{width}}  fix: {check.fix}")
    return "\n".join(lines)


def checks_json(report: Report) -> dict[str, Any]:
    return {
        "ready": report.ready,
        "checks": [
            {
                "id": c.id,
                "name": c.name,
                "status": c.status,
                "code": c.code or None,
                "finding": c.finding,
                "fix": c.fix,
            }
            for c in report.checks
        ],
    }

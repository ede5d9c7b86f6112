"""Mutation testing of the modules that decide what is built, skipped and published.

    python tests/mutation.py                 # every module below (hours on a 2-core machine)
    python tests/mutation.py grants tags     # some of them (minutes each)
    python tests/mutation.py --merge COPY/tests/mutation-results.json plan   # a copy's run of plan, here
    python tests/mutation.py --report        # MUTATION.md again (after writing down equivalents)
    python tests/mutation.py --equivalent MODULE ID "why"   # a survivor that behaves as the original

Each module is mutated by mutmut 2 (`pip install -e '.[mutation]'`), one mutant at a time, in
place, and its fast tests (no lab) run against each: mutmut 2 rather than 3 because it mutates
the files themselves, so the many tests that run mab-hook as a process of its own test the
mutant too (mutmut 3's copies are not what those processes import). The results go to
tests/mutation-results.json and tests/MUTATION.md: per module the mutants, the killed, and
every survivor with why it survives: equivalent (tests/mutation-equivalent.toml says why, by
its mutated line) or not yet killed (a test to write).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "tests" / "mutation-results.json"
REPORT = ROOT / "tests" / "MUTATION.md"
EQUIVALENT = ROOT / "tests" / "mutation-equivalent.toml"

# The module, and the fast tests that decide about it.
MODULES: dict[str, tuple[str, ...]] = {
    "grants": ("tests/test_grants.py", "tests/test_bakefile.py", "tests/test_plan.py"),
    "tags": ("tests/test_tags.py", "tests/test_plan.py"),
    "budget": ("tests/test_budget.py", "tests/test_cli.py", "tests/test_plan.py"),
    "input_digest": ("tests/test_input_digest.py",),
    "platforms": ("tests/test_platforms.py", "tests/test_config.py"),
    "ignore": ("tests/test_ignore.py", "tests/test_inputs.py"),
    "patterns": ("tests/test_patterns.py",),  # its property tests make each mutant ~30 s: over an hour
    "plan": ("tests/test_plan.py", "tests/test_inputs.py", "tests/test_planning.py"),
    "analysis": ("tests/test_plan.py", "tests/test_planning.py"),
    # the kept file list: its own tests, and planning's over it (the replay, the words kept)
    "listing": (
        "tests/test_listing.py",
        "tests/test_gitobjects.py",
        "tests/test_planning.py",
        "tests/test_config.py",
    ),
    "cache": ("tests/test_cache.py", "tests/test_planning.py"),
    "inputs": ("tests/test_inputs.py", "tests/test_plan.py"),
    "definitions": ("tests/test_definitions.py", "tests/test_file_images.py", "tests/test_planning.py"),
    "state": ("tests/test_state.py",),
    "buildx": ("tests/test_buildx.py", "tests/test_pipeline_decisions.py"),
    "bakefile": ("tests/test_bakefile.py", "tests/test_buildx.py"),
    "buildlog": ("tests/test_buildlog.py", "tests/test_buildx.py", "tests/test_pipeline_decisions.py"),
    # buildx's raw progress as the log mab-hook reads failures and step times from
    "rawprogress": ("tests/test_buildlog.py", "tests/test_slow_steps.py"),
    "policy": ("tests/test_policy.py", "tests/test_plan.py", "tests/test_commands_canned.py"),
    "pending": ("tests/test_publisher.py",),
    "publisher": ("tests/test_publisher.py",),
    "cleanup": ("tests/test_cleanup.py",),
    "pipeline": (
        "tests/test_pipeline.py",
        "tests/test_pipeline_decisions.py",
        "tests/test_grants.py",
        "tests/test_commands_canned.py",
    ),
    "runs": ("tests/test_pipeline.py", "tests/test_pipeline_decisions.py", "tests/test_commands_canned.py"),
    "selection": ("tests/test_selection.py", "tests/test_cli.py", "tests/test_commands_canned.py"),
    "commands/gate": (
        "tests/commands/test_gate.py",
        "tests/test_commands_canned.py",
        "tests/test_cli.py",
        "tests/test_publisher.py",
    ),
    "readiness": ("tests/readiness",),  # the package: its checks and its emulation verdicts
    # which engine builds which platforms, and how their uploads become one image
    "routing": ("tests/test_routing.py", "tests/test_commands_canned.py"),
    "engine_builds": ("tests/test_engine_builds.py", "tests/test_commands_canned.py"),
    "merging": (
        "tests/test_engine_builds.py",
        "tests/commands/test_build.py",
        "tests/test_commands_canned.py",
    ),
    "slow_steps": ("tests/test_slow_steps.py",),  # which emulated steps get advice
    "coverage": ("tests/test_coverage.py",),
    "platform_check": ("tests/test_platform_check.py",),
    "executables": ("tests/test_executables.py",),
    "changes": ("tests/test_changes.py", "tests/test_cli.py"),  # test_cli: --work-tree end to end
    "images": (
        "tests/test_images.py",
        "tests/test_config.py",
        "tests/test_file_images.py",
        "tests/test_plan.py",
        "tests/test_planning.py",
    ),
    "discovery": ("tests/test_discovery.py", "tests/test_config.py"),
    "config": ("tests/test_config.py", "tests/test_file_images.py"),
    "file_images": ("tests/test_file_images.py", "tests/test_config.py"),
    "checkout": ("tests/test_checkout.py",),
    "planning": ("tests/test_planning.py",),
    "trust": ("tests/test_trust.py",),
    "buildkitd": ("tests/test_buildkitd.py", "tests/readiness/test_access.py", "tests/test_trust.py"),
    "mirrors": ("tests/test_mirrors.py", "tests/readiness/test_access.py", "tests/readiness/test_engine.py"),
    "handover": ("tests/commands/test_install.py",),  # which refs the gate sees under pre-commit
    "commands/install": ("tests/commands/test_install.py",),
    "schema": ("tests/test_schema.py",),
    # the build step's texts and JSON are read by the command tests too
    "building": (
        "tests/test_building.py",
        "tests/test_commands_canned.py",
        "tests/test_cli.py",
        "tests/test_publisher.py",
        "tests/test_output.py",
    ),
}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--equivalent"] and len(argv) == 4:  # MODULE ID WHY: write a survivor down as equivalent
        return _write_equivalent(argv[1], int(argv[2]), argv[3])
    if argv == ["--report"]:  # tests/MUTATION.md again, with the reasons as they are now
        REPORT.write_text(report(json.loads(RESULTS.read_text())))
        return 0
    if argv[:1] == ["--merge"] and len(argv) > 2:  # FILE MODULE...: a copy's results, into this one's
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        theirs = json.loads(Path(argv[1]).read_text())
        results.update({name: theirs[name] for name in argv[2:]})
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        REPORT.write_text(report(results))
        return 0
    wanted = argv or list(MODULES)
    unknown = [name for name in wanted if name not in MODULES]
    if unknown:
        raise SystemExit(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(MODULES)}")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in wanted:
        print(f"mutation: {name} ...", file=sys.stderr, flush=True)
        results[name] = run(name, MODULES[name])
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    REPORT.write_text(report(results))
    print(f"mutation: wrote {REPORT.relative_to(ROOT)}", file=sys.stderr)
    return 0


def run(name: str, tests: tuple[str, ...]) -> dict[str, object]:
    cache, kept = ROOT / ".mutmut-cache", ROOT / ".mutation" / f"{name}.sqlite"
    # mutmut's cache of this module's last run: a mutant killed then stays killed while its
    # line is unchanged, so a run after writing tests tries the survivors again, not everything.
    cache.unlink(missing_ok=True)
    rerun = kept.exists()
    if rerun:
        shutil.copyfile(kept, cache)
    # mutmut 2 counts only exit 1 (tests failed) as killed: a mutant that breaks the import
    # (pytest exits 2, a collection error) is caught as well.
    pytest = f"{sys.executable} -m pytest -x -q -p no:cacheprovider -m 'not lab' {' '.join(tests)}"
    # A mutant that makes a loop endless is killed by `timeout` (exit 124, so: killed): mutmut's
    # own time limit leaves such a run hanging.
    runner = f'sh -c "timeout {TIME_LIMITS.get(name, 60)} {pytest} || exit 1"'
    started = time.monotonic()
    for _attempt in range(10):
        _mutmut(name, runner)
        # mutmut 2 sometimes dies of a race of its own ("Attribute Mutant.line is required"),
        # and hangs: the source is restored, and a run again goes on from its cache.
        _restore(name)
        with sqlite3.connect(cache) as db:
            if not _untested(db):
                break
    seconds = time.monotonic() - started
    with sqlite3.connect(cache) as db:
        statuses = dict(db.execute("select status, count(*) from mutant group by status").fetchall())
        survivors = [row[0] for row in db.execute("select id from mutant where status = 'bad_survived'")]
    equivalent = _equivalent()
    found = []
    for mutant in survivors:
        shown = subprocess.run((sys.executable, "-m", "mutmut", "show", str(mutant)), cwd=ROOT, capture_output=True,
                               text=True, check=False).stdout  # fmt: skip
        changed = [line for line in shown.splitlines() if line[:1] in "-+" and line[:3] not in ("---", "+++")]
        before = [line[1:].strip() for line in changed if line.startswith("-") and line[1:].strip()]
        after = [line[1:].strip() for line in changed if line.startswith("+") and line[1:].strip()]
        # A mutant that removes a line (a decorator, say) has nothing after: say what went.
        mutated = after[0] if after else f"(removed) {before[0] if before else ''}"
        found.append({"id": mutant, "line": before[0] if before else "", "mutated": mutated,
                      "why": equivalent.get((name, mutated), "")})  # fmt: skip
    del equivalent  # the report reads them afresh: a reason written later counts
    kept.parent.mkdir(exist_ok=True)
    cache.replace(kept)
    return {"mutants": sum(statuses.values()), "killed": statuses.get("ok_killed", 0),
            "timeout": statuses.get("bad_timeout", 0), "untested": statuses.get("untested", 0), "rerun": rerun, "survivors": found, "seconds": round(seconds),
            "tests": list(tests)}  # fmt: skip


def _untested(db: sqlite3.Connection) -> int:
    """Mutants not yet tried against the tests as they are: a run that died leaves survivors of
    an earlier run untried (their status stands, with the old tests' hash)."""
    tests = db.execute("select value from miscdata where key = 'hash_of_tests'").fetchone()
    return int(
        db.execute(
            "select count(*) from mutant where status = 'untested' "
            "or (status != 'ok_killed' and tested_against_hash is not ?)",
            (tests[0] if tests else None,),
        ).fetchone()[0]
    )


TIME_LIMITS = {"pipeline": 180, "patterns": 20}  # seconds a run of its tests may take (default 60)
STALLED = 300.0  # seconds without a mutant done: mutmut hangs (a mutant that loops for ever, say)


def _mutmut(name: str, runner: str) -> None:
    """One `mutmut run`, stopped when it prints a traceback (its worker died: it would hang) or
    stalls; a stalled run's mutant is counted as timed out, as mutmut counts a test run that
    does not end (it hangs instead on some that loop for ever)."""
    with tempfile.TemporaryFile("w+") as said:
        proc = subprocess.Popen((sys.executable, "-m", "mutmut", "run", "--paths-to-mutate", _path(name),
                                 "--runner", runner, "--no-progress"), cwd=ROOT, env=_env(),
                                stdout=subprocess.DEVNULL, stderr=said, start_new_session=True)  # fmt: skip
        done, since = _done(), time.monotonic()
        while proc.poll() is None:
            time.sleep(5)
            said.seek(0)
            if _done() != done:
                done, since = _done(), time.monotonic()
            stalled = time.monotonic() - since > STALLED
            if stalled or "Traceback (most recent call last)" in said.read():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                if stalled:
                    _time_out_the_next()


def _done() -> object:
    """What mutmut has recorded: it changes whenever a mutant is tested, a survivor again included."""
    try:
        with sqlite3.connect(ROOT / ".mutmut-cache") as db:
            return db.execute(
                "select status, tested_against_hash, count(*) from mutant group by 1, 2"
            ).fetchall()
    except sqlite3.Error:
        return None


def _time_out_the_next() -> None:
    """The mutant mutmut was on when it stalled: the first untested one, in its own order."""
    with sqlite3.connect(ROOT / ".mutmut-cache") as db:
        row = db.execute("select m.id from mutant m join line l on m.line = l.id where m.status = 'untested' "
                         'order by l.line_number, m."index" limit 1').fetchone()  # fmt: skip
        # Marked as tested against these tests (mutmut keeps their hash), or mutmut tries it again.
        done = db.execute("select value from MiscData where key = 'hash_of_tests'").fetchone()
        if row is not None:
            db.execute("update mutant set status = 'bad_timeout', tested_against_hash = ? where id = ?",
                       (done[0] if done else None, row[0]))  # fmt: skip


def _restore(name: str) -> None:
    """The module as it was, should mutmut have died with a mutant on disk (it keeps `.bak`s)."""
    for backup in (ROOT / _path(name)).parent.rglob("*.py.bak"):
        backup.replace(backup.with_suffix(""))


def _path(name: str) -> str:
    """A module's file, or a package's directory (every module of it is mutated)."""
    package = Path("hooks", "mab_hook", name)
    return str(package if (ROOT / package).is_dir() else package.with_suffix(".py"))


def _env() -> dict[str, str]:
    """The tests, and the processes they start, import the package of this checkout (which may
    be a copy made to mutate beside one's work) before any installed one."""
    paths = [str(ROOT / "hooks"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "CI": "", "PYTHONPATH": os.pathsep.join(paths)}


def _equivalent() -> dict[tuple[str, str], str]:
    """(module, mutated line) -> why the mutant does what the original does."""
    import tomllib  # noqa: PLC0415 - Python 3.11+, as the project's development is

    data = tomllib.loads(EQUIVALENT.read_text()) if EQUIVALENT.exists() else {}
    return {(item["module"], item["mutated"]): item["why"] for item in data.get("equivalent", [])}


def report(results: dict[str, dict[str, object]]) -> str:
    lines = ["# Mutation testing", "", "`python tests/mutation.py [MODULE ...]` (see its docstring). Per module: "
             "mutants, killed by the fast tests, equivalent survivors (same behaviour, or a line only Windows runs; "
             "said why), survivors not yet "
             "killed, and the score: killed of the non-equivalent. It does not run in CI; minutes as measured on the "
             "2-core lab machine, two or three modules at a time (each in a copy of the checkout; a rerun after "
             "writing tests tries only the survivors again).", "",
             "| module | mutants | killed | equivalent | not yet killed | score | minutes |",
             "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    details = []
    reasons = _equivalent()
    for name in sorted(results):
        data = results[name]
        survivors = [{**s, "why": _why(name, s, reasons)} for s in data["survivors"]]  # type: ignore[attr-defined]
        equivalent = [s for s in survivors if s["why"]]
        open_ = [s for s in survivors if not s["why"]]
        # Killed: every mutant the tests told from the original (failed, timed out, or failed
        # slowly: mutmut's "suspicious"), that is all but the survivors and the untested.
        mutants = int(str(data["mutants"]))
        killed = mutants - len(data["survivors"]) - int(str(data.get("untested", 0)))  # type: ignore[arg-type]
        relevant = mutants - len(equivalent)
        score = f"{100 * killed / relevant:.1f}%" if relevant else "-"
        minutes = f"{int(str(data['seconds'])) / 60:.0f}" + (" (a rerun)" if data.get("rerun") else "")
        lines.append(
            f"| {name} | {mutants} | {killed} | {len(equivalent)} | {len(open_)} | {score} | {minutes} |"
        )
        tests = data["tests"]
        assert isinstance(tests, list)
        details += ["", f"## {name} (tests: {', '.join(map(str, tests))})", ""]
        for survivor in survivors:
            why = survivor["why"] or "NOT YET KILLED: a test to write"
            details.append(f"- `{_code(survivor['line'])}` -> `{_code(survivor['mutated'])}`: {why}")
    lines.append(_total(lines[6:]))
    return "\n".join([*lines, *details]) + "\n"


def _total(rows: list[str]) -> str:
    """The row of every module together: the score is killed of all the non-equivalent."""
    cells = [[int(cell) for cell in row.strip("|").split("|")[1:5]] for row in rows]
    mutants, killed, equivalent, open_ = (sum(column) for column in zip(*cells, strict=True))
    score = f"{100 * killed / (mutants - equivalent):.1f}%" if mutants > equivalent else "-"
    return f"| **all** | {mutants} | {killed} | {equivalent} | {open_} | **{score}** | |"


def _write_equivalent(module: str, mutant: int, why: str) -> int:
    """Add a survivor of the last run to tests/mutation-equivalent.toml, with why, and report."""
    results = json.loads(RESULTS.read_text())
    found = next((s for s in results[module]["survivors"] if s["id"] == mutant), None)
    if found is None:
        raise SystemExit(f"no survivor {mutant} of {module} in {RESULTS.relative_to(ROOT)}")
    entry = f"\n[[equivalent]]\nmodule = {json.dumps(module)}\nmutated = {json.dumps(found['mutated'])}\n"
    with EQUIVALENT.open("a") as toml:
        toml.write(entry + f"why = {json.dumps(why)}\n")
    REPORT.write_text(report(results))
    return 0


def _why(module: str, survivor: dict[str, str], reasons: dict[tuple[str, str], str]) -> str:
    """Why a survivor is equivalent: said in tests/mutation-equivalent.toml, or a change to an
    annotation alone, which nothing evaluates (`from __future__ import annotations`)."""
    said = reasons.get((module, survivor["mutated"]), "")
    if said:
        return said
    if survivor["line"] and _unannotated(survivor["line"]) == _unannotated(survivor["mutated"]) is not None:
        return "an annotation: nothing evaluates it (`from __future__ import annotations`)"
    return ""


def _unannotated(line: str) -> str | None:
    """A line's code with its annotations left out (as a statement, or as a parameter of a
    signature); None when it parses as neither."""
    import ast  # noqa: PLC0415

    for text in (line.strip(), f"{line.strip()} pass", f"def f(\n{line.strip().rstrip(',')}\n): pass"):
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.arg):
                node.annotation = None
            elif isinstance(node, ast.AnnAssign):
                node.annotation = ast.Name("_", ast.Load())
            elif isinstance(node, ast.FunctionDef):
                node.returns = None
        return ast.dump(tree)
    return None


def _code(text: str) -> str:
    return re.sub(r"`", "'", text)[:140]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

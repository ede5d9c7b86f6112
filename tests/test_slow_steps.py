"""Steps emulation made slow: measured from build logs, judged against native runs, advised
only where it is worth it; and `mab-hook report` over the builds kept."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid

import pytest

from mab_hook import slow_steps
from mab_hook.results import BuildResult, Status, StepTime
from mab_hook.slow_steps import Slow
from tests.conftest import Lab, Repo

ALL3 = ("linux/amd64", "linux/arm64", "linux/arm/v7")

# Plain progress as buildx renders it for a three-platform build (lines trimmed), with a cached
# step, a failed one, a base's context copy and steps of no platform.
LOG = """\
#1 [internal] load local bake definitions
#1 DONE 0.0s
#6 [api internal] load build definition from Dockerfile
#6 DONE 0.0s
#11 [api linux/arm64 1/3] FROM 127.0.0.1:5000/busybox@sha256:6d49
#11 DONE 0.1s
#12 [api linux/amd64 2/3] RUN make
#13 [api linux/arm/v7 2/3] RUN make
#14 [api linux/arm64 2/3] RUN make
#12 DONE 6.1s
#14 DONE 31.5s
#13 DONE 48.2s
#15 [api linux/amd64 3/3] COPY app.txt /
#15 CACHED
#16 [api linux/arm/v7 3/3] COPY app.txt /
#16 ERROR: failed to compute cache key
#17 [api_AS_CONTEXT_linux_amd64 linux/amd64 1/1] FROM base
#17 DONE 0.2s
"""


def test_each_step_that_ran_is_timed_per_platform_and_known_native_by_the_engines_cpu() -> None:
    assert slow_steps.timings(LOG, "x86_64", ALL3) == (
        StepTime("linux/arm64", "1/3 FROM 127.0.0.1:5000/busybox@sha256:6d49", 0.1, False),
        StepTime("linux/amd64", "2/3 RUN make", 6.1, True),
        StepTime("linux/arm64", "2/3 RUN make", 31.5, False),
        StepTime("linux/arm/v7", "2/3 RUN make", 48.2, False),
        StepTime("linux/amd64", "1/1 FROM base", 0.2, True),
    )
    on_arm = slow_steps.timings(LOG, "aarch64", ALL3)
    assert [(s.platform, s.native) for s in on_arm if s.what == "2/3 RUN make"] == [
        ("linux/amd64", False), ("linux/arm64", True), ("linux/arm/v7", False)
    ]  # fmt: skip
    assert not any(s.native for s in slow_steps.timings(LOG, "", ALL3))  # the engine's CPU unknown: none
    # A one-platform build's steps name no platform: they are that platform's.
    one = "#5 [api 2/3] RUN make\n#5 DONE 60.0s\n"
    assert slow_steps.timings(one, "x86_64", ("linux/arm64",)) == (
        StepTime("linux/arm64", "2/3 RUN make", 60.0, False),
    )
    assert slow_steps.timings(one, "x86_64", ALL3) == ()  # a step of no platform: not a platform's


def step(platform: str, seconds: float, native: bool, what: str = "2/3 RUN make") -> StepTime:
    return StepTime(platform, what, seconds, native)


@pytest.mark.parametrize(
    ("emulated", "native", "advised"),
    [
        (30.0, 10.0, True),  # 3x, 20 s more
        (15.0, 5.0, True),  # 3x, exactly 10 s more
        (29.9, 10.0, False),  # under 3x
        (14.9, 4.9, True),
        (14.8, 4.9, False),  # 3x, but under 10 s more
        (9.0, 0.1, False),  # 90x, but 9 s
    ],
)
def test_only_a_step_three_times_and_ten_seconds_slower_than_natively_is_worth_saying(
    emulated: float, native: float, advised: bool
) -> None:
    found = slow_steps.slow("api", [step("linux/amd64", native, True), step("linux/arm64", emulated, False)])
    assert bool(found) is advised


def test_each_emulated_step_is_set_against_the_quickest_native_run_of_the_same_step() -> None:
    steps = [
        step("linux/amd64", 8.0, True),
        step("linux/arm64", 5.0, True),  # an arm64 engine: native too
        step("linux/arm/v7", 40.0, False),
        step("linux/riscv64", 90.0, False),
        step("linux/riscv64", 90.0, False, what="3/3 RUN apk add gcc"),  # nothing native to compare with
    ]
    assert slow_steps.slow("api", steps) == [
        Slow("api", "2/3 RUN make", "linux/riscv64", 90.0, "linux/arm64", 5.0),
        Slow("api", "2/3 RUN make", "linux/arm/v7", 40.0, "linux/arm64", 5.0),
    ]


def test_a_long_step_is_named_by_its_first_80_characters() -> None:
    long = Slow("api", "2/3 RUN " + "x" * 100, "linux/arm64", 60.0, "linux/amd64", 5.0)
    assert slow_steps.line(long).startswith(f"api: `2/3 RUN {'x' * 72}` took 60.0 s")


def test_of_native_runs_as_quick_as_each_other_the_first_is_named() -> None:
    steps = [
        step("linux/amd64", 5.0, True),
        step("linux/arm64", 5.0, True),
        step("linux/arm/v7", 40.0, False),
    ]
    assert [s.native for s in slow_steps.slow("api", steps)] == ["linux/amd64"]


def test_every_images_slow_steps_slowest_first() -> None:
    def built(name: str, emulated: float) -> BuildResult:
        steps = (step("linux/amd64", 1.0, True), step("linux/arm64", emulated, False))
        return BuildResult(name, Status.BUILT, 1.0, "", None, steps=steps)

    found = slow_steps.of_results([built("a", 20.0), built("b", 60.0), built("c", 2.0)])
    assert [(s.image, s.saving) for s in found] == [("b", 59.0), ("a", 19.0)]


def test_the_fix_that_fits_a_compile_step_cross_compiles_and_an_install_needs_a_native_engine() -> None:
    compile_ = Slow("api", "2/3 RUN go build -o /app ./cmd", "linux/arm64", 60.0, "linux/amd64", 5.0)
    install = Slow("api", "2/3 RUN apt-get install -y libpq5", "linux/arm64", 60.0, "linux/amd64", 5.0)
    assert slow_steps.fix(compile_) == (
        "compile it in a `FROM --platform=$BUILDPLATFORM` stage for $TARGETPLATFORM and COPY the result "
        "(natively for every platform), or build linux/arm64 on a native engine (`engines`: a machine of that CPU)"
    )
    assert (
        slow_steps.fix(install) == "build linux/arm64 on a native engine (`engines`: a machine of that CPU)"
    )
    assert slow_steps.line(install) == (
        "api: `2/3 RUN apt-get install -y libpq5` took 60.0 s under emulation for linux/arm64, 5.0 s natively "
        "for linux/amd64: build linux/arm64 on a native engine (`engines`: a machine of that CPU)"
    )


def kept(repo: Repo, commit: str, at: float, **images: list[StepTime]) -> None:
    logs = repo.path / ".git" / "mab-hook" / "logs" / commit
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "steps.json").write_text(
        json.dumps({name: [list(s) for s in steps] for name, steps in images.items()})
    )
    os.utime(logs / "steps.json", (at, at))


def report(repo: Repo, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run((sys.executable, "-m", "mab_hook", "report", "--color", "never", *args), cwd=repo.path,
                          capture_output=True, text=True, check=False)  # fmt: skip


def test_report_lists_the_slowest_emulated_steps_of_the_builds_kept_each_as_last_measured(repo: Repo) -> None:
    repo.commit({"README.md": "x\n"})
    assert "no emulated step of the 0 build(s) kept" in report(repo).stdout
    kept(
        repo,
        "aaaaaaaaaaaa",
        1_000_000,
        api=[step("linux/amd64", 5.0, True), step("linux/arm64", 50.0, False)],
    )
    kept(repo, "bbbbbbbbbbbb", 2_000_000, api=[step("linux/amd64", 5.0, True), step("linux/arm64", 30.0, False)],
         web=[step("linux/amd64", 1.0, True, "1/2 RUN npm ci"), step("linux/arm/v7", 61.0, False, "1/2 RUN npm ci")])  # fmt: skip
    kept(
        repo, "cccccccccccc", 3_000_000, api=[step("linux/amd64", 5.0, True), step("linux/arm64", 6.0, False)]
    )
    (repo.path / ".git" / "mab-hook" / "logs" / "dddddddddddd").mkdir()
    (repo.path / ".git" / "mab-hook" / "logs" / "dddddddddddd" / "steps.json").write_text("{not json")
    done = report(repo)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "the slowest emulated steps of the 3 build(s) kept, slowest first:"
    assert lines[1].startswith(
        "  web: `1/2 RUN npm ci` took 61.0 s under emulation for linux/arm/v7, 1.0 s natively"
    )
    assert "(commit bbbbbbbbbbbb, " in lines[1]
    # api's step was last measured at 6.0 s (cccc): no longer slow, though bbbb and aaaa said so
    assert len(lines) == 2
    data = json.loads(report(repo, "--json", "--limit", "1").stdout)
    assert data["builds"] == 3 and [(s["image"], s["saving"], s["commit"]) for s in data["steps"]] == [
        ("web", 60.0, "bbbbbbbbbbbb")
    ]


@pytest.mark.lab
def test_a_slow_emulated_step_gets_advice_with_both_times_and_a_quick_one_none(lab: Lab, repo: Repo) -> None:
    registry, salt = lab.namespace(local=True), uuid.uuid4().hex
    loop = "i=0; while [ $i -lt {n} ]; do i=$((i+1)); done"
    # How much slower QEMU runs the loop depends on the machine (a CI run once measured 900,000 turns at just
    # under the 10 s the advice needs): the emulated platform also sleeps, so the step is over the threshold
    # on any machine while its time is still what mab-hook reads from a real emulated build's log.
    floor = '[ "$(uname -m)" != aarch64 ] || sleep 11'
    repo.commit({
        "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\nregistry = "{registry}"\n'
                          f'[tool.multiarch.images.slow]\ncontext = "slow"\n[tool.multiarch.images.quick]\ncontext = "quick"\n',
        "slow/Dockerfile": f"FROM {lab.busybox}\nRUN echo {salt} && {loop.format(n=300000)} && {floor}\n",
        "quick/Dockerfile": f"FROM {lab.busybox}\nRUN echo {salt} && {loop.format(n=1000)}\n",
    })  # fmt: skip
    done = subprocess.run((sys.executable, "-m", "mab_hook", "--all"), cwd=repo.path, env=lab.env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    advice = re.findall(r"^mab-hook: (\w+): `2/2 RUN echo \w+ && i=0.*?` took ([\d.]+) s under emulation for "
                        r"linux/arm64, ([\d.]+) s natively for linux/amd64: (.*)$", said, re.MULTILINE)  # fmt: skip
    assert [a[0] for a in advice] == ["slow"], said
    emulated, native = float(advice[0][1]), float(advice[0][2])
    assert emulated >= 3 * native and emulated - native >= 10
    assert advice[0][3] == "build linux/arm64 on a native engine (`engines`: a machine of that CPU)"
    again = subprocess.run((sys.executable, "-m", "mab_hook", "--all", "--json"), cwd=repo.path, env=lab.env,
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert json.loads(again.stdout)["slow_steps"] == []  # built before: nothing ran, nothing to say
    listed = subprocess.run((sys.executable, "-m", "mab_hook", "report"), cwd=repo.path, env=lab.env,
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert listed.stdout.count("took") == 1 and "slow: `2/2 RUN echo" in listed.stdout, listed.stdout

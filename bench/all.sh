#!/usr/bin/env bash
# Run every benchmark on this machine and write bench/RESULTS.md. Needs the lab (bash lab/up)
# and the project installed (bash .ci/run does both; or: python3 -m venv .venv &&
# .venv/bin/pip install -e .). BASELINE=REV also times planning with mab-hook as it was at REV.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-../.venv/bin/python}
. "${MAB_LAB_DIR:-/var/tmp/mab-lab}/env"
{
    echo "# Benchmark results"
    echo
    echo "Measured $(date -u +%Y-%m-%d) with \`bash bench/all.sh\` on: $("$python" -c 'import common; print(common.machine())')."
    echo "Docker $(docker version --format '{{.Server.Version}}'), buildx $(docker buildx version | awk '{print $2}'), the lab of \`lab/up\`."
    echo "Medians of several runs, each a fresh process, mab-hook's bytecode compiled as pip installs it."
    echo "This machine is a VM whose speed drifts by up to 1.5x over minutes: the planning cases are"
    echo "measured in turns (so their ratios hold), with the best run beside the median."
    echo
    "$python" planning.py --profile ${BASELINE:+--baseline "$BASELINE"}
    echo
    "$python" definitions.py
    echo
    "$python" hook_cost.py
    echo
    "$python" work_avoided.py
    echo
    "$python" build_cost.py
    echo
    "$python" real_pushes.py
    echo
    "$python" verify_cost.py
    echo
    "$python" publish_latency.py
    echo
    "$python" base_coverage.py
    echo
    "$python" upload_check.py
    echo
    "$python" hostile.py ${BASELINE:+--baseline "$BASELINE"}
    echo
    "$python" registry_requests.py ${BASELINE:+--baseline "$BASELINE"}
    echo
    "$python" engines.py
    echo
    cat reading.md
} | tee RESULTS.md.new
mv RESULTS.md.new RESULTS.md

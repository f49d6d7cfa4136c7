#!/usr/bin/env bash
# The CI job summary after `dvc exp run -S profile=smoke`: this run's metrics beside the pinned
# smoke metrics of the same platform (never beside the committed full-profile numbers), then
# every metric the run wrote. Markdown on stdout; the workflow appends it to the job summary.
#
#   bash scripts/ci/summary.sh [reports/pinned/smoke-sample.json [reports/sweeps/<sweep>.json]] \
#       >> "$GITHUB_STEP_SUMMARY"
# With a collected seed sweep of the same profile, the tolerances are its seeds' spread.
set -euo pipefail
pinned="${1:-reports/pinned/smoke-sample.json}"
spread=()
[ -n "${2:-}" ] && spread=(--spread "$2")

deeplecture-drift summary --pinned "$pinned" --metrics metrics "${spread[@]}"
echo
echo "## Every metric of this run"
echo
dvc metrics show --md
echo
echo "The report and its figures are attached to this run as the \`smoke-report\` artifact."

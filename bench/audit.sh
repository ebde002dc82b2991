#!/usr/bin/env bash
# The audit log at scale: fill, search by resident, verify, disk per event.
#   bench/audit.sh            10 million events (a few minutes, ~6 GB of temporary disk)
#   bench/audit.sh --smoke    100 thousand events (seconds)
#   bench/audit.sh --events N --residents R
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
if [[ "${1:-}" == "--smoke" ]]; then
  args=(--events 100000 --residents 10000)
fi
cargo build --release --example audit_bench -q
exec target/release/examples/audit_bench "${args[@]}"

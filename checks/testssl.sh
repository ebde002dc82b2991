#!/usr/bin/env bash
# TLS configuration check with testssl.sh (Debian package), against a demo
# gateway this script starts itself. Fails on any HIGH or CRITICAL finding.
#   checks/testssl.sh [path/to/tongban]      (default: target/release/tongban)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/tongban}
if ! command -v testssl >/dev/null 2>&1 && ! command -v testssl.sh >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq testssl.sh >/dev/null
fi
testssl=$(command -v testssl || command -v testssl.sh)
[ -x "$bin" ] || cargo build --release -q
home=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" demo --home "$home" --listen "127.0.0.1:$port" --residents 100 >"$home/gateway.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$home"' EXIT
for _ in $(seq 100); do
  curl -sf --cacert "$home/certs/ca.pem" "https://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.2
done
"$testssl" --quiet --color 0 --warnings off --add-ca "$home/certs/ca.pem" \
  --jsonfile "$home/testssl.json" "https://127.0.0.1:$port" >"$home/testssl.txt" 2>&1 || true
python3 - "$home/testssl.json" <<'PY'
import json, sys
findings = json.load(open(sys.argv[1]))
bad = [f for f in findings if f.get("severity") in ("HIGH", "CRITICAL")]
for f in bad:
    print(f"{f['severity']}: {f['id']}: {f['finding']}")
print(f"testssl: {len(findings) - len(bad)} passed, {len(bad)} failed")
sys.exit(1 if bad else 0)
PY

#!/usr/bin/env bash
# Checks the gateway against its own OpenAPI description with schemathesis
# (PyPI), run against a demo gateway this script starts itself. Each audience
# is tested with a valid token of its own: three department systems (lookup,
# batch, verify grants), a privacy officer and a policy administrator.
# Fails on any server error (5xx), undocumented status or content type, or
# response that violates its schema.
#   checks/schemathesis.sh [path/to/tongban] [max examples per operation]
# Needs: python3 with venv. Installs schemathesis into target/ci-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/tongban}
examples=${2:-25}
venv=target/ci-venv
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "4.32.5"; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==4.32.5"
fi
[ -x "$bin" ] || cargo build -q
home=$(mktemp -d)
port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" demo --home "$home" --listen "127.0.0.1:$port" --residents 300 >"$home/gateway.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$home"' EXIT
for _ in $(seq 150); do
  curl -sf --cacert "$home/certs/ca.pem" "https://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.2
done
token() { "$bin" token --home "$home" --dept "$1" --sub "$2" --roles "$3"; }

failed=0
# audience tag, department, subject, role
while read -r tag dept sub role; do
  echo "== schemathesis: $tag as $dept/$sub ($role)"
  tok=$(token "$dept" "$sub" "$role")
  if ! PYTHONPATH=checks SCHEMATHESIS_HOOKS=schemathesis_hooks "$venv/bin/schemathesis" --no-color run "https://127.0.0.1:$port/openapi.json" \
      --tls-verify "$home/certs/ca.pem" \
      -H "Authorization: Bearer $tok" \
      --include-tag "$tag" \
      --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
      --max-examples "$examples" --seed 20261125 \
      --suppress-health-check all; then
    failed=$((failed + 1))
  fi
done <<'EOF'
ops minzheng clerk-007 dibao_reviewer
records minzheng clerk-007 dibao_reviewer
records renshe clerk-1 pension_clerk
records jiaoyu clerk-2 admissions_clerk
audit shujuju officer-1 privacy_officer
admin shujuju admin-1 policy_admin
EOF
if grep -q "panicked" "$home/gateway.log"; then
  echo "the gateway panicked:"; grep -A3 "panicked" "$home/gateway.log"; failed=$((failed + 1))
fi
echo "schemathesis: $((6 - failed)) of 6 runs passed"
[ "$failed" -eq 0 ]

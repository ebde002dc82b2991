#!/usr/bin/env bash
# Instructions per request, which do not depend on how busy the machine is:
# the bare hyper + rustls server and the gateway (authorized lookup), each
# under `valgrind --tool=callgrind` (every thread counted), loaded by wrk
# for SECS seconds, minus a run that only starts and stops (start-up), over
# the requests answered.
#
#   bench/instructions.sh BIN BARE_BIN HOME LUA SECS BODY   (bench/run.sh calls it)
#
# With TONGBAN_CALLGRIND_KEEP=DIR the callgrind outputs are kept in DIR, for
# `callgrind_annotate --inclusive=yes DIR/gateway-SECS.cg` (where it goes).
#
# Prints "instructions bare N" and "instructions gateway N". Two functions
# are left out of the counts: sled's lazy-static spin-wait (under valgrind
# threads run one at a time, so a thread spinning on another's
# initialization burns instructions it never would on the hardware) and
# aws-lc's jitter-entropy seeding (start-up). valgrind also runs SHA-256
# without the SHA extensions, so hashing counts higher than on the hardware.
set -euo pipefail
bin=$1 bare=$2 home=$3 lua=$4 secs=$5 body=$6
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ca=$home/certs/ca.pem
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token=$("$bin" token --home "$home" --dept minzheng --sub bench-clerk --roles dibao_reviewer --ttl 2h)

count() { # callgrind output -> instructions, less the two functions above
  callgrind_annotate --auto=no --threshold=100 "$1" 2>/dev/null | awk '
    /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
    /lazy::Lazy|jitterentropy/ { gsub(",", "", $1); skip += $1 }
    END { printf "%.0f\n", total - skip }'
}

# run NAME SECS CMD...: starts CMD under callgrind on a fresh copy of the
# home (so that both runs start from the same state), loads it, prints
# "requests instructions"
run() {
  local name=$1 s=$2; shift 2
  local out=$work/$name-$s.cg
  rm -rf "$work/home"
  cp -a "$home" "$work/home"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$work/$name-$s.log" 2>&1 &
  local pid=$!
  for _ in $(seq 900); do
    curl -s -o /dev/null --cacert "$ca" "https://127.0.0.1:$port/readyz" && break
    sleep 0.2
  done
  local n=0
  if [ "$s" -gt 0 ]; then
    n=$(wrk -t1 -c8 -d"${s}s" -s "$lua" -H "Authorization: Bearer $token" \
      -H "X-Purpose: dibao_review" -H "X-Case-Ref: MZ-2026-000123" \
      "https://127.0.0.1:$port/v1/datasets/gongan.hukou/records/" | awk '/requests in/ { print $1 }')
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ -n "${TONGBAN_CALLGRIND_KEEP:-}" ]; then
    mkdir -p "$TONGBAN_CALLGRIND_KEEP" && cp "$out" "$TONGBAN_CALLGRIND_KEEP/"
  fi
  echo "$n $(count "$out")"
}

per_request() { # name cmd...
  local name=$1; shift
  read -r _ idle < <(run "$name" 0 "$@")
  read -r n busy < <(run "$name" "$secs" "$@")
  if [ "${n:-0}" -gt 0 ]; then
    echo "instructions $name $(( (busy - idle) / n ))"
  else
    echo "instructions $name 0"
  fi
}

per_request bare "$bare" --listen "127.0.0.1:$port" --cert "$work/home/certs/server.pem" \
  --key "$work/home/certs/server-key.pem" --body "$body"
per_request gateway "$bin" demo --home "$work/home" --listen "127.0.0.1:$port"

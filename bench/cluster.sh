#!/usr/bin/env bash
# The cluster scenario of the benchmark suite (bench/run.sh calls it): one,
# two and three gateway nodes in cluster mode on this machine, on a
# PostgreSQL of its own, loaded together by one wrk per node (the same 64
# connections in all, split between the nodes), and the audit shipping lag
# while they run (the largest `lag_events` seen in the nodes' /readyz,
# sampled every half second) and the time to catch up after the load stops.
#
#   bench/cluster.sh BIN HOME LUA SECS CONNS OUT
#
# HOME is a prepared benchmark home (copied for each node). Appends
# "cluster N req/s max_lag catchup_s" lines to OUT. On two cores the nodes,
# PostgreSQL and wrk share the same CPUs, so more nodes cannot mean more
# throughput here: the figures show what cluster mode costs a node and
# whether shipping keeps up, not how a cluster of machines scales.
set -euo pipefail
bin=$1 template=$2 lua=$3 secs=$4 conns=$5 out=$6
work=$(mktemp -d)
chmod 755 "$work"
pids=()
pg_pid=
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  [ -n "$pg_pid" ] && kill -INT "$pg_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$pgbin" ]; then
  (apt-get install -y -qq postgresql >/dev/null 2>&1) ||
    (apt-get update -qq && apt-get install -y -qq postgresql >/dev/null)
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
as_pg=()
[ "$(id -u)" = 0 ] && as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)
mkdir -p "$work/pg" && chmod 777 "$work/pg"
"${as_pg[@]}" "$pgbin/initdb" -D "$work/pg/data" -A trust -U tongban -E UTF8 --locale=C >/dev/null
pg_port=$(free_port)
"${as_pg[@]}" "$pgbin/postgres" -D "$work/pg/data" -p "$pg_port" -c listen_addresses=127.0.0.1 \
  -c unix_socket_directories="$work/pg" >"$work/pg/log" 2>&1 &
pg_pid=$!
for _ in $(seq 100); do "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && break; sleep 0.1; done

token=$("$bin" token --home "$template" --dept minzheng --sub bench-clerk --roles dibao_reviewer --ttl 2h)
# /readyz gives its details (the shipping lag) to the operator's staff only.
ops_token=$("$bin" token --home "$template" --dept shujuju --sub bench-ops --roles policy_admin --ttl 2h)
key=$(python3 -c 'import os; print(os.urandom(32).hex())')

# lag NODE_HOMES...: the largest lag_events among the nodes now.
lag() {
  local max=0 v
  for h in "$@"; do
    v=$(curl -sf --cacert "$h/certs/ca.pem" -H "Authorization: Bearer $ops_token" "https://127.0.0.1:$(cat "$h/port")/readyz" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["cluster"]["audit_shipping"]["lag_events"])' 2>/dev/null || echo 0)
    [ "$v" -gt "$max" ] && max=$v
  done
  echo "$max"
}

for n in 1 2 3; do
  db=bench$n
  "$pgbin/createdb" -h 127.0.0.1 -p "$pg_port" -U tongban "$db"
  homes=()
  for i in $(seq "$n"); do
    h=$work/n$n-$i
    cp -a "$template" "$h"
    rm -f "$h/data/audit-checkpoint.key" "$h/data/audit-checkpoint-sm2.pem"
    python3 -c "import sys; open(sys.argv[1], 'wb').write(bytes.fromhex(sys.argv[2]))" "$h/data/pseudonym.key" "$key"
    port=$(free_port); echo "$port" >"$h/port"
    sed -i -e '/^node_id/d' -e "s|^listen = .*|listen = \"127.0.0.1:$port\"|" "$h/tongban.toml"
    printf '\n[cluster]\nnode_id = "node-%s"\npostgres_url = "postgres://tongban@127.0.0.1:%s/%s"\n' "$i" "$pg_port" "$db" >>"$h/tongban.toml"
    "$bin" keys init --config "$h/tongban.toml" >/dev/null   # this node's own checkpoint key
    homes+=("$h")
  done
  "$bin" policy push "${homes[0]}/policies" --config "${homes[0]}/tongban.toml" >/dev/null
  for h in "${homes[@]}"; do
    "$bin" serve --config "$h/tongban.toml" >"$h/gateway.log" 2>&1 &
    pids+=("$!"); echo "$!" >"$h/pid"
  done
  for h in "${homes[@]}"; do
    for _ in $(seq 300); do
      curl -sf --cacert "$h/certs/ca.pem" "https://127.0.0.1:$(cat "$h/port")/readyz" >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  # Let every node count the others (limits are shared by the live nodes).
  sleep 3
  per=$(( conns / n ))
  wrks=()
  for h in "${homes[@]}"; do
    wrk -t1 -c"$per" -d"${secs}s" -s "$lua" -H "Authorization: Bearer $token" \
      -H "X-Purpose: dibao_review" -H "X-Case-Ref: MZ-2026-000123" \
      "https://127.0.0.1:$(cat "$h/port")/v1/datasets/gongan.hukou/records/" >"$h/wrk.txt" 2>&1 &
    wrks+=("$!")
  done
  max_lag=0
  end=$(( $(date +%s) + secs ))
  while [ "$(date +%s)" -lt "$end" ]; do
    l=$(lag "${homes[@]}"); [ "$l" -gt "$max_lag" ] && max_lag=$l
    sleep 0.5
  done
  wait "${wrks[@]}" 2>/dev/null || true
  stopped=$(date +%s.%N)
  for _ in $(seq 600); do [ "$(lag "${homes[@]}")" = 0 ] && break; sleep 0.1; done
  catchup=$(python3 -c "import time; print(f'{time.time() - $stopped:.1f}')")
  total=$(cat "${homes[@]/%//wrk.txt}" | awk '/Requests\/sec/ { s += $2 } END { printf "%.0f", s }')
  non2xx=$(cat "${homes[@]/%//wrk.txt}" | awk '/Non-2xx/ { s += $NF } END { print s + 0 }')
  echo "cluster $n $total $max_lag $catchup $non2xx" >>"$out"
  echo "cluster $n nodes: $total req/s, largest shipping lag $max_lag events, caught up ${catchup}s after" >&2
  for h in "${homes[@]}"; do kill "$(cat "$h/pid")" 2>/dev/null || true; wait "$(cat "$h/pid")" 2>/dev/null || true; done
done

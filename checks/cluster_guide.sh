#!/usr/bin/env bash
# Follows docs/cluster.md's step-by-step guide literally: its shell blocks
# are read from the file (between the `cluster-guide: up`, `down` and `end`
# markers), so the guide and this check cannot drift apart. The blocks
# bring up two nodes behind nginx with Debian's PostgreSQL and Redis, as
# root, without systemd; then the cluster end-to-end test's own checks run
# against them (`cluster_e2e::the_guides_two_nodes_behind_nginx`: load,
# every acknowledged request in PostgreSQL, a disclosure report over both
# nodes, lookups through nginx with a client certificate, quiet logs); then
# the guide's stopping block, whose last command verifies the central copy
# after the clean stop, and a check that each node's copy ends with a
# signed checkpoint at its last event.
#
#   bash checks/cluster_guide.sh      (as root; .ci/run runs it)
#
# It changes the machine as the guide does (a `tongban` user, /srv/tongban,
# /usr/local/bin/tongban, /etc/nginx/tongban, a role and database in
# PostgreSQL's main cluster, Redis's password and persistence) and undoes
# all of it when it ends, however it ends. It refuses to start on a machine
# where any of these is already in use by something else.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
guide=docs/cluster.md
work=$repo/target/cluster-guide
state=/var/tmp/tongban-cluster-guide
fail() { echo "cluster guide check: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "the guide runs as root (it installs packages and starts services); run this as root"
[ "${CARGO_TARGET_DIR:-}" = "" ] || fail "CARGO_TARGET_DIR is set; the guide installs target/release/tongban"

# The guide's blocks, in order: `up` (setting up and checking) and `down` (stopping).
mkdir -p "$work"
blocks() {
  awk -v from="<!-- cluster-guide: $1 -->" -v to="<!-- cluster-guide: $2 -->" '
    $0 == from { on = 1; next }
    $0 == to { on = 0 }
    on && /^```sh$/ { code = 1; next }
    on && code && /^```$/ { code = 0; next }
    on && code { print }
  ' "$guide"
}
blocks up down >"$work/up.sh"
blocks down end >"$work/down.sh"
[ -s "$work/up.sh" ] && [ -s "$work/down.sh" ] || fail "no guide blocks between the markers in $guide"

# What the guide changes, put back when this ends. A run cut off before
# its cleanup leaves $state; the next run cleans up after it first.
cleanup() {
  set +e
  nginx -s quit -c /etc/nginx/tongban/nginx-cluster.conf 2>/dev/null
  pkill -KILL -u tongban 2>/dev/null
  sleep 0.5
  if id tongban >/dev/null 2>&1; then userdel tongban; fi
  rm -rf /srv/tongban /etc/nginx/tongban /var/log/nginx/tongban-error.log
  if [ -f "$state/had-binary" ]; then
    [ -f "$state/tongban.bin" ] && cp "$state/tongban.bin" /usr/local/bin/tongban
  else
    rm -f /usr/local/bin/tongban
  fi
  if pg_ctlcluster 15 main status >/dev/null 2>&1; then
    runuser -u postgres -- dropdb --if-exists tongban
    runuser -u postgres -- dropuser --if-exists tongban
    [ -f "$state/pg-was-running" ] || pg_ctlcluster 15 main stop
  fi
  if [ -f "$state/redis.conf" ]; then
    cp "$state/redis.conf" /etc/redis/redis.conf
    if [ -f "$state/redis-was-running" ]; then
      service redis-server restart >/dev/null
    else
      service redis-server stop >/dev/null
      [ -f "$state/had-aof" ] || rm -rf /var/lib/redis/appendonlydir
    fi
  fi
  rm -rf "$state"
}
if [ -d "$state" ]; then
  echo "cleaning up after a cut-off run of this check" >&2
  cleanup
fi

# Refuse a machine where what the guide makes is someone's already.
id tongban >/dev/null 2>&1 && fail "a user named tongban exists"
for path in /srv/tongban /etc/nginx/tongban; do
  [ -e "$path" ] && fail "$path exists"
done
for port in 443 8441 8442; do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && fail "port $port is in use"
done
if command -v psql >/dev/null && pg_ctlcluster 15 main status >/dev/null 2>&1; then
  runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'tongban'" | grep -q 1 &&
    fail "PostgreSQL's main cluster has a role named tongban"
fi

# The guide's packages first (its own apt-get then finds them), so that
# what it changes in their configuration can be put back.
scripts/need-debian postgresql redis-server nginx libnginx-mod-stream openssl curl

mkdir -p "$state"
trap 'status=$?; if [ $status != 0 ]; then for l in /srv/tongban/node-*/node.log; do [ -f "$l" ] && { echo "== $l"; tail -n 40 "$l"; }; done; fi; cleanup; exit $status' EXIT
if [ -f /usr/local/bin/tongban ]; then
  touch "$state/had-binary"
  cp /usr/local/bin/tongban "$state/tongban.bin"
fi
command -v pg_ctlcluster >/dev/null && pg_ctlcluster 15 main status >/dev/null 2>&1 && touch "$state/pg-was-running"
if [ -f /etc/redis/redis.conf ]; then
  cp /etc/redis/redis.conf "$state/redis.conf"
  pgrep -x redis-server >/dev/null && touch "$state/redis-was-running"
  [ -d /var/lib/redis/appendonlydir ] && touch "$state/had-aof"
fi

echo "== docs/cluster.md, steps 1 to 7 ($(wc -l <"$work/up.sh") lines, echoed as they run)"
bash -euo pipefail -v "$work/up.sh"

echo "== the cluster end-to-end test's checks against the guide's two nodes"
TONGBAN_GUIDE_DIR=/srv/tongban cargo test --locked --test api -- --ignored --exact cluster_e2e::the_guides_two_nodes_behind_nginx

echo "== docs/cluster.md, stopping"
# In the reader's shell, still in /srv/tongban with the passwords of step 2.
(cd /srv/tongban && set -a && . ./cluster.env && set +a && bash -euo pipefail -v "$work/down.sh")

echo "== after the clean stop, each node's central copy ends with a signed checkpoint at its last event"
set -a; . /srv/tongban/cluster.env; set +a
(cd /srv/tongban && runuser -u tongban -- tongban audit verify --cluster --config node-a/tongban.toml) \
  >"$work/verify.json" 2>"$work/verify.txt" || fail "audit verify --cluster: $(cat "$work/verify.txt")"
cat "$work/verify.txt"
python3 - "$work/verify.json" <<'EOF'
import json, sys
reports = {r["node_id"]: r for r in json.load(open(sys.argv[1]))}
assert set(reports) == {"node-a", "node-b"}, reports
for node, r in reports.items():
    head, signed = r["report"]["head_seq"], r["report"]["last_checkpoint"]
    assert head > 0 and signed == head, f"{node}: the central copy ends at {head}, signed through {signed}"
    print(f"{node}: central copy signed through its last event ({head})")
EOF
echo "cluster guide check: passed"

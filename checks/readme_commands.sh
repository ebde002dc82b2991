#!/usr/bin/env bash
# The README's two commands, taken from its "Two commands" code block so
# that the README and this check cannot drift apart, run as a newcomer runs
# them.
#
#   bash checks/readme_commands.sh --demo    the demo command in this checkout:
#                                            healthy over TLS within its time
#                                            (CI runs this; its test command is
#                                            the one .ci/run runs)
#   bash checks/readme_commands.sh --fresh   a fresh clone of this checkout
#                                            with a cold target directory (the
#                                            toolchain in CARGO_HOME and
#                                            RUSTUP_HOME is kept): the demo
#                                            command, then the test command
#                                            (about 25 minutes on 2 cores)
#
# Fails if either command fails, or if .ci/run no longer runs the README's
# test command.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:---demo}
here=$(pwd)

# The fenced block under "## Two commands": one command a line, comments cut.
mapfile -t commands < <(awk '
  /^## Two commands/ { inside = 1; next }
  inside && /^## / { exit }
  inside && /^```/ { if (fence) exit; fence = 1; next }
  inside && fence && NF { sub(/[[:space:]]+#.*$/, ""); print }
' README.md)
if [ ${#commands[@]} -ne 2 ]; then
  echo "README.md: the \"Two commands\" block should hold two commands, found ${#commands[@]}" >&2
  exit 1
fi
demo_cmd=${commands[0]}
test_cmd=${commands[1]}
echo "demo command: $demo_cmd"
echo "test command: $test_cmd"
case "$demo_cmd" in *" demo "*) ;; *) echo "the first command does not run tongban demo" >&2; exit 1 ;; esac
if ! grep -qx "$test_cmd" .ci/run; then
  echo ".ci/run does not run the README's test command ($test_cmd) on a line of its own" >&2
  exit 1
fi

# Runs the demo command in directory $1, waits until it answers /healthz over
# TLS with the home's own CA, then stops it.
run_demo() {
  local dir=$1 limit=$2 home log pid
  home=$(sed -n 's/.*--home[ =]\([^ ]*\).*/\1/p' <<<"$demo_cmd")
  home=${home:-demo-home}
  log=$(mktemp)
  if curl -sk https://127.0.0.1:8443/healthz >/dev/null 2>&1; then
    echo "something already answers on 127.0.0.1:8443, the demo's address: stop it first" >&2
    return 1
  fi
  local fresh_home=0
  [ -e "$dir/$home" ] || fresh_home=1
  echo "running the demo command in $dir (a release build: about 5 minutes from cold, seconds when built)"
  (cd "$dir" && exec setsid bash -c "$demo_cmd") >"$log" 2>&1 &
  pid=$!
  local started=$SECONDS healthy=0
  while [ $((SECONDS - started)) -lt "$limit" ] && kill -0 "$pid" 2>/dev/null; do
    if [ -f "$dir/$home/certs/ca.pem" ] &&
      curl -sf --cacert "$dir/$home/certs/ca.pem" https://127.0.0.1:8443/healthz >/dev/null 2>&1; then
      healthy=1
      break
    fi
    sleep 1
  done
  kill -INT -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ "$fresh_home" = 1 ] && rm -rf "${dir:?}/$home"
  if [ "$healthy" != 1 ]; then
    echo "the demo command was not healthy over TLS within $limit s; its output:" >&2
    tail -n 40 "$log" >&2
    rm -f "$log"
    return 1
  fi
  echo "the demo answered /healthz over TLS after $((SECONDS - started)) s"
  rm -f "$log"
}

case "$mode" in
  --demo)
    run_demo "$here" 900
    ;;
  --fresh)
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    git clone -q "$here" "$work/tongban"
    # CI and checks see ../shared beside the checkout.
    [ -d "$here/../shared" ] && ln -s "$(cd "$here/../shared" && pwd)" "$work/shared"
    export CARGO_TARGET_DIR="$work/tongban/target"
    run_demo "$work/tongban" 900
    echo "running the test command in the fresh clone"
    (cd "$work/tongban" && bash -c "$test_cmd")
    echo "both README commands passed in a fresh clone"
    ;;
  *)
    echo "usage: checks/readme_commands.sh [--demo|--fresh]" >&2
    exit 2
    ;;
esac

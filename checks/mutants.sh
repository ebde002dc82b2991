#!/usr/bin/env bash
# Mutation testing with cargo-mutants (crates.io) over the modules where a
# mutation that no test notices is a security or integrity defect: each
# module's mutants are tried against the tests that cover it, so a missed
# mutant names a behaviour no test holds. Not part of .ci/run: every module
# takes tens of minutes on 2 cores and all of them take hours. Run it for the
# modules a change touches before saying an issue is resolved; the README's
# testing section keeps the latest counts.
#
#   bash checks/mutants.sh                      every module in the table below
#   bash checks/mutants.sh MODULE...            only these (first column)
#   bash checks/mutants.sh --in-diff BASE ...   only mutants on lines changed since commit BASE
#   bash checks/mutants.sh --budget MINUTES ... the most one module may take (default 45)
#   bash checks/mutants.sh --list               the table
#
# Results: target/mutants/<module>/mutants.out/ (cargo-mutants' own files:
# caught.txt, missed.txt, timeout.txt, unviable.txt) and one line per module
# in target/mutants/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# module | files (space-separated) | the tests that cover it (cargo test targets, then name filters)
table='
minimize    | src/pipeline/minimize.rs                       | --lib --test api | minimize policy::decide lookup:: batch::
decide      | src/policy/decide.rs src/policy/index.rs       | --lib --test api | policy:: lookup:: verify:: batch:: admin::
authn       | src/pipeline/authn.rs src/pipeline/admit.rs    | --lib --test api | authn pipeline::admit error:: auth:: revocation:: suspension:: hostile:: tls:: lookup::department_rate_limit audit_review::officers_are_held
stops       | src/stops/mod.rs src/stops/suspension.rs src/stops/revocation.rs | --lib --test api | stops:: suspension:: revocation:: crash::a_stop_before_any_step_of_a_policy
verify      | src/pipeline/verify.rs                         | --lib --test api | pipeline::verify verify::
event       | src/audit/event.rs src/audit/chain.rs          | --lib --test api | audit:: audit_log:: audit_review:: gm_suite::
writer      | src/audit/writer.rs src/audit/wal.rs           | --lib --test api | audit:: audit_log:: crash::
rate_limit  | src/pipeline/rate_limit.rs                     | --lib --test api | rate_limit lookup:: batch::
'

budget=45
base=
wanted=()
while [ $# -gt 0 ]; do
  case "$1" in
    --budget) budget=$2; shift ;;
    --in-diff) base=$2; shift ;;
    --list) echo "$table" | sed '/^$/d'; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) wanted+=("$1") ;;
  esac
  shift
done

if ! cargo mutants --version 2>/dev/null | grep -q "cargo-mutants 27"; then
  echo "installing cargo-mutants from crates.io (about 3 minutes, once)" >&2
  cargo install --locked --quiet cargo-mutants@27.1.0
fi

out=target/mutants
mkdir -p "$out"
summary=$out/summary.md
[ -f "$summary" ] || printf '| module | caught | missed | timeout | unviable | when |\n|---|---|---|---|---|---|\n' >"$summary"
diff_args=()
if [ -n "$base" ]; then
  git diff "$base" >"$out/changes.diff"
  diff_args=(--in-diff "$out/changes.diff")
fi

while IFS='|' read -r name files targets filters; do
  name=$(echo "$name" | xargs)
  [ -n "$name" ] || continue
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " == *" $name "* ]]; then continue; fi
  file_args=()
  for f in $files; do file_args+=(--file "$f"); done
  echo "== $name: $(echo $files) against $(echo $filters) (at most $budget minutes)" >&2
  # shellcheck disable=SC2086
  timeout "$((budget * 60))" cargo mutants --no-shuffle --jobs 1 --timeout 120 \
    "${file_args[@]}" "${diff_args[@]}" --output "$out/$name" \
    -- $targets -- $filters || true
  count() {
    local f="$out/$name/mutants.out/$1.txt"
    if [ -f "$f" ]; then grep -c . "$f" || true; else echo 0; fi
  }
  printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$(count caught)" "$(count missed)" \
    "$(count timeout)" "$(count unviable)" "$(date -u +%Y-%m-%d)" >>"$summary"
  if [ -s "$out/$name/mutants.out/missed.txt" ]; then
    echo "missed in $name:" >&2
    cat "$out/$name/mutants.out/missed.txt" >&2
  fi
done <<<"$table"
echo "summary: $summary" >&2

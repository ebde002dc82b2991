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
#   bash checks/mutants.sh --budget MINUTES ... the most one module may take (default 45;
#                                               the writer takes about 2 hours: --budget 150,
#                                               or --shard)
#   bash checks/mutants.sh --shard K/N ...      only the K-th of N parts of each module's
#                                               mutants (K from 0), to spread a long module
#                                               over sessions or machines
#   bash checks/mutants.sh --list               the table
#
# Each module runs in two passes. The first tries every mutant against the
# library's own tests (one small test binary: seconds to build and run); the
# second tries only the mutants the first did not catch against all the
# module's tests, the API and crash tests included. A mutant caught by the
# library's tests is caught whatever else runs, so the two passes count
# exactly what one pass over all the tests would, in a fraction of the time.
#
# Results: target/mutants/<module>[/shard-K-of-N]/{lib,all}/mutants.out/
# (cargo-mutants' own files: caught.txt, missed.txt, timeout.txt,
# unviable.txt), the mutants still missed after both passes in missed.txt
# beside them, and one line per module (and shard) in target/mutants/summary.md.
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
writer      | src/audit/writer.rs src/audit/wal.rs           | --lib --test api | audit:: audit_log:: crash:: gm_suite::
rate_limit  | src/pipeline/rate_limit.rs                     | --lib --test api | rate_limit lookup:: batch::
'

budget=45
base=
shard=
wanted=()
while [ $# -gt 0 ]; do
  case "$1" in
    --budget) budget=$2; shift ;;
    --in-diff) base=$2; shift ;;
    --shard)
      shard=$2; shift
      if ! [[ $shard =~ ^([0-9]+)/([0-9]+)$ ]] || [ "${BASH_REMATCH[1]}" -ge "${BASH_REMATCH[2]}" ]; then
        echo "--shard takes K/N with 0 <= K < N, as 0/2 and 1/2" >&2
        exit 2
      fi
      ;;
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

# The names cargo-mutants printed in FILE, one per line, as anchored regular
# expressions for --re: every character a regex gives meaning to is escaped.
as_regexes() {
  sed -e 's/[][\\.*^$+?(){}|#&~-]/\\&/g' -e 's/^/--re=^/' -e 's/$/$/' "$1"
}
count() { if [ -f "$1" ]; then grep -c . "$1" || true; else echo 0; fi; }
# How many mutants a pass in DIR tried: every one ends in exactly one list.
tried() { echo $(($(count "$1/caught.txt") + $(count "$1/missed.txt") + $(count "$1/timeout.txt") + $(count "$1/unviable.txt"))); }
# Why a pass ended, from cargo-mutants' exit code (or timeout's 124), when the
# pass did not try every mutant it was given: the summary says so rather
# than counting the untried ones as caught.
why() {
  case "$1" in
    124) echo "stopped at the budget" ;;
    4) echo "the tests failed without any mutation" ;;
    *) echo "cargo-mutants ended with $1" ;;
  esac
}

while IFS='|' read -r name files targets filters; do
  name=$(echo "$name" | xargs)
  [ -n "$name" ] || continue
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " == *" $name "* ]]; then continue; fi
  file_args=()
  for f in $files; do file_args+=(--file "$f"); done
  dir=$out/$name
  label=$name
  shard_args=()
  if [ -n "$shard" ]; then
    dir=$out/$name/shard-${shard%/*}-of-${shard#*/}
    label="$name (part $shard)"
    shard_args=(--shard "$shard")
  fi
  rm -rf "$dir/lib" "$dir/all" "$dir/missed.txt" "$dir/untried.txt"
  mkdir -p "$dir"
  deadline=$(($(date +%s) + budget * 60))
  echo "== $label: $(echo $files), first against the library's tests $(echo $filters) (at most $budget minutes in all)" >&2
  expected=$(cargo mutants --list "${file_args[@]}" "${diff_args[@]}" "${shard_args[@]}" | grep -c . || true)
  rc=0
  # shellcheck disable=SC2086
  timeout "$budget"m cargo mutants --no-shuffle --jobs 1 --timeout 60 \
    "${file_args[@]}" "${diff_args[@]}" "${shard_args[@]}" --output "$dir/lib" \
    -- --lib -- $filters || rc=$?
  lib=$dir/lib/mutants.out
  note=
  if [ "$expected" -eq 0 ]; then
    # (cargo-mutants writes no output when a diff leaves no mutant.)
    printf '| %s | 0 | 0 | 0 | 0 | %s (no mutant in the change) |\n' "$label" "$(date -u +%Y-%m-%d)" >>"$summary"
    continue
  fi
  if [ "$(tried "$lib")" -lt "$expected" ]; then
    note="incomplete: $(tried "$lib") of $expected tried, $(why "$rc")"
  fi
  { cat "$lib/missed.txt" "$lib/timeout.txt" 2>/dev/null || true; } | sed '/^$/d' >"$dir/again.txt"
  caught=$(count "$lib/caught.txt")
  unviable=$(count "$lib/unviable.txt")
  left=$((deadline - $(date +%s)))
  if [ -s "$dir/again.txt" ] && [ "$left" -lt 300 ]; then
    # Too little of the budget left for a build and a baseline: every
    # mutant the first pass did not catch is counted untried, not missed.
    cp "$dir/again.txt" "$dir/untried.txt"
    note="${note:+$note; }second pass not run (budget spent): $(grep -c . "$dir/again.txt") untried, listed in untried.txt"
    : >"$dir/missed.txt"
    timeouts=0
  elif [ -s "$dir/again.txt" ]; then
    mapfile -t again < <(as_regexes "$dir/again.txt")
    echo "== $label: $(grep -c . "$dir/again.txt") not caught by the library's tests, now against $(echo $targets) $(echo $filters)" >&2
    rc=0
    # shellcheck disable=SC2086
    timeout "$left" cargo mutants --no-shuffle --jobs 1 --timeout 120 \
      "${file_args[@]}" "${again[@]}" --output "$dir/all" \
      -- $targets -- $filters || rc=$?
    all=$dir/all/mutants.out
    caught=$((caught + $(count "$all/caught.txt")))
    unviable=$((unviable + $(count "$all/unviable.txt")))
    { cat "$all/missed.txt" 2>/dev/null || true; } | sed '/^$/d' >"$dir/missed.txt"
    timeouts=$(count "$all/timeout.txt")
    if [ "$(tried "$all")" -lt "${#again[@]}" ]; then
      # The ones the second pass never reached: untried, not missed.
      { cat "$all/caught.txt" "$all/missed.txt" "$all/timeout.txt" "$all/unviable.txt" 2>/dev/null || true; } |
        sort >"$dir/reached.txt"
      sort "$dir/again.txt" | comm -23 - "$dir/reached.txt" >"$dir/untried.txt"
      note="${note:+$note; }second pass incomplete: $(tried "$all") of ${#again[@]} tried, $(why "$rc"); the rest in untried.txt"
    fi
  else
    : >"$dir/missed.txt"
    timeouts=0
  fi
  printf '| %s | %s | %s | %s | %s | %s%s |\n' "$label" "$caught" "$(count "$dir/missed.txt")" \
    "$timeouts" "$unviable" "$(date -u +%Y-%m-%d)" "${note:+ ($note)}" >>"$summary"
  [ -z "$note" ] || echo "$label: $note" >&2
  if [ -s "$dir/missed.txt" ]; then
    echo "missed in $label:" >&2
    cat "$dir/missed.txt" >&2
  fi
done <<<"$table"
echo "summary: $summary" >&2

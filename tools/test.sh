#!/usr/bin/env bash
# Run cargo test and the testthat suite; end with one line "N passed, M failed"
# summing both. Usage: tools/test.sh LIBRARY
set -uo pipefail
lib="$1"
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== cargo test"
(cd "$root/src/rust" && cargo test --release 2>&1) | tee "$out/cargo.log"
cargo_status=${PIPESTATUS[0]}
sum() { grep -E '^test result:' "$out/cargo.log" | sed -E "s/.* ([0-9]+) $1.*/\\1/" | awk '{s += $1} END {print s + 0}'; }
cargo_passed=$(sum passed)
cargo_failed=$(sum failed)
if [ "$cargo_status" -ne 0 ] && [ "$cargo_failed" -eq 0 ]; then cargo_failed=1; fi

echo "== testthat"
R_LIBS="$lib" Rscript "$root/tools/testthat.R" "$root/tests/testthat" "$out/r.counts"
r_passed=0; r_failed=1
[ -f "$out/r.counts" ] && read -r r_passed r_failed < "$out/r.counts"

passed=$((cargo_passed + r_passed))
failed=$((cargo_failed + r_failed))
echo
echo "cargo: $cargo_passed passed, $cargo_failed failed; testthat: $r_passed passed, $r_failed failed"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

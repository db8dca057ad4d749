#!/usr/bin/env bash
# The whole test suite (make test; CI runs it through .ci/run), the tests
# that need data/ included.
#
# The two real-vector rotation tests (crates/align/tests/real_rotation.rs)
# are the suite's longest: minutes each of small matrix products that keep
# one core busy. They run beside the rest of the suite, on one libtorch
# thread, instead of after it; their output follows the suite's, and either
# failing fails the command.
set -euo pipefail
cd "$(dirname "$0")/.."
# Build every test binary first (the same build the suite's run reuses),
# its output shown as it comes.
built=$(mktemp)
cargo test --workspace --no-run 2>&1 | tee "$built"
bin=$(grep -o 'target/debug/deps/real_rotation-[0-9a-f]*' "$built" | head -1)
rm -f "$built"
[ -x "$bin" ] || { echo "test.sh: no real_rotation test binary in cargo's output above"; exit 1; }
log=$(mktemp)
( cd crates/align && OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 exec "../../$bin" --include-ignored ) >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
rc=0
cargo test --workspace -- --include-ignored --skip recovers_a_rotation_of_real_vectors || rc=$?
echo "test.sh: waiting for the real-vector rotation tests (crates/align/tests/real_rotation.rs)"
bg=0
wait $pid || bg=$?
cat "$log"
[ $bg -eq 0 ] || echo "test.sh: the real-vector rotation tests failed (exit $bg)"
[ $rc -eq 0 ] && [ $bg -eq 0 ]

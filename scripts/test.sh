#!/bin/bash
# scripts/test.sh: every test, in order: cargo fmt --check, clippy -D warnings, the host tests,
# "hooks off" (a build without the test-hooks feature ignores every LVMSYNC_TEST_* hook), the
# guest tests (one QEMU boot through vm-tests/run) and the power cut (a hooked build, guest
# boots that are cut mid-apply and recovered). Runs every stage, prints each
# stage's time and cargo's "test result:" lines, and exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
ROOT=$PWD
LOGS=$ROOT/target/test-logs
t_all=$(date +%s)

bash scripts/install-deps.sh || { echo "test.sh: installing dependencies failed" >&2; exit 1; }
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
mkdir -p "$LOGS"

failed=() times=()
# stage NAME COMMAND...: run it with its output shown and logged, and record time and status.
stage() {
    local name=$1; shift
    local log=$LOGS/${name// /-}.log t0=$SECONDS
    echo "=== $name: $*"
    "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    times+=("$(printf '%-12s %5ds  %s' "$name" $((SECONDS - t0)) "$([ "$rc" = 0 ] && echo ok || echo "FAILED ($rc)")")")
    [ "$rc" = 0 ] || failed+=("$name")
}

# The guest tests and the hooks-off check run the binary users build: default features, no
# crash-test hooks (`cargo build --release` differs from it in optimisation only). The copy in
# target/guest-bin is one a concurrent rebuild cannot replace.
default_bin() {
    cargo build --bin lvmsync || return
    mkdir -p target/guest-bin && cp target/debug/lvmsync target/guest-bin/lvmsync
}

# tests/hooks_off.rs: that binary ignores every LVMSYNC_TEST_* variable.
hooks_off() {
    default_bin || return
    LVMSYNC_DEFAULT_BIN=$ROOT/target/guest-bin/lvmsync \
        cargo test -p lvmsync --test hooks_off -- --ignored
}

guest_tests() {
    default_bin || return
    LVMSYNC_BIN=$ROOT/target/guest-bin/lvmsync \
        CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$ROOT/vm-tests/run --timeout 2400 --" \
        cargo test -p lvmsync-vm-tests --test guest -- --test-threads=1
}

# Host-driven: boots the guest six times and cuts its power mid-apply, after a commit and mid-recover
# (see vm-tests/tests/powercut.rs). It needs the crash-test hooks in the binary it copies into
# the guest (it checks that they are there).
power_cut() {
    cargo build --bin lvmsync --features test-hooks || return
    mkdir -p target/guest-bin && cp target/debug/lvmsync target/guest-bin/lvmsync-hooks || return
    LVMSYNC_BIN=$ROOT/target/guest-bin/lvmsync-hooks \
        cargo test -p lvmsync-vm-tests --test powercut -- --nocapture
}

stage fmt cargo fmt --all --check
stage clippy cargo clippy --workspace --all-targets -- -D warnings
stage "host tests" cargo test --workspace --exclude lvmsync-vm-tests --no-fail-fast
stage "hooks off" hooks_off
stage "guest tests" guest_tests
stage "power cut" power_cut

echo
echo "=== summary"
for name in "host tests" "hooks off" "guest tests" "power cut"; do
    grep -h -a 'test result:' "$LOGS/${name// /-}.log" 2>/dev/null | sed "s/^/$name: /"
done
printf '%s\n' "${times[@]}"
echo "total        $(( $(date +%s) - t_all ))s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all stages passed"

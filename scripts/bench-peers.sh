#!/bin/bash
# scripts/bench-peers.sh: lvmsync versus the Ruby lvmsync and `rsync --inplace --no-whole-file`,
# end to end (change discovery + transfer + apply), side by side in ONE QEMU guest boot.
#
# A 4 GiB classic LV (COW snapshot) and a 4 GiB thin LV (thin snapshot) hold the same base
# data (half random, half base64 text); 1% of the device is rewritten after the snapshots;
# each tool then brings a destination holding the old copy up to date, through a pipe on the
# same machine, and the destination is hashed against the source. See
# scripts/bench-peers-guest.sh for the layout and docs/performance.md ("Versus the Ruby
# lvmsync and rsync") for results. A benchmark, not a test: 1 GiB took 47 minutes under TCG on
# a loaded 2-core host. At 4 GiB each b3sum of a destination alone takes 5-13 minutes under
# TCG (single-threaded on a block device), so one round of the five variants is 1.5-2.5 hours
# and the default three rounds need a quiet machine and an afternoon (BENCH_ROUNDS=1 for less).
#
# usage: LVMSYNC_RUBY_SRC=/path/to/ruby-lvmsync scripts/bench-peers.sh
#   LVMSYNC_RUBY_SRC  a checkout of the Ruby lvmsync (https://github.com/mpalmer/lvmsync,
#                     GPLv3: it is only run, never copied): the dir holding bin/lvmsync and lib/
#   BENCH_SIZE_MIB    device size in MiB (default 4096)
#   BENCH_ROUNDS      interleaved rounds of every variant (default 3; the table shows the median)
#   BENCH_VARIANTS    subset of "ours-cow ours-thin ruby-cow ruby-thin rsync"
#   BENCH_TIMEOUT     guest timeout in seconds (default 3600 + 3600 per round)
#   BENCH_KEEP=1      keep the work dir (target/bench-peers-<pid>: base image, logs)
#   LVMSYNC_BIN       an lvmsync binary to use instead of building target/release/lvmsync
# Installs ruby, ruby-treetop (the Ruby lvmsync's parser gem, from Debian), rsync and b3sum
# (the destination check) if missing.
# The Ruby tool's other gem, git-version-bump, only prints `lvmsync -V` and is not packaged by
# Debian: a two-method stand-in module on RUBYLIB replaces it.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
ROOT=$PWD
S=${BENCH_SIZE_MIB:-4096}
[ -n "${LVMSYNC_RUBY_SRC:-}" ] && [ -f "$LVMSYNC_RUBY_SRC/bin/lvmsync" ] && [ -f "$LVMSYNC_RUBY_SRC/lib/lvm.rb" ] || {
    echo "bench-peers: set LVMSYNC_RUBY_SRC to a checkout of the Ruby lvmsync (the dir with" \
        "bin/lvmsync and lib/lvm.rb): git clone https://github.com/mpalmer/lvmsync" >&2
    exit 2
}
LVMSYNC_RUBY_SRC=$(readlink -f "$LVMSYNC_RUBY_SRC")

missing=()
for p in ruby ruby-treetop rsync python3 e2fsprogs b3sum; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench-peers: installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if [ -z "${LVMSYNC_BIN:-}" ]; then
    cargo build --release --bin lvmsync
    LVMSYNC_BIN=target/release/lvmsync
fi

work=$ROOT/target/bench-peers-$$
mkdir -p "$work/out" "$work/rubylib"
[ "${BENCH_KEEP:-}" = 1 ] || trap 'rm -rf "$work"' EXIT
# A private copy: a rebuild while the guest runs cannot swap the binary under it.
cp "$LVMSYNC_BIN" "$work/lvmsync"
# The Ruby tool's tree too (a checkout under /tmp would be hidden by the guest's own /tmp).
mkdir -p "$work/ruby-lvmsync" && cp -r "$LVMSYNC_RUBY_SRC/bin" "$LVMSYNC_RUBY_SRC/lib" "$work/ruby-lvmsync/"
cat >"$work/rubylib/git-version-bump.rb" <<'EOF'
# Stand-in for the git-version-bump gem (only `lvmsync -V` and the gemspec use it).
module GVB
  class VersionUnobtainable < StandardError; end
  def self.version(*) = "unknown (run by lvmsync's bench-peers.sh)"
  def self.date(*) = "unknown"
end
EOF

echo "bench-peers: base image, $S MiB (even MiB random, odd MiB base64 text of random bytes)"
python3 - "$S" "$work/base.img" <<'EOF'
import base64, os, sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "wb") as f:
    for i in range(n):
        f.write(os.urandom(1 << 20) if i % 2 == 0 else base64.b64encode(os.urandom(786432)))
EOF

echo "bench-peers: load before the boot: $(uptime)"
vm-tests/run --timeout "${BENCH_TIMEOUT:-$((3600 + ${BENCH_ROUNDS:-3} * 3600))}" --module ext4 --disk "$((S * 4 + 1024))M" --rw "$work" -- \
    env BENCH_SIZE_MIB="$S" BENCH_ROUNDS="${BENCH_ROUNDS:-3}" BENCH_BASE="$work/base.img" \
    BENCH_OUT="$work/out" LVMSYNC="$work/lvmsync" LVMSYNC_RUBY_SRC="$work/ruby-lvmsync" \
    BENCH_RUBYLIB="$work/rubylib" ${BENCH_VARIANTS:+BENCH_VARIANTS="$BENCH_VARIANTS"} \
    bash scripts/bench-peers-guest.sh
echo "bench-peers: load after the boot: $(uptime)"

# The table: median (and best) of each variant; speed-up of lvmsync over each peer on the
# same snapshot kind (rsync, which needs no snapshot, against both).
echo
cat "$work/out/writes.txt"
# Our runs' phases (discovery, send, the receiver's finish), from their JSON log lines.
[ -f "$work/out/phases.txt" ] && cat "$work/out/phases.txt"
awk -F'\t' '
    $4 != "equal" { bad = bad " " $1 "#" $2 }
    $4 == "equal" { n[$1]++; t[$1, n[$1]] = $3 }
    END {
        for (v in n) {
            # insertion sort of the few runs, then median and best
            for (i = 2; i <= n[v]; i++) for (j = i; j > 1 && t[v, j] < t[v, j - 1]; j--) {
                x = t[v, j]; t[v, j] = t[v, j - 1]; t[v, j - 1] = x }
            m = n[v] % 2 ? t[v, (n[v] + 1) / 2] : (t[v, n[v] / 2] + t[v, n[v] / 2 + 1]) / 2
            med[v] = m; best[v] = t[v, 1]
        }
        printf "| variant | runs | median s | best s | lvmsync (same snapshot kind) faster by |\n"
        printf "|---|---|---|---|---|\n"
        split("ours-cow ours-thin ruby-cow ruby-thin rsync", order, " ")
        for (k = 1; k <= 5; k++) {
            v = order[k]; if (!(v in n)) continue
            r = ""
            if (v == "ruby-cow" && ("ours-cow" in med)) r = sprintf("%.1fx", med[v] / med["ours-cow"])
            if (v == "ruby-thin" && ("ours-thin" in med)) r = sprintf("%.1fx", med[v] / med["ours-thin"])
            if (v == "rsync") {
                if ("ours-cow" in med) r = sprintf("%.1fx (classic)", med[v] / med["ours-cow"])
                if ("ours-thin" in med) r = r sprintf("%s%.1fx (thin)", r == "" ? "" : ", ", med[v] / med["ours-thin"])
            }
            printf "| %s | %d | %.2f | %.2f | %s |\n", v, n[v], med[v], best[v], r
        }
        if (bad != "") { printf "FAILED (destination not equal or non-zero exit):%s\n", bad; exit 1 }
    }' "$work/out/times.tsv"

#!/bin/bash
# scripts/bench-refine-guest.sh: A/B of sub-block refinement in the QEMU/TCG guest, one boot:
# `send benchvg/thin --since benchvg/s1` of an old lvmsync (A: whole 64 KiB thin blocks) against
# a new one (B: refined to 4 KiB units, and B with --no-refine), interleaved in rotating order,
# page cache dropped before every run, stream to /dev/null. Run on the host (docs/performance.md):
#
#   mkdir -p target/ab && cp /tmp/lead/start/lvmsync target/ab/lvmsync-start
#   LVMSYNC_A=target/ab/lvmsync-start LVMSYNC_B=target/release/lvmsync \
#       BENCH_SIZE_MIB=256 BENCH_ROUNDS=6 vm-tests/run --disk 2G -- bash scripts/bench-refine-guest.sh
#
# (The binaries must not be under /tmp: the guest's /tmp is its own tmpfs.)
#
# BENCH_RECEIVE=1 (add `--module ext4` to vm-tests/run): each send goes through a pipe into
# `lvmsync receive` (the same binary) of a fresh thin snapshot of a copy of s1 (undo journal and
# state in a fresh directory on ext4 on the same disk), timed to the end of a `sync`; the
# destination is compared with the source afterwards.
#
# Setup: a thin pool with 64 KiB blocks, thin LV (BENCH_SIZE_MIB, default 128) filled with
# half random, half compressible 64 KiB blocks; snapshot s1; then 2% of the LV rewritten, half
# as scattered 4 KiB writes, half as 1 MiB runs (the mix of scripts/bench-peers-guest.sh).
#
# BENCH_KIND=classic: the same on a plain LV with classic snapshots of LVM's default 4 KiB
# chunks (s1 read-only), sending a second classic snapshot s2 taken after the writes
# (`send s2 --since s1`); not with BENCH_RECEIVE.
set -euo pipefail
[ "${LVMSYNC_VM_GUEST:-}" = 1 ] || { echo "bench-refine-guest.sh: run it through vm-tests/run (it needs the guest)" >&2; exit 2; }
S=${BENCH_SIZE_MIB:-128}
ROUNDS=${BENCH_ROUNDS:-3}
cp "$LVMSYNC_A" /tmp/lvmsync-a && cp "$LVMSYNC_B" /tmp/lvmsync-b
VG=benchvg
M=/dev/mapper/$VG
disk=${VM_DISKS%% *}
lvc() { lvcreate -q --yes "$@" >/dev/null; }
now() { date +%s.%N; }

pvcreate -q "$disk" >/dev/null
vgcreate -q $VG "$disk" >/dev/null
KIND=${BENCH_KIND:-thin}
if [ "$KIND" = classic ]; then
    [ "${BENCH_RECEIVE:-0}" = 1 ] && { echo "BENCH_KIND=classic: no BENCH_RECEIVE" >&2; exit 2; }
    lvc -L ${S}M -n thin $VG # the origin (named as the thin LV is, for the code below)
else
    lvc --type thin-pool -L $((S * 2))M --poolmetadatasize 16M --chunksize 64k -n pool $VG
    lvc -V ${S}M -T $VG/pool -n thin
fi
python3 - "$S" $M-thin <<'PY'
import os, random, sys
size, dev = int(sys.argv[1]) << 20, sys.argv[2]
rng = random.Random(1)
text = b"".join(b"line %08d of a log file, mostly the same words\n" % i for i in range(2000))
fd = os.open(dev, os.O_WRONLY)
for b in range(size // 65536):
    blk = rng.randbytes(65536) if b % 2 else text[(b * 977) % 4096:][:65536]
    os.pwrite(fd, blk, b * 65536)
os.fsync(fd)
PY
# Read-only (-pr): a sent snapshot kept as the base, which B refines against by default.
if [ "$KIND" = classic ]; then
    lvc -s -pr -c 4k -L $((S / 4))M -n s1 $VG/thin
else
    lvc -s -pr -kn -n s1 $VG/thin
fi
python3 - "$S" $M-thin <<'PY'
import os, random, sys
size_mib, dev = int(sys.argv[1]), sys.argv[2]
size = size_mib << 20
rng = random.Random(20261206)
budget = size // 50
writes = [(rng.randrange(size // 4096) * 4096, 4096) for _ in range(budget // 2 // 4096)]
writes += [(rng.randrange(size_mib) << 20, 1 << 20) for _ in range(budget // 2 // (1 << 20))]
fd = os.open(dev, os.O_WRONLY)
for off, n in writes:
    os.pwrite(fd, rng.randbytes(n), off)
os.fsync(fd)
units = {u for off, n in writes for u in range(off // 4096, (off + n) // 4096)}
blocks = {u // 16 for u in units}
print(f"writes: {len(writes)}, {len(units) * 4096} distinct bytes in 4 KiB units, "
      f"{len(blocks)} 64 KiB blocks ({len(blocks) * 65536} bytes)")
PY
SRC=$VG/thin
if [ "$KIND" = classic ]; then
    lvc -s -c 4k -L $((S / 4))M -n s2 $VG/thin
    SRC=$VG/s2
fi
if [ "${BENCH_RECEIVE:-0}" = 1 ]; then
    lvc --type thin-pool -L $((S * 2))M --poolmetadatasize 16M --chunksize 64k -n dpool $VG
    lvc -V ${S}M -T $VG/dpool -n dold
    dd if=$M-s1 of=$M-dold bs=4M iflag=direct oflag=direct status=none
    lvc -L $((S / 2 + 64))M -n jrnl $VG
    mkfs.ext4 -q $M-jrnl && mkdir -p /mnt/j && mount $M-jrnl /mnt/j
fi
echo "loadavg in guest: $(cat /proc/loadavg)"
n=0
# run NAME BIN [ARGS]: one cold send: its time, when its log says encoding starts (after
# change discovery, and refinement for B) and ends, and the sender's byte counts.
run() {
    local name=$1 bin=$2 t0 t1
    shift 2
    sync; echo 3 >/proc/sys/vm/drop_caches
    "$bin" --version >/dev/null
    local send=("$bin" send $SRC --since $VG/s1 "$@" --progress none --log-format json --to -)
    if [ "${BENCH_RECEIVE:-0}" = 1 ]; then
        n=$((n + 1))
        lvc -s -kn -n d$n $VG/dold
        sync; echo 3 >/proc/sys/vm/drop_caches
        t0=$(now)
        "${send[@]}" 2>/tmp/log.$name |
            "$bin" receive --force --progress none --state-dir /mnt/j/st $M-d$n 2>/tmp/rlog.$name
        sync
        t1=$(now)
        cmp $M-d$n $M-thin || { echo "$name: destination differs from the source" >&2; exit 1; }
        lvremove -q --yes $VG/d$n >/dev/null
        rm -rf /mnt/j/st
    else
        t0=$(now)
        "${send[@]}" 2>/tmp/log.$name >/dev/null
        t1=$(now)
    fi
    python3 - "$name" "$t0" "$t1" /tmp/log.$name <<'PY'
import json, sys
from datetime import datetime
name, t0, t1, log = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
lines = [json.loads(l) for l in open(log) if l.startswith("{")]
at = lambda l: datetime.fromisoformat(l["timestamp"].replace("Z", "+00:00")).timestamp() - t0
sending = [l for l in lines if l["fields"]["message"].startswith("sending")][-1]
sent = [l for l in lines if "stream_bytes" in l["fields"]][-1]
f = sent["fields"]
print(f"{name:10} {t1 - t0:6.2f} s (encoding starts at {at(sending):5.2f} s, "
      f"sent at {at(sent):5.2f} s)  data_bytes {f['data_bytes']:>9}  "
      f"stream_bytes {f['stream_bytes']:>9}  records {f['records']:>5}")
PY
}
# The order rotates every round, so no variant always runs first or after the same one.
variants=("A /tmp/lvmsync-a" "B /tmp/lvmsync-b" "B-norefine /tmp/lvmsync-b --no-refine")
for r in $(seq "$ROUNDS"); do
    echo "round $r"
    for i in 0 1 2; do
        # shellcheck disable=SC2086 # word splitting wanted: name, binary, flags
        run ${variants[(i + r) % 3]}
    done
done

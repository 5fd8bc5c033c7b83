#!/bin/bash
# scripts/bench-peers-guest.sh: the guest half of scripts/bench-peers.sh (runs as root inside
# the QEMU guest that vm-tests/run boots; refuses to run anywhere else: it creates and removes
# LVM volumes on the scratch disk $VM_DISKS).
#
# One VG on the scratch disk holds:
#   origin   classic LV (SIZE) with COW snapshot c1 taken over the base data (default 4 KiB chunks)
#   pool     thin pool (64 KiB blocks) with thin LV `thin` (SIZE) and thin snapshot s1 of the base
#   dpool    thin pool with `dold`, the destination's old copy (the base); every run gets a
#            fresh thin snapshot of it as its destination, so each tool starts from the same
#            old copy and no run pays for a 4 GiB copy
#   jrnl     ext4 for lvmsync's undo journal and state (on the same disk as the destinations)
# Then the same writes (1% of SIZE) go to origin and thin, and each tool brings a fresh
# destination from the base to the new contents, timed end to end, then hashed.
#
# Environment (scripts/bench-peers.sh sets it): BENCH_SIZE_MIB, BENCH_ROUNDS, BENCH_BASE (the
# base image, on a 9p share), BENCH_OUT (results dir), LVMSYNC (our binary), LVMSYNC_RUBY_SRC
# (the Ruby lvmsync tree), RUBYLIB (its lib/ plus a git-version-bump stand-in).
set -euo pipefail
[ "${LVMSYNC_VM_GUEST:-}" = 1 ] || { echo "bench-peers-guest.sh: run it through scripts/bench-peers.sh (it needs the guest)" >&2; exit 2; }
S=$BENCH_SIZE_MIB
ROUNDS=$BENCH_ROUNDS
OUT=$BENCH_OUT
# Every tool runs from the guest's own tmpfs (ruby and rsync from the root file system).
cp "$LVMSYNC" /tmp/lvmsync && LVMSYNC=/tmp/lvmsync
cp -r "$LVMSYNC_RUBY_SRC" /tmp/ruby-lvmsync && LVMSYNC_RUBY_SRC=/tmp/ruby-lvmsync
RUBYLIB=$LVMSYNC_RUBY_SRC/lib:$BENCH_RUBYLIB
RUBY_LVMSYNC=(ruby "$LVMSYNC_RUBY_SRC/bin/lvmsync")
VG=benchvg
M=/dev/mapper/$VG
disk=${VM_DISKS%% *}

log() { printf '[%6.1f s] %s\n' "$(cut -d' ' -f1 /proc/uptime)" "$*"; }
lvc() { lvcreate -q --yes "$@" >/dev/null; }
now() { date +%s.%N; }
# b3 DEV: blake3 of DEV (every LV here is S MiB). b3sum reading the device itself was the
# fastest independent check under TCG (2.5x md5sum, sha1sum or cmp through dd pipes).
b3() { b3sum --no-names "$1"; }
# Cold data, warm tools: drop the page cache, then load each tool's code once (untimed) as
# on a server where it was just run.
drop_caches() {
    sync; echo 3 >/proc/sys/vm/drop_caches
    "$LVMSYNC" --version && "${RUBY_LVMSYNC[@]}" -V && rsync --version && lvs $VG
} >/dev/null
# timed LOG COMMAND-LINE: run it with `bash -c` (pipefail), then `sync`; sets $secs and $rc
# (the Ruby tool and rsync never fsync, so their page-cache writes count too).
timed() {
    local t0 t1
    t0=$(now)
    set +e
    bash -o pipefail -c "$2" >"$1" 2>&1
    rc=$?
    sync
    set -e
    t1=$(now)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
}

log "VG $VG on $disk ($(($(blockdev --getsize64 "$disk") >> 30)) GiB sparse)"
pvcreate -q "$disk" >/dev/null
vgcreate -q "$VG" "$disk" >/dev/null
lvc -L ${S}M -n origin $VG
lvc --type thin-pool -L $((S + S / 5))M --poolmetadatasize 64M --chunksize 64k -n pool $VG
lvc -V ${S}M -T $VG/pool -n thin
lvc --type thin-pool -L $((S + S / 2))M --poolmetadatasize 64M --chunksize 64k -n dpool $VG
lvc -V ${S}M -T $VG/dpool -n dold
lvc -L $((S / 4 + 64))M -n jrnl $VG
mkfs.ext4 -q $M-jrnl
mkdir -p /mnt/j && mount $M-jrnl /mnt/j

t0=$(now)
log "base data (${S} MiB from $BENCH_BASE) into origin, thin and dold"
dd if="$BENCH_BASE" of=$M-origin bs=4M oflag=direct status=none
dd if=$M-origin of=$M-thin bs=4M iflag=direct oflag=direct status=none
dd if=$M-origin of=$M-dold bs=4M iflag=direct oflag=direct status=none
log "base written in $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.0f", b-a}') s"

# Read-only (-pr), as sent snapshots should be kept: lvmsync then refines against them.
lvc -s -pr -L $((S / 20 + 16))M -n c1 $VG/origin
lvc -s -pr -kn -n s1 $VG/thin

log "rewriting 1% of origin and thin (the same bytes)"
# Half of it as scattered 4 KiB blocks at uniformly random 4 KiB-aligned offsets, half as
# 1 MiB runs at random 1 MiB-aligned offsets; fresh random bytes; seeded, so reruns match.
python3 "$(dirname "$0")/bench-writes.py" "$S" $M-origin $M-thin >"$OUT/writes.txt"
cat "$OUT/writes.txt"

log "hashing the expected contents"
want=$(b3 $M-origin)
[ "$(b3 $M-thin)" = "$want" ] || { echo "thin and origin differ after the same writes" >&2; exit 1; }
log "target blake3 $want"

# phases T0 LOG: where one of our runs spent its time, from its JSON log lines: up to
# "sending" (start-up, snapshot, change discovery), send ("sending" to "sent": reading,
# encoding; the receiver applies meanwhile), then the receiver's finish after the sender's.
phases() {
    python3 - "$1" "$2" <<'PY' | tee -a "$OUT/phases.txt" || true
import datetime, json, sys
t0, found = float(sys.argv[1]), {}
for line in open(sys.argv[2], errors="replace"):
    try:
        rec = json.loads(line)
        msg = rec["fields"]["message"]
    except (ValueError, KeyError, TypeError):
        continue
    t = datetime.datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00")).timestamp()
    for key in ("sending ", "sent ", "wrote "):
        if msg.startswith(key) or f": {key}" in msg:
            found.setdefault(key.strip(), t)
if len(found) == 3:
    print(f"    {sys.argv[2].rsplit('/', 1)[-1]}: to discovery done {found['sending'] - t0:.2f} s, "
          f"send {found['sent'] - found['sending']:.2f} s, receive done "
          f"{found['wrote'] - found['sent']:+.2f} s after the sender")
else:
    print(f"    {sys.argv[2]}: phase lines missing ({sorted(found)})")
PY
}

# fresh_dest NAME: a thin snapshot of the old copy, active, as /dev/mapper/$VG-NAME.
fresh_dest() {
    lvremove -q -f $VG/"$1" >/dev/null 2>&1 || true
    lvc -s -kn -n "$1" $VG/dold
}

# Each variant: a shell command line run with `bash -c` (D = its destination device); the time
# is from its start to the end of a `sync` after it (the Ruby tool and rsync never fsync).
declare -A CMD
# (`--log-format json`: the log lines' timestamps split each run into phases, see phases().)
CMD[ours-cow]='lvcreate -q --yes -s -L 64M -n c2 benchvg/origin >/dev/null &&
  $LVMSYNC send benchvg/c2 --since benchvg/c1 --progress none --log-format json --to - |
  $LVMSYNC receive --force --progress none --log-format json --state-dir /mnt/j/state $D'
CMD[ours-thin]='$LVMSYNC send benchvg/thin --since benchvg/s1 --progress none --log-format json --to - |
  $LVMSYNC receive --force --progress none --log-format json --state-dir /mnt/j/state $D'
CMD[ruby-cow]='ruby $LVMSYNC_RUBY_SRC/bin/lvmsync --stdout benchvg/c1 |
  ruby $LVMSYNC_RUBY_SRC/bin/lvmsync --apply - $D'
CMD[ruby-thin]='ruby $LVMSYNC_RUBY_SRC/bin/lvmsync --stdout benchvg/s1 |
  ruby $LVMSYNC_RUBY_SRC/bin/lvmsync --apply - $D'
CMD[rsync]='rsync --inplace --no-whole-file --copy-devices --write-devices --ignore-times --stats /dev/mapper/benchvg-origin $D'
read -ra VARS <<<"${BENCH_VARIANTS:-ours-cow ours-thin ruby-cow ruby-thin rsync}"
export LVMSYNC LVMSYNC_RUBY_SRC RUBYLIB

: >"$OUT/times.tsv"
for r in $(seq 1 "$ROUNDS"); do
    # Interleaved, and in a rotated order each round, so the load of the moment hits all alike.
    k=$(( (r - 1) % ${#VARS[@]} ))
    order=("${VARS[@]:k}" "${VARS[@]:0:k}")
    for v in "${order[@]}"; do
        name=d${v//-/}
        fresh_dest "$name"
        lvremove -q -f $VG/c2 >/dev/null 2>&1 || true
        rm -rf /mnt/j/state
        drop_caches
        export D=$M-$name
        log "round $r: $v"
        t_start=$(now)
        timed "$OUT/$v.$r.log" "${CMD[$v]}"
        case $v in ours-*) phases "$t_start" "$OUT/$v.$r.log" ;; esac
        got=$(b3 "$D")
        ok=$([ "$rc" = 0 ] && [ "$got" = "$want" ] && echo equal || echo "DIFFERENT(rc=$rc)")
        log "round $r: $v: $secs s, exit $rc, destination $ok"
        printf '%s\t%s\t%s\t%s\n' "$v" "$r" "$secs" "$ok" >>"$OUT/times.tsv"
        [ "$rc" = 0 ] || sed 's/^/    /' "$OUT/$v.$r.log" | tail -20
        lvremove -q -f $VG/"$name" >/dev/null
    done
done

# Where the time goes (once, after the rounds): each tool's start-up, change discovery alone,
# the sending side into a file in /tmp (discovery + reads + encoding), and the apply of that file.
declare -A STEP
STEP[ours startup]='$LVMSYNC --version'
STEP[ruby startup]='ruby $LVMSYNC_RUBY_SRC/bin/lvmsync -V'
STEP[ours-cow diff]='$LVMSYNC diff benchvg/c2 --since benchvg/c1'
STEP[ours-thin diff]='$LVMSYNC diff benchvg/thin --since benchvg/s1'
STEP[ours-cow send]='$LVMSYNC send benchvg/c2 --since benchvg/c1 --progress none --to /tmp/cow.lvd'
STEP[ours-thin send]='$LVMSYNC send benchvg/thin --since benchvg/s1 --progress none --to /tmp/thin.lvd'
STEP[ours-cow apply]='$LVMSYNC apply --force --progress none --state-dir /mnt/j/state /tmp/cow.lvd $D'
STEP[ours-thin apply]='$LVMSYNC apply --force --progress none --state-dir /mnt/j/state /tmp/thin.lvd $D'
STEP[ruby-cow send]='ruby $LVMSYNC_RUBY_SRC/bin/lvmsync --stdout benchvg/c1 >/tmp/cow.rb.delta'
STEP[ruby-thin send]='ruby $LVMSYNC_RUBY_SRC/bin/lvmsync --stdout benchvg/s1 >/tmp/thin.rb.delta'
STEP[ruby-cow apply]='ruby $LVMSYNC_RUBY_SRC/bin/lvmsync --apply /tmp/cow.rb.delta $D'
STEP[ruby-thin apply]='ruby $LVMSYNC_RUBY_SRC/bin/lvmsync --apply /tmp/thin.rb.delta $D'
if [ "${BENCH_BREAKDOWN:-1}" = 1 ]; then
    lvremove -q -f $VG/c2 >/dev/null 2>&1 || true
    lvc -s -L 64M -n c2 $VG/origin
    : >"$OUT/steps.tsv"
    for step in "ours startup" "ruby startup" "ours-cow diff" "ours-thin diff" "ours-cow send" \
        "ours-cow apply" "ours-thin send" "ours-thin apply" "ruby-cow send" "ruby-cow apply" \
        "ruby-thin send" "ruby-thin apply"; do
        fresh_dest dstep
        rm -rf /mnt/j/state
        drop_caches
        export D=$M-dstep
        timed "$OUT/step.log" "${STEP[$step]}"
        log "step $step: $secs s, exit $rc"
        [ "$rc" = 0 ] || tail -5 "$OUT/step.log"
        printf '%s\t%s\t%s\n' "$step" "$secs" "$rc" >>"$OUT/steps.tsv"
    done
    ls -l /tmp/*.lvd /tmp/*.rb.delta | tee -a "$OUT/steps.tsv"
fi
umount /mnt/j
vgremove -q -ff --yes $VG >/dev/null
log "bench done"

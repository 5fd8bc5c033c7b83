#!/bin/bash
# scripts/bench-ab-guest.sh: A/B of lvmsync binaries, end to end (send | receive), in ONE QEMU/TCG
# guest boot, on the data of scripts/bench-peers-guest.sh (classic LV with COW snapshot c1 and
# thin LV with thin snapshot s1, both read-only; 1% rewritten: half 4 KiB scattered, half 1 MiB
# runs). Per run: fresh thin snapshot of the old copy as destination, drop_caches, then
# `send ... --to - | receive --force` and `sync`, timed; the sender's phases from its JSON log;
# the guest's page faults and THP faults during the run; in round 1 the destination is compared
# with the source. Variants rotate every round. Run on the host (docs/performance.md, "Where
# the guest's time goes"):
#
#   W=$PWD/target/ab && mkdir -p $W && cp OLD $W/lvmsync-a && cp NEW $W/lvmsync-b
#   # $W/base.img: 1024 MiB made like scripts/bench-peers.sh makes its base image
#   vm-tests/run --timeout 3000 --module ext4 --disk 5120M --rw $W -- \
#       env GC_WORK=$W ROUNDS=3 EXP_VARIANTS="a b" bash scripts/bench-ab-guest.sh
#
# Variants: a, b, c (binaries $GC_WORK/lvmsync-{a,b,c}); a-tun (a with glibc malloc trimming
# and mmap thresholds raised: GLIBC_TUNABLES), a-nothp (a with transparent huge pages disabled
# for the process: prctl PR_SET_THP_DISABLE through a python3 wrapper, whose cold start-up
# counts in its discovery phase). Results: $GC_WORK/out2/times.tsv.
set -uo pipefail
[ "${LVMSYNC_VM_GUEST:-}" = 1 ] || { echo "bench-ab-guest.sh: run it through vm-tests/run (it needs the guest)" >&2; exit 2; }
S=${BENCH_SIZE_MIB:-1024}
W=$GC_WORK
OUT=$W/out2; mkdir -p $OUT
VG=benchvg; M=/dev/mapper/$VG; disk=${VM_DISKS%% *}
lvc() { lvcreate -q --yes "$@" >/dev/null; }
log() { printf '[%6.1f s] %s\n' "$(cut -d' ' -f1 /proc/uptime)" "$*"; }
cp $W/lvmsync-a /tmp/lvmsync-a; [ -f $W/lvmsync-b ] && cp $W/lvmsync-b /tmp/lvmsync-b; [ -f $W/lvmsync-c ] && cp $W/lvmsync-c /tmp/lvmsync-c
pvcreate -q "$disk" >/dev/null; vgcreate -q "$VG" "$disk" >/dev/null
lvc -L ${S}M -n origin $VG
lvc --type thin-pool -L $((S + S / 5))M --poolmetadatasize 64M --chunksize 64k -n pool $VG
lvc -V ${S}M -T $VG/pool -n thin
lvc --type thin-pool -L $((S + S / 2))M --poolmetadatasize 64M --chunksize 64k -n dpool $VG
lvc -V ${S}M -T $VG/dpool -n dold
lvc -L $((S / 4 + 64))M -n jrnl $VG
mkfs.ext4 -q $M-jrnl; mkdir -p /mnt/j && mount $M-jrnl /mnt/j
dd if="$W/base.img" of=$M-origin bs=4M oflag=direct status=none
dd if=$M-origin of=$M-thin bs=4M iflag=direct oflag=direct status=none
dd if=$M-origin of=$M-dold bs=4M iflag=direct oflag=direct status=none
lvc -s -pr -L $((S / 20 + 16))M -n c1 $VG/origin
lvc -s -pr -kn -n s1 $VG/thin
python3 "$(dirname "$0")/bench-writes.py" "$S" $M-origin $M-thin >$OUT/writes.txt
lvc -s -L 64M -n c2 $VG/origin
cat /sys/kernel/mm/transparent_hugepage/enabled | tee $OUT/thp
NOTHP="python3 -c 'import ctypes,os,sys; ctypes.CDLL(None).prctl(41,1,0,0,0); os.execvp(sys.argv[1], sys.argv[1:])'"
TUN="env GLIBC_TUNABLES=glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=33554432"
declare -A WRAP BIN
for v in ${EXP_VARIANTS:-a a-tun a-nothp}; do
  case $v in
    a) WRAP[$v]=""; BIN[$v]=/tmp/lvmsync-a;;
    b) WRAP[$v]=""; BIN[$v]=/tmp/lvmsync-b;;
    c) WRAP[$v]=""; BIN[$v]=/tmp/lvmsync-c;;
    a-tun) WRAP[$v]="$TUN"; BIN[$v]=/tmp/lvmsync-a;;
    a-nothp) WRAP[$v]="$NOTHP"; BIN[$v]=/tmp/lvmsync-a;;
    b-nothp) WRAP[$v]="$NOTHP"; BIN[$v]=/tmp/lvmsync-b;;
  esac
done
read -ra VARS <<<"${EXP_VARIANTS:-a a-tun a-nothp}"
thpf() { awk '/^thp_fault_alloc /{print $2}' /proc/vmstat; }
pf() { awk '/^pgfault /{print $2}' /proc/vmstat; }
: > $OUT/times.tsv
for r in $(seq ${ROUNDS:-3}); do
 for kind in cow thin; do
  if [ $kind = cow ]; then SRC="$VG/c2 --since $VG/c1"; else SRC="$VG/thin --since $VG/s1"; fi
  k=$(( (r - 1) % ${#VARS[@]} ))
  for v in "${VARS[@]:k}" "${VARS[@]:0:k}"; do
    lvremove -q -f $VG/d >/dev/null 2>&1; lvc -s -kn -n d $VG/dold; rm -rf /mnt/j/st
    sync; echo 3 >/proc/sys/vm/drop_caches; ${BIN[$v]} --version >/dev/null
    B=${BIN[$v]}; X=${WRAP[$v]}
    h0=$(thpf); p0=$(pf); t0=$(date +%s.%N)
    bash -o pipefail -c "$X $B send $SRC --progress none --log-format json --to - 2>$OUT/$kind.$v.$r.slog | $X $B receive --force --progress none --log-format json --state-dir /mnt/j/st $M-d 2>$OUT/$kind.$v.$r.rlog"
    rc=$?; sync; t1=$(date +%s.%N); h1=$(thpf); p1=$(pf)
    ph=$(python3 - $t0 $OUT/$kind.$v.$r.slog $OUT/$kind.$v.$r.rlog <<'PY'
import datetime, json, sys
t0=float(sys.argv[1]); f={}
for p in sys.argv[2:]:
  for l in open(p, errors="replace"):
    try: r=json.loads(l); m=r["fields"]["message"]
    except Exception: continue
    t=datetime.datetime.fromisoformat(r["timestamp"].replace("Z","+00:00")).timestamp()
    for k in ("sending ","sent ","wrote "):
      if m.startswith(k) or f": {k}" in m: f.setdefault(k.strip(),t)
print(f"disc {f.get('sending',t0)-t0:.2f} send {f.get('sent',0)-f.get('sending',0):.2f} recv_after {f.get('wrote',0)-f.get('sent',0):+.2f}")
PY
)
    ok=-
    if [ $r = 1 ]; then cmp -s $M-d $( [ $kind = cow ] && echo $M-c2 || echo $M-thin ) && ok=equal || ok=DIFF; fi
    line="$kind $v r$r $(awk -v a=$t0 -v b=$t1 'BEGIN{printf "%.2f", b-a}') s rc=$rc thp_faults=$((h1-h0)) pgfault=$((p1-p0)) $ph $ok"
    echo "$line loadavg $(cut -d' ' -f1 /proc/loadavg)" | tee -a $OUT/times.tsv
  done
 done
done
chmod -R a+r $OUT
log done

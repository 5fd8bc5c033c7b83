#!/bin/bash
# scripts/demo-guest.sh: the guest half of scripts/demo.sh (runs as root inside the QEMU guest
# that vm-tests/run boots; refuses to run anywhere else, it creates and removes LVM volumes).
set -euo pipefail
[ "${LVMSYNC_VM_GUEST:-}" = 1 ] || { echo "demo-guest.sh: run it through scripts/demo.sh (it needs the guest)" >&2; exit 2; }
LVMSYNC=${LVMSYNC:-$PWD/target/debug/lvmsync}
VG=demo-vg

step() { printf '\n### %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
# write_blocks DEV OFFSET_KIB COUNT_KIB BYTE: write COUNT KiB of BYTE at OFFSET KiB, direct I/O
write_blocks() {
    head -c $(($3 * 1024)) < <(yes "$4" | tr -d '\n') |
        dd of="$1" bs=1K seek="$2" oflag=direct conv=notrunc status=none
}

step "VG $VG on two loop devices (sparse files in the guest's tmpfs)"
truncate -s 256M /tmp/pv0.img /tmp/pv1.img
L0=$(losetup -f --show /tmp/pv0.img); L1=$(losetup -f --show /tmp/pv1.img)
pvcreate -q "$L0" "$L1"
vgcreate -q "$VG" "$L0" "$L1"

step "classic LV + COW snapshot (8 KiB chunks), then writes to the origin"
lvcreate -q --yes -L 64M -n data "$VG"
write_blocks /dev/$VG/data 0 1024 a
lvcreate -q --yes -s -L 16M --chunksize 8k -n data-snap "$VG/data"
write_blocks /dev/$VG/data 0 8 b          # first chunk
write_blocks /dev/$VG/data 100 16 c       # straddles chunks 12..14
write_blocks /dev/$VG/data 65528 8 d      # last chunk

step "thin pool (64 KiB blocks) + thin LV + thin snapshot, then writes to the thin LV"
lvcreate -q --yes --type thin-pool -L 128M --poolmetadatasize 4M --chunksize 64k -n pool "$VG"
lvcreate -q --yes -V 128M -T "$VG/pool" -n thin
write_blocks /dev/$VG/thin 0 512 e
lvcreate -q --yes -s -kn -n thin-snap "$VG/thin"
write_blocks /dev/$VG/thin 64 64 f         # changes block 1
write_blocks /dev/$VG/thin 4096 64 g       # adds block 64
show lvs -a -o lv_name,lv_attr,lv_size,origin,pool_lv,chunk_size,thin_id "$VG"

step "what lvmsync probe sees"
for lv in data data-snap pool thin thin-snap; do
    show "$LVMSYNC" probe "$VG/$lv"
    echo
done
show "$LVMSYNC" probe "/dev/mapper/demo--vg-thin--snap" --json

step "what lvmsync diff sees"
# Classic: the changed chunks come from the snapshot's own store (what the origin changed
# since the snapshot was taken).
show "$LVMSYNC" diff "$VG/data-snap" || echo "(diff failed: exit $?)"
# Thin: the changes between the snapshot and the thin LV, then everything mapped in the snapshot.
show "$LVMSYNC" diff "$VG/thin" --since "$VG/thin-snap" || echo "(diff failed: exit $?)"
show "$LVMSYNC" diff "$VG/thin-snap" || echo "(diff failed: exit $?)"

step "mirror the thin snapshot into a destination LV: full sync, then an incremental delta"
lvcreate -q --yes -L 128M -n copy "$VG"
ST=/tmp/lvmsync-state
# Full sync of the snapshot: unmapped thin ranges become discard records, so the delta is small.
show "$LVMSYNC" send "$VG/thin-snap" --progress none --to /tmp/full.lvd
ls -l /tmp/full.lvd
show "$LVMSYNC" apply /tmp/full.lvd /dev/$VG/copy --progress none --state-dir "$ST"
show "$LVMSYNC" verify /dev/$VG/thin-snap /dev/$VG/copy
# New point in time: snapshot the thin LV again and send only what changed since thin-snap,
# piped straight into the receiver (as over ssh), which journals before it overwrites.
lvcreate -q --yes -s -kn -n thin-snap2 "$VG/thin"
show "$LVMSYNC" diff "$VG/thin-snap2" --since "$VG/thin-snap"
"$LVMSYNC" send "$VG/thin-snap2" --since "$VG/thin-snap" --progress none --to - |
    "$LVMSYNC" receive /dev/$VG/copy --progress none --state-dir "$ST"
show "$LVMSYNC" verify /dev/$VG/thin-snap2 /dev/$VG/copy
show cmp /dev/$VG/thin-snap2 /dev/$VG/copy && echo "destination equals thin-snap2 byte for byte"

step "clean up"
vgremove -q -ff --yes "$VG"
losetup -d "$L0" "$L1"
echo "demo done"

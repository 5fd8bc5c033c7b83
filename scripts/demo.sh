#!/bin/bash
# scripts/demo.sh: the end-to-end demo. Installs what is missing, builds lvmsync, boots the
# QEMU guest and runs scripts/demo-guest.sh in it: a VG on loop devices, a classic LV with a
# COW snapshot and a thin pool with a thin LV and thin snapshot, a few blocks written, and
# what `lvmsync probe` and `lvmsync diff` see of each, then a full + incremental sync of the
# thin snapshot into a destination LV, verified.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
bash scripts/install-deps.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --bin lvmsync
# A private copy, so a rebuild while the guest runs cannot swap the binary under it.
bin_dir=$(mktemp -d)
trap 'rm -rf "$bin_dir"' EXIT
cp target/debug/lvmsync "$bin_dir/"
LVMSYNC="$bin_dir/lvmsync" vm-tests/run --timeout 1200 --scratch "$bin_dir" -- bash scripts/demo-guest.sh

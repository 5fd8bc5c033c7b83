#!/bin/bash
# scripts/install-deps.sh: install what building, testing and the demo need, idempotently:
# only the apt packages that are missing (apt-get update only then), a Rust toolchain only
# if there is none, rustfmt/clippy only if missing, and the guest kernel only if not cached.
# Debian 12 x86_64, as root (or with sudo).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

# Host tools (the QEMU guest runs the host's own userland, so guest tools are listed too).
PACKAGES=(
    # build: the devicemapper crate's bindings, a C toolchain
    build-essential pkg-config libdevmapper-dev libclang-dev
    # guest harness (vm-tests/run): QEMU/TCG, static busybox for the initramfs, module tools,
    # kernel download and unpacking
    qemu-system-x86 busybox-static kmod xz-utils apt-utils ca-certificates curl
    # used inside the guest and by host tests
    lvm2 thin-provisioning-tools nbd-client fuse3 libnbd-bin nbdkit qemu-utils util-linux e2fsprogs
    openssh-client openssh-server
)

SUDO=
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: run as root (or install sudo)" >&2; exit 1; }
    SUDO=sudo
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "install-deps: apt packages present"
fi

# Rust: the machine's rustup toolchain, or a fresh minimal one.
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if ! command -v cargo >/dev/null; then
    echo "install-deps: installing Rust (rustup, stable, minimal profile)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    . "$HOME/.cargo/env"
fi
if command -v rustup >/dev/null; then
    installed=$(rustup component list --installed 2>/dev/null || true)
    for c in rustfmt clippy; do
        grep -q "^$c" <<<"$installed" || rustup component add "$c"
    done
fi

# The guest kernel and initramfs (cached under ~/.cache/lvmsync/vm).
vm-tests/run --prepare

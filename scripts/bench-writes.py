#!/usr/bin/env python3
"""scripts/bench-writes.py SIZE_MIB DEV...: the benchmarks' 1% rewrite, the same bytes on every
DEV (scripts/bench-peers-guest.sh, scripts/bench-ab-guest.sh). Half of it as scattered 4 KiB
blocks at uniformly random 4 KiB-aligned offsets, half as 1 MiB runs at random 1 MiB-aligned
offsets; fresh random bytes; seeded, so reruns match. Prints what it wrote."""
import os, random, sys
size_mib, devs = int(sys.argv[1]), sys.argv[2:]
size = size_mib << 20
rng = random.Random(20261123)
budget = size // 100
writes = []
for _ in range(budget // 2 // 4096):
    writes.append((rng.randrange(size // 4096) * 4096, 4096))
for _ in range(budget // 2 // (1 << 20)):
    writes.append((rng.randrange(size_mib) << 20, 1 << 20))
fds = [os.open(d, os.O_WRONLY) for d in devs]
for off, n in writes:
    data = rng.randbytes(n)
    for fd in fds:
        os.pwrite(fd, data, off)
for fd in fds:
    os.fsync(fd)
changed = set()
for off, n in writes:
    changed.update(range(off // 4096, (off + n) // 4096))
blocks64 = {b * 4096 // 65536 for b in changed}
print(f"writes: {sum(1 for _, n in writes if n == 4096)} x 4 KiB scattered + "
      f"{sum(1 for _, n in writes if n > 4096)} x 1 MiB runs = {sum(n for _, n in writes)} bytes "
      f"({100 * sum(n for _, n in writes) / size:.2f}% of {size} bytes); "
      f"{len(changed) * 4096} distinct bytes changed in 4 KiB blocks, "
      f"{len(blocks64)} distinct 64 KiB blocks ({len(blocks64) * 65536} bytes)")

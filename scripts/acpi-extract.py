#!/usr/bin/env python3
"""Pull ACPI tables out of guest-memory dumps (docs/acpi.md).

usage: acpi-extract.py OUTDIR BASE:FILE [BASE:FILE...]
Each FILE is raw guest memory starting at guest-physical BASE (hex), e.g.
from QEMU's monitor `pmemsave`. The RSDP is searched in 0xe0000-0xfffff;
every table reachable from it (RSDT/XSDT, FADT -> DSDT/FACS) is written to
OUTDIR/<SIG>.dat (SSDTs as SSDT<n>.dat) for `iasl -d`.
"""
import os
import struct
import sys

out = sys.argv[1]
regions = []
for a in sys.argv[2:]:
    base, path = a.split(":", 1)
    regions.append((int(base, 16), open(path, "rb").read()))


def read(addr, n):
    for base, data in regions:
        if base <= addr and addr + n <= base + len(data):
            return data[addr - base:addr - base + n]
    raise SystemExit("address 0x%x+%d is not in any dump" % (addr, n))


rsdp = None
for a in range(0xE0000, 0x100000, 16):
    try:
        if read(a, 8) == b"RSD PTR ":
            rsdp = a
            break
    except SystemExit:
        continue
if rsdp is None:
    raise SystemExit("no RSDP")
os.makedirs(out, exist_ok=True)
r = read(rsdp, 36)
open(os.path.join(out, "RSDP.dat"), "wb").write(r)
print("RSDP at 0x%x rev %d OEM %r" % (rsdp, r[15], r[9:15]))
seen = {}


def table(addr, name=None):
    hdr = read(addr, 8)
    sig = hdr[:4].decode()
    length = struct.unpack_from("<I", hdr, 4)[0]
    data = read(addr, length)
    n = name or sig
    if n in seen:
        i = 2
        while "%s%d" % (n, i) in seen:
            i += 1
        n = "%s%d" % (n, i)
    seen[n] = addr
    open(os.path.join(out, n + ".dat"), "wb").write(data)
    print("%-6s at 0x%08x len %5d" % (n, addr, length))
    return sig, data


entries = []
_, rsdt = table(struct.unpack_from("<I", r, 16)[0])
entries = [struct.unpack_from("<I", rsdt, i)[0] for i in range(36, len(rsdt), 4)]
if r[15] >= 2 and struct.unpack_from("<Q", r, 24)[0]:
    table(struct.unpack_from("<Q", r, 24)[0])
for e in entries:
    sig, data = table(e)
    if sig == "FACP":
        facs = struct.unpack_from("<I", data, 36)[0]
        dsdt = struct.unpack_from("<I", data, 40)[0]
        if facs:
            table(facs)
        table(dsdt)

#!/usr/bin/env python3
"""kill -9 of a VM in the middle of its disk writes, N times (issue 12): `vireo boot`
runs native/guests/diskw.bin (a boot sector that rewrites sectors 1..64 of its own
qcow2 disk pass after pass and prints "pass N" on COM1 after each); after a random
number of passes plus a random delay the engine process is SIGKILLed. Then:
  - `qemu-img check` exits 0 (clean) or 3 (leaked clusters only: allowed after a
    crash, as QEMU's own images after a kill);
  - every sector 1..64 is whole (the 'VDW1' header, its own number, 125 dwords of
    pass << 16 | n) from one pass, never torn;
  - every pass the guest reported written is there: each sector's pass is at
    least the last one printed (a BIOS write returns only once the engine
    completed it), and passes step down by at most one across the range.
The image carries over from round to round (each boot starts with pass 1 again).

  python3 scripts/vm-kill.py [N]       default 100; prints one line per round and a summary
  QCOW2_OPTS=extended_l2=on python3 scripts/vm-kill.py [N]   the disk made with these qemu-img -o options
"""
import os, random, re, signal, struct, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
GUEST = os.path.join(ROOT, "native/out/core/guests/diskw.bin")
NSECT = 64


def sectors(img, tmp):
    raw = os.path.join(tmp, "check.raw")
    subprocess.run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", img, raw], check=True)
    with open(raw, "rb") as f:
        f.seek(512)
        data = f.read(512 * NSECT)
    out = []
    for n in range(1, NSECT + 1):
        s = data[(n - 1) * 512:n * 512]
        if s == b"\0" * 512:
            out.append(0)
            continue
        magic, p, num = struct.unpack_from("<4sII", s)
        body = struct.unpack_from("<125I", s, 12)
        if magic != b"VDW1" or num != n or any(x != ((p << 16) | n) & 0xffffffff for x in body):
            raise AssertionError(f"sector {n} is torn or foreign: {s[:16].hex()}")
        out.append(p)
    return out


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    if not os.path.exists(GUEST):
        sys.exit(f"{GUEST} is missing: build the test guests (cmake --build native/out/core --target guests)")
    tmp = tempfile.mkdtemp(prefix="vireo-vm-kill-")
    raw = os.path.join(tmp, "disk.raw")
    with open(raw, "wb") as f:
        f.write(open(GUEST, "rb").read().ljust(512, b"\0"))
        # Sectors 1..64 start as pass 0, so they are allocated in the image: the
        # guest's BIOS writes never flush, and only writes into allocated
        # clusters (subclusters, with extended_l2=on) are on disk without one;
        # an allocating write is durable at the next flush, in Vireo as in QEMU.
        for k in range(1, NSECT + 1):
            f.write(struct.pack("<4sII125I", b"VDW1", 0, k, *([k] * 125)))
        f.truncate(1 << 20)
    img = os.path.join(tmp, "disk.qcow2")
    opts = ["-o", os.environ["QCOW2_OPTS"]] if os.environ.get("QCOW2_OPTS") else []
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", *opts, raw, img], check=True)
    leaked = 0
    rng = random.Random(int(os.environ.get("SEED", time.time())))
    for r in range(1, n + 1):
        log = os.path.join(tmp, "com1.log")
        if os.path.exists(log):
            os.remove(log)
        want = rng.randint(1, 3)
        p = subprocess.Popen(["node", os.path.join(ROOT, "bin/vireo.js"), "boot", "--disk", f"{img},format=qcow2",
                              "--memory", "32M", "--serial", f"file:{log}", "--timeout", "300"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t0 = time.time()
        reported = []
        while time.time() - t0 < 240:
            text = open(log, "r", errors="replace", newline="").read() if os.path.exists(log) else ""
            reported = [int(x, 16) for x in re.findall(r"pass ([0-9a-f]{8})\r\n", text)]
            if len(reported) >= want or p.poll() is not None:
                break
            time.sleep(0.05)
        if p.poll() is not None:
            sys.exit(f"round {r}: the VM ended by itself (exit {p.returncode}): {p.stderr.read().decode()[-300:]}")
        if len(reported) < want:
            p.kill()
            sys.exit(f"round {r}: no 'pass' from the guest in 240 s")
        time.sleep(rng.random() * 0.4)
        text = open(log, "r", errors="replace", newline="").read()
        last = max([int(x, 16) for x in re.findall(r"pass ([0-9a-f]{8})\r\n", text)])
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        chk = subprocess.run(["qemu-img", "check", img], capture_output=True, text=True)
        if chk.returncode not in (0, 3):
            sys.exit(f"round {r}: qemu-img check exit {chk.returncode}:\n{chk.stdout}{chk.stderr}")
        leaked += chk.returncode == 3
        s = sectors(img, tmp)
        if min(s) < last:
            raise AssertionError(f"round {r}: pass {last} was reported written but sector {s.index(min(s)) + 1} holds pass {min(s)}")
        if max(s) - min(s) > 1:
            raise AssertionError(f"round {r}: passes across the range differ by more than one: {sorted(set(s))}")
        print(f"round {r}/{n}: killed after pass {last}; check {'clean' if chk.returncode == 0 else 'leaked clusters'}; sectors at passes {sorted(set(s))}", flush=True)
    print(f"vm-kill: {n} rounds, every image consistent ({leaked} with leaked clusters only)")


if __name__ == "__main__":
    main()

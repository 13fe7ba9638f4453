#!/usr/bin/env python3
"""VMM memory with 256 MiB of guest RAM, the echo guest running.

Starts each VMM with native/out/core/guests/echo.bin (it echoes COM1 and stays
up until it reads Ctrl-D), waits for "echo ready", echoes a line, then samples
/proc/PID/status (VmRSS, VmHWM) and /proc/PID/smaps_rollup of the whole
process tree every 100 ms for --sample-s seconds, then sends Ctrl-D.

The guest touches little of its RAM, so RSS is mostly the VMM's own. The
guest RAM mapping's resident part (the 256 MiB mapping in /proc/PID/smaps) is
also reported, and "overhead" = total RSS - that.

  python3 bench/engine/memory.py [-n 3] [--sample-s 2] [--json FILE]
"""
import argparse, json, os, shutil, statistics, subprocess, sys, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GUEST = "native/out/core/guests/echo.bin"
VIREO_RUN = os.environ.get("VIREO_RUN", "native/out/bench/vireo-run")
GUEST_KB = 256 * 1024


def commands():
    cmds = {}
    if os.path.exists(os.path.join(ROOT, VIREO_RUN)):
        cmds["vireo-run (engine)"] = [VIREO_RUN, "--kernel", GUEST, "--memory", "256M"]
    cmds["vireo boot (engine+Node)"] = ["node", "bin/vireo.js", "boot", "--kernel", GUEST, "--memory", "256M"]
    if shutil.which("qemu-system-x86_64"):
        cmds["qemu-kvm"] = ["qemu-system-x86_64", "-enable-kvm", "-cpu", "qemu64,-cx16,-xsave", "-m", "256",
                            "-display", "none", "-serial", "stdio",
                            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                            "-kernel", GUEST, "-nodefaults"]
    return cmds


def tree(pid):
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return pids


def status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def guest_ram_rss_kb(pid):
    """Resident kB of mappings exactly the guest RAM's size (256 MiB)."""
    total, size = 0, None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                if line.startswith("Size:"):
                    size = int(line.split()[1])
                elif line.startswith("Rss:") and size is not None and GUEST_KB <= size <= GUEST_KB + 4096:
                    total += int(line.split()[1])
    except OSError:
        pass
    return total


def read_until(p, needle, timeout):
    buf, end = b"", time.time() + timeout
    os.set_blocking(p.stdout.fileno(), False)
    while needle not in buf:
        if time.time() > end or p.poll() is not None:
            raise RuntimeError(f"no {needle!r} in {buf[-200:]!r}")
        try:
            chunk = os.read(p.stdout.fileno(), 4096)
            buf += chunk or b""
        except BlockingIOError:
            time.sleep(0.005)
    return buf


def once(cmd, sample_s):
    p = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        read_until(p, b"echo ready", 60)
        p.stdin.write(b"hello\r")
        p.stdin.flush()
        read_until(p, b"hello", 30)
        rss, guest = [], []
        end = time.time() + sample_s
        while time.time() < end:
            pids = tree(p.pid)
            rss.append(sum(status_kb(q, "VmRSS") for q in pids))
            guest.append(sum(guest_ram_rss_kb(q) for q in pids))
            time.sleep(0.1)
        hwm = sum(status_kb(q, "VmHWM") for q in tree(p.pid))
        nproc = len(tree(p.pid))
        p.stdin.write(b"\x04")
        p.stdin.flush()
        rc = p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return {"rss_kb": statistics.median(rss), "hwm_kb": hwm, "guest_ram_rss_kb": statistics.median(guest),
            "overhead_kb": statistics.median(r - g for r, g in zip(rss, guest)), "processes": nproc, "rc": rc}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--sample-s", type=float, default=2.0)
    ap.add_argument("--json")
    a = ap.parse_args()
    if not os.path.exists(os.path.join(ROOT, GUEST)):
        sys.exit(f"{GUEST} is missing: run bash scripts/setup.sh")
    cmds = commands()
    runs = {k: [] for k in cmds}
    for _ in range(a.n):
        for name, cmd in cmds.items():
            runs[name].append(once(cmd, a.sample_s))
    summary = {}
    for name, rs in runs.items():
        summary[name] = {"cmd": " ".join(cmds[name]), "runs": a.n, "exit_status": sorted({r["rc"] for r in rs}),
                         "processes": max(r["processes"] for r in rs)}
        for k in ("rss_kb", "hwm_kb", "guest_ram_rss_kb", "overhead_kb"):
            summary[name][k] = statistics.median(r[k] for r in rs)
    q = summary.get("qemu-kvm")
    print(f"memory, echo.bin with 256 MiB guest RAM, {a.n} runs each (medians; MiB)")
    print(f"{'':26} {'steady RSS':>10} {'peak (HWM)':>10} {'guest RAM':>10} {'overhead':>10} {'vs QEMU':>8}")
    for name, s in summary.items():
        ratio = ""
        if q and name != "qemu-kvm":
            s["ratio_rss"] = s["rss_kb"] / q["rss_kb"]
            s["ratio_overhead"] = s["overhead_kb"] / q["overhead_kb"]
            ratio = f"{s['ratio_overhead']:.2f}x"
        print(f"{name:26} {s['rss_kb']/1024:10.1f} {s['hwm_kb']/1024:10.1f} {s['guest_ram_rss_kb']/1024:10.1f} "
              f"{s['overhead_kb']/1024:10.1f} {ratio:>8}   exit {s['exit_status']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()

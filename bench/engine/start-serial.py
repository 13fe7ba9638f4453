#!/usr/bin/env python3
"""Engine start: process start -> first serial byte, and -> guest exit.

Spawns each command N times (interleaved, so a noisy neighbour hits all of
them alike), timestamps the first byte on its stdout and its exit, and prints
median and min per command plus Vireo/QEMU ratios. The guest is
native/out/core/guests/hello.bin: a multiboot kernel that prints one line on
COM1 and writes to the debug-exit port 0xf4.

  python3 bench/engine/start-serial.py [-n 10] [--json FILE]
"""
import argparse, json, os, shutil, statistics, subprocess, sys, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GUEST = "native/out/core/guests/hello.bin"
VIREO_RUN = os.environ.get("VIREO_RUN", "native/out/bench/vireo-run")


def commands():
    cmds = {}
    if os.path.exists(os.path.join(ROOT, VIREO_RUN)):
        cmds["vireo-run (engine)"] = [VIREO_RUN, "--kernel", GUEST, "--memory", "256M"]
    cmds["vireo boot (engine+Node)"] = ["node", "bin/vireo.js", "boot", "--kernel", GUEST, "--memory", "256M"]
    if shutil.which("qemu-system-x86_64"):
        # isa-debug-exit defaults to port 0x501; the guest (like Vireo) uses 0xf4.
        cmds["qemu-kvm"] = ["qemu-system-x86_64", "-enable-kvm", "-cpu", "qemu64,-cx16,-xsave", "-m", "256",
                            "-display", "none", "-serial", "stdio",
                            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                            "-kernel", GUEST, "-nodefaults"]
        # Context rows (not the target's peer). QEMU's -kernel multiboot path runs
        # SeaBIOS and an option ROM in guest ring 0, which kvm_pvm emulates; TCG
        # shows the same path without that penalty, and -S shows QEMU's own
        # process initialisation (to its QMP greeting) with no guest code at all.
        cmds["qemu-tcg"] = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256",
                            "-display", "none", "-serial", "stdio",
                            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                            "-kernel", GUEST, "-nodefaults"]
        cmds["qemu-kvm init only (-S)"] = ["qemu-system-x86_64", "-enable-kvm", "-cpu", "qemu64,-cx16,-xsave",
                                           "-m", "256", "-display", "none", "-nodefaults", "-S", "-qmp", "stdio"]
    return cmds

INIT_ONLY = "qemu-kvm init only (-S)"


def once(cmd, timeout=60.0, init_only=False):
    t0 = time.perf_counter_ns()
    p = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE if init_only else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = os.read(p.stdout.fileno(), 1)
    t1 = time.perf_counter_ns()
    if init_only:  # QMP greeting: ready to run; nothing more to time
        p.kill()
        p.wait()
        return (t1 - t0) / 1e6, float("nan"), 0, b"Hello (QMP)"
    out = first + p.stdout.read()
    rc = p.wait(timeout=timeout)
    t2 = time.perf_counter_ns()
    if not first:
        raise RuntimeError(f"{cmd[0]}: no serial output (exit {rc})")
    return (t1 - t0) / 1e6, (t2 - t0) / 1e6, rc, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--json")
    a = ap.parse_args()
    if not os.path.exists(os.path.join(ROOT, GUEST)):
        sys.exit(f"{GUEST} is missing: run bash scripts/setup.sh")
    cmds = commands()
    res = {k: {"first_ms": [], "exit_ms": [], "rc": set()} for k in cmds}
    for name, cmd in cmds.items():  # one warm-up each (page cache)
        once(cmd, init_only=name == INIT_ONLY)
    for _ in range(a.n):
        for name, cmd in cmds.items():
            f, e, rc, out = once(cmd, init_only=name == INIT_ONLY)
            if b"Hello" not in out:
                raise RuntimeError(f"{name}: unexpected output {out[:80]!r}")
            res[name]["first_ms"].append(f)
            res[name]["exit_ms"].append(e)
            res[name]["rc"].add(rc)
    summary = {}
    for name, r in res.items():
        summary[name] = {
            "cmd": " ".join(cmds[name]), "runs": a.n, "exit_status": sorted(r["rc"]),
            "first_byte_ms_median": statistics.median(r["first_ms"]), "first_byte_ms_min": min(r["first_ms"]),
            "exit_ms_median": statistics.median(r["exit_ms"]), "exit_ms_min": min(r["exit_ms"]),
        }
    q = summary.get("qemu-kvm")
    print(f"start -> first serial byte / guest exit, hello.bin, {a.n} runs each (median, min)")
    print(f"{'':26} {'first byte ms':>22} {'exit ms':>22} {'ratio (first, exit) vs QEMU':>30}")
    for name, s in summary.items():
        ratio = ""
        if q and not name.startswith("qemu"):
            s["ratio_first_byte"] = s["first_byte_ms_median"] / q["first_byte_ms_median"]
            s["ratio_exit"] = s["exit_ms_median"] / q["exit_ms_median"]
            ratio = f"{s['ratio_first_byte']:.3f}x, {s['ratio_exit']:.3f}x"
        print(f"{name:26} {s['first_byte_ms_median']:10.1f} ({s['first_byte_ms_min']:8.1f}) "
              f"{s['exit_ms_median']:10.1f} ({s['exit_ms_min']:8.1f}) {ratio:>30}   exit {s['exit_status']}")
    t = summary.get("qemu-tcg")
    if t:
        for name, s in summary.items():
            if not name.startswith("qemu"):
                s["ratio_first_byte_vs_tcg"] = s["first_byte_ms_median"] / t["first_byte_ms_median"]
                print(f"  {name}: {s['ratio_first_byte_vs_tcg']:.3f}x QEMU-TCG's first byte")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Display: full-screen 1024x768x32 frames delivered per second, and frames
delivered while idle, through the std-vga model driven without a vCPU
(native/bench/display_bench.cc, built as native/out/bench/vireo-display-bench).

Runs the bench program N times and reports medians. There is no QEMU row: QEMU
has no way to drive its std-vga model and display refresh without a guest
vCPU, and a guest repainting 3 MiB per frame on this kvm_pvm host would
measure kvm_pvm's ring-0 emulation, not the display path (see
docs/benchmarks.md).

  python3 bench/engine/display-fps.py [-n 3] [--busy-s 3] [--idle-s 5] [--json FILE]
"""
import argparse, json, os, statistics, subprocess, sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BENCH = os.environ.get("VIREO_DISPLAY_BENCH", "native/out/bench/vireo-display-bench")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--busy-s", type=float, default=3)
    ap.add_argument("--idle-s", type=float, default=5)
    ap.add_argument("--json")
    a = ap.parse_args()
    exe = os.path.join(ROOT, BENCH)
    if not os.path.exists(exe):
        sys.exit(f"{BENCH} is missing: bash bench/run.sh builds it")
    runs = []
    for _ in range(a.n):
        out = subprocess.run([exe, "--busy-s", str(a.busy_s), "--idle-s", str(a.idle_s)], check=True,
                             capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    keys = ["fps", "display_path_max_fps", "bytes_per_frame", "mb_per_s", "vram_write_ms_per_frame",
            "poll_consume_ms_per_frame", "idle_frames", "idle_polls", "idle_cpu_ms"]
    s = {k: statistics.median(r[k] for r in runs) for k in keys}
    s["runs"] = a.n
    s["idle_frames_max"] = max(r["idle_frames"] for r in runs)
    s["cmd"] = f"{BENCH} --busy-s {a.busy_s} --idle-s {a.idle_s}"
    print(f"display, std-vga 1024x768x32 LFB, no vCPU, {a.n} runs (medians)")
    print(f"  full-screen frames delivered: {s['fps']:.1f} fps (display path alone, poll+consume: "
          f"{s['display_path_max_fps']:.1f} fps; VRAM repaint {s['vram_write_ms_per_frame']:.2f} ms/frame)")
    print(f"  bytes per frame: {s['bytes_per_frame']:.0f} ({s['mb_per_s']:.0f} MB/s)")
    print(f"  idle {a.idle_s:g} s at 60 Hz polls: {s['idle_frames_max']} frames (max over runs), "
          f"{s['idle_cpu_ms']:.1f} ms CPU")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(s, f, indent=1)


if __name__ == "__main__":
    main()

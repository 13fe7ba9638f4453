#!/usr/bin/env python3
"""libvirt's side of bench/service/bench.ts: libvirt API calls timed inside one
Python process (python3-libvirt, the C library's own binding), so the figures are
the RPC to libvirtd and back, without a process start.

  libvirt-api.py URI call N          listAllDomains() on an open connection
  libvirt-api.py URI call-state N    listAllDomains() + state() of each (what `virsh list` asks)
  libvirt-api.py URI connect N       open + listAllDomains() + close
  libvirt-api.py URI cycle N DOMAIN  create() (start) until running, then destroy() until shut off

Prints one JSON object: {"ms": [...]} or, for cycle, {"start": [...], "destroy": [...]}.
"""
import json
import sys
import time

import libvirt


def ms(t0):
    return (time.perf_counter_ns() - t0) / 1e6


def wait_state(dom, want, limit_s=30):
    end = time.monotonic() + limit_s
    while dom.state()[0] != want:
        if time.monotonic() > end:
            raise SystemExit(f"libvirt-api.py: {dom.name()} did not reach state {want} in {limit_s} s")
        time.sleep(0.001)


def main():
    uri, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    libvirt.registerErrorHandler(lambda *_: None, None)  # errors raise; don't also print them
    out = {}
    if mode == "connect":
        out["ms"] = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            c = libvirt.open(uri)
            c.listAllDomains(0)
            c.close()
            out["ms"].append(ms(t0))
    else:
        c = libvirt.open(uri)
        if mode in ("call", "call-state"):
            out["ms"] = []
            for _ in range(n):
                t0 = time.perf_counter_ns()
                doms = c.listAllDomains(0)
                if mode == "call-state":
                    for d in doms:
                        d.state()
                out["ms"].append(ms(t0))
        elif mode == "cycle":
            dom = c.lookupByName(sys.argv[4])
            out["start"], out["destroy"] = [], []
            for _ in range(n):
                t0 = time.perf_counter_ns()
                dom.create()
                wait_state(dom, libvirt.VIR_DOMAIN_RUNNING)
                out["start"].append(ms(t0))
                t0 = time.perf_counter_ns()
                dom.destroy()
                wait_state(dom, libvirt.VIR_DOMAIN_SHUTOFF)
                out["destroy"].append(ms(t0))
        else:
            raise SystemExit(f"libvirt-api.py: unknown mode {mode}")
        c.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()

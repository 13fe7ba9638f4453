#!/usr/bin/env bash
# Runs every benchmark under bench/ and prints one table. Not part of the test
# suite (npm test never calls it): it takes minutes and its figures depend on
# the machine.
#
#   bash bench/run.sh [--quick] [--skip engine,block,pc,storage,app,state,linux,service,net]
#
# engine  bench/engine/*.py        start -> first serial byte, memory, display frames (vs QEMU)
# block   bench/block/bench.sh     block layer vs qemu-io, image copy vs qemu-img/cp
# pc      bench/pc/grub-menu.mjs   start -> GRUB menu (SeaBIOS, ATAPI) vs QEMU
# storage bench/storage/*.ts       linked clone time, full clone copy vs cp
# app     bench/app/app-bench.ts   UI budgets in Chromium (no QEMU peer)
# state   bench/state/save-restore.ts save/restore time and file size vs QEMU-KVM migrate-to-file
# linux   bench/linux-boot/bench.ts start -> Linux init prompt vs QEMU-KVM and TCG (up to LINUX_LIMIT s per boot)
# service bench/service/bench.ts   vireo list/start/destroy and the service's calls vs virsh/libvirtd (Vireo alone without one)
# net     bench/net/net-bench.ts    TCP both ways and round trips through user-mode NAT vs QEMU-KVM -nic user
# Each suite runs only if its files are present; a failing suite is reported
# in the table and the others still run. Logs stay in $BENCH_OUT (a temp dir).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
quick=0 skip=","
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --skip) skip=",$2,"; shift ;;
    -h|--help) sed -n 2,18p "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
want() { [[ "$skip" != *",$1,"* ]]; }
OUT=${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/vireo-bench-XXXXXX")}
mkdir -p "$OUT"
log() { printf '\033[1m[bench]\033[0m %s\n' "$*" >&2; }
# Runs per suite (override with the environment); the PC suite takes minutes
# per run on a kvm_pvm host (QEMU-KVM needs 1-2 min to reach GRUB's menu).
N_START=${N_START:-10} N_MEM=${N_MEM:-3} N_DISPLAY=${N_DISPLAY:-3} PC_RUNS=${PC_RUNS:-1}
((quick)) && N_START=3 N_MEM=1 N_DISPLAY=1 PC_RUNS=1

# Build the bench executables into their own tree (native/out/bench), -j2.
BUILD=native/out/bench
if want engine || want block; then
  [ -d native/out/core/guests ] || { log "test guests missing: running scripts/setup.sh"; bash scripts/setup.sh; }
  [ -f "$BUILD/CMakeCache.txt" ] || cmake -S native -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  targets=(vireo-run vireo-display-bench)
  want block && [ -f bench/block/bench.sh ] && targets+=(vireo-img vireo-blockbench)
  log "building ${targets[*]} in $BUILD"
  cmake --build "$BUILD" -j2 --target "${targets[@]}" >"$OUT/build.log" 2>&1 || { log "build failed: $OUT/build.log"; tail -20 "$OUT/build.log" >&2; exit 1; }
fi

status() { echo "$2" >"$OUT/$1.status"; }
if want engine && [ -d bench/engine ]; then
  log "engine: start -> first serial byte ($N_START runs each)"
  python3 bench/engine/start-serial.py -n "$N_START" --json "$OUT/start.json" >"$OUT/start.txt" 2>&1; status start $?
  log "engine: memory ($N_MEM runs each)"
  python3 bench/engine/memory.py -n "$N_MEM" --json "$OUT/memory.json" >"$OUT/memory.txt" 2>&1; status memory $?
  log "engine: display frames ($N_DISPLAY runs)"
  python3 bench/engine/display-fps.py -n "$N_DISPLAY" --json "$OUT/display.json" >"$OUT/display.txt" 2>&1; status display $?
fi
if want block && [ -f bench/block/bench.sh ]; then
  log "block: bench/block/bench.sh"
  bash bench/block/bench.sh "$BUILD" $(((quick)) && echo 64) >"$OUT/block.txt" 2>&1; status block $?
fi
if want pc && [ -f bench/pc/grub-menu.mjs ]; then
  log "pc: start -> GRUB menu ($PC_RUNS runs each; minutes on a kvm_pvm host)"
  node bench/pc/grub-menu.mjs --runs "$PC_RUNS" >"$OUT/pc.txt" 2>"$OUT/pc.err"; status pc $?
fi
if want storage && [ -f bench/storage/linked-clone.ts ]; then
  log "storage: clones (bench/storage)"
  [ -f dist/bench/storage/linked-clone.js ] && [ dist/bench/storage/linked-clone.js -nt bench/storage/linked-clone.ts ] ||
    npx tsc -p tsconfig.json >"$OUT/storage.build.log" 2>&1
  node dist/bench/storage/linked-clone.js >"$OUT/storage.txt" 2>&1; status storage $?
fi
if want app && [ -f bench/app/app-bench.ts ]; then
  log "app: building and running bench/app"
  # A type error elsewhere in the tree (someone mid-edit) should not stop the
  # bench when tsc still emitted it.
  { npx tsc -p tsconfig.json; npx vite build --config renderer/vite.config.ts; } >"$OUT/app.build.log" 2>&1
  if [ -f dist/bench/app/app-bench.js ]; then
    node dist/bench/app/app-bench.js >"$OUT/app.txt" 2>"$OUT/app.err"; status app $?
  else
    cp "$OUT/app.build.log" "$OUT/app.txt"; status app 1
  fi
fi
if want state && [ -f bench/state/save-restore.ts ]; then
  log "state: save/restore of a running VM, 100 MiB touched, vs QEMU-KVM migrate to a file (${STATE_RUNS:=3} runs)"
  [ -f dist/bench/state/save-restore.js ] && [ dist/bench/state/save-restore.js -nt bench/state/save-restore.ts ] ||
    npx tsc -p tsconfig.json >"$OUT/state.build.log" 2>&1
  node dist/bench/state/save-restore.js --runs "$STATE_RUNS" >"$OUT/state.txt" 2>"$OUT/state.err"; status state $?
fi
if want linux && [ -f bench/linux-boot/bench.ts ]; then
  log "linux: start -> init prompt (limit ${LINUX_LIMIT:=300} s per boot; minutes on a kvm_pvm host)"
  [ -f dist/bench/linux-boot/bench.js ] && [ dist/bench/linux-boot/bench.js -nt bench/linux-boot/bench.ts ] ||
    npx tsc -p tsconfig.json >"$OUT/linux.build.log" 2>&1
  node dist/bench/linux-boot/bench.js --runs "${LINUX_RUNS:-1}" --limit "$LINUX_LIMIT" --json "$OUT/linux.json" >"$OUT/linux.txt" 2>"$OUT/linux.err"; status linux $?
fi
if want service && [ -f bench/service/bench.ts ]; then
  log "service: vireo verbs and the service's calls vs virsh against libvirtd"
  [ -f dist/bench/service/bench.js ] && [ dist/bench/service/bench.js -nt bench/service/bench.ts ] ||
    npx tsc -p tsconfig.json >"$OUT/service.build.log" 2>&1
  node dist/bench/service/bench.js $(((quick)) && echo --runs 3 --cycles 2 --calls 20) >"$OUT/service.txt" 2>"$OUT/service.err"; status service $?
fi
if want net && [ -f bench/net/net-bench.ts ]; then
  log "net: TCP through user-mode NAT, virtio-net, vs QEMU-KVM -nic user (${NET_ROUNDS:=5} rounds)"
  [ -f dist/bench/net/net-bench.js ] && [ dist/bench/net/net-bench.js -nt bench/net/net-bench.ts ] ||
    npx tsc -p tsconfig.json >"$OUT/net.build.log" 2>&1
  node dist/bench/net/net-bench.js --rounds $(((quick)) && echo 1 || echo "$NET_ROUNDS") $(((quick)) && echo --mib 64 --pings 500) >"$OUT/net.txt" 2>"$OUT/net.err"; status net $?
fi

python3 - "$OUT" <<'PY'
import json, os, re, sys
out = sys.argv[1]
rows = []  # suite, measurement, vireo, qemu, ratio, target
def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None
def failed(key):
    p = os.path.join(out, key + ".status")
    return os.path.exists(p) and open(p).read().strip() != "0"
def fail_row(suite, key):
    rows.append((suite, f"FAILED (log: {out}/{key}.txt)", "", "", "", ""))

s = load("start.json")
if failed("start"): fail_row("engine", "start")
elif s:
    q = s.get("qemu-kvm", {})
    for name in ("vireo-run (engine)", "vireo boot (engine+Node)"):
        if name in s:
            r = s[name]
            rows.append(("engine", f"start->1st serial byte, {name}", f"{r['first_byte_ms_median']:.1f} ms",
                         f"{q.get('first_byte_ms_median', float('nan')):.1f} ms", f"{r.get('ratio_first_byte', float('nan')):.3f}x", "<= 0.3x"))
            rows.append(("engine", f"start->guest exit, {name}", f"{r['exit_ms_median']:.1f} ms",
                         f"{q.get('exit_ms_median', float('nan')):.1f} ms", f"{r.get('ratio_exit', float('nan')):.3f}x", ""))
    if "qemu-tcg" in s:
        t = s["qemu-tcg"]
        rows.append(("engine", "  (context) QEMU TCG: 1st byte / exit", "", f"{t['first_byte_ms_median']:.1f} / {t['exit_ms_median']:.1f} ms", "", ""))
    if "qemu-kvm init only (-S)" in s:
        rows.append(("engine", "  (context) QEMU-KVM init only (-S, QMP)", "", f"{s['qemu-kvm init only (-S)']['first_byte_ms_median']:.1f} ms", "", ""))
m = load("memory.json")
if failed("memory"): fail_row("engine", "memory")
elif m:
    q = m.get("qemu-kvm", {})
    for name in ("vireo-run (engine)", "vireo boot (engine+Node)"):
        if name in m:
            r = m[name]
            rows.append(("engine", f"RSS overhead (256M guest), {name}", f"{r['overhead_kb']/1024:.1f} MiB",
                         f"{q.get('overhead_kb', float('nan'))/1024:.1f} MiB", f"{r.get('ratio_overhead', float('nan')):.2f}x", "<= 10 MiB"))
            rows.append(("engine", f"RSS steady / peak, {name}", f"{r['rss_kb']/1024:.1f} / {r['hwm_kb']/1024:.1f} MiB",
                         f"{q.get('rss_kb', float('nan'))/1024:.1f} / {q.get('hwm_kb', float('nan'))/1024:.1f} MiB", "", ""))
d = load("display.json")
if failed("display"): fail_row("display", "display")
elif d:
    rows.append(("display", "1024x768x32 full-screen frames/s", f"{d['fps']:.1f} fps", "n/a", "", ">= 60 fps"))
    rows.append(("display", "bytes per full-screen frame", f"{d['bytes_per_frame']:.0f} B", "n/a", "", ""))
    rows.append(("display", "frames while idle 5 s", f"{d['idle_frames_max']}", "n/a", "", "0"))

def md_rows(suite, key, min_cells):
    if failed(key): return fail_row(suite, key)
    p = os.path.join(out, key + ".txt")
    if not os.path.exists(p): return
    header = None
    for line in open(p):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < min_cells or set(cells[0]) <= set("-: "): continue
        if header is None or cells[0] in ("workload", "engine") or cells[0].startswith("copy"):
            header = cells; continue
        if header[0] == "engine":  # pc: engine | "GNU GRUB" shows | menu with countdown | Vireo / this
            fig = f"menu {cells[2]} (GRUB {cells[1]})"
            v = cells[0].startswith("Vireo")
            rows.append((suite, "start->GRUB menu, " + cells[0], fig if v else "", "" if v else fig,
                         "" if v else f"{cells[3]} Vireo/this", ""))
        elif "seconds" in header:  # block's copy table: name | seconds | MB/s | vs cp
            fig = f"{cells[1]} s ({cells[2]} MB/s)"
            q = "qemu" in cells[0]
            rows.append((suite, cells[0], "" if q else fig, fig if q else "", f"{cells[3]}x cp speed", ""))
        else:
            rows.append((suite, cells[0], cells[1], cells[2] if len(cells) > 3 else "", cells[-1], ""))
md_rows("block", "block", 4)
md_rows("pc", "pc", 4)

def generic_rows(suite, key):
    """Any markdown tables: first cell is the measurement, the rest 'column: value'."""
    if failed(key): return fail_row(suite, key)
    p = os.path.join(out, key + ".txt")
    if not os.path.exists(p): return
    header = None
    for line in open(p):
        if not line.startswith("|"):
            header = None; continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if set("".join(cells)) <= set("-: "): continue
        if header is None:
            header = cells; continue
        rows.append((suite, f"{header[0]}: {cells[0]}", "; ".join(f"{h}: {c}" for h, c in zip(header[1:], cells[1:])), "n/a", "", ""))
generic_rows("storage", "storage")
generic_rows("state", "state")
generic_rows("linux", "linux")
generic_rows("service", "service")
generic_rows("net", "net")
if failed("app"): fail_row("app", "app")
elif os.path.exists(os.path.join(out, "app.txt")):
    t = open(os.path.join(out, "app.txt")).read()
    j = json.loads(t[t.index("\n{") if t.find("\n{") >= 0 else t.index("{"):t.rindex("}") + 1])
    for sect, v in j.items():
        if isinstance(v, dict):
            rows.append(("app", sect, ", ".join(f"{k}={x}" for k, x in v.items()), "n/a", "", ""))

head = ("suite", "measurement", "Vireo", "QEMU", "ratio", "target")
w = [max(len(str(r[i])) for r in rows + [head]) for i in range(6)]
line = lambda r: "| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) + " |"
print(line(head)); print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in rows: print(line(r))
kvm = "kvm_pvm (guest ring-0 code emulated)" if os.path.exists("/sys/module/kvm_pvm") else "hardware KVM"
print(f"\n{os.cpu_count()} cores, {kvm}. Logs: {out}")
PY

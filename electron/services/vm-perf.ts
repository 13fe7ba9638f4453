// Performance history per running VM (issue 14 "Live graphs from the engine").
// The engine host posts cumulative counters once a second (contracts/
// engine-host.ts `stats`); this turns each sample into a PerfPoint (rates per
// second over the interval since the previous sample) and keeps the last
// PERF_HISTORY_POINTS per VM for vm.statsHistory, so a Details window opened
// later shows the last minutes, as virt-manager's graphs do. Memory only: the
// history goes when the VM stops or the service restarts.
import type { PerfSample } from '../common/contracts/engine-host';
import { PERF_HISTORY_POINTS, type PerfPoint } from '../common/contracts/perf';

interface Track {
  points: PerfPoint[];
  last: { at: number; diskRead: number; diskWrite: number; readOps: number; writeOps: number; rx: number; tx: number } | undefined;
}

const sum = <T>(a: T[], f: (x: T) => number) => a.reduce((n, x) => n + (Number.isFinite(f(x)) ? f(x) : 0), 0);

export class VmPerf {
  private readonly vms = new Map<string, Track>();

  constructor(private readonly limit = PERF_HISTORY_POINTS) {}

  /** One stats message from `uuid`'s engine host: the point it makes (also kept in the history). */
  ingest(uuid: string, cpuPercent: number, memoryMiB: number, perf: PerfSample | undefined, now = Date.now()): PerfPoint {
    let tr = this.vms.get(uuid);
    if (!tr) this.vms.set(uuid, (tr = { points: [], last: undefined }));
    const at = perf?.at ?? now;
    const cur = {
      at,
      diskRead: perf ? sum(perf.disks, (d) => d.readBytes) : 0,
      diskWrite: perf ? sum(perf.disks, (d) => d.writeBytes) : 0,
      readOps: perf ? sum(perf.disks, (d) => d.readOps) : 0,
      writeOps: perf ? sum(perf.disks, (d) => d.writeOps) : 0,
      rx: perf ? sum(perf.nics, (n) => n.rxBytes) : 0,
      tx: perf ? sum(perf.nics, (n) => n.txBytes) : 0,
    };
    const prev = tr.last;
    const secs = prev && at > prev.at ? (at - prev.at) / 1000 : 0;
    // Counters only grow while one engine runs; a restarted engine starts again from 0: no rate for that interval.
    const rate = (a: number, b: number | undefined) => (secs > 0 && b !== undefined && a >= b ? Math.round((a - b) / secs) : 0);
    const point: PerfPoint = {
      t: at,
      cpuPercent: Number.isFinite(cpuPercent) ? Math.min(100, Math.max(0, cpuPercent)) : 0,
      memoryMiB: Number.isFinite(memoryMiB) ? Math.max(0, memoryMiB) : 0,
      ramMiB: perf?.ramMiB ?? 0,
      diskReadBps: rate(cur.diskRead, prev?.diskRead),
      diskWriteBps: rate(cur.diskWrite, prev?.diskWrite),
      diskReadOps: rate(cur.readOps, prev?.readOps),
      diskWriteOps: rate(cur.writeOps, prev?.writeOps),
      netRxBps: rate(cur.rx, prev?.rx),
      netTxBps: rate(cur.tx, prev?.tx),
      diskReadBytes: cur.diskRead,
      diskWriteBytes: cur.diskWrite,
      netRxBytes: cur.rx,
      netTxBytes: cur.tx,
      disks: perf?.disks.length ?? 0,
      nics: perf?.nics.length ?? 0,
      inputDroppedKeys: perf?.input?.droppedKeys ?? 0,
      inputMergedClicks: perf?.input?.mergedClicks ?? 0,
    };
    tr.last = cur;
    tr.points.push(point);
    if (tr.points.length > this.limit) tr.points.splice(0, tr.points.length - this.limit);
    return point;
  }

  /** The last minutes of `uuid`, oldest first ([] for a VM that is not running). */
  history(uuid: string): PerfPoint[] {
    return [...(this.vms.get(uuid)?.points ?? [])];
  }

  /** The VM stopped: its history goes with it. */
  drop(uuid: string): void {
    this.vms.delete(uuid);
  }
}

// Live performance numbers per running VM (issue 14 "Live graphs from the
// engine"): the engine host samples the engine once a second (guest CPU from
// the vCPU threads' CPU time, touched guest RAM, per-disk and per-NIC
// counters), the service turns the counters into rates and keeps the last
// ~5 minutes per running VM, so a Details window opened later shows history.
import * as s from './schema';

const id = s.string({ min: 1, max: 64 });

/** One second of a VM's life, as the graphs plot it. Rates are per second over the interval that ended at `t`. */
export const PerfPointSchema = s.object({
  /** ms since the epoch (the engine host's sample time). */
  t: s.number(),
  /** Guest CPU: the vCPU threads' CPU time over the interval, percent of all the VM's vCPUs (0–100). */
  cpuPercent: s.number(),
  /** Guest RAM the guest has touched (resident in host memory), MiB. */
  memoryMiB: s.number(),
  /** Guest RAM configured, MiB (the memory graph's scale). */
  ramMiB: s.number(),
  diskReadBps: s.number(),
  diskWriteBps: s.number(),
  diskReadOps: s.number(),
  diskWriteOps: s.number(),
  netRxBps: s.number(),
  netTxBps: s.number(),
  /** Totals since power-on, all disks / all NICs together. */
  diskReadBytes: s.number(),
  diskWriteBytes: s.number(),
  netRxBytes: s.number(),
  netTxBytes: s.number(),
  /** How many disks and NICs the VM has (a graph with no NIC says so). */
  disks: s.number(),
  nics: s.number(),
  /**
   * Input the guest did not take, totals since power-on: keys typed while the keyboard's
   * queue was full (a guest that stopped reading it), tablet button changes merged because
   * the guest took no reports. Non-zero means keystrokes or clicks were lost.
   */
  inputDroppedKeys: s.number(),
  inputMergedClicks: s.number(),
});
export type PerfPoint = s.Infer<typeof PerfPointSchema>;

/** At most this many points are kept per VM (one a second: 5 minutes). */
export const PERF_HISTORY_POINTS = 300;

export const perfApi = {
  /** The running VM's last ~5 minutes of PerfPoints, oldest first ([] when it is not running). */
  'vm.statsHistory': {
    params: s.object({ uuid: id }),
    result: s.object({ points: s.array(PerfPointSchema, { max: PERF_HISTORY_POINTS }) }),
  },
} as const;

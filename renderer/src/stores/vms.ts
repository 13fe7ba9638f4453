// VM list state. Stats history is kept short (sparklines); frames and serial bytes
// never pass through here (they go straight to the canvas / xterm).
import { create } from 'zustand';
import type { HostInfo } from '../../../electron/common/contracts/api';
import type { VmSummary } from '../../../electron/common/contracts/vm';

export const HISTORY = 30;

export interface Job {
  jobId: string;
  label: string;
  doneBytes: number;
  totalBytes: number;
  finished?: { ok: boolean; cancelled: boolean; error?: string; vmUuid?: string };
}

export interface VmsState {
  host: HostInfo | undefined;
  vms: Record<string, VmSummary>;
  cpu: Record<string, number[]>;
  mem: Record<string, number[]>;
  selected: string | undefined;
  jobs: Record<string, Job>;
  error: string | undefined;
  loaded: boolean;
  setHost(h: HostInfo): void;
  setAll(list: VmSummary[]): void;
  upsert(vm: VmSummary): void;
  remove(uuid: string): void;
  stats(uuid: string, cpu: number, mem: number): void;
  select(uuid: string | undefined): void;
  job(j: Job): void;
  setError(e: string | undefined): void;
}

const push = (arr: number[] | undefined, v: number) => [...(arr ?? []), v].slice(-HISTORY);

export const useVms = create<VmsState>((set) => ({
  host: undefined,
  vms: {},
  cpu: {},
  mem: {},
  selected: undefined,
  jobs: {},
  error: undefined,
  loaded: false,
  setHost: (host) => set({ host }),
  setAll: (list) => {
    performance.mark('vireo:list-received');
    set({ vms: Object.fromEntries(list.map((v) => [v.uuid, v])), loaded: true });
  },
  upsert: (vm) => set((s) => ({ vms: { ...s.vms, [vm.uuid]: vm } })),
  remove: (uuid) =>
    set((s) => {
      const vms = { ...s.vms };
      delete vms[uuid];
      return { vms, selected: s.selected === uuid ? undefined : s.selected };
    }),
  stats: (uuid, cpu, mem) => set((s) => ({ cpu: { ...s.cpu, [uuid]: push(s.cpu[uuid], cpu) }, mem: { ...s.mem, [uuid]: push(s.mem[uuid], mem) } })),
  select: (selected) => set({ selected }),
  job: (j) => set((s) => ({ jobs: { ...s.jobs, [j.jobId]: { ...s.jobs[j.jobId], ...j } } })),
  setError: (error) => set({ error }),
}));

/** Selectors: plain functions. */
export const sortedVms = (s: VmsState): VmSummary[] => Object.values(s.vms).sort((a, b) => a.name.localeCompare(b.name));

// The one contract between the UI and the app services: every call and event the
// renderer can make or hear, with its schemas. Both transports (Electron IPC and
// the WebSocket bridge) validate every message against this table, on both ends.
import * as s from './schema';
import {
  DetailsFieldErrorSchema,
  ExitReasonSchema,
  FieldErrorSchema,
  NewVmRequestSchema,
  VmDefinitionSchema,
  VmStateSchema,
  VmEditSchema,
  VmSummarySchema,
} from './vm';
import { storageApi, storageEvents } from './storage';
import { libvirtApi } from './libvirt';
import { osinfoApi } from './osinfo';
import { networkApi, networkEvents } from './network';
import { interfacesApi } from './interfaces';
import { perfApi, PerfPointSchema } from './perf';
import { snapshotEvents, snapshotsApi } from './snapshots';
import { PciDeviceSchema } from './engine-host';

const id = s.string({ min: 1, max: 64 });
const empty = s.object({});
const ok = s.object({});

export const HostInfoSchema = s.object({
  cpus: s.number(),
  memoryMiB: s.number(),
  /** Null when /dev/kvm works; else what to do. */
  kvmProblem: s.nullable(s.string()),
  engineProblem: s.nullable(s.string()),
  poolPath: s.string(),
  /** Vireo's log directory: the only place serial logs are written. */
  logsPath: s.string(),
  configPath: s.string(),
  version: s.string(),
});
export type HostInfo = s.Infer<typeof HostInfoSchema>;

/**
 * shutdown: ACPI power button, the VM shows 'shuttingdown' until the guest powers off (refused
 * when the guest has not enabled ACPI); forceoff: stop now (the engine flushes the disks);
 * reboot: ask the guest to restart (ctrl-alt-del); reset: the board's reset line;
 * save: managed save (virsh managedsave): the running or paused VM's state goes to a file, the
 * engine stops, the VM is 'saved' and the next start restores it (the file is removed once it
 * runs); discardSave: delete that saved state (virsh managedsave-remove), the next start boots fresh.
 */
export const VM_ACTIONS = ['start', 'pause', 'resume', 'shutdown', 'reboot', 'reset', 'forceoff', 'save', 'discardSave'] as const;
export type VmAction = (typeof VM_ACTIONS)[number];

export const DiskPlanSchema = s.object({
  path: s.string(),
  media: s.enums(['disk', 'cdrom'] as const),
  sizeBytes: s.number(),
  exists: s.boolean(),
  /** Names of other VMs that use this file. */
  sharedWith: s.array(s.string()),
  /** Whether the dialog pre-checks it: never when another VM uses it, never for read-only media, never outside the pool. */
  defaultChecked: s.boolean(),
  /** Outside Vireo's own pool: deleting it needs the path in vm.delete's `confirm`. */
  outsidePool: s.boolean(),
});
export type DiskPlan = s.Infer<typeof DiskPlanSchema>;

export const api = {
  'host.info': { params: empty, result: HostInfoSchema },
  'vm.list': { params: empty, result: s.array(VmSummarySchema) },
  'vm.get': { params: s.object({ uuid: id }), result: VmDefinitionSchema },
  /** Creates a VM (or only checks, with dryRun). Field problems come back as data, not as a thrown error. */
  'vm.create': {
    params: NewVmRequestSchema,
    result: s.object({ errors: s.array(FieldErrorSchema), vm: s.optional(VmSummarySchema) }),
  },
  /**
   * The hardware details editor saves here (or only checks, with dryRun). Field problems
   * come back as data. On a running VM the definition changes at once and the machine
   * picks it up the next time it starts: `nextBoot` says so.
   */
  'vm.update': {
    params: s.object({ uuid: id, edit: VmEditSchema, dryRun: s.optional(s.boolean()) }),
    result: s.object({ errors: s.array(DetailsFieldErrorSchema), vm: s.optional(VmSummarySchema), nextBoot: s.boolean() }),
  },
  /**
   * Inserts another ISO in the VM's CD-ROM drive (path) or ejects the disc (null), like
   * virt-manager's CDROM Connect/Disconnect. On a running VM the engine changes the disc
   * now (`live`); either way the definition's first CD-ROM drive is updated atomically so
   * the change survives a restart. `locked`: the guest has locked the tray, nothing changed.
   * A missing ISO, a VM without a CD-ROM drive or an engine refusal is a thrown error.
   */
  'vm.changeMedia': {
    params: s.object({ uuid: id, path: s.nullable(s.string({ min: 1, max: 4096 })) }),
    result: s.object({ live: s.boolean(), ejected: s.optional(s.boolean()), locked: s.optional(s.boolean()), vm: s.optional(VmSummarySchema) }),
  },
  /** temporary (start only): run with temporary changes: every writable disk gets a throwaway overlay (QEMU -snapshot). */
  'vm.action': { params: s.object({ uuid: id, action: s.enums(VM_ACTIONS), temporary: s.optional(s.boolean()) }), result: ok },
  /** virsh autostart: start the VM when the Vireo service starts (`enabled`), or not. */
  'vm.setAutostart': { params: s.object({ uuid: id, enabled: s.boolean() }), result: s.object({ vm: VmSummarySchema }) },
  'vm.clonePlan': {
    params: s.object({ uuid: id }),
    result: s.object({ suggestedName: s.string(), disks: s.array(DiskPlanSchema), blocker: s.nullable(s.string()) }),
  },
  /** Starts a clone job; progress comes as job.progress events, the end as job.done. */
  'vm.clone': {
    params: s.object({
      uuid: id,
      name: s.string({ max: 256 }),
      /** 'full' (default): copy each disk (reflink when the file system can); 'linked': a qcow2 overlay backed by each source disk. */
      mode: s.optional(s.enums(['full', 'linked'] as const)),
    }),
    result: s.object({ errors: s.array(FieldErrorSchema), jobId: s.optional(s.string()) }),
  },
  'job.cancel': { params: s.object({ jobId: id }), result: ok },
  'vm.deletePlan': { params: s.object({ uuid: id }), result: s.object({ disks: s.array(DiskPlanSchema) }) },
  /**
   * Deletes the VM and the chosen files. A file another VM uses is refused; a file outside
   * Vireo's own pool is deleted only when `confirm` names it (the dialog showed its path).
   */
  'vm.delete': {
    params: s.object({ uuid: id, deleteDisks: s.array(s.string({ max: 4096 }), { max: 16 }), confirm: s.optional(s.array(s.string({ max: 4096 }), { max: 16 })) }),
    result: s.object({ deleted: s.array(s.string()) }),
  },
  'vm.screenshot': { params: s.object({ uuid: id }), result: s.object({ pngBase64: s.string() }) },
  /** Whether a host path exists (the wizard's media field). */
  'fs.probe': {
    params: s.object({ path: s.string({ max: 4096 }) }),
    result: s.object({ exists: s.boolean(), kind: s.enums(['file', 'directory', 'other', 'missing'] as const), sizeBytes: s.number() }),
  },
  /** The running VM's PCI functions as its guest sees them (IDs and class from config space): diagnostics. */
  'vm.devices': { params: s.object({ uuid: id }), result: s.object({ pci: s.array(PciDeviceSchema) }) },
  ...storageApi,
  ...libvirtApi,
  ...osinfoApi,
  ...networkApi,
  ...interfacesApi,
  ...perfApi,
  ...snapshotsApi,
} as const;

export type Api = typeof api;
export type Method = keyof Api;
export type Params<M extends Method> = s.Infer<Api[M]['params']>;
export type Result<M extends Method> = s.Infer<Api[M]['result']>;

export const events = {
  /** The app menu's File → New VM… (Electron). */
  'ui.newVm': s.object({}),
  'vm.changed': s.object({ vm: VmSummarySchema }),
  'vm.removed': s.object({ uuid: id }),
  /** Once a second per running VM: guest CPU % and touched RAM (MiB), and the whole point (rates) for the graphs. */
  'vm.stats': s.object({ uuid: id, cpuPercent: s.number(), memoryMiB: s.number(), point: s.optional(PerfPointSchema) }),
  'vm.exited': s.object({ uuid: id, reason: ExitReasonSchema }),
  'job.progress': s.object({ jobId: id, doneBytes: s.number(), totalBytes: s.number(), label: s.string() }),
  'job.done': s.object({
    jobId: id,
    ok: s.boolean(),
    cancelled: s.boolean(),
    error: s.optional(s.string()),
    vmUuid: s.optional(s.string()),
  }),
  ...storageEvents,
  ...networkEvents,
  ...snapshotEvents,
} as const;

export type Events = typeof events;
export type EventName = keyof Events;
export type EventPayload<E extends EventName> = s.Infer<Events[E]>;

export const VmStateValues = VmStateSchema;

// ---- envelopes on the wire (JSON over WebSocket, structured clone over IPC) ----

export const RequestEnvelope = s.object({
  t: s.literal('call'),
  id: s.number({ int: true, min: 0 }),
  method: s.string({ max: 64 }),
  params: s.unknown(),
});
export type RequestEnvelope = s.Infer<typeof RequestEnvelope>;

export const ReplyEnvelope = s.variant('t', {
  result: s.object({ t: s.literal('result'), id: s.number(), value: s.unknown() }),
  error: s.object({ t: s.literal('error'), id: s.number(), message: s.string(), code: s.optional(s.string()) }),
  event: s.object({ t: s.literal('event'), name: s.string(), payload: s.unknown() }),
});
export type ReplyEnvelope = s.Infer<typeof ReplyEnvelope>;

export function isMethod(m: string): m is Method {
  return Object.prototype.hasOwnProperty.call(api, m);
}
export function isEvent(e: string): e is EventName {
  return Object.prototype.hasOwnProperty.call(events, e);
}

export function parseParams<M extends Method>(method: M, params: unknown): Params<M> {
  return api[method].params.parse(params, 'params') as Params<M>;
}
export function parseResult<M extends Method>(method: M, value: unknown): Result<M> {
  return api[method].result.parse(value, 'result') as Result<M>;
}
export function parseEvent<E extends EventName>(name: E, payload: unknown): EventPayload<E> {
  return events[name].parse(payload, name) as EventPayload<E>;
}

/** The service the UI talks to, whatever the transport. */
export type VireoApi = {
  [M in Method]: (params: Params<M>) => Promise<Result<M>>;
};

/** Shared channel names for Electron IPC (preload validates against these). */
export const IPC = {
  call: 'vireo:call',
  event: 'vireo:event',
  openStream: 'vireo:open-stream',
  openConsoleWindow: 'vireo:open-console',
} as const;

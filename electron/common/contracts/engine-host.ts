// Control messages between the engine supervisor (app services) and one engine
// host process (one per running VM). Fast console data is not here: it travels as
// stream.ts bytes, inside 'stream' messages (child_process IPC) or on a MessagePort
// handed to the host (Electron).
import * as s from './schema';

const DiskConfigSchema = s.object({
  path: s.string(),
  format: s.optional(s.string()),
  readOnly: s.optional(s.boolean()),
  bus: s.optional(s.enums(['ide', 'virtio'] as const)),
  media: s.optional(s.enums(['disk', 'cdrom'] as const)),
  snapshot: s.optional(s.boolean()),
});

const NicConfigSchema = s.object({
  model: s.optional(s.enums(['virtio', 'e1000'] as const)),
  mac: s.optional(s.string({ max: 32 })),
  backend: s.optional(s.enums(['user', 'switch', 'tap'] as const)),
  linkUp: s.optional(s.boolean()),
  restrict: s.optional(s.boolean()),
  hostfwd: s.optional(s.array(s.string({ max: 128 }), { max: 64 })),
  net: s.optional(s.string({ max: 64 })),
  host: s.optional(s.string({ max: 64 })),
  dhcpStart: s.optional(s.string({ max: 64 })),
  dns: s.optional(s.string({ max: 64 })),
  socket: s.optional(s.string({ max: 107 })),
  bridge: s.optional(s.string({ max: 15 })),
  tap: s.optional(s.string({ max: 15 })),
});

export const NicLeaseSchema = s.object({ mac: s.string(), ip: s.string(), expires: s.number(), hostname: s.optional(s.string()) });

/** Mirrors NicStats in engine-api.ts: one NIC of a running machine. */
/** The engine host's per-second sample: `at` (ms since the epoch) and cumulative counters since power-on. */
export const PerfSampleSchema = s.object({
  at: s.number(),
  vcpus: s.number(),
  ramMiB: s.number(),
  disks: s.array(
    s.object({ readBytes: s.number(), readOps: s.number(), writeBytes: s.number(), writeOps: s.number() }),
    { max: 64 },
  ),
  nics: s.array(s.object({ rxBytes: s.number(), rxPackets: s.number(), txBytes: s.number(), txPackets: s.number() }), { max: 64 }),
  /** Input the guest did not take (PC board only): keys dropped past the keyboard's queue, tablet clicks merged. */
  input: s.optional(s.object({ droppedKeys: s.number(), mergedClicks: s.number() })),
});
export type PerfSample = s.Infer<typeof PerfSampleSchema>;

export const NicStatsSchema = s.object({
  linkUp: s.boolean(),
  rxPackets: s.number(),
  rxBytes: s.number(),
  rxDropped: s.number(),
  txPackets: s.number(),
  txBytes: s.number(),
  txDropped: s.number(),
  txMalformed: s.number(),
  rxBadBuffers: s.number(),
  leases: s.array(NicLeaseSchema),
});

export const PciDeviceSchema = s.object({
  slot: s.number(),
  fn: s.number(),
  vendorId: s.number(),
  deviceId: s.number(),
  classCode: s.number(),
  name: s.string(),
});

/** Mirrors MachineConfig in engine-api.ts (checked against it at compile time in engine-host). */
export const MachineConfigSchema = s.object({
  memoryMiB: s.number({ int: true, min: 1 }),
  cpus: s.number({ int: true, min: 1 }),
  kernel: s.optional(s.string()),
  initrd: s.optional(s.string()),
  append: s.optional(s.string()),
  flat: s.optional(s.string()),
  flatAddress: s.optional(s.number()),
  bios: s.optional(s.string()),
  vgaBios: s.optional(s.string()),
  disks: s.optional(s.array(DiskConfigSchema)),
  nics: s.optional(s.array(NicConfigSchema, { max: 16 })),
  bootOrder: s.optional(s.string()),
  bootMenu: s.optional(s.boolean()),
  bootMenuTimeout: s.optional(s.number({ int: true, min: 0, max: 65535 })),
  usbTablet: s.optional(s.boolean()),
  display: s.optional(s.object({ width: s.number(), height: s.number() })),
  uuid: s.optional(s.string({ min: 36, max: 36 })),
  serialFile: s.optional(s.string()),
  serialLogMaxBytes: s.optional(s.number({ int: true, min: 1 })),
});

const StopReasonSchema = s.object({
  kind: s.enums(['exit', 'poweroff', 'reset', 'stopped', 'triple-fault', 'internal-error', 'entry-failure', 'error'] as const),
  code: s.optional(s.number()),
  message: s.string(),
  vcpu: s.optional(s.number()),
  rip: s.optional(s.string()),
  bytes: s.optional(s.string()),
});

export const ToHostSchema = s.variant('t', {
  /** restore: a state file (docs/state.md) loaded into the new machine before it starts; a refused file fails the start. */
  start: s.object({ t: s.literal('start'), config: MachineConfigSchema, restore: s.optional(s.string({ min: 1, max: 4096 })) }),
  /**
   * Managed save: pause, write the whole state to path (PATH.partial, fsync, rename), then stop
   * the machine and exit 0; answered with 'saved'. On an error the machine runs on (resumed if it was running).
   */
  save: s.object({ t: s.literal('save'), reqId: s.number(), path: s.string({ min: 1, max: 4096 }) }),
  /**
   * Snapshot (docs/state.md, "Snapshots"), the machine keeps going: 'create' pauses (pause drains
   * disk I/O and flushes the images), writes the whole state to statePath when given (PATH.partial,
   * fsync, rename), creates internal snapshot `name` on every writable qcow2 disk (all or nothing),
   * and resumes unless it was paused. 'delete' deletes `name` from the disks the same way (the
   * engine holds the images). Answered with 'snapshot'.
   */
  snapshot: s.object({
    t: s.literal('snapshot'),
    reqId: s.number(),
    op: s.enums(['create', 'delete'] as const),
    name: s.string({ min: 1, max: 64 }),
    statePath: s.optional(s.string({ min: 1, max: 4096 })),
  }),
  pause: s.object({ t: s.literal('pause') }),
  resume: s.object({ t: s.literal('resume') }),
  /** Reboot: ask the guest to restart (ctrl-alt-del on the keyboard, as virsh's reboot asks). */
  reboot: s.object({ t: s.literal('reboot') }),
  /** Reset: the board's reset line: stop the machine and start a fresh one with the same config, in this host. */
  reset: s.object({ t: s.literal('reset') }),
  /** Shut Down: press the ACPI power button; answered with 'acpi'. The guest powers off when it is ready. */
  powerButton: s.object({ t: s.literal('powerButton') }),
  /**
   * Stop now (Force Off, app quit; SIGTERM does the same): stop the vCPUs, complete in-flight
   * disk I/O, flush qcow2 metadata, close the images, exit 0.
   */
  stop: s.object({ t: s.literal('stop') }),
  screenshot: s.object({ t: s.literal('screenshot'), reqId: s.number() }),
  /** Live CD change: insert the ISO at path, or eject the disc (null). */
  media: s.object({ t: s.literal('media'), reqId: s.number(), path: s.nullable(s.string({ min: 1, max: 4096 })) }),
  /** The machine's PCI functions as the guest sees them (diagnostics, tests). */
  devices: s.object({ t: s.literal('devices'), reqId: s.number() }),
  /** The NICs' link, counters and user-mode NAT leases; with `link`, that NIC's cable is plugged/pulled first. */
  nics: s.object({ t: s.literal('nics'), reqId: s.number(), link: s.optional(s.object({ index: s.number({ int: true, min: 0, max: 15 }), up: s.boolean() })) }),
  openStream: s.object({ t: s.literal('openStream'), sid: s.number({ int: true, min: 1 }) }),
  closeStream: s.object({ t: s.literal('closeStream'), sid: s.number({ int: true, min: 1 }) }),
  stream: s.object({ t: s.literal('stream'), sid: s.number({ int: true, min: 1 }), data: s.bytes(1 << 20) }),
});
export type ToHost = s.Infer<typeof ToHostSchema>;

export const FromHostSchema = s.variant('t', {
  ready: s.object({ t: s.literal('ready'), pid: s.number() }),
  state: s.object({ t: s.literal('state'), state: s.string(), reason: s.optional(StopReasonSchema) }),
  /**
   * Once a second while the machine runs. cpuPercent: the guest's vCPU threads' CPU time over the last interval,
   * as a percent of all its vCPUs (0–100); memoryMiB: guest RAM the guest has touched (resident), sampled every 2 s.
   * perf: the engine's cumulative counters (PerfSampleSchema); the service turns them into rates.
   */
  stats: s.object({ t: s.literal('stats'), cpuPercent: s.number(), memoryMiB: s.number(), perf: s.optional(PerfSampleSchema) }),
  screenshot: s.object({
    t: s.literal('screenshot'),
    reqId: s.number(),
    png: s.optional(s.bytes()),
    error: s.optional(s.string()),
  }),
  /** Reply to 'media': ok (with ejected=false when the guest locked the tray), or the engine's error. */
  media: s.object({ t: s.literal('media'), reqId: s.number(), ejected: s.optional(s.boolean()), error: s.optional(s.string()) }),
  devices: s.object({ t: s.literal('devices'), reqId: s.number(), pci: s.optional(s.array(PciDeviceSchema)), error: s.optional(s.string()) }),
  nics: s.object({ t: s.literal('nics'), reqId: s.number(), nics: s.optional(s.array(NicStatsSchema)), error: s.optional(s.string()) }),
  /** Reply to 'save': ok (the host then stops the machine and exits), or the engine's error (the VM runs on). */
  saved: s.object({ t: s.literal('saved'), reqId: s.number(), error: s.optional(s.string()) }),
  /** Reply to 'snapshot': done, or the engine's error (nothing made; the machine as it was). */
  snapshot: s.object({ t: s.literal('snapshot'), reqId: s.number(), error: s.optional(s.string()) }),
  error: s.object({ t: s.literal('error'), message: s.string() }),
  /** Reply to 'powerButton': pressed (the guest enabled ACPI), or why not. */
  acpi: s.object({ t: s.literal('acpi'), accepted: s.boolean(), message: s.optional(s.string()) }),
  stream: s.object({ t: s.literal('stream'), sid: s.number(), data: s.bytes() }),
});
export type FromHost = s.Infer<typeof FromHostSchema>;
export type StopReasonMsg = s.Infer<typeof StopReasonSchema>;

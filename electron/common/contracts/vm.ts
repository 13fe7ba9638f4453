// The VM definition (what is stored on disk, one file per VM) and the shapes the
// UI sees. Declared once here; the store, the bridge and the renderer all parse
// with these schemas.
import * as s from './schema';
import { NETWORK_NAME_PATTERN } from './network';

/** virt-manager-like VM names: start with a letter or digit, then letters, digits, '.', '_', '-'. */
export const VM_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const MAC_PATTERN = /^52:54:00(:[0-9a-f]{2}){3}$/;

/** Why a name is not acceptable (syntax only; uniqueness is the store's job), or null. */
export function nameProblem(name: string): string | null {
  if (name.length === 0) return 'Enter a name.';
  if (name.length > 63) return 'Names are at most 63 characters.';
  if (!VM_NAME_PATTERN.test(name)) {
    return 'Use letters, digits, ".", "_" and "-" only, starting with a letter or digit.';
  }
  return null;
}

export const DiskSchema = s.object({
  /** '' only for a CD-ROM drive with no disc in it (ejected in Details). */
  path: s.string({ max: 4096 }),
  format: s.enums(['raw', 'qcow2'] as const),
  media: s.enums(['disk', 'cdrom'] as const),
  bus: s.enums(['ide', 'virtio'] as const),
  readOnly: s.optional(s.boolean()),
});
export type Disk = s.Infer<typeof DiskSchema>;

export const NIC_MODELS = ['virtio', 'e1000'] as const;
export type NicModel = (typeof NIC_MODELS)[number];

export const NicSchema = s.object({
  mac: s.string({ pattern: MAC_PATTERN }),
  /** The name of a network (contracts/network.ts); 'user' in older definitions is read as 'default'. */
  network: s.string({ pattern: NETWORK_NAME_PATTERN }),
  model: s.enums(NIC_MODELS),
});

/** What older definitions stored, read the way they meant it: the built-in 'user' NAT is the 'default' network. */
export function migrateNics(raw: unknown): unknown {
  if (typeof raw !== 'object' || raw === null || !Array.isArray((raw as { nics?: unknown }).nics)) return raw;
  const r = raw as { nics: unknown[] };
  return { ...r, nics: r.nics.map((n) => (typeof n === 'object' && n !== null && (n as { network?: unknown }).network === 'user' ? { ...n, network: 'default' } : n)) };
}
export type Nic = s.Infer<typeof NicSchema>;

export const BootSchema = s.variant('kind', {
  /** Firmware (SeaBIOS) boot from the devices in `order` ('d' cdrom, 'c' disk). */
  firmware: s.object({
    kind: s.literal('firmware'),
    order: s.string({ pattern: /^[cdn]{1,3}$/ }),
    /** SeaBIOS's boot menu (Esc at power-on). */
    menu: s.optional(s.boolean()),
    /** How long the menu prompt waits for Esc, in ms (libvirt's <bootmenu timeout>); 2500 when absent. */
    menuTimeoutMs: s.optional(s.number({ int: true, min: 0, max: 65535 })),
  }),
  /** Direct kernel boot: the engine loads the kernel itself (multiboot, bzImage, PVH, or a flat binary). */
  kernel: s.object({
    kind: s.literal('kernel'),
    kernel: s.string({ min: 1, max: 4096 }),
    initrd: s.optional(s.string({ max: 4096 })),
    append: s.optional(s.string({ max: 4096 })),
    /** A flat real-mode binary loaded at flatAddress instead of a kernel image. */
    flatAddress: s.optional(s.number({ int: true, min: 0, max: 0xfffff })),
  }),
});
export type Boot = s.Infer<typeof BootSchema>;

export const SerialSchema = s.object({ logFile: s.optional(s.string({ max: 4096 })) });
export type Serial = s.Infer<typeof SerialSchema>;

/**
 * The display's preferred size: what the std-vga's EDID offers (a guest that probes modes
 * — GRUB's gfxmode=auto, Linux's bochs-drm, Windows — picks it). libvirt:
 * `<video><model type='vga'><resolution x= y=/></model></video>`. Absent: 1024x768.
 * The engine also refuses a size whose 32-bit frame is bigger than video memory (16 MiB).
 */
const DISPLAY_MIN = { width: 640, height: 480 };
const DISPLAY_MAX_SIDE = 4095; // EDID's 12-bit fields
export const DisplaySchema = s.object({
  width: s.number({ int: true, min: DISPLAY_MIN.width, max: DISPLAY_MAX_SIDE }),
  height: s.number({ int: true, min: DISPLAY_MIN.height, max: DISPLAY_MAX_SIDE }),
});
export type Display = s.Infer<typeof DisplaySchema>;

/** What the display offers without a setting (the engine's VgaDevice default): never stored. */
export const DEFAULT_DISPLAY: Display = { width: 1024, height: 768 };
export const isDefaultDisplay = (d: Display) => d.width === DEFAULT_DISPLAY.width && d.height === DEFAULT_DISPLAY.height;

/** Video memory of the std-vga (engine VgaDevice::kDefaultVramSize). */
export const VRAM_BYTES = 16 * 1024 * 1024;

/** Why a preferred display size can't be used, or null. */
export function displayProblem(width: number, height: number): string | null {
  if (!Number.isInteger(width) || !Number.isInteger(height)) return 'Give the width and height in whole pixels.';
  if (width < DISPLAY_MIN.width || height < DISPLAY_MIN.height) return `The smallest preferred size is ${DISPLAY_MIN.width}×${DISPLAY_MIN.height}.`;
  if (width > DISPLAY_MAX_SIDE || height > DISPLAY_MAX_SIDE) return `At most ${DISPLAY_MAX_SIDE} pixels a side (EDID).`;
  if (width * height * 4 > VRAM_BYTES) return `${width}×${height} at 32 bits per pixel needs more than the 16 MiB of video memory.`;
  return null;
}

/**
 * A console window's area as a preferred display size: at least 640x480, at most 4095 a
 * side, shrunk (aspect kept) until a 32-bit frame fits in video memory; widths even.
 */
export function fitDisplaySize(width: number, height: number): Display {
  let w = Math.min(DISPLAY_MAX_SIDE, Math.max(DISPLAY_MIN.width, Math.round(width)));
  let h = Math.min(DISPLAY_MAX_SIDE, Math.max(DISPLAY_MIN.height, Math.round(height)));
  if (w * h * 4 > VRAM_BYTES) {
    const k = Math.sqrt(VRAM_BYTES / (w * h * 4));
    w = Math.max(DISPLAY_MIN.width, Math.floor(w * k));
    h = Math.max(DISPLAY_MIN.height, Math.floor(h * k));
    while (w * h * 4 > VRAM_BYTES) h--;
  }
  return { width: w & ~1, height: h };
}

/** The sizes Details → Display offers besides the default (the VGA BIOS lists each as a VBE mode too). */
export const DISPLAY_SIZES: readonly Display[] = [
  { width: 1280, height: 720 },
  { width: 1280, height: 800 },
  { width: 1280, height: 1024 },
  { width: 1366, height: 768 },
  { width: 1440, height: 900 },
  { width: 1600, height: 900 },
  { width: 1680, height: 1050 },
  { width: 1920, height: 1080 },
  { width: 1920, height: 1200 },
  { width: 2560, height: 1440 },
  { width: 2560, height: 1600 },
];

export const VmDefinitionSchema = s.object({
  version: s.literal(1),
  uuid: s.string({ pattern: UUID_PATTERN }),
  name: s.string({ pattern: VM_NAME_PATTERN }),
  os: s.string({ min: 1, max: 64 }),
  memoryMiB: s.number({ int: true, min: 16, max: 1024 * 1024 }),
  cpus: s.number({ int: true, min: 1, max: 288 }),
  boot: BootSchema,
  disks: s.array(DiskSchema, { max: 16 }),
  nics: s.array(NicSchema, { max: 8 }),
  createdAt: s.string({ max: 64 }),
  /** COM1 is always the serial console; it can also be logged to a host file. */
  serial: s.optional(SerialSchema),
  /** Start this VM when the Vireo service starts (virsh autostart). */
  autostart: s.optional(s.boolean()),
  /** The display's preferred size (EDID); absent: 1024x768. */
  display: s.optional(DisplaySchema),
});
export type VmDefinition = s.Infer<typeof VmDefinitionSchema>;

/**
 * 'shuttingdown': Shut Down pressed the ACPI power button; the guest powers off when it is ready.
 * 'saved': off, with a managed save (virt-manager's "Saved"): the next start restores it.
 */
export const VmStateSchema = s.enums(['shutoff', 'starting', 'running', 'paused', 'shuttingdown', 'crashed', 'saved'] as const);
export type VmState = s.Infer<typeof VmStateSchema>;

/** How an engine host ended: the supervisor's typed exit reasons. */
export const ExitReasonSchema = s.variant('kind', {
  shutdown: s.object({ kind: s.literal('shutdown'), detail: s.string() }),
  crashed: s.object({ kind: s.literal('crashed'), reason: s.string(), rip: s.optional(s.string()) }),
  killed: s.object({ kind: s.literal('killed'), signal: s.string() }),
});
export type ExitReason = s.Infer<typeof ExitReasonSchema>;

export const VmSummarySchema = s.object({
  uuid: s.string({ pattern: UUID_PATTERN }),
  name: s.string(),
  os: s.string(),
  memoryMiB: s.number(),
  cpus: s.number(),
  state: VmStateSchema,
  lastExit: s.optional(ExitReasonSchema),
  /** A hint about the running VM, e.g. a Shut Down the guest has not acted on ("Force Off?"). */
  notice: s.optional(s.string()),
  /** Running with temporary changes: its disks' writes go to throwaway overlays, dropped when it stops. */
  temporary: s.optional(s.boolean()),
  /** Starts when the Vireo service starts (virsh autostart). */
  autostart: s.optional(s.boolean()),
  /** A managed save exists (virsh dominfo "Managed save: yes"): the next start restores it. */
  hasManagedSave: s.optional(s.boolean()),
  /**
   * Running VMs: the IPv4 addresses its networks' DHCP servers leased to its NICs' MACs, in NIC order (what
   * vm.interfaces lists; the manager shows them under the name). Absent when none is known.
   */
  addresses: s.optional(s.array(s.string({ max: 64 }), { max: 64 })),
  disks: s.array(DiskSchema),
  boot: BootSchema,
  nics: s.array(NicSchema),
});
export type VmSummary = s.Infer<typeof VmSummarySchema>;

/** OS choices in the wizard (what they change: default memory, disk size, bus). */
/** nicModel: the NIC the wizard gives it (virtio where the guest has the driver; FreeDOS has only e1000-class packet drivers). */
export const OS_CHOICES = [
  { id: 'generic', label: 'Generic x86 (GRUB, DOS, other)', memoryMiB: 256, diskGiB: 2, nicModel: 'virtio' },
  { id: 'linux', label: 'Generic Linux', memoryMiB: 1024, diskGiB: 20, nicModel: 'virtio' },
  { id: 'debian12', label: 'Debian 12', memoryMiB: 2048, diskGiB: 20, nicModel: 'virtio' },
  { id: 'ubuntu24.04', label: 'Ubuntu 24.04', memoryMiB: 4096, diskGiB: 25, nicModel: 'virtio' },
  { id: 'fedora41', label: 'Fedora 41', memoryMiB: 2048, diskGiB: 20, nicModel: 'virtio' },
  { id: 'freedos', label: 'FreeDOS', memoryMiB: 64, diskGiB: 1, nicModel: 'e1000' },
] as const;

/** The NIC model the wizard suggests for an OS id. */
export function nicModelFor(os: string): NicModel {
  return OS_CHOICES.find((o) => o.id === os)?.nicModel ?? 'virtio';
}

/** A sensible default OS from a media path (virt-manager guesses from the ISO). */
export function guessOs(mediaPath: string): string {
  const p = mediaPath.toLowerCase();
  if (p.includes('debian')) return 'debian12';
  if (p.includes('ubuntu')) return 'ubuntu24.04';
  if (p.includes('fedora')) return 'fedora41';
  if (p.includes('freedos') || p.includes('fd1')) return 'freedos';
  if (p.includes('vmlinuz') || p.includes('linux')) return 'linux';
  return 'generic';
}

/** What the New VM wizard sends. */
export const NewVmRequestSchema = s.object({
  media: s.variant('kind', {
    iso: s.object({ kind: s.literal('iso'), path: s.string({ max: 4096 }) }),
    /**
     * format: what the file is. Omitted: a disk some VM already has keeps the format
     * its definition states; any other file is read once here, and a qcow2 image with
     * a backing file must then be imported with its format stated (its chain is shown).
     */
    import: s.object({
      kind: s.literal('import'),
      path: s.string({ max: 4096 }),
      format: s.optional(s.enums(['raw', 'qcow2'] as const)),
      /** Omitted: ide (what the wizard makes). */
      bus: s.optional(s.enums(['ide', 'virtio'] as const)),
    }),
    kernel: s.object({
      kind: s.literal('kernel'),
      kernel: s.string({ max: 4096 }),
      initrd: s.optional(s.string({ max: 4096 })),
      append: s.optional(s.string({ max: 4096 })),
      flatAddress: s.optional(s.number({ int: true, min: 0, max: 0xfffff })),
    }),
  }),
  os: s.string({ max: 64 }),
  memoryMiB: s.number({ int: true }),
  cpus: s.number({ int: true }),
  storage: s.variant('kind', {
    none: s.object({ kind: s.literal('none') }),
    create: s.object({
      kind: s.literal('create'),
      sizeGiB: s.number(),
      /** Omitted: raw (what older clients meant). The wizard sends qcow2 by default. */
      format: s.optional(s.enums(['qcow2', 'raw'] as const)),
      /** Base the new disk on this image (absolute path): a qcow2 overlay, linked to it. */
      backing: s.optional(s.string({ max: 4096 })),
      bus: s.optional(s.enums(['ide', 'virtio'] as const)),
    }),
    /** An existing disk image (absolute path) as the first disk, next to the ISO or kernel (virt-install --disk path=). */
    existing: s.object({
      kind: s.literal('existing'),
      path: s.string({ max: 4096 }),
      /** Omitted: as for media 'import' (read from the file; a qcow2 with a backing file must be stated). */
      format: s.optional(s.enums(['raw', 'qcow2'] as const)),
      bus: s.optional(s.enums(['ide', 'virtio'] as const)),
    }),
  }),
  name: s.string({ max: 256 }),
  /** A network's name, or 'none' for no NIC ('user' from older clients means 'default'). */
  network: s.string({ max: 64 }),
  /** Omitted: the OS's preference (nicModelFor). */
  nicModel: s.optional(s.enums(NIC_MODELS)),
  /** The NIC's MAC (52:54:00:xx:xx:xx, not another VM's); omitted: a new one. */
  mac: s.optional(s.string({ max: 64 })),
  customize: s.optional(s.boolean()),
  /** Only check, write nothing. */
  dryRun: s.optional(s.boolean()),
});
export type NewVmRequest = s.Infer<typeof NewVmRequestSchema>;

/** A problem tied to one wizard field, shown next to that field. */
export const FieldErrorSchema = s.object({
  field: s.enums(['media', 'kernel', 'os', 'memory', 'cpus', 'storage', 'name', 'network'] as const),
  message: s.string(),
});
export type FieldError = s.Infer<typeof FieldErrorSchema>;
export type WizardField = FieldError['field'];

/**
 * What the hardware details editor sends: the editable part of a definition. Loosely
 * typed on purpose (numbers need not be integers, paths need not exist): the service
 * checks every field and answers with DetailsFieldErrors tied to them.
 */
export const VmEditSchema = s.object({
  name: s.string({ max: 256 }),
  os: s.string({ max: 64 }),
  memoryMiB: s.number(),
  cpus: s.number(),
  boot: s.variant('kind', {
    firmware: s.object({
      kind: s.literal('firmware'),
      order: s.string({ max: 8 }),
      menu: s.optional(s.boolean()),
      menuTimeoutMs: s.optional(s.number({ int: true, min: 0, max: 65535 })),
    }),
    kernel: s.object({
      kind: s.literal('kernel'),
      kernel: s.string({ max: 4096 }),
      initrd: s.optional(s.string({ max: 4096 })),
      append: s.optional(s.string({ max: 4096 })),
      flatAddress: s.optional(s.number({ int: true, min: 0, max: 0xfffff })),
    }),
  }),
  disks: s.array(
    s.object({
      path: s.string({ max: 4096 }),
      format: s.enums(['raw', 'qcow2'] as const),
      media: s.enums(['disk', 'cdrom'] as const),
      bus: s.enums(['ide', 'virtio'] as const),
      readOnly: s.optional(s.boolean()),
    }),
    { max: 32 },
  ),
  nics: s.array(s.object({ mac: s.string({ max: 64 }), network: s.string({ max: 64 }), model: s.enums(NIC_MODELS) }), {
    max: 16,
  }),
  serial: s.object({ logFile: s.optional(s.string({ max: 4096 })) }),
  /** Omitted: unchanged (older clients). */
  autostart: s.optional(s.boolean()),
  /** The display's preferred size; `{}`: the default (1024x768); omitted: unchanged. */
  display: s.optional(s.object({ width: s.optional(s.number()), height: s.optional(s.number()) })),
});
export type VmEdit = s.Infer<typeof VmEditSchema>;

/**
 * A problem tied to one field of the details editor: 'name', 'os', 'memory', 'cpus',
 * 'boot.order', 'boot.kernel', 'boot.initrd', 'disks', 'disks.<i>.path', 'disks.<i>.format',
 * 'disks.<i>.bus', 'nics', 'nics.<i>.mac', 'nics.<i>.network', 'serial.logFile', 'display'.
 */
export const DetailsFieldErrorSchema = s.object({ field: s.string({ max: 64 }), message: s.string() });
export type DetailsFieldError = s.Infer<typeof DetailsFieldErrorSchema>;

/** The editable part of a definition, as the details editor starts from it. */
export function editOf(def: VmDefinition): VmEdit {
  return {
    name: def.name,
    os: def.os,
    memoryMiB: def.memoryMiB,
    cpus: def.cpus,
    boot: def.boot,
    disks: def.disks,
    nics: def.nics,
    serial: def.serial ?? {},
    autostart: !!def.autostart,
    display: def.display ?? {},
  };
}

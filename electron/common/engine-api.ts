// The public face of the native addon (native/binding). Pure types: this file
// runs anywhere (common/). The one file that loads the .node binary is
// electron/engine-host/addon.ts.

export type MachineState = 'created' | 'running' | 'paused' | 'stopped' | 'crashed';

/** Why a machine left the running state. */
export interface StopReason {
  kind:
    | 'exit' // guest wrote to the isa-debug-exit port (0xf4)
    | 'poweroff' // ACPI poweroff / guest shutdown
    | 'reset' // guest asked for a reset and the machine was configured not to reboot
    | 'stopped' // host called stop()
    | 'triple-fault' // KVM_EXIT_SHUTDOWN
    | 'internal-error' // KVM_EXIT_INTERNAL_ERROR (emulation failure...)
    | 'entry-failure' // KVM_EXIT_FAIL_ENTRY
    | 'error'; // host-side error (I/O, configuration)
  /** For 'exit': the value the guest wrote; the CLI exits with (code << 1) | 1. */
  code?: number;
  message: string;
  vcpu?: number;
  rip?: string; // hex
  /** Hex bytes at RIP when they could be read. */
  bytes?: string;
}

export interface StateEvent {
  state: MachineState;
  reason?: StopReason;
}

export interface DiskConfig {
  path: string;
  /** 'raw' | 'qcow2'; probed when absent. */
  format?: string;
  readOnly?: boolean;
  /** Where the disk is attached. */
  bus?: 'ide' | 'virtio';
  /** 'disk' (default) or 'cdrom'. */
  media?: 'disk' | 'cdrom';
  /** Temporary overlay: writes are dropped when the machine stops (QEMU -snapshot). */
  snapshot?: boolean;
}

export interface MachineConfig {
  memoryMiB: number;
  cpus: number;
  /** Direct kernel boot: multiboot v1 ELF / a.out kludge, Linux bzImage, PVH ELF. With `bios` the kernel boots on
   *  the full PC (SeaBIOS, then Vireo's option ROM loads it), with disks, display and input; without, on a bare
   *  machine with serial ports only (tests). */
  kernel?: string;
  initrd?: string;
  append?: string;
  /** A flat binary loaded at `flatAddress` (real mode entry at that address). */
  flat?: string;
  flatAddress?: number;
  /** Firmware boot (the PC): SeaBIOS image and VGA BIOS. */
  bios?: string;
  vgaBios?: string;
  disks?: DiskConfig[];
  /** Boot order like QEMU's: 'c' disk, 'd' cdrom, 'n' network; e.g. 'dc'. */
  bootOrder?: string;
  bootMenu?: boolean;
  /** QEMU's -no-reboot: a guest reset or triple fault stops the machine instead of rebooting. */
  noReboot?: boolean;
  /** Serial output is also delivered as 'serial' events; this only adds a file sink. */
  serialFile?: string;
}

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** A frame update: the whole mode (when it changed) and dirty rectangles in BGRX 32-bit pixels. */
export interface FrameUpdate {
  width: number;
  height: number;
  /** Set when the resolution or format changed since the last update. */
  modeChanged: boolean;
  rects: Array<Rect & { data: Uint8Array }>;
}

export interface NativeMachine {
  start(): void;
  pause(): void;
  resume(): void;
  /** Stops the vCPUs, joins threads, closes fds. Idempotent. */
  stop(): void;
  readonly state: MachineState;
  /** Bytes typed into serial port `port` (0 = COM1). */
  writeSerial(port: number, data: Uint8Array): void;
  onSerial(cb: (port: number, data: Uint8Array) => void): void;
  onState(cb: (ev: StateEvent) => void): void;
  // ---- display and input (the PC board) ----
  /** DOM KeyboardEvent.code names, e.g. 'KeyA', 'Enter', 'ControlLeft'. */
  sendKey(code: string, down: boolean): void;
  /** Named combo: 'ctrl-alt-del', 'ctrl-alt-f1'..'ctrl-alt-f12', 'ctrl-alt-backspace'. */
  sendCombo(name: string): void;
  /** Relative mouse motion, wheel steps, and buttons bitmask (1 left, 2 right, 4 middle). */
  sendMouse(dx: number, dy: number, dz: number, buttons: number): void;
  /** Polls the display; returns null when nothing changed since the last call. */
  pollFrame(full?: boolean): FrameUpdate | null;
  screenshotPng(): Buffer;
  /** Text-mode screen contents, one line per row; '' in graphics modes or without a display. */
  screenText(): string;
  /**
   * Presses the ACPI power button (a polite shutdown request). Returns false when the
   * guest has not enabled the power-button event (no ACPI-aware OS running) or the
   * machine has no PC board; then only a forced stop ends it.
   */
  powerButton(): boolean;
  /** Inserts another ISO in the CD-ROM drive (the guest sees a media change). Throws naming a bad file. */
  changeCdrom(path: string): void;
  /** Ejects the CD; false when the guest has locked the tray (it is told an eject was requested). */
  ejectCdrom(): boolean;
}

export interface NativeAddon {
  Machine: new (config: MachineConfig) => NativeMachine;
  /** Checks /dev/kvm; returns null when usable, else a message saying what to do. */
  kvmProblem(): string | null;
  /** True when /dev/kvm is the kvm_pvm module (ring-0 guest code emulated). */
  kvmIsPvm(): boolean;
}

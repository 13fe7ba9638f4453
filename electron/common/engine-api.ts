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

/** A network card (the PC board: a PCI function at slot 3, 4...). */
export interface NicConfig {
  /** 'virtio' (virtio-net, default) or 'e1000' (Intel 82540EM, for guests without virtio drivers). */
  model?: 'virtio' | 'e1000';
  /** '52:54:00:12:34:56' style; default 52:54:00:12:34:56 + the card's index. */
  mac?: string;
  /**
   * 'user' (default): NAT through libslirp, 10.0.2.15 by DHCP, gateway/host 10.0.2.2, DNS 10.0.2.3.
   * 'switch': a port of an isolated network's switch (NetSwitch) on the UNIX socket `socket`.
   * 'tap': a TAP device on the host bridge `bridge` (or the existing TAP `tap`); needs CAP_NET_ADMIN.
   */
  backend?: 'user' | 'switch' | 'tap';
  /** switch: the switch's socket. */
  socket?: string;
  /** tap: the host bridge the TAP joins. */
  bridge?: string;
  /** tap: an existing (persistent) TAP to use instead of making one. */
  tap?: string;
  /** Cable plugged in at power-on (default true); change it later with setNicLink. */
  linkUp?: boolean;
  /** user: no outside world and no host, only slirp's DHCP/DNS and the port forwards (QEMU's restrict=on). */
  restrict?: boolean;
  /** user: host→guest port forwards in QEMU's syntax, e.g. 'tcp::2222-:22', 'udp:127.0.0.1:5353-:53'. */
  hostfwd?: string[];
  /** user: the guest's IPv4 network 'A.B.C.D/PREFIX' (default 10.0.2.0/24), QEMU's net=. */
  net?: string;
  /** user: the gateway (and the host's loopback) address (default .2 of net), QEMU's host=. */
  host?: string;
  /** user: the first address DHCP hands out (default .15; up to 16 leases), QEMU's dhcpstart=. */
  dhcpStart?: string;
  /** user: slirp's DNS proxy address (default .3), QEMU's dns=. */
  dns?: string;
}

/** One PCI function as the guest sees it (the engine's diagnostic device list). */
export interface PciDeviceInfo {
  slot: number;
  fn: number;
  vendorId: number;
  deviceId: number;
  /** class << 16 | subclass << 8 | prog-if, e.g. 0x020000 Ethernet. */
  classCode: number;
  /** The engine's name for it, e.g. 'virtio-net@3'. */
  name: string;
}

/** machine.perfStats(): counters since power-on for the Performance graphs (rates come from two samples). */
export interface PerfStats {
  vcpus: number;
  /** CPU time the running vCPU threads have used (ns; on kvm_pvm includes KVM's emulation of guest ring 0). */
  cpuNs: number;
  /** Guest RAM configured (bytes). */
  ramBytes: number;
  /** Guest RAM resident in host memory, i.e. touched (bytes); -1 when asked with {memory: false}. */
  residentBytes: number;
  /** Every disk and CD-ROM in MachineConfig.disks order: bytes and requests that completed. */
  disks: { path: string; cdrom: boolean; readBytes: number; readOps: number; writeBytes: number; writeOps: number; flushOps: number }[];
  /** Every NIC in MachineConfig.nics order. */
  nics: { rxBytes: number; rxPackets: number; txBytes: number; txPackets: number }[];
  /**
   * Input a guest that does not read it lost (PC board only): keys dropped past the 4,096
   * waiting for the keyboard, tablet button changes merged past its 16 queued reports.
   */
  input?: { droppedKeys: number; mergedClicks: number };
}

/** Per-NIC counters since power-on. */
export interface NicStats {
  rxPackets: number;
  rxBytes: number;
  /** Frames for the guest dropped: link down, driver not ready, no buffers for too long, too big. */
  rxDropped: number;
  txPackets: number;
  txBytes: number;
  /** Frames from the guest dropped: link down, backend queue full. */
  txDropped: number;
  /** Frames or descriptor chains from the guest that broke the rules (dropped). */
  txMalformed: number;
  /** Receive buffers the guest posted wrongly (read-only, outside RAM). */
  rxBadBuffers: number;
  /** The cable: plugged in (true) or pulled (setNicLink). */
  linkUp: boolean;
  /** Unexpired DHCP leases the NIC's user-mode NAT (libslirp) handed out, seen on the wire; [] for other backends. */
  leases: NicLease[];
}

export interface NicLease {
  mac: string;
  ip: string;
  /** Seconds since the epoch. */
  expires: number;
  hostname?: string;
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
  /** Network cards; none when absent. */
  nics?: NicConfig[];
  /** Boot order like QEMU's: 'c' disk, 'd' cdrom, 'n' network; e.g. 'dc'. */
  bootOrder?: string;
  bootMenu?: boolean;
  /** How long SeaBIOS's "Press ESC for boot menu" waits, in ms (default 2500). */
  bootMenuTimeout?: number;
  /** The machine's UUID (RFC 4122 text): SMBIOS type 1 and fw_cfg under firmware boot. Absent: all zeros. */
  uuid?: string;
  /** QEMU's -no-reboot: a guest reset or triple fault stops the machine instead of rebooting. */
  noReboot?: boolean;
  /** PC board: a USB controller (PIIX3 UHCI) with a USB tablet, the absolute pointer. On unless false. */
  usbTablet?: boolean;
  /** PC board: the display size the std-vga's EDID offers as preferred (default 1024x768). */
  display?: { width: number; height: number };
  /** Serial output is also delivered as 'serial' events; this only adds a file sink. */
  serialFile?: string;
  /** The serial log's size cap before it is rotated (host-core's SERIAL_LOG_MAX_BYTES by default). */
  serialLogMaxBytes?: number;
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
  /** Writes the paused machine's whole state (RAM, vCPUs, devices) to a state file (docs/state.md); throws naming what stops it. */
  saveState(path: string): void;
  /** Before start(): loads a state file saved from a machine with this configuration; throws naming what differs or is wrong. */
  loadState(path: string): void;
  /** Paused (or not started): internal snapshot `name` on every writable qcow2 disk, all or nothing; raw disks refused by name. */
  createDiskSnapshots(name: string): void;
  /** Paused (or not started): deletes internal snapshot `name` from every writable qcow2 disk that has it. */
  deleteDiskSnapshots(name: string): void;
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
  /**
   * The USB tablet: the pointer at framebuffer pixel (x, y), buttons (1 left, 2 right, 4 middle,
   * 8 back, 16 forward), wheel steps (+ up, away from the user) and horizontal steps (+ right).
   * False when the machine has no tablet.
   */
  sendPointer(x: number, y: number, buttons: number, wheel: number, hwheel: number): boolean;
  /** The guest drives the tablet (configured it and polls it): consoles then send absolute positions. */
  tabletActive(): boolean;
  /**
   * PC board: the display size the EDID offers as preferred from now on (guests see it when
   * they probe modes again). False when the engine refuses the size (see MachineConfig.display).
   */
  setDisplaySize(width: number, height: number): boolean;
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
  /** Link up/down on NIC `index` (a cable plugged or pulled; the guest is told). False for no such NIC. */
  setNicLink(index: number, up: boolean): boolean;
  /** Counters of every NIC, in MachineConfig.nics order ([] once the machine is released). */
  nicStats(): NicStats[];
  /** Guest CPU time, touched RAM, per-disk and per-NIC counters in one call; {memory: false} skips the mincore() scan. */
  perfStats(opts?: { memory?: boolean }): PerfStats;
  /** Every PCI function on bus 0 (IDs and class read through config space); [] without the PC board. */
  pciDevices(): PciDeviceInfo[];
}

export interface NativeAddon {
  Machine: new (config: MachineConfig) => NativeMachine;
  /** Checks /dev/kvm; returns null when usable, else a message saying what to do. */
  kvmProblem(): string | null;
  /** True when /dev/kvm is the kvm_pvm module (ring-0 guest code emulated). */
  kvmIsPvm(): boolean;
  /** The UID at the other end of a connected UNIX socket (SO_PEERCRED); the service's socket checks it. */
  peerUid?(fd: number): number;
  /**
   * Confines the calling process for running a guest (native/core/sandbox/confine.h): no_new_privs,
   * a seccomp filter refusing exec/ptrace/modules/mounts/..., no core files. Irreversible.
   */
  confine?(): { noNewPrivs: boolean; seccomp: boolean; coreLimit: boolean; problems: string[] };
  /** An isolated network's switch (native/core/net/switch.h); absent in engines built before it. */
  NetSwitch?: new (options: NetSwitchOptions) => NativeSwitch;
}

export interface NetSwitchOptions {
  /** The UNIX socket to listen on (replaced when it exists). */
  path: string;
  /** DHCP from the switch: its own address, the prefix, the range; router/dns left out when absent. */
  dhcp?: { server: string; prefix: number; start: string; end: string; router?: string; dns?: string; leaseSeconds?: number };
}

export interface NativeSwitch {
  stop(): void;
  counters(): { frames: number; forwarded: number; flooded: number; droppedMalformed: number; droppedFull: number; dhcpReplies: number; ports: number };
  leases(): Array<{ mac: string; ip: string; expires: number; hostname?: string }>;
}

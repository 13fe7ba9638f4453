// The engine supervisor: one engine host process per running VM (like one QEMU per
// domain). It starts hosts through a Launcher (child_process.fork under plain Node,
// utilityProcess under Electron), relays control messages, and turns how a host
// ended into a typed exit reason: shut down, crashed (with the engine's reason), or
// killed (by a signal).
import type { MachineConfig, NicStats, PciDeviceInfo } from '../common/engine-api';
import type { PerfSample } from '../common/contracts/engine-host';
import { type FromHost, FromHostSchema, type StopReasonMsg, type ToHost } from '../common/contracts/engine-host';
import type { ExitReason } from '../common/contracts/vm';

/** One running engine host, whatever started it. */
export interface HostChannel {
  readonly pid: number | undefined;
  send(msg: ToHost): void;
  onMessage(cb: (msg: unknown) => void): void;
  onExit(cb: (code: number | null, signal: string | null) => void): void;
  kill(signal: 'SIGTERM' | 'SIGKILL'): void;
  /** Electron: hand a MessagePort to the host so console bytes skip the main process. */
  attachPort?(sid: number, port: unknown): void;
}

export type Launcher = (vmUuid: string) => HostChannel;

/** 'shuttingdown': the ACPI power button was pressed and the guest is shutting itself down. */
export type RunState = 'starting' | 'running' | 'paused' | 'shuttingdown';

export interface SupervisorEvents {
  state(uuid: string, state: RunState | 'shutoff' | 'crashed', exit?: ExitReason): void;
  /** Once a second: guest CPU %, touched RAM (MiB) and the engine's cumulative counters (perf). */
  stats(uuid: string, cpuPercent: number, memoryMiB: number, perf?: PerfSample): void;
  /** A hint for the user about a running VM (a Shut Down the guest has not acted on), or null to clear it. */
  notice?(uuid: string, message: string | null): void;
}

/** A console's view of a running VM: bytes in stream.ts format both ways. */
export interface StreamHandle {
  send(data: Uint8Array): void;
  onData(cb: (data: Uint8Array) => void): void;
  onClose(cb: (why: string) => void): void;
  close(): void;
}

interface Running {
  uuid: string;
  host: HostChannel;
  state: RunState;
  lastStop?: StopReasonMsg;
  lastError?: string;
  startWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }>;
  /** Requests to the host waiting for their answer (screenshot, media, devices, nics, save, snapshot), by reqId. */
  asks: Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>;
  streams: Map<number, { data: (d: Uint8Array) => void; close: (why: string) => void }>;
  killedByUs?: boolean;
  /** Force Off / quit asked the host to stop now: the exit reason says so. */
  forced?: 'forceoff' | 'quit' | 'save';
  acpiWaiters: Array<{ resolve: (r: { accepted: boolean; message?: string }) => void }>;
  shutdownTimer?: ReturnType<typeof setTimeout>;
  exited: Promise<void>;
  markExited: () => void;
  /** Why the supervisor ended this host (a start that never answered): the exit reason says so. */
  failure?: string;
  startTimer?: ReturnType<typeof setTimeout>;
}

/** How long a start may take before the host is killed and the start fails. */
export const START_TIMEOUT_MS = 30_000;
/** Shut Down: after this long without the guest powering off, the user is offered Force Off (nothing is killed). */
export const SHUTDOWN_HINT_MS = 120_000;
/** Force Off / quit: how long a host gets to stop gracefully (flush, close) before SIGKILL. */
export const STOP_GRACE_MS = 15_000;
export const SHUTDOWN_HINT = 'The guest has not responded to the power button. Force Off?';

const SIGNAL_MEANING: Record<string, string> = {
  SIGSEGV: 'segmentation fault',
  SIGBUS: 'bus error',
  SIGILL: 'illegal instruction',
  SIGFPE: 'arithmetic exception',
  SIGABRT: 'aborted',
  SIGSYS: 'bad system call',
  SIGTRAP: 'trace trap',
  SIGKILL: 'killed by another process or the out-of-memory killer',
  SIGTERM: 'terminated by another process',
};

/**
 * How a host ended, as the user sees it. A signal the supervisor sent (Force Off, app
 * quit, the stop grace period) is `killed`; any other signal (SIGSEGV, SIGABRT, the
 * OOM killer's SIGKILL, ...) is a crash of the engine host, with the signal's name.
 */
export function exitReasonOf(
  code: number | null,
  signal: string | null,
  stop?: StopReasonMsg,
  lastError?: string,
  killedByUs = true,
  failure?: string,
  forced?: 'forceoff' | 'quit' | 'save',
): ExitReason {
  if (failure) return { kind: 'crashed', reason: failure };
  if (signal && !killedByUs) {
    const what = SIGNAL_MEANING[signal];
    return { kind: 'crashed', reason: `the engine host died of ${signal}${what ? ` (${what})` : ''}` };
  }
  if (stop) {
    if (stop.kind === 'stopped' && forced) return { kind: 'shutdown', detail: forced === 'quit' ? 'stopped when Vireo quit' : forced === 'save' ? 'saved' : 'forced off' };
    switch (stop.kind) {
      case 'poweroff':
        return { kind: 'shutdown', detail: 'the guest powered off' };
      case 'stopped':
        return { kind: 'shutdown', detail: 'shut down from Vireo' };
      case 'exit':
        return { kind: 'shutdown', detail: `the guest exited with code ${stop.code ?? 0}` };
      case 'reset':
        return { kind: 'shutdown', detail: 'the guest reset' };
      default:
        return { kind: 'crashed', reason: `${stop.kind}: ${stop.message}`, ...(stop.rip ? { rip: stop.rip } : {}) };
    }
  }
  if (signal) return { kind: 'killed', signal };
  if (code === 0) return { kind: 'shutdown', detail: 'the engine host exited' };
  return { kind: 'crashed', reason: lastError ?? `the engine host exited with code ${code}` };
}

export class Supervisor {
  private readonly running = new Map<string, Running>();
  private nextId = 1;

  constructor(
    private readonly launch: Launcher,
    private readonly events: SupervisorEvents,
    private readonly opts: { startTimeoutMs?: number; shutdownHintMs?: number; stopGraceMs?: number } = {},
  ) {}

  stateOf(uuid: string): RunState | undefined {
    return this.running.get(uuid)?.state;
  }

  isRunning(uuid: string): boolean {
    return this.running.has(uuid);
  }

  /** Starts a host and the machine in it; resolves once the machine runs. */
  start(uuid: string, config: MachineConfig, restore?: string): Promise<void> {
    if (this.running.has(uuid)) return Promise.reject(new Error('the VM is already running'));
    const host = this.launch(uuid);
    let markExited = () => undefined as void;
    const exited = new Promise<void>((res) => (markExited = res));
    const r: Running = { uuid, host, state: 'starting', startWaiters: [], asks: new Map(), streams: new Map(), acpiWaiters: [], exited, markExited };
    this.running.set(uuid, r);
    this.events.state(uuid, 'starting');
    host.onMessage((raw) => this.onMessage(r, raw));
    host.onExit((code, signal) => this.onExit(r, code, signal));
    const started = new Promise<void>((resolve, reject) => r.startWaiters.push({ resolve, reject }));
    // A start that never answers (a host stuck before or in the machine's start) fails
    // with a clear error, and the stuck host is killed: the exit reason says why.
    const ms = this.opts.startTimeoutMs ?? START_TIMEOUT_MS;
    r.startTimer = setTimeout(() => {
      if (this.running.get(uuid) !== r || r.state !== 'starting') return;
      r.failure = `the engine did not start the machine within ${Math.round(ms / 1000)} s; its host process (pid ${host.pid ?? '?'}) was killed`;
      const err = new Error(r.failure);
      for (const w of r.startWaiters.splice(0)) w.reject(err);
      host.kill('SIGKILL');
    }, ms);
    r.startTimer.unref?.();
    host.send({ t: 'start', config, ...(restore ? { restore } : {}) });
    return started;
  }

  pause(uuid: string): void {
    this.need(uuid).host.send({ t: 'pause' });
  }
  resume(uuid: string): void {
    this.need(uuid).host.send({ t: 'resume' });
  }
  /** Reboot: a request to the guest (ctrl-alt-del); an OS restarts, firmware resets. */
  reboot(uuid: string): void {
    this.need(uuid).host.send({ t: 'reboot' });
  }
  /** Reset: the board's reset line (a fresh machine in the same host, like the reset button). */
  reset(uuid: string): void {
    this.need(uuid).host.send({ t: 'reset' });
  }

  /**
   * Shut Down: presses the ACPI power button and waits for the guest to power off by
   * itself (state 'shuttingdown'); nothing is ever killed. Rejects, changing nothing,
   * when the guest has not enabled ACPI. After shutdownHintMs without a power-off the
   * user gets a notice offering Force Off.
   */
  async shutdown(uuid: string): Promise<void> {
    const r = this.need(uuid);
    if (r.state === 'starting') throw new Error('the VM is still starting');
    if (r.state === 'paused') throw new Error('the VM is paused: resume it so the guest can react to the power button');
    const reply = await new Promise<{ accepted: boolean; message?: string }>((resolve) => {
      r.acpiWaiters.push({ resolve });
      r.host.send({ t: 'powerButton' });
    });
    if (this.running.get(uuid) !== r) throw new Error('the VM stopped');
    if (!reply.accepted) {
      throw new Error(`${reply.message ?? 'the guest did not take the power button'}. Use Force Off to stop it now.`);
    }
    if (r.state !== 'shuttingdown') {
      r.state = 'shuttingdown';
      this.events.state(uuid, 'shuttingdown');
    }
    clearTimeout(r.shutdownTimer);
    r.shutdownTimer = setTimeout(() => {
      if (this.running.get(uuid) === r && r.state === 'shuttingdown') this.events.notice?.(uuid, SHUTDOWN_HINT);
    }, this.opts.shutdownHintMs ?? SHUTDOWN_HINT_MS);
    r.shutdownTimer.unref?.();
  }

  /**
   * Force Off: the host stops the machine now, after completing disk I/O and flushing
   * what it can ('stop'); SIGKILL only if it has not exited within the grace period.
   */
  forceOff(uuid: string): Promise<void> {
    return this.stopHost(this.need(uuid), 'forceoff');
  }

  /**
   * Managed save: the host pauses the machine, writes its state to `file`, then stops it and
   * exits. Resolves once the host has exited (the VM is off, its state on disk); rejects with
   * the engine's error, the VM still running.
   */
  async save(uuid: string, file: string, written?: () => void, timeoutMs = 10 * 60_000): Promise<void> {
    const r = this.need(uuid);
    if (r.state === 'starting') throw new Error('the VM is still starting');
    await this.ask<void>(r, (reqId) => ({ t: 'save', reqId, path: file }), 'save request', timeoutMs);
    written?.();
    await this.stopHost(r, 'save', false);
  }

  /**
   * Snapshot of a running VM (the host pauses it for the capture and resumes it): 'create'
   * writes the state to statePath when given and makes internal snapshot `name` on every
   * writable qcow2 disk; 'delete' removes it from the disks. Rejects with the engine's error.
   */
  async snapshot(uuid: string, op: 'create' | 'delete', name: string, statePath?: string, timeoutMs = 10 * 60_000): Promise<void> {
    const r = this.need(uuid);
    if (r.state === 'starting') throw new Error('the VM is still starting');
    await this.ask<void>(r, (reqId) => ({ t: 'snapshot', reqId, op, name, ...(statePath ? { statePath } : {}) }), 'snapshot request', timeoutMs);
  }

  /** Kills the host process at once (SIGKILL): only for a host that does not answer. */
  kill(uuid: string): void {
    const r = this.need(uuid);
    r.killedByUs = true;
    r.host.kill('SIGKILL');
  }

  /** send=false: the host is already stopping by itself (after a save); only the grace period applies. */
  private stopHost(r: Running, why: 'forceoff' | 'quit' | 'save', send = true): Promise<void> {
    r.forced ??= why;
    if (!send) {
      /* the host stops on its own */
    } else if (why === 'quit') r.host.kill('SIGTERM'); // the host stops gracefully on SIGTERM, as on 'stop'
    else r.host.send({ t: 'stop' });
    const timer = setTimeout(() => {
      if (this.running.get(r.uuid) !== r) return;
      r.killedByUs = true;
      r.host.kill('SIGKILL');
    }, this.opts.stopGraceMs ?? STOP_GRACE_MS);
    timer.unref?.();
    return r.exited.finally(() => clearTimeout(timer));
  }

  screenshot(uuid: string, timeoutMs = 10000): Promise<Uint8Array> {
    return this.ask(this.need(uuid), (reqId) => ({ t: 'screenshot', reqId }), 'screenshot request', timeoutMs);
  }

  /**
   * Live CD change in the running machine: insert the ISO at path, or eject (null).
   * Resolves with `ejected` (false: the guest locked the tray); rejects with the engine's error.
   */
  changeMedia(uuid: string, path: string | null, timeoutMs = 10000): Promise<{ ejected?: boolean }> {
    return this.ask(this.need(uuid), (reqId) => ({ t: 'media', reqId, path }), 'media change', timeoutMs);
  }

  /** The running machine's PCI functions, as the guest's config cycles see them. */
  devices(uuid: string, timeoutMs = 10000): Promise<PciDeviceInfo[]> {
    return this.ask(this.need(uuid), (reqId) => ({ t: 'devices', reqId }), 'device list request', timeoutMs);
  }

  /** The running machine's NICs (link, counters, NAT leases); with `link`, plug or pull that NIC's cable first. */
  nics(uuid: string, link?: { index: number; up: boolean }, timeoutMs = 10000): Promise<NicStats[]> {
    return this.ask(this.need(uuid), (reqId) => ({ t: 'nics', reqId, ...(link ? { link } : {}) }), 'network card request', timeoutMs);
  }

  /**
   * One request to the host and its answer (matched by reqId): rejects with the engine's error,
   * "the engine did not answer the <what>" after timeoutMs, or the VM's end when the host exits first.
   */
  private ask<T>(r: Running, msg: (reqId: number) => ToHost, what: string, timeoutMs: number): Promise<T> {
    const reqId = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        r.asks.delete(reqId);
        reject(new Error(`the engine did not answer the ${what}`));
      }, timeoutMs);
      timer.unref?.();
      r.asks.set(reqId, {
        resolve: (v) => (clearTimeout(timer), resolve(v as T)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      r.host.send(msg(reqId));
    });
  }

  /** The host's answer to ask(): an error message, or the value. */
  private answer(r: Running, reqId: number, error: string | undefined, value?: unknown): void {
    const w = r.asks.get(reqId);
    r.asks.delete(reqId);
    if (!w) return;
    if (error !== undefined) w.reject(new Error(error));
    else w.resolve(value);
  }

  openStream(uuid: string): StreamHandle {
    const r = this.need(uuid);
    const sid = this.nextId++;
    let dataCb: (d: Uint8Array) => void = () => undefined;
    let closeCb: (why: string) => void = () => undefined;
    let open = true;
    r.streams.set(sid, { data: (d) => dataCb(d), close: (why) => ((open = false), closeCb(why)) });
    r.host.send({ t: 'openStream', sid });
    return {
      send: (data) => {
        if (open && this.running.get(uuid) === r) r.host.send({ t: 'stream', sid, data });
      },
      onData: (cb) => (dataCb = cb),
      onClose: (cb) => (closeCb = cb),
      close: () => {
        if (!open) return;
        open = false;
        r.streams.delete(sid);
        if (this.running.get(uuid) === r) r.host.send({ t: 'closeStream', sid });
      },
    };
  }

  /** Gives the engine host one end of a MessagePort for a console (Electron only). */
  attachPort(uuid: string, port: unknown): boolean {
    const r = this.need(uuid);
    if (!r.host.attachPort) return false;
    r.host.attachPort(this.nextId++, port);
    return true;
  }

  /**
   * App quit: every host gets SIGTERM (the engine stops its machine, flushes and closes
   * the images, exits 0); one that is still there after the grace period is killed.
   * Resolves once all are gone, with what happened to each.
   */
  async shutdownAll(): Promise<Array<{ uuid: string; how: 'stopped' | 'killed' }>> {
    const all = [...this.running.values()];
    return Promise.all(
      all.map(async (r) => {
        await this.stopHost(r, 'quit');
        return { uuid: r.uuid, how: r.killedByUs ? ('killed' as const) : ('stopped' as const) };
      }),
    );
  }

  private need(uuid: string): Running {
    const r = this.running.get(uuid);
    if (!r) throw new Error('the VM is not running');
    return r;
  }

  private onMessage(r: Running, raw: unknown): void {
    let msg: FromHost;
    try {
      msg = FromHostSchema.parse(raw, 'host message');
    } catch (e) {
      r.failure = `bad message from the engine host: ${(e as Error).message}`;
      r.host.kill('SIGKILL');
      return;
    }
    switch (msg.t) {
      case 'ready':
        break;
      case 'state':
        if (msg.state === 'running' || msg.state === 'paused') {
          // A reset or reboot during a Shut Down leaves it shutting down (the power button was pressed).
          if (!(r.state === 'shuttingdown' && msg.state === 'running')) r.state = msg.state;
          else break;
          clearTimeout(r.startTimer);
          for (const w of r.startWaiters.splice(0)) w.resolve();
          this.events.state(r.uuid, msg.state);
        } else if (msg.state === 'stopped' || msg.state === 'crashed') {
          if (msg.reason) r.lastStop = msg.reason;
        }
        break;
      case 'stats':
        this.events.stats(r.uuid, msg.cpuPercent, msg.memoryMiB, msg.perf);
        break;
      case 'screenshot':
        this.answer(r, msg.reqId, msg.png ? undefined : msg.error ?? 'no screenshot', msg.png);
        break;
      case 'media':
        this.answer(r, msg.reqId, msg.error, msg.ejected !== undefined ? { ejected: msg.ejected } : {});
        break;
      case 'devices':
        this.answer(r, msg.reqId, msg.pci ? undefined : msg.error ?? 'no device list', msg.pci);
        break;
      case 'nics':
        this.answer(r, msg.reqId, msg.nics ? undefined : msg.error ?? 'no network card list', msg.nics);
        break;
      case 'saved':
        if (msg.error === undefined) r.forced = 'save';
        this.answer(r, msg.reqId, msg.error);
        break;
      case 'snapshot':
        this.answer(r, msg.reqId, msg.error);
        break;
      case 'error':
        r.lastError = msg.message;
        break;
      case 'acpi':
        r.acpiWaiters.shift()?.resolve({ accepted: msg.accepted, ...(msg.message !== undefined ? { message: msg.message } : {}) });
        break;
      case 'stream':
        r.streams.get(msg.sid)?.data(msg.data);
        break;
    }
  }

  private onExit(r: Running, code: number | null, signal: string | null): void {
    if (this.running.get(r.uuid) !== r) return;
    this.running.delete(r.uuid);
    clearTimeout(r.startTimer);
    clearTimeout(r.shutdownTimer);
    for (const w of r.acpiWaiters.splice(0)) w.resolve({ accepted: false, message: 'the VM stopped' });
    const reason = exitReasonOf(code, signal, r.lastStop, r.lastError, r.killedByUs ?? false, r.failure, r.forced);
    const err = new Error(reason.kind === 'crashed' ? reason.reason : reason.kind === 'killed' ? `killed by ${reason.signal}` : reason.detail);
    for (const w of r.startWaiters.splice(0)) w.reject(err);
    for (const w of r.asks.values()) w.reject(err);
    r.asks.clear();
    for (const s of r.streams.values()) s.close(err.message);
    r.streams.clear();
    this.events.state(r.uuid, reason.kind === 'crashed' ? 'crashed' : 'shutoff', reason);
    r.markExited();
  }
}

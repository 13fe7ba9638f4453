// The Electron app as a client of the per-user Vireo service (service-host.ts): the
// windows' IPC goes to the service over its UNIX socket, the service's events go to
// every window, and a console window's MessagePort is joined to a stream on the
// service's socket (as `vireo serve` joins a WebSocket to one, ws-bridge.ts). The VMs
// live in the service: closing this bridge (quitting the app) leaves them running.
//
// No 'electron' import here: main.ts hands in ipcMain, MessageChannelMain and the
// windows through the small interfaces below, and the unit test hands in Node's own
// MessageChannel and fakes of the rest (electron/main/__tests__/service-bridge.test.ts).
import { type EventName, IPC, type ReplyEnvelope, RequestEnvelope, api, isMethod } from '../common/contracts/api';
import { UUID_PATTERN } from '../common/contracts/vm';
import type { RpcClient } from '../services/rpc-socket';
import type { StreamHandle } from '../services/supervisor';
import { nodeServiceCommand } from '../services/service-host';
import { SERVICE_FLAG } from './launch-mode';

/** The channel the preload listens on for a console's port (preload.ts). */
export const STREAM_PORT_CHANNEL = 'vireo:stream-port';

/** What the bridge uses of an IPC event: who sent it, and a way to answer with a port. */
export interface BridgeIpcEvent {
  senderFrame?: { url: string } | null;
  sender: { postMessage(channel: string, message: unknown, transfer?: never[]): void };
}

/** The last message on a console port before it closes: why (the VM stopped, is not running, the service went). */
export interface PortClosed {
  t: 'closed';
  why: string;
}

/** What the bridge uses of ipcMain. */
export interface BridgeIpc {
  handle(channel: string, listener: (e: BridgeIpcEvent, arg: unknown) => unknown): void;
  removeHandler(channel: string): void;
  on(channel: string, listener: (e: BridgeIpcEvent, arg: unknown) => void): void;
  removeListener(channel: string, listener: (e: BridgeIpcEvent, arg: unknown) => void): void;
}

/** This process's end of a MessageChannel (MessagePortMain in the app, adapted). */
export interface LocalPort {
  /** stream.ts bytes, or the last message: { t: 'closed', why }. */
  postMessage(data: Uint8Array | PortClosed): void;
  onMessage(cb: (data: unknown) => void): void;
  onClose(cb: () => void): void;
  start(): void;
  close(): void;
}

export interface BridgeOptions {
  /** A client of the service: ensureService() (started when none runs). Called again when the connection is lost. */
  connect: () => Promise<RpcClient>;
  ipc: BridgeIpc;
  /** A new channel: our end, and the end that goes to the window (MessagePortMain). */
  newChannel: () => { local: LocalPort; remote: unknown };
  /** The windows that get events. */
  windows: () => Iterable<{ send(channel: string, message: unknown): void }>;
  /** Whether an IPC message comes from a Vireo window (windows.ts isAppUrl). */
  trusted: (e: BridgeIpcEvent) => boolean;
  /** Opens (or focuses) a VM's console window. */
  openConsole: (uuid: string, name: string) => void;
  log?: (line: string) => void;
  /** Reconnect delays after the service is lost, in ms (the last repeats). */
  retryMs?: number[];
}

export interface ServiceBridge {
  /** The connection in use, or null while (re)connecting. */
  client(): RpcClient | null;
  /** Resolves when connected again after a loss (at once when connected). */
  connected(): Promise<void>;
  /** Stops forwarding and disconnects. The service and its VMs keep running. */
  close(): void;
}

// The argument that makes the app's binary the headless service (main.ts asks launch-mode.ts).
export { SERVICE_FLAG };

/**
 * How a client starts the service. Under Electron: the app's own binary with
 * --vireo-service (its main process then runs the service without windows and
 * starts engine hosts as utility processes), so the packaged binary keeps the
 * runAsNode fuse off; an unpackaged app passes its directory first, as `electron .`
 * does. Under Node: `node bin/vireo.js service`.
 */
export function serviceCommand(
  execPath: string,
  appRoot: string,
  host: { electron: boolean; packaged?: boolean } = { electron: !!process.versions.electron },
): { file: string; args: string[]; env: NodeJS.ProcessEnv } {
  if (host.electron) return { file: execPath, args: [...(host.packaged ? [] : [appRoot]), SERVICE_FLAG], env: {} };
  return nodeServiceCommand(execPath, appRoot);
}

const refuse = (id: number, message: string, code: string): ReplyEnvelope => ({ t: 'error', id, message, code }) as ReplyEnvelope;

/**
 * Checks a window's call against the contract before it leaves this process (the
 * service checks it again): the envelope, the method, the params. Returns the
 * refusal, or null when it may go.
 */
export function checkCall(raw: unknown): ReplyEnvelope | null {
  let env: RequestEnvelope;
  try {
    env = RequestEnvelope.parse(raw, 'request');
  } catch (e) {
    const id = typeof (raw as { id?: unknown })?.id === 'number' ? (raw as { id: number }).id : -1;
    return refuse(id, (e as Error).message, 'bad-request');
  }
  if (!isMethod(env.method)) return refuse(env.id, `unknown method '${env.method}'`, 'bad-request');
  try {
    api[env.method].params.parse(env.params, 'params');
  } catch (e) {
    return refuse(env.id, (e as Error).message, 'invalid');
  }
  return null;
}

/** A stream's bytes as their own buffer: a view into a larger one would be cloned whole. */
function own(d: Uint8Array): Uint8Array {
  return d.byteOffset === 0 && d.byteLength === d.buffer.byteLength ? d : d.slice();
}

export async function startServiceBridge(opts: BridgeOptions): Promise<ServiceBridge> {
  const log = opts.log ?? ((l: string) => console.error(l));
  const retry = opts.retryMs ?? [250, 1000, 2000, 5000];
  let client: RpcClient | null = null;
  let closed = false;
  let waiters: Array<() => void> = [];
  const streams = new Set<{ st: StreamHandle; port: LocalPort }>();

  const broadcast = (name: EventName, payload: unknown) => {
    for (const w of opts.windows()) {
      try {
        w.send(IPC.event, { name, payload });
      } catch {
        /* a window going away */
      }
    }
  };

  const adopt = (c: RpcClient) => {
    client = c;
    // Events arrive already checked against the contract (RpcClient parses them).
    c.onEvent((name, payload) => broadcast(name, payload));
    c.onClose((why) => {
      if (client !== c) return;
      client = null;
      if (closed) return;
      log(`vireo: lost the Vireo service (${why}); reconnecting`);
      void reconnect();
    });
    for (const w of waiters.splice(0)) w();
  };

  const reconnect = async () => {
    for (let i = 0; !closed; i++) {
      await new Promise((r) => setTimeout(r, retry[Math.min(i, retry.length - 1)]));
      if (closed) return;
      try {
        const c = await opts.connect();
        if (closed) return c.close();
        log('vireo: connected to the Vireo service again');
        return adopt(c);
      } catch (e) {
        log(`vireo: the Vireo service: ${(e as Error).message}`);
      }
    }
  };

  adopt(await opts.connect());

  const onCall = async (e: BridgeIpcEvent, raw: unknown): Promise<ReplyEnvelope> => {
    const id = typeof (raw as { id?: unknown })?.id === 'number' ? (raw as { id: number }).id : -1;
    if (!opts.trusted(e)) return refuse(-1, 'refused: not a Vireo window', 'forbidden');
    const bad = checkCall(raw);
    if (bad) return bad;
    const c = client;
    if (!c) return refuse(id, 'the Vireo service is not reachable (reconnecting); try again in a moment', 'unavailable');
    const reply = await c.call(raw);
    if (reply.t === 'result') {
      const method = (raw as RequestEnvelope).method as keyof typeof api;
      try {
        return { t: 'result', id: reply.id, value: api[method].result.parse(reply.value, 'result') };
      } catch (err) {
        return refuse(reply.id, `the service's answer is off the contract: ${(err as Error).message}`, 'internal');
      }
    }
    return reply;
  };

  const onOpenStream = (e: BridgeIpcEvent, uuid: unknown) => {
    if (!opts.trusted(e) || typeof uuid !== 'string' || !UUID_PATTERN.test(uuid)) return;
    const c = client;
    if (!c) return;
    const { local, remote } = opts.newChannel();
    const st = c.openStream(uuid);
    const entry = { st, port: local };
    streams.add(entry);
    let open = true;
    const end = (why?: string) => {
      if (!open) return;
      open = false;
      streams.delete(entry);
      st.close();
      if (why !== undefined) local.postMessage({ t: 'closed', why });
      local.close();
    };
    st.onData((d) => {
      if (open) local.postMessage(own(d));
    });
    // The VM stopped, the service went, or it refused the stream (not running): the window's port closes.
    st.onClose((why) => end(why));
    local.onMessage((d) => {
      if (open && d instanceof Uint8Array) st.send(d);
    });
    local.onClose(() => end());
    local.start();
    try {
      e.sender.postMessage(STREAM_PORT_CHANNEL, { uuid }, [remote as never]);
    } catch {
      end();
    }
  };

  const onOpenConsole = (e: BridgeIpcEvent, uuid: unknown) => {
    if (!opts.trusted(e) || typeof uuid !== 'string' || !UUID_PATTERN.test(uuid)) return;
    const c = client;
    if (!c) return;
    c.request('vm.get', { uuid }).then(
      (vm) => !closed && opts.openConsole(uuid, vm.name),
      () => undefined, // deleted meanwhile: nothing to open
    );
  };

  opts.ipc.handle(IPC.call, onCall);
  opts.ipc.on(IPC.openStream, onOpenStream);
  opts.ipc.on(IPC.openConsoleWindow, onOpenConsole);

  return {
    client: () => client,
    connected: () => (client ? Promise.resolve() : new Promise<void>((r) => waiters.push(r))),
    close: () => {
      if (closed) return;
      closed = true;
      opts.ipc.removeHandler(IPC.call);
      opts.ipc.removeListener(IPC.openStream, onOpenStream);
      opts.ipc.removeListener(IPC.openConsoleWindow, onOpenConsole);
      for (const s of [...streams]) {
        s.st.close();
        s.port.close();
      }
      streams.clear();
      waiters = [];
      const c = client;
      client = null;
      c?.close();
    },
  };
}

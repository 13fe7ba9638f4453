// The renderer's only way out: the typed contract over whichever transport this
// window has. Electron: window.vireo from the preload (IPC + MessagePorts).
// Browser mode: WebSockets to `vireo serve`, token from this page's URL.
// Replies and events are validated here too: a bad message is dropped, never used.
import {
  type EventName,
  type EventPayload,
  type Method,
  type Params,
  type Result,
  ReplyEnvelope,
  isEvent,
  parseEvent,
  parseResult,
} from '../../../electron/common/contracts/api';
import { type HostToUi, type UiToHost, decodeHostToUi, encodeUiToHost } from '../../../electron/common/contracts/stream';

export interface ConsoleStream {
  send(m: UiToHost): void;
  onMessage(cb: (m: HostToUi) => void): void;
  onClose(cb: (why: string) => void): void;
  close(): void;
}

export interface VireoClient {
  readonly kind: 'electron' | 'browser';
  call<M extends Method>(method: M, params: Params<M>): Promise<Result<M>>;
  on<E extends EventName>(name: E, cb: (p: EventPayload<E>) => void): () => void;
  openStream(uuid: string): ConsoleStream;
  openConsole(uuid: string): void;
}

/** What electron/preload exposes as window.vireo. */
export interface PreloadBridge {
  call(method: string, params: unknown): Promise<unknown>;
  onEvent(cb: (name: string, payload: unknown) => void): () => void;
  openStream(uuid: string): void;
  openConsole(uuid: string): void;
}

type Handler = (p: unknown) => void;

class Events {
  private readonly handlers = new Map<string, Set<Handler>>();
  on(name: string, cb: Handler) {
    let set = this.handlers.get(name);
    if (!set) this.handlers.set(name, (set = new Set()));
    set.add(cb);
    return () => void set!.delete(cb);
  }
  emit(name: string, payload: unknown) {
    if (!isEvent(name)) return;
    let checked: unknown;
    try {
      checked = parseEvent(name, payload);
    } catch (e) {
      console.error('vireo: dropped an off-contract event', e);
      return;
    }
    for (const h of this.handlers.get(name) ?? []) h(checked);
  }
}

/** A console stream over the MessagePort the preload hands the page (Electron). */
export function portStream(port: MessagePort): ConsoleStream {
  let msgCb: (m: HostToUi) => void = () => undefined;
  let closeCb: (why: string) => void = () => undefined;
  port.onmessage = (e) => {
    // The main process's last word before it closes the port (the VM stopped, or is not running).
    const last = e.data as { t?: unknown; why?: unknown } | null;
    if (last && typeof last === 'object' && last.t === 'closed' && typeof last.why === 'string') return void closeCb(last.why);
    if (!(e.data instanceof Uint8Array)) return;
    try {
      msgCb(decodeHostToUi(e.data));
    } catch (err) {
      console.error('vireo: bad console message', err);
    }
  };
  port.start();
  return {
    send: (m) => port.postMessage(encodeUiToHost(m)),
    onMessage: (cb) => (msgCb = cb),
    onClose: (cb) => (closeCb = cb),
    close: () => {
      port.close();
      closeCb('closed');
    },
  };
}

export class ElectronClient implements VireoClient {
  readonly kind = 'electron' as const;
  private readonly events = new Events();
  constructor(private readonly bridge: PreloadBridge) {
    bridge.onEvent((name, payload) => this.events.emit(name, payload));
  }
  async call<M extends Method>(method: M, params: Params<M>): Promise<Result<M>> {
    return parseResult(method, await this.bridge.call(method, params));
  }
  on<E extends EventName>(name: E, cb: (p: EventPayload<E>) => void) {
    return this.events.on(name, cb as Handler);
  }
  openStream(uuid: string): ConsoleStream {
    // The preload posts the MessagePort (engine host <-> this window) to the page.
    let real: ConsoleStream | undefined;
    const pending: UiToHost[] = [];
    let msgCb: (m: HostToUi) => void = () => undefined;
    let closeCb: (why: string) => void = () => undefined;
    const onPort = (e: MessageEvent) => {
      if (e.source !== window || (e.data as { type?: string; uuid?: string })?.type !== 'vireo-stream') return;
      if ((e.data as { uuid: string }).uuid !== uuid || !e.ports[0]) return;
      window.removeEventListener('message', onPort);
      real = portStream(e.ports[0]);
      real.onMessage(msgCb);
      real.onClose(closeCb);
      for (const m of pending.splice(0)) real.send(m);
    };
    window.addEventListener('message', onPort);
    this.bridge.openStream(uuid);
    return {
      send: (m) => (real ? real.send(m) : pending.push(m)),
      onMessage: (cb) => ((msgCb = cb), real?.onMessage(cb)),
      onClose: (cb) => ((closeCb = cb), real?.onClose(cb)),
      close: () => (real ? real.close() : window.removeEventListener('message', onPort)),
    };
  }
  openConsole(uuid: string) {
    this.bridge.openConsole(uuid);
  }
}

export class WebSocketClient implements VireoClient {
  readonly kind = 'browser' as const;
  private ws: WebSocket | undefined;
  private ready: Promise<WebSocket> | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly events = new Events();

  constructor(
    private readonly base: string,
    private readonly token: string,
  ) {}

  private connect(): Promise<WebSocket> {
    if (this.ready) return this.ready;
    this.ready = new Promise((resolve, reject) => {
      const ws = new WebSocket(`${this.base}/api?token=${encodeURIComponent(this.token)}`);
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error('cannot reach the Vireo service'));
      ws.onclose = () => {
        this.ready = undefined;
        for (const p of this.pending.values()) p.reject(new Error('the connection to Vireo closed'));
        this.pending.clear();
        document.documentElement.dataset.vireoConnection = 'closed';
      };
      ws.onmessage = (e) => this.onMessage(e.data);
      this.ws = ws;
    });
    return this.ready;
  }

  private onMessage(data: unknown) {
    let env: ReplyEnvelope;
    try {
      env = ReplyEnvelope.parse(JSON.parse(String(data)));
    } catch (e) {
      console.error('vireo: bad reply', e);
      return;
    }
    if (env.t === 'event') return this.events.emit(env.name, env.payload);
    const p = this.pending.get(env.id);
    if (!p) return;
    this.pending.delete(env.id);
    if (env.t === 'result') p.resolve(env.value);
    else p.reject(new Error(env.message));
  }

  async call<M extends Method>(method: M, params: Params<M>): Promise<Result<M>> {
    const ws = await this.connect();
    const id = this.nextId++;
    const value = await new Promise<unknown>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ t: 'call', id, method, params }));
    });
    return parseResult(method, value);
  }

  on<E extends EventName>(name: E, cb: (p: EventPayload<E>) => void) {
    void this.connect();
    return this.events.on(name, cb as Handler);
  }

  openStream(uuid: string): ConsoleStream {
    const ws = new WebSocket(`${this.base}/stream?token=${encodeURIComponent(this.token)}&vm=${encodeURIComponent(uuid)}`);
    ws.binaryType = 'arraybuffer';
    const pending: Uint8Array[] = [];
    let msgCb: (m: HostToUi) => void = () => undefined;
    let closeCb: (why: string) => void = () => undefined;
    ws.onopen = () => {
      for (const b of pending.splice(0)) ws.send(b);
    };
    ws.onmessage = (e) => {
      if (!(e.data instanceof ArrayBuffer)) return;
      try {
        msgCb(decodeHostToUi(new Uint8Array(e.data)));
      } catch (err) {
        console.error('vireo: bad console message', err);
      }
    };
    ws.onclose = (e) => closeCb(e.reason || 'closed');
    return {
      send: (m) => {
        const b = encodeUiToHost(m);
        if (ws.readyState === WebSocket.OPEN) ws.send(b);
        else if (ws.readyState === WebSocket.CONNECTING) pending.push(b);
      },
      onMessage: (cb) => (msgCb = cb),
      onClose: (cb) => (closeCb = cb),
      close: () => ws.close(),
    };
  }

  openConsole(uuid: string) {
    const url = `${location.pathname}?token=${encodeURIComponent(this.token)}#/console/${uuid}`;
    window.open(url, `vireo-console-${uuid}`, 'width=1040,height=820');
  }
}

let client: VireoClient | undefined;

export function getClient(): VireoClient {
  if (client) return client;
  const bridge = (window as unknown as { vireo?: PreloadBridge }).vireo;
  if (bridge) client = new ElectronClient(bridge);
  else {
    const token = new URLSearchParams(location.search).get('token') ?? '';
    client = new WebSocketClient(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`, token);
  }
  return client;
}

export function setClientForTests(c: VireoClient) {
  client = c;
}

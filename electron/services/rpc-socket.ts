// The service's own transport: the same contract as the other transports (every call
// goes through dispatch(), which validates it), plus events and console streams, over a
// UNIX stream socket that only its owner may use.
//
// Wire format: frames of [u32 LE length of the rest][u8 kind][payload].
//   kind 1 (JSON): one JSON object. Client -> service: a RequestEnvelope
//     ({t:'call',id,method,params}), {t:'events'} (send me events from now on),
//     {t:'stream.open',sid,uuid}, {t:'stream.close',sid}. Service -> client: a
//     ReplyEnvelope (result / error / event), {t:'stream.closed',sid,why}.
//   kind 2 (stream data): [u32 LE sid][bytes in stream.ts format], either way. The
//     stream's own acks (stream.ts) travel in it, so flow control is end to end.
// A frame over MAX_FRAME, an unknown kind or a peer of another UID ends the connection.
// A client that goes away mid-call leaves the call to finish (every service call is
// atomic or journalled) and its reply is dropped; its streams are closed.
import * as net from 'node:net';
import { type EventName, type Method, type Params, type ReplyEnvelope, type Result, events, isEvent, parseEvent, parseResult } from '../common/contracts/api';
import { AckGate, ownBytes } from './ack-gate';
import type { VireoService } from './app';
import { dispatch } from './dispatch';
import type { StreamHandle } from './supervisor';

export const MAX_FRAME = 32 * 1024 * 1024;
export const KIND_JSON = 1;
export const KIND_STREAM = 2;

export function encodeFrame(kind: number, payload: Uint8Array, sid?: number): Buffer {
  const extra = kind === KIND_STREAM ? 4 : 0;
  const out = Buffer.allocUnsafe(5 + extra + payload.byteLength);
  out.writeUInt32LE(1 + extra + payload.byteLength, 0);
  out[4] = kind;
  if (extra) out.writeUInt32LE(sid ?? 0, 5);
  out.set(payload, 5 + extra);
  return out;
}

/**
 * Writes a stream frame without copying its payload into a joined buffer: header and
 * payload go to the socket as one corked write (a console's whole screen is megabytes).
 */
export function writeStreamFrame(sock: net.Socket, sid: number, payload: Uint8Array, written?: () => void): void {
  const head = Buffer.allocUnsafe(9);
  head.writeUInt32LE(5 + payload.byteLength, 0);
  head[4] = KIND_STREAM;
  head.writeUInt32LE(sid, 5);
  sock.cork();
  sock.write(head);
  sock.write(payload, written);
  sock.uncork();
}

export function jsonFrame(msg: unknown): Buffer {
  return encodeFrame(KIND_JSON, Buffer.from(JSON.stringify(msg)));
}

export class FrameError extends Error {}

/**
 * Splits a byte stream into frames; throws FrameError on a malformed or oversized one.
 * A large frame (a console's whole screen) arrives in many chunks: they are kept in a
 * list and joined once when the frame is complete, never re-copied per chunk.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;
  /** Total length (4 + len) of the frame being gathered, once its header is known. */
  private need = 0;
  push(chunk: Buffer, on: (kind: number, payload: Buffer) => void): void {
    if (!chunk.length) return;
    this.chunks.push(chunk);
    this.size += chunk.length;
    for (;;) {
      if (!this.need) {
        if (this.size < 4) return;
        const head = this.chunks[0]!.length >= 4 ? this.chunks[0]! : this.join();
        const len = head.readUInt32LE(0);
        if (len < 1 || len > MAX_FRAME) throw new FrameError(`bad frame length ${len}`);
        this.need = 4 + len;
      }
      if (this.size < this.need) return;
      const buf = this.join();
      const n = this.need;
      this.need = 0;
      const rest = buf.subarray(n);
      this.chunks = rest.length ? [rest] : [];
      this.size = rest.length;
      on(buf[4]!, buf.subarray(5, n));
    }
  }
  private join(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.size)];
    return this.chunks[0]!;
  }
}

/** Who may talk to the service: returns why a peer is refused, or null. */
export type PeerCheck = (socket: net.Socket) => string | null;

/** The real check: the peer's UID (SO_PEERCRED, through the native addon) must be ours. */
export function peerUidCheck(peerUid: (fd: number) => number, myUid = process.getuid?.() ?? -1): PeerCheck {
  return (socket) => {
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) return 'cannot read the peer credentials (no file descriptor)';
    let uid: number;
    try {
      uid = peerUid(fd);
    } catch (e) {
      return (e as Error).message;
    }
    return uid === myUid ? null : `peer UID ${uid} is not ${myUid}`;
  };
}

/** What the socket serves: the service itself, or anything that answers the same way. */
export interface Backend {
  call(raw: unknown): Promise<ReplyEnvelope>;
  onEvent(l: <E extends EventName>(name: E, payload: unknown) => void): () => void;
  openStream(uuid: string): StreamHandle;
}

export function localBackend(service: VireoService): Backend {
  return {
    call: (raw) => dispatch(service, raw),
    onEvent: (l) => service.onEvent((name, payload) => l(name, payload)),
    openStream: (uuid) => service.openStream(uuid),
  };
}

export interface SocketServerOptions {
  backend: Backend;
  path: string;
  peerCheck: PeerCheck;
  /** Told of each refused peer (the service log). */
  onRefused?: (why: string) => void;
  /** Clients connected changed (the idle timer). */
  onClients?: (n: number) => void;
}

export interface SocketServer {
  server: net.Server;
  clients(): number;
  close(): Promise<void>;
}

export function serveSocket(opts: SocketServerOptions): Promise<SocketServer> {
  const conns = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: false }, (sock) => {
    const refused = opts.peerCheck(sock);
    if (refused) {
      opts.onRefused?.(refused);
      sock.destroy();
      return;
    }
    conns.add(sock);
    opts.onClients?.(conns.size);
    serveConnection(sock, opts.backend);
    sock.on('close', () => {
      conns.delete(sock);
      opts.onClients?.(conns.size);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.path, () => {
      server.off('error', reject);
      resolve({
        server,
        clients: () => conns.size,
        close: () =>
          new Promise<void>((res) => {
            for (const c of conns) c.destroy();
            server.close(() => res());
          }),
      });
    });
  });
}

function serveConnection(sock: net.Socket, backend: Backend): void {
  const reader = new FrameReader();
  const streams = new Map<number, Pick<StreamHandle, 'send' | 'close'>>();
  let offEvents: (() => void) | undefined;
  let open = true;
  const send = (b: Buffer) => {
    if (open && !sock.destroyed) sock.write(b);
  };
  const reply = (m: unknown) => send(jsonFrame(m));
  const end = () => {
    if (!open) return;
    open = false;
    offEvents?.();
    for (const s of streams.values()) s.close();
    streams.clear();
    sock.destroy();
  };
  sock.on('error', end);
  sock.on('close', end);
  sock.on('data', (chunk) => {
    try {
      reader.push(chunk, (kind, payload) => {
        if (kind === KIND_STREAM) {
          if (payload.length < 4) throw new FrameError('short stream frame');
          const st = streams.get(payload.readUInt32LE(0));
          st?.send(new Uint8Array(payload.buffer, payload.byteOffset + 4, payload.length - 4));
          return;
        }
        if (kind !== KIND_JSON) throw new FrameError(`unknown frame kind ${kind}`);
        let msg: { t?: unknown; sid?: unknown; uuid?: unknown };
        try {
          msg = JSON.parse(payload.toString('utf8'));
        } catch {
          return reply({ t: 'error', id: -1, message: 'not JSON', code: 'bad-request' });
        }
        if (typeof msg !== 'object' || msg === null) return reply({ t: 'error', id: -1, message: 'not a JSON object', code: 'bad-request' });
        switch (msg.t) {
          case 'call':
            // dispatch() validates the envelope, the method and its params before any service code runs.
            void backend.call(msg).then(reply, (e: Error) => reply({ t: 'error', id: -1, message: e.message, code: 'internal' }));
            return;
          case 'events':
            offEvents ??= backend.onEvent((name, payload) => {
              try {
                reply({ t: 'event', name, payload: events[name].parse(payload, name) });
              } catch {
                /* an off-contract event is not sent */
              }
            });
            return;
          case 'stream.open': {
            const sid = msg.sid;
            if (typeof sid !== 'number' || !Number.isInteger(sid) || sid < 0 || sid > 0xffffffff || streams.has(sid) || typeof msg.uuid !== 'string') {
              return reply({ t: 'error', id: -1, message: 'bad stream.open', code: 'bad-request' });
            }
            let st: StreamHandle;
            try {
              st = backend.openStream(msg.uuid);
            } catch (e) {
              return reply({ t: 'stream.closed', sid, why: (e as Error).message });
            }
            // A client that acks what it has not read must not grow this socket's buffer
            // without bound: its acks wait while the socket is backed up (ack-gate.ts).
            const gate = new AckGate(() => sock.writableLength, (m) => st.send(m));
            streams.set(sid, { send: (m) => gate.fromConsole(m), close: () => (gate.close(), st.close()) });
            st.onData((d) => {
              if (open && !sock.destroyed) writeStreamFrame(sock, sid, ownBytes(d), () => gate.drained());
            });
            st.onClose((why) => {
              gate.close();
              if (streams.delete(sid)) reply({ t: 'stream.closed', sid, why });
            });
            return;
          }
          case 'stream.close': {
            const st = typeof msg.sid === 'number' ? streams.get(msg.sid) : undefined;
            if (st) {
              streams.delete(msg.sid as number);
              st.close();
            }
            return;
          }
          default:
            return reply({ t: 'error', id: -1, message: `unknown message type ${JSON.stringify(msg.t)}`, code: 'bad-request' });
        }
      });
    } catch (e) {
      if (e instanceof FrameError) end();
      else throw e;
    }
  });
}

// ---- the client ----

export class RpcError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'RpcError';
  }
}

export class RpcClient implements Backend {
  private nextId = 1;
  private nextSid = 1;
  private readonly pending = new Map<number, (m: ReplyEnvelope) => void>();
  private readonly listeners = new Set<(name: EventName, payload: unknown) => void>();
  private readonly streams = new Map<number, { data: (d: Uint8Array) => void; close: (why: string) => void }>();
  private readonly closeListeners = new Set<(why: string) => void>();
  private eventsOn = false;
  private closed: string | null = null;

  private constructor(private readonly sock: net.Socket) {
    const reader = new FrameReader();
    sock.on('data', (chunk) => {
      try {
        reader.push(chunk, (kind, payload) => this.onFrame(kind, payload));
      } catch (e) {
        this.fail(`bad data from the service: ${(e as Error).message}`);
      }
    });
    sock.on('error', (e) => this.fail(e.message));
    sock.on('close', () => this.fail('the Vireo service closed the connection'));
  }

  static connect(path: string, timeoutMs = 5000): Promise<RpcClient> {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection({ path });
      const timer = setTimeout(() => {
        sock.destroy();
        reject(Object.assign(new Error(`connecting to ${path} timed out`), { code: 'ETIMEDOUT' }));
      }, timeoutMs);
      sock.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.removeAllListeners('error');
        resolve(new RpcClient(sock));
      });
    });
  }

  /** A typed contract call; the result is checked against the contract here too. */
  async request<M extends Method>(method: M, params: Params<M>): Promise<Result<M>> {
    const r = await this.call({ t: 'call', id: 0, method, params });
    if (r.t === 'result') return parseResult(method, r.value);
    if (r.t === 'error') throw new RpcError(r.message, r.code ?? 'internal');
    throw new RpcError('unexpected reply', 'internal');
  }

  /** Sends a raw envelope (its id is replaced) and resolves with the reply, id restored. */
  call(raw: unknown): Promise<ReplyEnvelope> {
    const origId = (raw as { id?: unknown })?.id;
    // Only calls go through here: an {t:'events'} or {t:'stream.open'} from a page would act on this connection.
    if (typeof raw !== 'object' || raw === null || (raw as { t?: unknown }).t !== 'call') {
      return Promise.resolve({ t: 'error', id: typeof origId === 'number' ? origId : -1, message: 'not a call envelope', code: 'bad-request' });
    }
    if (this.closed) return Promise.resolve({ t: 'error', id: typeof origId === 'number' ? origId : -1, message: this.closed, code: 'unavailable' });
    const id = this.nextId++;
    const msg = typeof raw === 'object' && raw !== null ? { ...(raw as object), id } : raw;
    return new Promise((resolve) => {
      this.pending.set(id, (m) => resolve({ ...m, id: typeof origId === 'number' ? origId : -1 } as ReplyEnvelope));
      this.sock.write(jsonFrame(msg));
    });
  }

  onEvent(l: (name: EventName, payload: unknown) => void): () => void {
    this.listeners.add(l);
    if (!this.eventsOn && !this.closed) {
      this.eventsOn = true;
      this.sock.write(jsonFrame({ t: 'events' }));
    }
    return () => this.listeners.delete(l);
  }

  onClose(l: (why: string) => void): void {
    this.closeListeners.add(l);
  }

  openStream(uuid: string): StreamHandle {
    const sid = this.nextSid++;
    let dataCb: (d: Uint8Array) => void = () => undefined;
    let closeCb: (why: string) => void = () => undefined;
    let open = true;
    let early: string | null = null;
    this.streams.set(sid, {
      data: (d) => dataCb(d),
      close: (why) => {
        open = false;
        this.streams.delete(sid);
        early = why;
        closeCb(why);
      },
    });
    if (this.closed) queueMicrotask(() => this.streams.get(sid)?.close(this.closed!));
    else this.sock.write(jsonFrame({ t: 'stream.open', sid, uuid }));
    return {
      send: (d) => {
        if (open && !this.closed) writeStreamFrame(this.sock, sid, d);
      },
      onData: (cb) => (dataCb = cb),
      onClose: (cb) => {
        closeCb = cb;
        if (early !== null) cb(early);
      },
      close: () => {
        if (!open) return;
        open = false;
        this.streams.delete(sid);
        if (!this.closed) this.sock.write(jsonFrame({ t: 'stream.close', sid }));
      },
    };
  }

  close(): void {
    this.sock.end();
    this.fail('closed');
  }

  private onFrame(kind: number, payload: Buffer): void {
    if (kind === KIND_STREAM) {
      if (payload.length < 4) throw new FrameError('short stream frame');
      this.streams.get(payload.readUInt32LE(0))?.data(new Uint8Array(payload.buffer, payload.byteOffset + 4, payload.length - 4));
      return;
    }
    if (kind !== KIND_JSON) throw new FrameError(`unknown frame kind ${kind}`);
    const m = JSON.parse(payload.toString('utf8')) as { t: string; id?: number; name?: string; payload?: unknown; sid?: number; why?: string };
    if (m.t === 'event') {
      if (typeof m.name !== 'string' || !isEvent(m.name)) return;
      let p: unknown;
      try {
        p = parseEvent(m.name, m.payload);
      } catch {
        return;
      }
      for (const l of this.listeners) l(m.name, p);
    } else if (m.t === 'stream.closed') {
      if (typeof m.sid === 'number') this.streams.get(m.sid)?.close(m.why ?? 'closed');
    } else if (typeof m.id === 'number') {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      p?.(m as ReplyEnvelope);
    }
  }

  private fail(why: string): void {
    if (this.closed) return;
    this.closed = why;
    this.sock.destroy();
    for (const [id, p] of this.pending) p({ t: 'error', id, message: why, code: 'unavailable' });
    this.pending.clear();
    for (const s of [...this.streams.values()]) s.close(why);
    for (const l of this.closeListeners) l(why);
  }
}

// The service's UNIX-socket transport (rpc-socket.ts) and its host (service-host.ts):
// calls, events and streams on the fake engine; refused peers (the peer-credential
// check injected); malformed messages rejected before any service code runs; a
// client that disconnects mid-call; the socket's modes, lock and idle exit.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { decodeHostToUi, encodeUiToHost } from '../../common/contracts/stream';
import type { VireoService } from '../app';
import { KIND_JSON, KIND_STREAM, type Backend, FrameReader, RpcClient, encodeFrame, jsonFrame, localBackend, peerUidCheck, serveSocket, type SocketServer } from '../rpc-socket';
import { AlreadyRunning, ensureService, hostService, serviceLocation } from '../service-host';
import { newVmRequest, testService } from './fake-engine';

let dir: string;
let svc: VireoService;
let server: SocketServer | undefined;
const clients: RpcClient[] = [];

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-rpc-'));
  svc = await testService(dir);
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await server?.close();
  server = undefined;
  svc.shutdown();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function serve(over: { backend?: Backend; peerCheck?: (s: net.Socket) => string | null; onRefused?: (w: string) => void } = {}): Promise<string> {
  const sock = path.join(dir, 's.sock');
  server = await serveSocket({ backend: over.backend ?? localBackend(svc), path: sock, peerCheck: over.peerCheck ?? (() => null), ...(over.onRefused ? { onRefused: over.onRefused } : {}) });
  return sock;
}
async function connect(sock: string): Promise<RpcClient> {
  const c = await RpcClient.connect(sock);
  clients.push(c);
  return c;
}
async function iso(): Promise<string> {
  const p = path.join(dir, 'boot.iso');
  fs.writeFileSync(p, Buffer.alloc(4096));
  return p;
}

/** A raw connection: send frames, read replies as JSON (or see it closed). */
async function raw(sock: string) {
  const s = net.createConnection({ path: sock });
  await new Promise((r) => s.once('connect', r));
  const replies: unknown[] = [];
  const reader = new FrameReader();
  s.on('data', (d) => reader.push(d, (k, p) => k === KIND_JSON && replies.push(JSON.parse(p.toString()))));
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  s.on('error', () => undefined);
  return { s, replies, closed, next: async (n: number) => (await vi.waitFor(() => expect(replies.length).toBeGreaterThanOrEqual(n)), replies[n - 1] as any) };
}

describe('rpc socket', () => {
  it('carries contract calls, typed results and errors', async () => {
    const c = await connect(await serve());
    expect(await c.request('vm.list', {})).toEqual([]);
    const { vm } = await c.request('vm.create', newVmRequest(await iso(), { name: 'alpha' }));
    expect(vm?.name).toBe('alpha');
    expect((await c.request('vm.list', {})).map((v) => v.name)).toEqual(['alpha']);
    await expect(c.request('vm.get', { uuid: '00000000-0000-0000-0000-000000000000' })).rejects.toMatchObject({ code: 'user', message: expect.stringMatching(/No such VM/) });
  });

  it('refuses a peer of another UID before reading anything from it', async () => {
    const refused: string[] = [];
    const call = vi.spyOn(svc, 'vm.list');
    // The real check with the credential read injected: the socket's fd reaches it, the UID is another's.
    const seen: number[] = [];
    const sock = await serve({ peerCheck: peerUidCheck((fd) => (seen.push(fd), 4242), 1000), onRefused: (w) => refused.push(w) });
    const c = await connect(sock);
    const r = await c.call({ t: 'call', id: 7, method: 'vm.list', params: {} });
    expect(r).toMatchObject({ t: 'error', id: 7, code: 'unavailable' });
    expect(refused).toEqual(['peer UID 4242 is not 1000']);
    expect(seen.length).toBe(1);
    expect(seen[0]).toBeGreaterThan(2);
    expect(call).not.toHaveBeenCalled();
  });

  it('accepts a peer of the same UID (the fd and the addon read it)', async () => {
    const uid = process.getuid!();
    let peer = (_fd: number) => uid;
    try {
      const addon = require(path.join(__dirname, '../../../native/build/Release/vireo_native.node'));
      if (addon.peerUid) peer = addon.peerUid; // the real SO_PEERCRED read when the addon is built
    } catch {
      console.log('NOTE rpc-socket: the engine addon is not built: the real peerUid() is not exercised here');
    }
    const c = await connect(await serve({ peerCheck: peerUidCheck(peer, uid) }));
    expect(await c.request('vm.list', {})).toEqual([]);
    // And the same read refuses when the expected UID differs.
    await server!.close();
    const c2 = await connect(await serve({ peerCheck: peerUidCheck(peer, uid + 1) }));
    await expect(c2.request('vm.list', {})).rejects.toMatchObject({ code: 'unavailable' });
  });

  it('rejects bad shapes before they reach the service', async () => {
    const get = vi.spyOn(svc, 'vm.get');
    const del = vi.spyOn(svc, 'vm.delete');
    const r = await raw(await serve());
    r.s.write(encodeFrame(KIND_JSON, Buffer.from('{not json')));
    expect(await r.next(1)).toMatchObject({ t: 'error', code: 'bad-request', message: 'not JSON' });
    r.s.write(jsonFrame({ t: 'call', id: 3, method: 'vm.get', params: { uuid: 5 } }));
    expect(await r.next(2)).toMatchObject({ t: 'error', id: 3, code: 'invalid' });
    r.s.write(jsonFrame({ t: 'call', id: 4, method: 'vm.delete', params: { uuid: 'x', deleteDisks: '/etc/passwd' } }));
    expect(await r.next(3)).toMatchObject({ t: 'error', id: 4, code: 'invalid' });
    r.s.write(jsonFrame({ t: 'call', id: 5, method: 'shutdown', params: {} }));
    expect(await r.next(4)).toMatchObject({ t: 'error', id: 5, code: 'bad-request', message: "unknown method 'shutdown'" });
    r.s.write(jsonFrame({ t: 'call', id: -2, method: 'vm.list' }));
    expect(await r.next(5)).toMatchObject({ t: 'error', code: 'bad-request' });
    r.s.write(jsonFrame({ t: 'stream.open', sid: 'x', uuid: 1 }));
    expect(await r.next(6)).toMatchObject({ t: 'error', code: 'bad-request' });
    r.s.write(jsonFrame([1, 2]));
    expect(await r.next(7)).toMatchObject({ t: 'error', code: 'bad-request' });
    expect(get).not.toHaveBeenCalled();
    expect(del).not.toHaveBeenCalled();
    // A frame of an unknown kind, or one longer than the limit, ends the connection.
    r.s.write(encodeFrame(9, Buffer.from('x')));
    await r.closed;
    const r2 = await raw(await (async () => (await server!.close(), serve()))());
    const huge = Buffer.alloc(4);
    huge.writeUInt32LE(0x7fffffff);
    r2.s.write(huge);
    await r2.closed;
    // The service still answers others.
    const c = await connect(path.join(dir, 's.sock'));
    expect(await c.request('vm.list', {})).toEqual([]);
  });

  it('a client that disconnects mid-call: the call finishes whole, its reply is dropped, the service goes on', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inCall = new Promise<void>((r) => (entered = r));
    const local = localBackend(svc);
    const finished: unknown[] = [];
    const backend: Backend = {
      ...local,
      call: async (m) => {
        entered();
        await gate;
        const r = await local.call(m);
        finished.push(r);
        return r;
      },
    };
    const sock = await serve({ backend });
    const c = await connect(sock);
    const pending = c.request('vm.create', newVmRequest(await iso(), { name: 'beta', storage: { kind: 'create', sizeGiB: 0.01 } }));
    await inCall;
    c.close();
    await expect(pending).rejects.toMatchObject({ code: 'unavailable' });
    release();
    await vi.waitFor(() => expect(finished).toHaveLength(1), { timeout: 15000 }); // vm.create makes a disk and loads osinfo-db: slow on a busy host
    expect(finished[0]).toMatchObject({ t: 'result' });
    // All of it was done: the definition and its disk, nothing hidden left over.
    const vm = svc.store.byName('beta')!;
    expect(vm).toBeTruthy();
    expect(fs.existsSync(vm.disks[0]!.path)).toBe(true);
    expect(fs.readdirSync(path.dirname(vm.disks[0]!.path)).filter((f) => f.startsWith('.'))).toEqual([]);
    const c2 = await connect(sock);
    expect((await c2.request('vm.list', {})).map((v) => v.name)).toEqual(['beta']);
    expect(server!.clients()).toBe(1);
  });

  it('carries events and a console stream; a client that goes closes its streams', async () => {
    const sock = await serve();
    const c = await connect(sock);
    const { vm } = await c.request('vm.create', newVmRequest(await iso(), { name: 'gamma', storage: { kind: 'none' } as never }));
    const seen: string[] = [];
    c.onEvent((name, p) => name === 'vm.changed' && seen.push((p as { vm: { state: string } }).vm.state));
    await new Promise((r) => setTimeout(r, 20)); // the subscription frame is sent before the start call
    await c.request('vm.action', { uuid: vm!.uuid, action: 'start' });
    await vi.waitFor(() => expect(seen).toContain('running'));
    const st = c.openStream(vm!.uuid);
    const got: Uint8Array[] = [];
    st.onData((d) => {
      const m = decodeHostToUi(d);
      if (m.op === 'serial') got.push(m.data);
    });
    st.send(encodeUiToHost({ op: 'subscribe', frames: false, serial: true }));
    st.send(encodeUiToHost({ op: 'serialIn', port: 0, data: new TextEncoder().encode('ping') }));
    await vi.waitFor(() => expect(Buffer.concat(got).toString()).toContain('ping'));
    // A stream on a VM that is not running closes with the reason.
    const why = await new Promise<string>((r) => c.openStream('00000000-0000-0000-0000-000000000000').onClose(r));
    expect(why).toMatch(/No such VM/);
    // Disconnecting closes the service side of the stream.
    const closeSpy = vi.fn();
    const local = localBackend(svc);
    await server!.close();
    const sock2 = await serve({ backend: { ...local, openStream: (u) => { const h = local.openStream(u); const close = h.close; h.close = () => (closeSpy(), close()); return h; } } });
    const c3 = await connect(sock2);
    c3.openStream(vm!.uuid);
    await new Promise((r) => setTimeout(r, 50));
    c3.close();
    await vi.waitFor(() => expect(closeSpy).toHaveBeenCalled());
  });
});

describe('service host', () => {
  it('makes a 0700 directory and a 0600 socket, refuses a second service, and exits when idle', async () => {
    const env = { XDG_RUNTIME_DIR: path.join(dir, 'run') };
    const loc = serviceLocation(env);
    const exited: string[] = [];
    const host = await hostService({ service: svc, location: loc, peerCheck: () => null, idleMs: 300, log: () => undefined, onExit: (w) => exited.push(w) });
    expect(fs.statSync(loc.dir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(loc.socket).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(loc.pidFile, 'utf8')).toBe(String(process.pid));
    await expect(hostService({ service: svc, location: loc, peerCheck: () => null, log: () => undefined })).rejects.toBeInstanceOf(AlreadyRunning);
    // A connected client keeps it.
    const c = await connect(loc.socket);
    await new Promise((r) => setTimeout(r, 600));
    expect(exited).toEqual([]);
    c.close();
    await vi.waitFor(() => expect(exited).toHaveLength(1), { timeout: 3000 });
    expect(exited[0]).toMatch(/idle/);
    expect(fs.existsSync(loc.socket)).toBe(false);
    expect(host.socket.clients()).toBe(0);
  });

  it('keeps running while a VM runs', async () => {
    const loc = serviceLocation({ XDG_RUNTIME_DIR: path.join(dir, 'run') });
    const exited: string[] = [];
    // Made before the service's idle clock starts: creating a VM (osinfo-db's first load) may take longer than it.
    const { vm } = await svc['vm.create'](newVmRequest(await iso(), { name: 'delta', storage: { kind: 'none' } as never }));
    const host = await hostService({ service: svc, location: loc, peerCheck: () => null, idleMs: 200, log: () => undefined, onExit: (w) => exited.push(w) });
    await svc['vm.action']({ uuid: vm!.uuid, action: 'start' });
    await new Promise((r) => setTimeout(r, 700));
    expect(exited).toEqual([]);
    await svc['vm.action']({ uuid: vm!.uuid, action: 'forceoff' });
    await vi.waitFor(() => expect(exited).toHaveLength(1), { timeout: 3000 });
    await host.stop('test');
  });

  it('replaces a stale socket and refuses a runtime directory that is not private', async () => {
    const loc = serviceLocation({ XDG_RUNTIME_DIR: path.join(dir, 'run') });
    fs.mkdirSync(loc.dir, { recursive: true, mode: 0o755 });
    fs.chmodSync(loc.dir, 0o755);
    fs.writeFileSync(loc.socket, 'stale');
    fs.writeFileSync(loc.lockFile, '999999999'); // a lock whose process is gone
    const host = await hostService({ service: svc, location: loc, peerCheck: () => null, log: () => undefined });
    expect(fs.statSync(loc.dir).mode & 0o777).toBe(0o700);
    const c = await connect(loc.socket);
    expect(await c.request('vm.list', {})).toEqual([]);
    c.close();
    await host.stop('test');
    const link = path.join(dir, 'run2', 'vireo');
    fs.mkdirSync(path.join(dir, 'run2'));
    fs.symlinkSync(dir, link);
    await expect(hostService({ service: svc, location: serviceLocation({ XDG_RUNTIME_DIR: path.join(dir, 'run2') }), peerCheck: () => null, log: () => undefined })).rejects.toThrow(/not a directory/);
  });

  it('a client refuses a service that manages another configuration', async () => {
    const env = { XDG_RUNTIME_DIR: path.join(dir, 'run'), HOME: dir, XDG_CONFIG_HOME: path.join(dir, 'other') };
    const host = await hostService({ service: svc, location: serviceLocation(env), peerCheck: () => null, log: () => undefined });
    await expect(ensureService({ env, noStart: true })).rejects.toThrow(/manages .*cfg\/vireo, not .*other\/vireo/);
    const ok = await ensureService({ env: { ...env, XDG_CONFIG_HOME: path.join(dir, 'cfg') }, noStart: true });
    ok.close();
    await host.stop('test');
    await expect(ensureService({ env, noStart: true })).rejects.toThrow(/no Vireo service runs/);
  });

  it('a connection closed before the service answered is retried, not reported (kill -9 leaves a forked child holding the old socket)', async () => {
    const env = { XDG_RUNTIME_DIR: path.join(dir, 'run'), HOME: dir, XDG_CONFIG_HOME: path.join(dir, 'cfg') };
    const loc = serviceLocation(env);
    const real = await serve();
    // On the service's socket: the first two connections are closed unanswered (as a dying
    // service's forked child does), later ones reach the real service.
    let seen = 0;
    const front = net.createServer((c) => {
      if (++seen <= 2) return c.destroy();
      const back = net.createConnection(real);
      c.pipe(back).pipe(c);
      c.on('error', () => back.destroy());
      back.on('error', () => c.destroy());
    });
    fs.mkdirSync(path.dirname(loc.socket), { recursive: true });
    await new Promise<void>((r) => front.listen(loc.socket, r));
    try {
      const retries: string[] = [];
      const c = await ensureService({ env, noStart: true, onRetry: (why) => retries.push(why) });
      clients.push(c);
      // The reset shows as EPIPE, ECONNRESET or a close, depending on when the peer's close lands.
      expect(retries).toHaveLength(2);
      for (const w of retries) expect(w).toMatch(/EPIPE|ECONNRESET|closed the connection/);
      expect((await c.request('host.info', {})).configPath).toBe(path.join(dir, 'cfg', 'vireo'));
      // A service that never answers is still an error once the time is up.
      seen = -1e9;
      await expect(ensureService({ env, noStart: true, timeoutMs: 500 })).rejects.toThrow(/EPIPE|ECONNRESET|closed the connection/);
    } finally {
      for (const c of clients.splice(0)) c.close(); // the front server's close waits for its connections
      await new Promise((r) => front.close(r));
    }
  });
});

it('frames: a stream frame carries its sid', () => {
  const f = encodeFrame(KIND_STREAM, Uint8Array.of(1, 2, 3), 77);
  const out: Array<[number, Buffer]> = [];
  new FrameReader().push(f, (k, p) => out.push([k, p]));
  expect(out[0]![0]).toBe(KIND_STREAM);
  expect(out[0]![1].readUInt32LE(0)).toBe(77);
  expect([...out[0]![1].subarray(4)]).toEqual([1, 2, 3]);
});

it('frames: a screen-sized frame in 64 KiB chunks, and frames split at every byte, come out whole and in order', () => {
  const big = new Uint8Array(1920 * 1080 * 4);
  for (let i = 0; i < big.length; i += 4093) big[i] = i & 255;
  const f = Buffer.concat([encodeFrame(KIND_STREAM, big, 5), jsonFrame({ t: 'x' }), encodeFrame(KIND_STREAM, Uint8Array.of(9), 6)]);
  const out: Array<[number, Buffer]> = [];
  const r = new FrameReader();
  const t0 = performance.now();
  for (let o = 0; o < f.length; o += 65536) r.push(f.subarray(o, o + 65536), (k, p) => out.push([k, Buffer.from(p)]));
  // Linear, not a re-copy per chunk (that took ~200 ms here for 8 MB).
  expect(performance.now() - t0).toBeLessThan(150);
  expect(out.map(([k]) => k)).toEqual([KIND_STREAM, KIND_JSON, KIND_STREAM]);
  expect(out[0]![1].readUInt32LE(0)).toBe(5);
  expect(Buffer.compare(out[0]![1].subarray(4), Buffer.from(big))).toBe(0);
  expect(JSON.parse(out[1]![1].toString())).toEqual({ t: 'x' });
  const bytewise: Array<[number, Buffer]> = [];
  const small = Buffer.concat([jsonFrame({ a: 1 }), encodeFrame(KIND_STREAM, Uint8Array.of(1, 2, 3), 7), jsonFrame({ b: 2 })]);
  const r2 = new FrameReader();
  for (let o = 0; o < small.length; o++) r2.push(small.subarray(o, o + 1), (k, p) => bytewise.push([k, Buffer.from(p)]));
  expect(bytewise.map(([k]) => k)).toEqual([KIND_JSON, KIND_STREAM, KIND_JSON]);
  expect([...bytewise[1]![1]]).toEqual([7, 0, 0, 0, 1, 2, 3]);
  expect(() => new FrameReader().push(Buffer.from([0, 0, 0, 0, 1]), () => undefined)).toThrow(/bad frame length/);
});

it('the service host stays while a clone job runs with no client', async () => {
  const loc = serviceLocation({ XDG_RUNTIME_DIR: path.join(dir, 'run') });
  const exited: string[] = [];
  const host = await hostService({ service: svc, location: loc, peerCheck: () => null, idleMs: 200, log: () => undefined, onExit: (w) => exited.push(w) });
  // A job seen only through its events (as a clone's are).
  const emit = (svc as unknown as { emit(n: string, p: unknown): void }).emit.bind(svc);
  emit('job.progress', { jobId: 'job-9', doneBytes: 0, totalBytes: 10, label: 'Cloning' });
  await new Promise((r) => setTimeout(r, 600));
  expect(exited).toEqual([]);
  emit('job.done', { jobId: 'job-9', ok: true, cancelled: false });
  await vi.waitFor(() => expect(exited).toHaveLength(1), { timeout: 3000 });
  await host.stop('test');
});

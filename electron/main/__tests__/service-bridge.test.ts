// The Electron app's client side (service-bridge.ts) against a real Vireo service:
// the service's own host (service-host.ts) on its UNIX socket in a temp
// XDG_RUNTIME_DIR, over the fake engine; the bridge connects with ensureService().
// Electron's ipcMain and windows are stand-ins that record what they get; the
// console port is a real MessageChannel (Node's: structured clone, like Electron's).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { IPC } from '../../common/contracts/api';
import { type HostToUi, decodeHostToUi, encodeUiToHost } from '../../common/contracts/stream';
import type { VireoService } from '../../services/app';
import { newVmRequest, testService } from '../../services/__tests__/fake-engine';
import { RpcClient } from '../../services/rpc-socket';
import { appRoot } from '../../engine-host/addon';
import { type ServiceHost, ensureService, hostService, probe, serviceLocation } from '../../services/service-host';
import { type ServiceBridge, STREAM_PORT_CHANNEL, serviceCommand, startServiceBridge } from '../service-bridge';
import { fakeIpc, nodeChannel, windowEvent } from './bridge-stand-ins';

const APP = 'file:///app/renderer/index.html';
let dir: string;
let env: NodeJS.ProcessEnv;
let svc: VireoService;
let host: ServiceHost;
let bridge: ServiceBridge | undefined;
const extra: RpcClient[] = [];

let ipc: ReturnType<typeof fakeIpc>;
const windowEvents: Array<{ name: string; payload: any }> = [];
const consoles: Array<[string, string]> = [];
const logs: string[] = [];

async function startBridge(): Promise<ServiceBridge> {
  bridge = await startServiceBridge({
    connect: () => ensureService({ env, noStart: true }),
    ipc,
    newChannel: nodeChannel,
    windows: () => [{ send: (ch: string, m: unknown) => ch === IPC.event && windowEvents.push(m as { name: string; payload: unknown }) }],
    trusted: (e) => e.senderFrame?.url === APP,
    openConsole: (uuid, name) => void consoles.push([uuid, name]),
    log: (l) => void logs.push(l),
    retryMs: [30],
  });
  return bridge;
}

async function iso(): Promise<string> {
  const p = path.join(dir, 'boot.iso');
  fs.writeFileSync(p, Buffer.alloc(4096));
  return p;
}

let nextId = 1;
const call = (method: string, params: unknown, e = windowEvent(APP).e) => ipc.invoke(IPC.call, e, { t: 'call', id: nextId++, method, params }) as Promise<any>;

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-bridge-'));
  env = { HOME: dir, XDG_RUNTIME_DIR: path.join(dir, 'run'), XDG_CONFIG_HOME: path.join(dir, 'cfg'), XDG_DATA_HOME: path.join(dir, 'data') };
  svc = await testService(dir); // its configuration is dir/cfg: the same as env's
  host = await hostService({ service: svc, location: serviceLocation(env), peerCheck: () => null, log: () => undefined });
  ipc = fakeIpc();
  windowEvents.length = 0;
  consoles.length = 0;
  logs.length = 0;
});
afterEach(async () => {
  bridge?.close();
  bridge = undefined;
  for (const c of extra.splice(0)) c.close();
  await host.stop('test');
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('the Electron main as a client of the Vireo service', () => {
  it('forwards calls to the service and refuses untrusted senders and malformed calls before they leave', async () => {
    await startBridge();
    const created = await call('vm.create', newVmRequest(await iso(), { name: 'alpha', storage: { kind: 'none' } as never }));
    expect(created).toMatchObject({ t: 'result', value: { errors: [], vm: { name: 'alpha' } } });
    // It reached the service: the service's own store has it.
    expect(svc.store.byName('alpha')).toBeTruthy();
    expect(await call('vm.list', {})).toMatchObject({ t: 'result', value: [{ name: 'alpha' }] });
    // The window's id comes back, whatever id the socket used.
    expect(await ipc.invoke(IPC.call, windowEvent(APP).e, { t: 'call', id: 4242, method: 'vm.list', params: {} })).toMatchObject({ t: 'result', id: 4242 });
    // A service error comes back as the same error.
    expect(await call('vm.get', { uuid: '00000000-0000-0000-0000-000000000000' })).toMatchObject({ t: 'error', code: 'user', message: expect.stringMatching(/No such VM/) });

    const sent = vi.spyOn(bridge!.client()!, 'call'); // what goes onto the socket
    const get = vi.spyOn(svc, 'vm.get');
    const list = vi.spyOn(svc, 'vm.list');
    // Not a Vireo window.
    expect(await call('vm.list', {}, windowEvent('https://evil.example/').e)).toMatchObject({ t: 'error', code: 'forbidden' });
    // Malformed: not an envelope, another message type, an unknown method, off-contract params.
    expect(await ipc.invoke(IPC.call, windowEvent(APP).e, 'junk')).toMatchObject({ t: 'error', id: -1, code: 'bad-request' });
    expect(await ipc.invoke(IPC.call, windowEvent(APP).e, { t: 'stream.open', id: 9, sid: 1, uuid: created.value.vm.uuid })).toMatchObject({ t: 'error', id: 9, code: 'bad-request' });
    expect(await call('vm.nope', {})).toMatchObject({ t: 'error', code: 'bad-request', message: expect.stringMatching(/unknown method/) });
    expect(await call('vm.get', { uuid: 5 })).toMatchObject({ t: 'error', code: 'invalid' });
    expect(await call('vm.get', { uuid: 'x'.repeat(65) })).toMatchObject({ t: 'error', code: 'invalid' });
    expect(get).not.toHaveBeenCalled();
    expect(list).not.toHaveBeenCalled();
    expect(sent).not.toHaveBeenCalled(); // refused here, before the socket
    // The socket client itself refuses a non-call envelope too (vireo serve's path).
    const raw = await ensureService({ env, noStart: true });
    extra.push(raw);
    expect(await raw.call({ t: 'events', id: 3 })).toMatchObject({ t: 'error', id: 3, code: 'bad-request' });
  });

  it('sends service events to the windows and opens console windows by name', async () => {
    await startBridge();
    const { value } = await call('vm.create', newVmRequest(await iso(), { name: 'beta', storage: { kind: 'none' } as never }));
    const uuid = value.vm.uuid as string;
    // A VM started by another client (the CLI): this window hears it.
    const cli = await ensureService({ env, noStart: true });
    extra.push(cli);
    await cli.request('vm.action', { uuid, action: 'start' });
    await vi.waitFor(() => expect(windowEvents.some((m) => m.name === 'vm.changed' && m.payload.vm.uuid === uuid && m.payload.vm.state === 'running')).toBe(true));
    ipc.send(IPC.openConsoleWindow, windowEvent(APP).e, uuid);
    await vi.waitFor(() => expect(consoles).toEqual([[uuid, 'beta']]));
    // Not from a Vireo window, or not a VM id: nothing opens.
    ipc.send(IPC.openConsoleWindow, windowEvent('https://evil.example/').e, uuid);
    ipc.send(IPC.openConsoleWindow, windowEvent(APP).e, '../etc');
    await new Promise((r) => setTimeout(r, 50));
    expect(consoles).toHaveLength(1);
  });

  it("joins a console window's port to the service's stream: frames and serial bytes both ways", async () => {
    await startBridge();
    const { value } = await call('vm.create', newVmRequest(await iso(), { name: 'gamma', storage: { kind: 'none' } as never }));
    const uuid = value.vm.uuid as string;
    expect(await call('vm.action', { uuid, action: 'start' })).toMatchObject({ t: 'result' });
    const { e, posted } = windowEvent(APP);
    ipc.send(IPC.openStream, e, uuid);
    expect(posted).toHaveLength(1);
    expect(posted[0]).toMatchObject({ channel: STREAM_PORT_CHANNEL, message: { uuid } });
    const port = posted[0]!.port!;
    const got: HostToUi[] = [];
    const last: unknown[] = [];
    port.on('message', (d: unknown) => {
      if (!(d instanceof Uint8Array)) return void last.push(d);
      const m = decodeHostToUi(d);
      got.push(m);
      if (m.op === 'frame') port.postMessage(encodeUiToHost({ op: 'ackFrame' }));
    });
    port.postMessage(encodeUiToHost({ op: 'subscribe', frames: true, serial: true }));
    port.postMessage(encodeUiToHost({ op: 'fullFrame' }));
    port.postMessage(encodeUiToHost({ op: 'serialIn', port: 0, data: new TextEncoder().encode('ping') }));
    await vi.waitFor(() => {
      const serial = Buffer.concat(got.flatMap((m) => (m.op === 'serial' ? [m.data] : []))).toString();
      expect(serial).toContain('ping');
      expect(got.some((m) => m.op === 'frame' && m.width === 64 && m.height === 48)).toBe(true);
    });
    // Not from a Vireo window, or not a VM id: no port.
    const bad = windowEvent('https://evil.example/');
    ipc.send(IPC.openStream, bad.e, uuid);
    ipc.send(IPC.openStream, e, 'nope');
    expect(bad.posted).toHaveLength(0);
    expect(posted).toHaveLength(1);
    // The VM stops: the window is told why, and its port is closed.
    const closed = new Promise<void>((r) => port.once('close', () => r()));
    await call('vm.action', { uuid, action: 'forceoff' });
    await closed;
    expect(last).toEqual([{ t: 'closed', why: expect.any(String) }]);
    // A VM that is not running: a port that says so and closes.
    const again = windowEvent(APP);
    ipc.send(IPC.openStream, again.e, uuid);
    const p2 = again.posted[0]!.port!;
    const said = await new Promise<unknown>((r) => p2.once('message', r));
    expect(said).toMatchObject({ t: 'closed', why: expect.stringMatching(/not running/) });
  });

  it('closing the bridge (quitting the app) leaves a running VM running in the service', async () => {
    await startBridge();
    const { value } = await call('vm.create', newVmRequest(await iso(), { name: 'delta', storage: { kind: 'none' } as never }));
    const uuid = value.vm.uuid as string;
    await call('vm.action', { uuid, action: 'start' });
    const { e, posted } = windowEvent(APP);
    ipc.send(IPC.openStream, e, uuid);
    const port = posted[0]!.port!;
    const portClosed = new Promise<void>((r) => port.once('close', () => r()));
    port.start();
    bridge!.close();
    await portClosed;
    expect(ipc.handlers.size).toBe(0);
    expect([...ipc.listeners.values()].every((s) => s.size === 0)).toBe(true);
    await vi.waitFor(() => expect(host.socket.clients()).toBe(0));
    await new Promise((r) => setTimeout(r, 100));
    expect(svc.supervisor.isRunning(uuid)).toBe(true);
    // The app opened afterwards sees it running.
    ipc = fakeIpc();
    await startBridge();
    expect(await call('vm.list', {})).toMatchObject({ t: 'result', value: [{ uuid, name: 'delta', state: 'running' }] });
    await call('vm.action', { uuid, action: 'forceoff' });
  });

  it('reconnects when the connection to the service is lost', async () => {
    await startBridge();
    const first = bridge!.client()!;
    first.close(); // as if the service went away
    expect(bridge!.client()).toBeNull();
    expect(await call('vm.list', {})).toMatchObject({ t: 'error', code: 'unavailable' });
    await bridge!.connected();
    expect(bridge!.client()).not.toBe(first);
    expect(await call('vm.list', {})).toMatchObject({ t: 'result', value: [] });
    expect(logs.join('\n')).toMatch(/lost the Vireo service.*\n.*connected to the Vireo service again/);
  });

  it('starts the service with the given command: the app binary with --vireo-service (no runAsNode), node with `vireo service`', async () => {
    expect(serviceCommand('/opt/Vireo/vireo', '/opt/Vireo/resources/app.asar', { electron: true, packaged: true }))
      .toEqual({ file: '/opt/Vireo/vireo', args: ['--vireo-service'], env: {} });
    expect(serviceCommand('/src/node_modules/electron/dist/electron', '/src', { electron: true, packaged: false }))
      .toEqual({ file: '/src/node_modules/electron/dist/electron', args: ['/src', '--vireo-service'], env: {} });
    expect(serviceCommand('/usr/bin/node', '/src', { electron: false }))
      .toEqual({ file: '/usr/bin/node', args: ['/src/bin/vireo.js', 'service'], env: {} });
    // ensureService spawns exactly that command when none answers (here one that records itself and exits).
    await host.stop('test');
    const out = path.join(dir, 'spawned.json');
    const script = `require('fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify({ argv: process.argv.slice(1), mark: process.env.VIREO_SPAWN_MARK })); process.exit(3)`;
    await expect(ensureService({ env, command: { file: process.execPath, args: ['-e', script, 'service'], env: { VIREO_SPAWN_MARK: '1' } }, timeoutMs: 5000 })).rejects.toThrow(/exited at once \(code 3\)/);
    expect(JSON.parse(fs.readFileSync(out, 'utf8'))).toEqual({ argv: ['service'], mark: '1' });
    host = await hostService({ service: svc, location: serviceLocation(env), peerCheck: () => null, log: () => undefined }); // for afterEach
  });

  // The command itself, for real: `vireo service` from the built dist, started detached by the bridge's connect.
  const built = fs.existsSync(path.join(appRoot(), 'dist', 'electron', 'cli', 'main.js'));
  if (!built) console.log('SKIP starting a real `vireo service` process: dist/ is not built (npx tsc -p tsconfig.json)');
  it.skipIf(!built)('starts a real `vireo service` with serviceCommand when none runs, and leaves it running when closed', async () => {
    const env2 = { ...env, XDG_RUNTIME_DIR: path.join(dir, 'run2'), VIREO_SERVICE_IDLE_S: '30' };
    const loc = serviceLocation(env2);
    const started: string[] = [];
    bridge = await startServiceBridge({
      connect: () => ensureService({ env: env2, command: serviceCommand(process.execPath, appRoot()), onStarted: (l) => void started.push(l) }),
      ipc,
      newChannel: () => {
        throw new Error('not used');
      },
      windows: () => [],
      trusted: () => true,
      openConsole: () => undefined,
      log: () => undefined,
    });
    try {
      expect(started).toEqual([path.join(dir, 'data', 'vireo', 'logs', 'service.log')]);
      const pid = Number(fs.readFileSync(loc.pidFile, 'utf8'));
      expect(pid).not.toBe(process.pid);
      expect(await call('vm.list', {})).toMatchObject({ t: 'result', value: [] });
      bridge.close();
      bridge = undefined;
      expect(await probe(loc.socket)).toBe(true);
      process.kill(pid, 'SIGTERM');
      await vi.waitFor(async () => expect(await probe(loc.socket)).toBe(false), { timeout: 10000 });
    } finally {
      try {
        process.kill(Number(fs.readFileSync(loc.pidFile, 'utf8')), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  });
});

// `vireo serve` must outlive whatever anyone on this machine sends it (issue 15, finding 1):
// malformed request targets used to end the server with exit code 1, and every engine host
// with it (an engine host exits when its supervisor goes away). Real server, real engine.
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { apiCall, buildGuest, distReady, engineCapability, startServe } from './harness';

const why = distReady() ?? engineCapability();
if (why) console.log(`SKIP serve hardening e2e: ${why}`);

type Serve = Awaited<ReturnType<typeof startServe>>;
let srv: Serve | undefined;

/** Sends one raw HTTP request and returns the whole answer (the server closes). */
function raw(port: number, head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(head));
    let got = '';
    s.on('data', (d) => (got += d));
    s.on('end', () => resolve(got));
    s.on('close', () => resolve(got));
    s.on('error', reject);
    s.setTimeout(10000, () => reject(new Error(`no answer to ${JSON.stringify(head)}`)));
  });
}

async function vmState(app: Serve, uuid: string): Promise<string> {
  const list: { uuid: string; state: string }[] = await apiCall(app, 'vm.list', {});
  return list.find((v) => v.uuid === uuid)?.state ?? 'missing';
}

describe.skipIf(!!why)('vireo serve with malformed requests', () => {
  afterEach(async () => {
    await srv?.stop();
    srv = undefined;
  });

  it('answers 400 to malformed targets (GET and WebSocket upgrade) and the running VM keeps running', async (ctx) => {
    srv = await startServe();
    const echo = buildGuest('echo', srv.dir);
    if (!echo) return ctx.skip('nasm is not installed: cannot build the echo guest');
    const made = await apiCall(srv, 'vm.create', {
      media: { kind: 'kernel', kernel: echo },
      os: 'generic',
      memoryMiB: 32,
      cpus: 1,
      storage: { kind: 'none' },
      name: 'survivor',
      network: 'none',
    });
    expect(made.errors).toEqual([]);
    const uuid: string = made.vm.uuid;
    await apiCall(srv, 'vm.action', { uuid, action: 'start' });
    await expect.poll(() => vmState(srv!, uuid), { timeout: 30000 }).toBe('running');

    const port = Number(new URL(srv.url).port);
    const host = `127.0.0.1:${port}`;
    const upgrade = (target: string) =>
      `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nOrigin: ${srv!.origin}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';
    for (const target of ['/%', '/%00', '/assets/%E0%A4%A', 'http://[/']) {
      expect(await raw(port, `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`), target).toMatch(/^HTTP\/1\.1 400 /);
      expect(await raw(port, upgrade(`${target}?token=${srv.token}`)), `upgrade ${target}`).toMatch(/^HTTP\/1\.1 4\d\d /);
    }
    expect(srv.server.exitCode, srv.output()).toBeNull();
    expect(await vmState(srv, uuid)).toBe('running');
    await apiCall(srv, 'vm.action', { uuid, action: 'forceoff' });
    await expect.poll(() => vmState(srv!, uuid), { timeout: 30000 }).toBe('shutoff');
  });
});

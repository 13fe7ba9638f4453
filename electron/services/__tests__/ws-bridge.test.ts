import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { VireoService } from '../app';
import { resolvePaths } from '../paths';
import { type Bridge, startBridge } from '../ws-bridge';
import { inProcessLauncher } from './fake-engine';

let tmp: string;
let bridge: Bridge;
let svc: VireoService;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-bridge-'));
  const staticDir = path.join(tmp, 'static');
  fs.mkdirSync(staticDir);
  fs.writeFileSync(path.join(staticDir, 'index.html'), '<html>vireo</html>');
  fs.writeFileSync(path.join(tmp, 'secret.txt'), 'secret');
  svc = await new VireoService({ paths: resolvePaths({ HOME: tmp }), launcher: inProcessLauncher(), host: { cpus: 2, memoryMiB: 2048 } }).init();
  bridge = await startBridge({ service: svc, staticDir });
});
afterAll(async () => {
  await bridge.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function get(p: string, host = `127.0.0.1:${bridge.port}`): Promise<{ status: number; body: string; csp?: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: bridge.port, path: p, headers: { host } }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body, csp: res.headers['content-security-policy'] as string | undefined }));
      })
      .on('error', reject);
  });
}

function connect(query: string, origin: string | undefined): Promise<{ ok: boolean; ws?: WebSocket; status?: number }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${bridge.port}/api${query}`, origin ? { origin } : {});
    ws.on('open', () => resolve({ ok: true, ws }));
    ws.on('unexpected-response', (_req, res) => resolve({ ok: false, status: res.statusCode }));
    ws.on('error', () => resolve({ ok: false }));
  });
}

describe('WebSocket bridge (vireo serve)', () => {
  it('binds to loopback and prints a URL with a long random token', () => {
    expect(bridge.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]{32}$/);
  });

  it('serves the page only with the token, with a CSP; no path traversal; no foreign Host', async () => {
    expect((await get('/')).status).toBe(403);
    expect((await get('/?token=wrong')).status).toBe(403);
    const ok = await get(`/?token=${bridge.token}`);
    expect(ok.status).toBe(200);
    expect(ok.csp).toContain("script-src 'self'");
    // Connections only to this bridge's own WebSocket endpoints.
    expect(ok.csp).toContain(`connect-src ws://127.0.0.1:${bridge.port} ws://localhost:${bridge.port};`);
    expect((await get('/../secret.txt')).status).toBe(404);
    expect((await get('/%2e%2e/secret.txt')).status).toBe(404);
    expect((await get(`/?token=${bridge.token}`, 'evil.example:80')).status).toBe(421);
  });

  it('refuses WebSockets with a wrong token or another origin, and answers calls with the right ones', async () => {
    const origin = `http://127.0.0.1:${bridge.port}`;
    expect((await connect('?token=nope', origin)).status).toBe(403);
    expect((await connect(`?token=${bridge.token}`, 'http://evil.example')).status).toBe(403);
    expect((await connect(`?token=${bridge.token}`, undefined)).status).toBe(403);
    const c = await connect(`?token=${bridge.token}`, origin);
    expect(c.ok).toBe(true);
    const reply = await new Promise<any>((resolve) => {
      c.ws!.once('message', (d) => resolve(JSON.parse(String(d))));
      c.ws!.send(JSON.stringify({ t: 'call', id: 7, method: 'host.info', params: {} }));
    });
    expect(reply).toMatchObject({ t: 'result', id: 7, value: { cpus: 2, memoryMiB: 2048 } });
    const bad = await new Promise<any>((resolve) => {
      c.ws!.once('message', (d) => resolve(JSON.parse(String(d))));
      c.ws!.send(JSON.stringify({ t: 'call', id: 8, method: 'vm.delete', params: { uuid: 'x' } }));
    });
    expect(bad).toMatchObject({ t: 'error', id: 8, code: 'invalid' });
    c.ws!.close();
  });

  // Issue 15, finding 1: each of these ended `vireo serve` (and so every VM) with exit code 1.
  it('answers malformed request targets with 400 and keeps serving (plain GET and WebSocket upgrade)', async () => {
    const host = `127.0.0.1:${bridge.port}`;
    const origin = `http://${host}`;
    const raw = (head: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const s = net.connect(bridge.port, '127.0.0.1', () => s.write(head));
        let got = '';
        s.on('data', (d) => (got += d));
        s.on('end', () => resolve(got));
        s.on('error', reject);
        s.setTimeout(5000, () => reject(new Error(`no answer to ${JSON.stringify(head)}`)));
      });
    const upgrade = (target: string) =>
      `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nOrigin: ${origin}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;
    for (const target of ['/%', '/%00', '/a%00b.js', 'http://[/', `/%?token=${bridge.token}`]) {
      const plain = await raw(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      expect(plain, target).toMatch(/^HTTP\/1\.1 400 /);
      const up = await raw(upgrade(target));
      expect(up, `upgrade ${target}`).toMatch(/^HTTP\/1\.1 (400|403|404) /);
      // Still alive and still serving the page.
      expect((await get(`/?token=${bridge.token}`)).status).toBe(200);
    }
    expect((await raw(upgrade(`http://[/api?token=${bridge.token}`)))).toMatch(/^HTTP\/1\.1 400 /);
    expect(await raw('GARBAGE\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect((await get(`/?token=${bridge.token}`)).status).toBe(200);
  });

  it('survives a WebSocket peer that breaks the protocol (oversized frame)', async () => {
    const c = await connect(`?token=${bridge.token}`, `http://127.0.0.1:${bridge.port}`);
    expect(c.ok).toBe(true);
    const closed = new Promise<number>((resolve) => c.ws!.on('close', (code) => resolve(code)));
    c.ws!.on('error', () => undefined); // the client side sees the close; the server must not die
    c.ws!.send('x'.repeat(3 * 1024 * 1024));
    expect(await closed).not.toBe(1000);
    expect((await get(`/?token=${bridge.token}`)).status).toBe(200);
    const again = await connect(`?token=${bridge.token}`, `http://127.0.0.1:${bridge.port}`);
    expect(again.ok).toBe(true);
    again.ws!.close();
  });
});

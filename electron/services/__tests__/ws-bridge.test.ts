import * as fs from 'node:fs';
import * as http from 'node:http';
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
});

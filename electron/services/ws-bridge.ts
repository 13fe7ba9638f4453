// The browser-mode transport: an HTTP server on 127.0.0.1 that serves the built
// renderer and two WebSocket endpoints, /api (contract calls and events, JSON) and
// /stream?vm=UUID (console bytes, stream.ts format). Every request must carry the
// session token, a loopback Host header (no DNS rebinding) and, for WebSockets, an
// Origin equal to this server's own.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { WebSocket, WebSocketServer } from 'ws';
import { type EventName, type ReplyEnvelope, events } from '../common/contracts/api';
import { AckGate, ownBytes } from './ack-gate';
import type { VireoService } from './app';
import { type Backend, localBackend } from './rpc-socket';

export interface BridgeOptions {
  /** The service in this process, or a client of the per-user service (rpc-socket.ts). */
  service: VireoService | Backend;
  /** The built renderer (index.html + assets). */
  staticDir: string;
  port?: number;
  token?: string;
}

export interface Bridge {
  url: string;
  port: number;
  token: string;
  close(): Promise<void>;
}

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.json': 'application/json',
};

/**
 * The renderer's Content-Security-Policy. `connect` lists the only places the page may
 * open connections to: the bridge's own WebSocket endpoints in browser mode, none under
 * Electron (IPC and MessagePorts are not connections).
 */
export function csp(connect: string[]): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self'",
    `connect-src ${connect.length ? connect.join(' ') : "'none'"}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/**
 * The request target as a URL, or null when it is not one a browser would send
 * (`GET http://[/`, a bare `%`): anything anyone on this machine can send must end in
 * an HTTP error, never in an exception that ends the process and every VM with it.
 */
export function requestUrl(raw: string | undefined): URL | null {
  try {
    return new URL(raw ?? '/', 'http://127.0.0.1');
  } catch {
    return null;
  }
}

/** The decoded path, or null when its percent-escapes are malformed or it holds a NUL. */
export function decodedPath(url: URL): string | null {
  let rel: string;
  try {
    rel = decodeURIComponent(url.pathname);
  } catch {
    return null;
  }
  return rel.includes('\0') ? null : rel;
}

function tokenOk(expected: string, given: string | null): boolean {
  if (!given) return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function startBridge(opts: BridgeOptions): Promise<Bridge> {
  const token = opts.token ?? randomBytes(24).toString('base64url');
  const service: Backend = 'call' in opts.service ? opts.service : localBackend(opts.service);
  let port = 0;
  const allowedHosts = () => new Set([`127.0.0.1:${port}`, `localhost:${port}`]);
  const allowedOrigins = () => new Set([`http://127.0.0.1:${port}`, `http://localhost:${port}`]);
  const pageCsp = () => csp([`ws://127.0.0.1:${port}`, `ws://localhost:${port}`]);

  const server = http.createServer((req, res) => {
    try {
      serveStatic(req, res);
    } catch (e) {
      // A bug here must cost one request, not the server and every VM it supervises.
      console.error(`vireo serve: ${req.method} ${JSON.stringify(req.url)}: ${(e as Error).stack ?? e}`);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    }
  });
  // Malformed requests that never reach the handler (bad request lines, headers).
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  });

  function serveStatic(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (!allowedHosts().has(req.headers.host ?? '')) {
      res.writeHead(421).end('wrong host');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    const url = requestUrl(req.url);
    let rel = url && decodedPath(url);
    if (!url || rel === null) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('bad request');
      return;
    }
    // The page itself needs the token; its static assets hold no secrets.
    if (rel === '/' || rel === '/index.html') {
      if (!tokenOk(token, url.searchParams.get('token'))) {
        res.writeHead(403, { 'content-type': 'text/plain' }).end('Vireo: this address needs the token that `vireo serve` printed.');
        return;
      }
      rel = '/index.html';
    }
    const file = path.normalize(path.join(opts.staticDir, rel));
    if (!file.startsWith(path.normalize(opts.staticDir) + path.sep)) {
      res.writeHead(404).end();
      return;
    }
    fs.readFile(file, (err, data) => {
      if (err) {
        res.writeHead(404).end('not found');
        return;
      }
      res.writeHead(200, {
        'content-type': MIME[path.extname(file)] ?? 'application/octet-stream',
        'content-security-policy': pageCsp(),
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
        'cache-control': 'no-store',
      });
      res.end(req.method === 'HEAD' ? undefined : data);
    });
  }

  const wss = new WebSocketServer({ noServer: true, maxPayload: 2 * 1024 * 1024 });
  server.on('upgrade', (req, socket, head) => {
    const refuse = (code: number, why: string) => {
      socket.end(`HTTP/1.1 ${code} ${why}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    // A socket error (the peer resets mid-handshake) must not become an uncaught 'error' event.
    socket.on('error', () => socket.destroy());
    const url = requestUrl(req.url);
    if (!url) return refuse(400, 'Bad Request');
    if (!allowedHosts().has(req.headers.host ?? '')) return refuse(421, 'Misdirected Request');
    if (!allowedOrigins().has(req.headers.origin ?? '')) return refuse(403, 'Forbidden');
    if (!tokenOk(token, url.searchParams.get('token'))) return refuse(403, 'Forbidden');
    if (url.pathname === '/api') {
      wss.handleUpgrade(req, socket, head, (ws) => serveApi(ws));
    } else if (url.pathname === '/stream') {
      const vm = url.searchParams.get('vm') ?? '';
      wss.handleUpgrade(req, socket, head, (ws) => serveStream(ws, vm));
    } else refuse(404, 'Not Found');
  });

  function serveApi(ws: WebSocket): void {
    const off = service.onEvent((name: EventName, payload: unknown) => {
      // Events are checked against the contract before they leave, too.
      const checked = events[name].parse(payload, name);
      send({ t: 'event', name, payload: checked });
    });
    // ws reports a peer's protocol errors (an oversized or malformed frame) as an
    // 'error' event; unheard, that would throw out of the server.
    ws.on('error', () => ws.terminate());
    const send = (m: ReplyEnvelope) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m));
    };
    ws.on('message', async (data, isBinary) => {
      if (isBinary) return ws.close(1003, 'text only');
      let raw: unknown;
      try {
        raw = JSON.parse(data.toString());
      } catch {
        return send({ t: 'error', id: -1, message: 'not JSON', code: 'bad-request' });
      }
      send(await service.call(raw));
    });
    ws.on('close', off);
  }

  function serveStream(ws: WebSocket, vm: string): void {
    let stream;
    try {
      stream = service.openStream(vm);
    } catch (e) {
      ws.close(4404, (e as Error).message.slice(0, 120));
      return;
    }
    const st = stream;
    // A console that acks frames it has not read (its socket stalled) must not grow
    // bufferedAmount without bound: its acks wait while the socket is backed up (ack-gate.ts).
    const gate = new AckGate(() => ws.bufferedAmount, (m) => st.send(m));
    ws.on('error', () => ws.terminate());
    st.onData((d) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(ownBytes(d), { binary: true }, () => gate.drained());
    });
    st.onClose((why) => ws.close(4000, why.slice(0, 120)));
    ws.on('message', (data, isBinary) => {
      if (!isBinary) return ws.close(1003, 'binary only');
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      gate.fromConsole(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
    });
    ws.on('close', () => {
      gate.close();
      st.close();
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/?token=${token}`,
    port,
    token,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections?.();
      }),
  };
}

// Entry point of the engine host process (one per running VM). Under plain Node it
// is started with child_process.fork (IPC channel, structured clone); under
// Electron with utilityProcess.fork (process.parentPort, and MessagePorts handed to
// it carry console streams straight to the renderer).
import { type ToHost, ToHostSchema } from '../common/contracts/engine-host';
import { loadAddon } from './addon';
import { EngineHost } from './host-core';

interface ParentPortLike {
  on(ev: 'message', cb: (e: { data: unknown; ports: Array<{ postMessage(d: unknown): void; on(ev: 'message', cb: (e: { data: unknown }) => void): void; start(): void }> }) => void): void;
  postMessage(msg: unknown): void;
}

function main(): void {
  const parentPort = (process as unknown as { parentPort?: ParentPortLike }).parentPort;
  const post = (msg: unknown) => {
    if (parentPort) parentPort.postMessage(msg);
    else if (process.send && process.connected) process.send(msg);
  };
  let host: EngineHost;
  try {
    const addon = loadAddon();
    // Before any guest runs: give up exec, ptrace, modules, mounts... (docs/architecture.md,
    // "Engine host confinement"). VIREO_NO_CONFINE=1 leaves it off (debugging only).
    if (process.env.VIREO_NO_CONFINE !== '1') {
      const c = addon.confine?.();
      if (!c) process.stderr.write('vireo engine host: this engine build cannot confine itself (rebuild it)\n');
      else if (c.problems.length) process.stderr.write(`vireo engine host: confinement incomplete: ${c.problems.join('; ')}\n`);
    }
    host = new EngineHost(addon, post, (code) => process.exit(code));
  } catch (e) {
    post({ t: 'error', message: (e as Error).message });
    setTimeout(() => process.exit(3), 20);
    return;
  }
  const onMessage = (raw: unknown): ToHost | undefined => {
    try {
      return ToHostSchema.parse(raw, 'supervisor message');
    } catch (e) {
      post({ t: 'error', message: (e as Error).message });
      return undefined;
    }
  };
  if (parentPort) {
    parentPort.on('message', (e) => {
      const data = e.data as { t?: string; sid?: number };
      const port = e.ports?.[0];
      if (port && data && data.t === 'attachPort' && typeof data.sid === 'number') {
        const sid = data.sid;
        host.attachStream(sid, { send: (d) => port.postMessage(d) });
        port.on('message', (m) => {
          if (m.data instanceof Uint8Array) host.streamInput(sid, m.data);
        });
        port.start();
        return;
      }
      const msg = onMessage(e.data);
      if (msg) host.handle(msg);
    });
  } else {
    process.on('message', (raw) => {
      const msg = onMessage(raw);
      if (msg) host.handle(msg);
    });
    // The supervisor went away: nothing may keep a VM running unsupervised.
    process.on('disconnect', () => host.stopNow());
  }
  // SIGTERM (quit, `vireo serve` stopping, a service manager) and SIGINT: stop gracefully:
  // vCPUs stop, disk I/O completes, qcow2 metadata is flushed and the images closed; exit 0.
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => host.stopNow());
  post({ t: 'ready', pid: process.pid });
}

main();

// `vireo serve`: the whole UI in a browser. Binds to 127.0.0.1 only and prints a
// URL with a random token; anything without that token, or from another origin, is
// refused. Also how the end-to-end tests drive the real UI in Chromium.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { appRoot, loadAddon } from '../engine-host/addon';
import { VireoService } from '../services/app';
import type { RpcClient } from '../services/rpc-socket';
import { ensureService } from '../services/service-host';
import { cliLauncher, cliServiceCommand } from './runtime';
import { startBridge } from '../services/ws-bridge';

const HELP = `usage: vireo serve [--port N] [--static DIR] [--standalone]

Serves the Vireo manager to a browser on http://127.0.0.1 (never other
interfaces). Open the printed URL: its token is the only key.
The VMs are those of your Vireo service (\`vireo service --help\`), started
when it is not running: they keep running when this command ends.
  --port N      listen on port N (default: a free port)
  --static DIR  the built renderer (default: dist/renderer)
  --standalone  run the services in this process instead (no service, no
                \`vireo list\` etc.; its VMs stop when this command ends;
                also env VIREO_SERVE_STANDALONE=1)`;

export function engineProblem(): { kvm: string | null; engine: string | null } {
  try {
    const addon = loadAddon();
    return { kvm: addon.kvmProblem(), engine: null };
  } catch (e) {
    return { kvm: null, engine: (e as Error).message };
  }
}

export async function run(args: string[]): Promise<number> {
  let port = 0;
  let staticDir = '';
  let standalone = process.env.VIREO_SERVE_STANDALONE === '1';
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--help' || a === '-h') {
      console.log(HELP);
      return 0;
    } else if (a === '--port') port = Number(args[++i]);
    else if (a === '--static') staticDir = path.resolve(args[++i] ?? '');
    else if (a === '--standalone') standalone = true;
    else {
      console.error(`vireo serve: unknown option '${a}'\n\n${HELP}`);
      return 2;
    }
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error('vireo serve: --port wants a number from 0 to 65535');
    return 2;
  }
  staticDir ||= path.join(appRoot(), 'dist', 'renderer');
  if (!fs.existsSync(path.join(staticDir, 'index.html'))) {
    console.error(`vireo serve: the UI is not built (${staticDir}/index.html is missing): run \`npm run build\``);
    return 2;
  }
  if (!standalone) return serveFromService(staticDir, port);
  const service = await new VireoService({ launcher: cliLauncher(), engineProblem }).init();
  for (const b of service.store.broken) console.error(`vireo serve: skipped ${b.file}: ${b.problem}`);
  for (const f of service.recovered.journalled) console.error(`vireo serve: removed ${f}, left by an unfinished create, clone or delete`);
  for (const f of service.recovered.temporaries) console.error(`vireo serve: removed the temporary ${f}, left by an unfinished copy or write`);
  for (const f of service.recovered.orphans) console.error(`vireo serve: removed ${f}, the snapshots of a VM whose definition is gone (an unfinished delete)`);
  const bridge = await startBridge({ service, staticDir, port });
  console.log(`Vireo is serving on ${bridge.url}`);
  console.log('Open that address in a browser on this machine. Press Ctrl+C to stop (running VMs are stopped too).');
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = () => {
      if (stopping) return;
      stopping = true;
      // Running VMs stop gracefully (their engines flush and close the disks), then the server goes.
      const n = service.store.list().filter((d) => service.supervisor.isRunning(d.uuid)).length;
      if (n) console.log(`Stopping ${n} running VM${n === 1 ? '' : 's'}...`);
      void service
        .shutdown()
        .then((done) => {
          for (const d of done) console.log(`vireo serve: ${d.name} ${d.how === 'stopped' ? 'stopped (disks flushed)' : 'did not stop in time and was killed'}`);
        })
        .finally(() => void bridge.close().then(() => resolve(0)));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

/** The default: a client of the per-user service; the VMs outlive this process. */
async function serveFromService(staticDir: string, port: number): Promise<number> {
  let client: RpcClient;
  try {
    client = await ensureService({ command: cliServiceCommand(), onStarted: (log) => console.error(`vireo serve: started the Vireo service (its log: ${log})`) });
  } catch (e) {
    console.error(`vireo serve: ${(e as Error).message}`);
    return 1;
  }
  const bridge = await startBridge({ service: client, staticDir, port });
  console.log(`Vireo is serving on ${bridge.url}`);
  console.log('Open that address in a browser on this machine. Press Ctrl+C to stop serving (VMs keep running in the Vireo service).');
  return new Promise<number>((resolve) => {
    let done = false;
    const stop = (code: number) => {
      if (done) return;
      done = true;
      client.close();
      void bridge.close().then(() => resolve(code));
    };
    client.onClose((why) => {
      if (done) return;
      console.error(`vireo serve: lost the Vireo service: ${why}`);
      stop(1);
    });
    process.once('SIGINT', () => stop(0));
    process.once('SIGTERM', () => stop(0));
  });
}

// `vireo service`: the per-user service that owns the VMs (services/service-host.ts).
// Clients start it detached when none runs; it can be run in the foreground too.
import * as fs from 'node:fs';
import { loadAddon } from '../engine-host/addon';
import { VireoService } from '../services/app';
import type { Launcher } from '../services/supervisor';
import { peerUidCheck, type PeerCheck } from '../services/rpc-socket';
import { AlreadyRunning, DEFAULT_IDLE_S, hostService, probe, serviceLocation } from '../services/service-host';
import { cliLauncher } from './runtime';
import { engineProblem } from './serve';

const HELP = `usage: vireo service [--idle SECONDS] | --status | --stop

Runs the per-user Vireo service in the foreground: it owns the VM definitions
and the running VMs, and answers \`vireo serve\`, the desktop app and the
\`vireo\` verbs (list, start, console, ...) on a UNIX socket:
  $XDG_RUNTIME_DIR/vireo/service.sock   (or /tmp/vireo-$UID/ without XDG_RUNTIME_DIR)
The directory is 0700, the socket 0600, and a peer of another UID is refused.
Clients start it by themselves when it is not running (its output then goes
to $XDG_DATA_HOME/vireo/logs/service.log).

It exits after SECONDS (default ${DEFAULT_IDLE_S}; env VIREO_SERVICE_IDLE_S) with no VM running,
no client connected and no job running. Stopping it stops its running VMs.
  --idle SECONDS  the idle period (0: never exit when idle)
  --status        say whether a service runs (exit 0) or not (exit 1)
  --stop          stop the running service (and its VMs)`;

export async function run(args: string[]): Promise<number> {
  const loc = serviceLocation();
  let idleS = Number(process.env.VIREO_SERVICE_IDLE_S ?? DEFAULT_IDLE_S);
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--help' || a === '-h') {
      console.log(HELP);
      return 0;
    } else if (a === '--status') {
      const up = await probe(loc.socket);
      const pid = up ? readPid(loc.pidFile) : null;
      console.log(up ? `running (pid ${pid ?? '?'}) on ${loc.socket}` : `not running (${loc.socket})`);
      return up ? 0 : 1;
    } else if (a === '--stop') {
      const pid = (await probe(loc.socket)) ? readPid(loc.pidFile) : null;
      if (!pid) {
        console.log('vireo service: not running');
        return 0;
      }
      process.kill(pid, 'SIGTERM');
      for (let t = 0; t < 100 && (await probe(loc.socket)); t++) await new Promise((r) => setTimeout(r, 100)); // waiting for it to go
      console.log(`vireo service: stopped (pid ${pid})`);
      return 0;
    } else if (a === '--idle') idleS = Number(args[++i]);
    else {
      console.error(`vireo service: unknown option '${a}'\n\n${HELP}`);
      return 2;
    }
  }
  if (!Number.isFinite(idleS) || idleS < 0) {
    console.error('vireo service: --idle wants a number of seconds (0: never)');
    return 2;
  }
  return runService({ idleS, launcher: cliLauncher() });
}

/**
 * Runs the service until it stops (idle, --stop, a signal): `vireo service` under
 * Node with engine hosts as child processes, and the Electron app's binary with
 * --vireo-service (electron/main/main.ts) with engine hosts as utility processes.
 */
export async function runService(o: { idleS: number; launcher: Launcher }): Promise<number> {
  const loc = serviceLocation();
  const idleS = o.idleS;
  let peerCheck: PeerCheck;
  try {
    const addon = loadAddon();
    if (!addon.peerUid) throw new Error('the engine addon has no peerUid(): rebuild it (bash scripts/setup.sh)');
    peerCheck = peerUidCheck(addon.peerUid);
  } catch (e) {
    // Without the addon no VM can run anyway; the 0700 directory still keeps other users out.
    console.error(`vireo service: peer UID check unavailable (${(e as Error).message}); relying on the 0700 directory ${loc.dir}`);
    peerCheck = () => null;
  }
  const service = await new VireoService({ launcher: o.launcher, engineProblem }).init();
  const log = (l: string) => console.error(`${new Date().toISOString()} ${l}`);
  for (const b of service.store.broken) log(`vireo service: skipped ${b.file}: ${b.problem}`);
  for (const f of service.recovered.journalled) log(`vireo service: removed ${f}, left by an unfinished create, clone or delete`);
  for (const f of service.recovered.temporaries) log(`vireo service: removed the temporary ${f}, left by an unfinished copy or write`);
  for (const f of service.recovered.orphans) log(`vireo service: removed ${f}, the snapshots of a VM whose definition is gone (an unfinished delete)`);
  let done!: (code: number) => void;
  const finished = new Promise<number>((r) => (done = r));
  let host;
  try {
    host = await hostService({
      service,
      location: loc,
      peerCheck,
      idleMs: idleS > 0 ? idleS * 1000 : 2 ** 31 - 1,
      log,
      onExit: () => done(0),
    });
  } catch (e) {
    if (e instanceof AlreadyRunning) {
      log(`vireo service: ${e.message}; not starting another`);
      return 0;
    }
    throw e;
  }
  log(`vireo service: pid ${process.pid} serving ${service.paths.config} on ${loc.socket}`);
  // VMs marked autostart (`vireo autostart NAME`, Details → Boot options) start now, like libvirtd's.
  for (const r of await service.autostart()) log(`vireo service: autostart ${r.name}: ${r.error ?? 'started'}`);
  const stop = (sig: string) => void host.stop(`${sig} received`);
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGHUP', () => undefined); // a closed terminal does not end it
  return finished;
}

function readPid(f: string): number | null {
  try {
    const n = Number(fs.readFileSync(f, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

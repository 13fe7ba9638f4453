// The per-user Vireo service: one process that owns the VM definitions and the running
// VMs (like a libvirtd session daemon), reachable on a UNIX socket in
// $XDG_RUNTIME_DIR/vireo/ (or /tmp/vireo-$UID/ without one). `vireo service` runs it;
// `vireo serve`, the Electron app and the `vireo` verbs are its clients
// (ensureService() connects, and starts it detached when none runs).
//
// Lifetime: it runs while a VM runs, a client is connected or a job runs; after
// VIREO_SERVICE_IDLE_S seconds (default 120) with none of those it exits by itself.
// SIGTERM/SIGINT stop it, and the VMs with it (their engine hosts are its children).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { appRoot } from '../engine-host/addon';
import { type VireoPaths, resolvePaths } from './paths';
import { type Backend, type PeerCheck, RpcClient, RpcError, type SocketServer, localBackend, serveSocket } from './rpc-socket';
import type { VireoService } from './app';

export const DEFAULT_IDLE_S = 120;

export interface ServiceLocation {
  dir: string;
  socket: string;
  pidFile: string;
  lockFile: string;
}

export function serviceLocation(env: NodeJS.ProcessEnv = process.env): ServiceLocation {
  const rt = env.XDG_RUNTIME_DIR && path.isAbsolute(env.XDG_RUNTIME_DIR) ? env.XDG_RUNTIME_DIR : null;
  const dir = rt ? path.join(rt, 'vireo') : path.join('/tmp', `vireo-${process.getuid?.() ?? 0}`);
  return { dir, socket: path.join(dir, 'service.sock'), pidFile: path.join(dir, 'service.pid'), lockFile: path.join(dir, 'service.lock') };
}

/**
 * Makes the runtime directory (0700) and checks that it is ours: a directory, not a
 * link, owned by this UID, with no access for group or others. /tmp/vireo-$UID could
 * have been made by someone else first; then we refuse rather than use it.
 */
export function ensureRuntimeDir(dir: string): void {
  fs.mkdirSync(path.dirname(dir), { recursive: true, mode: 0o700 });
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const st = fs.lstatSync(dir);
  const uid = process.getuid?.() ?? st.uid;
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if (st.uid !== uid) throw new Error(`${dir} belongs to UID ${st.uid}, not to you (${uid}): remove it`);
  if (st.mode & 0o077) fs.chmodSync(dir, 0o700);
}

export interface HostOptions {
  service: VireoService;
  location?: ServiceLocation;
  peerCheck: PeerCheck;
  idleMs?: number;
  log?: (line: string) => void;
  /** Called once the service decided to exit (idle or signal). */
  onExit?: (why: string) => void;
}

export interface ServiceHost {
  location: ServiceLocation;
  socket: SocketServer;
  backend: Backend;
  stop(why: string): Promise<void>;
}

/** Whether a service answers on this socket. */
export async function probe(socket: string): Promise<boolean> {
  try {
    const c = await RpcClient.connect(socket, 2000);
    c.close();
    return true;
  } catch {
    return false;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes service.lock (O_EXCL, holding our pid); a lock whose process is gone is taken over. */
function takeLock(lockFile: string): boolean {
  for (let i = 0; i < 2; i++) {
    try {
      const fd = fs.openSync(lockFile, 'wx', 0o600);
      fs.writeSync(fd, String(process.pid));
      fs.closeSync(fd);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number(fs.readFileSync(lockFile, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) return false;
      fs.rmSync(lockFile, { force: true });
    }
  }
  return false;
}

export class AlreadyRunning extends Error {}

/** Binds the socket (0600 in a 0700 directory) and serves; exits when idle. */
export async function hostService(opts: HostOptions): Promise<ServiceHost> {
  const loc = opts.location ?? serviceLocation();
  const log = opts.log ?? ((l: string) => console.error(l));
  ensureRuntimeDir(loc.dir);
  if (!takeLock(loc.lockFile)) throw new AlreadyRunning(`another Vireo service holds ${loc.lockFile}`);
  let socket: SocketServer;
  try {
    if (fs.existsSync(loc.socket)) {
      if (await probe(loc.socket)) throw new AlreadyRunning(`a Vireo service already answers on ${loc.socket}`);
      fs.rmSync(loc.socket, { force: true }); // left by a service that was killed
    }
    const backend = localBackend(opts.service);
    let idleTimer: ReturnType<typeof setTimeout> | undefined;
    const idleMs = opts.idleMs ?? DEFAULT_IDLE_S * 1000;
    // Jobs (clones) are seen through their events: a job runs from its first job.progress to its job.done.
    const jobs = new Set<string>();
    const busy = () => socket.clients() > 0 || jobs.size > 0 || opts.service.store.list().some((d) => opts.service.supervisor.isRunning(d.uuid));
    const rearm = () => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => {
        if (busy()) return rearm();
        void host.stop(`idle for ${Math.round(idleMs / 1000)} s with no VM running and no client`);
      }, idleMs);
    };
    const oldMask = process.umask(0o177); // the socket file is made 0600 from the start
    try {
      socket = await serveSocket({
        backend,
        path: loc.socket,
        peerCheck: opts.peerCheck,
        onRefused: (why) => log(`vireo service: refused a connection: ${why}`),
        onClients: () => rearm(),
      });
    } finally {
      process.umask(oldMask);
    }
    fs.chmodSync(loc.socket, 0o600);
    fs.writeFileSync(loc.pidFile, String(process.pid), { mode: 0o600 });
    const offState = opts.service.onEvent((name, payload) => {
      if (name === 'job.progress') jobs.add((payload as { jobId: string }).jobId);
      if (name === 'job.done') jobs.delete((payload as { jobId: string }).jobId);
      if (name === 'vm.changed' || name === 'vm.exited' || name === 'job.done') rearm();
    });
    rearm();
    let stopping: Promise<void> | undefined;
    const host: ServiceHost = {
      location: loc,
      socket,
      backend,
      stop: (why) =>
        (stopping ??= (async () => {
          clearTimeout(idleTimer);
          offState();
          log(`vireo service: stopping: ${why}`);
          // VMs stop gracefully (engine hosts get SIGTERM: disks drained and flushed), stragglers are killed.
          for (const r of await opts.service.shutdown()) log(`vireo service: ${r.name} ${r.how}`);
          await socket.close();
          for (const f of [loc.socket, loc.pidFile, loc.lockFile]) fs.rmSync(f, { force: true });
          opts.onExit?.(why);
        })()),
    };
    return host;
  } catch (e) {
    fs.rmSync(loc.lockFile, { force: true });
    throw e;
  }
}

// ---- clients ----

export interface EnsureOptions {
  env?: NodeJS.ProcessEnv;
  /** How to start the service: argv[0] and args (default: this Node and bin/vireo.js service). */
  command?: { file: string; args: string[]; env?: NodeJS.ProcessEnv };
  /** Don't start one; fail when none runs. */
  noStart?: boolean;
  timeoutMs?: number;
  /** Told when a service was started (serve prints it). */
  onStarted?: (logFile: string) => void;
  /** Told when a connection was closed before the service answered, and ensureService connects again. */
  onRetry?: (why: string, attempt: number) => void;
}

export function serviceLogFile(paths: VireoPaths): string {
  return path.join(paths.logs, 'service.log');
}

/** `node bin/vireo.js service`: how a client under Node starts the service. */
export function nodeServiceCommand(execPath = process.execPath, root = appRoot()): { file: string; args: string[]; env: NodeJS.ProcessEnv } {
  return { file: execPath, args: [path.join(root, 'bin', 'vireo.js'), 'service'], env: {} };
}

/**
 * A client of this user's service, started detached first when none answers. Checks
 * that the service serves the same configuration directory as this process would
 * (XDG_CONFIG_HOME), so a client never manages another set of VMs by mistake.
 */
export async function ensureService(opts: EnsureOptions = {}): Promise<RpcClient> {
  const env = opts.env ?? process.env;
  const paths = resolvePaths(env);
  // A connection can be reset before its first answer: a child that a service forked just
  // before it died (kill -9) holds a copy of the old listening socket until it execs, and a
  // connection accepted there is closed unanswered. That is a service going away, not an
  // answer: connect again (starting one if none runs now), for as long as the start may take.
  const deadline = Date.now() + (opts.timeoutMs ?? 15000);
  for (let attempt = 1; ; attempt++) {
    const client = await connectOrStart(opts, env, paths, deadline);
    let info: { configPath: string };
    try {
      info = await client.request('host.info', {});
    } catch (e) {
      client.close();
      if (!(e instanceof RpcError) || e.code !== 'unavailable' || Date.now() > deadline) throw e;
      opts.onRetry?.((e as Error).message, attempt);
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    if (path.resolve(info.configPath) !== path.resolve(paths.config)) {
      client.close();
      throw new Error(
        `the Vireo service on ${serviceLocation(env).socket} manages ${info.configPath}, not ${paths.config} (XDG_CONFIG_HOME differs); ` +
          'stop it (vireo service --stop) or set XDG_RUNTIME_DIR to give this configuration its own service',
      );
    }
    return client;
  }
}

/** A connection to this user's service socket, starting the service detached when nothing answers. */
async function connectOrStart(opts: EnsureOptions, env: NodeJS.ProcessEnv, paths: VireoPaths, deadline: number): Promise<RpcClient> {
  const loc = serviceLocation(env);
  let client = await RpcClient.connect(loc.socket).catch(() => null);
  if (!client) {
    if (opts.noStart) throw new Error(`no Vireo service runs (nothing answers on ${loc.socket})`);
    fs.mkdirSync(paths.logs, { recursive: true, mode: 0o700 });
    const logFile = serviceLogFile(paths);
    const out = fs.openSync(logFile, 'a', 0o600);
    // Under Node: `node bin/vireo.js service`. The Electron app passes its own command
    // (its binary with --vireo-service: electron/main/service-bridge.ts serviceCommand).
    const cmd = opts.command ?? nodeServiceCommand();
    const child = spawn(cmd.file, cmd.args, { detached: true, stdio: ['ignore', out, out], env: { ...env, ...cmd.env } });
    fs.closeSync(out);
    let exited: string | null = null;
    child.once('exit', (code, sig) => (exited = `the Vireo service exited at once (${sig ?? `code ${code}`}); see ${logFile}`));
    child.once('error', (e) => (exited = `the Vireo service could not be started: ${e.message}`));
    child.unref();
    while (!client) {
      client = await RpcClient.connect(loc.socket).catch(() => null);
      if (client) break;
      // Another client may have started a service at the same time: ours then exits (lock held) and theirs answers.
      if (exited && !(await probe(loc.socket))) {
        await new Promise((r) => setTimeout(r, 200));
        client = await RpcClient.connect(loc.socket).catch(() => null);
        if (!client) throw new Error(exited);
        break;
      }
      if (Date.now() > deadline) throw new Error(`the Vireo service did not answer on ${loc.socket} within ${Math.round((opts.timeoutMs ?? 15000) / 1000)} s; see ${logFile}`);
      await new Promise((r) => setTimeout(r, 50)); // polling the socket the starting service binds
    }
    opts.onStarted?.(logFile);
  }
  return client;
}

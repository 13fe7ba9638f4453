// `kill -9` at random points of create / clone / delete, then the next start on the same
// files (issue 15: "Safe with bad input", finding 9 and its "Done means" item). A real
// `vireo service` (the per-user service that owns the VMs and their engine hosts) runs in
// a private HOME / XDG tree; each round picks an operation and a delay from a seeded PRNG,
// sends the operation over the service's socket, and after the delay SIGKILLs the service,
// or, in a round that clones a paused running VM, either the service or that VM's engine
// host. Then a new service starts on the same files, and the test checks:
//   - no process of the killed generation is left (engine hosts, cp, vireo-img: each
//     service generation runs with its own VIREO_KILL_GEN in its environment, inherited by
//     everything it starts, and /proc is searched for it);
//   - every definition parses, is named after its UUID and is listed by the new service;
//     those from before the round are byte for byte what they were (the delete's target is
//     gone or intact), and at most the round's new VM was added;
//   - no journal entry, no hidden temporary (`.X.tmp`, vireo-img's `.vireo-convert-`), no
//     `.partial` managed save, no snapshot directory or saved state of an unknown VM;
//   - every file in the pool belongs to a definition, every disk a definition names exists,
//     and each image is whole: raw ones have the size they were made with, qcow2 ones pass
//     `qemu-img check` with that virtual size, a full clone's content is its source's
//     (sha256 or `qemu-img compare`), a linked clone is an overlay on its source.
// Before each operation the test asks what the UI asks first (the wizard's dry run, the
// Clone and Delete dialogs' plans), so the kill lands in the operation itself. Delays run
// from 0 to 125 % of the operation's duration on this host: measured at the start (each
// operation once on a fresh service, no kill), then followed through the rounds.
// VIREO_KILL_ROUNDS sets the rounds (default 50), VIREO_KILL_SEED the PRNG's seed (printed;
// a failure prints the round, operation, victim, delay and the seed to run it again; the
// operations and delay fractions repeat, the milliseconds follow the host's speed).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type VmDefinition, VmDefinitionSchema } from '../electron/common/contracts/vm';
import { RpcClient } from '../electron/services/rpc-socket';
import { ROOT, buildGuest, distReady, engineCapability, isolatedEnv } from './harness';

const notBuilt = distReady();
const noQemuImg = spawnSync('qemu-img', ['--version']).status === 0 ? null : 'qemu-img is not installed';
const skip = notBuilt ?? noQemuImg;
if (skip) console.log(`SKIP kill-recovery e2e: ${skip}`);

const ROUNDS = Number(process.env.VIREO_KILL_ROUNDS ?? 50);
const SEED = Number(process.env.VIREO_KILL_SEED ?? Math.floor(Math.random() * 1e6));
let state = SEED;
/** mulberry32: a small PRNG whose every bit is usable; [0, n). */
function rnd(n: number): number {
  state = (state + 0x6d2b79f5) | 0;
  let t = Math.imul(state ^ (state >>> 15), 1 | state);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) % n;
}

const MiB = 1024 * 1024;
/** Every disk in this test: sources, new disks, clones (small: this host has 2 busy cores). */
const DISK = 4 * MiB;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const { dir, env } = isolatedEnv('vireo-kill-');
const cfg = path.join(dir, 'config', 'vireo');
const pool = path.join(dir, 'data', 'vireo', 'images');
const sock = path.join(dir, 'run', 'vireo', 'service.sock');

// ---- one service generation ----

interface Gen {
  id: string;
  proc: ChildProcess;
  client: RpcClient;
  log: () => string;
  exited: Promise<void>;
}
let gen: Gen | undefined;
let genCount = 0;

async function startService(): Promise<Gen> {
  const id = `${process.pid}-${genCount++}-${crypto.randomBytes(4).toString('hex')}`;
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin', 'vireo.js'), 'service', '--idle', '0'], {
    env: { ...env, VIREO_KILL_GEN: id },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  // A test run that ends early must not leave a service (and its VMs) running.
  const onExit = () => proc.exitCode === null && proc.signalCode === null && proc.kill('SIGKILL');
  process.once('exit', onExit);
  const exited = new Promise<void>((r) => proc.once('exit', () => (process.off('exit', onExit), r())));
  const deadline = Date.now() + 60000;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`vireo service exited (${proc.exitCode ?? proc.signalCode}):\n${log}`);
    const client = await RpcClient.connect(sock, 2000).catch(() => null);
    if (client) {
      try {
        await client.request('host.info', {});
        return { id, proc, client, log: () => log, exited };
      } catch (e) {
        // A child the killed service forked a moment before its death holds a copy of the old
        // listening socket until it execs (fork copies every descriptor; exec closes the
        // close-on-exec ones): a connection accepted there is reset. Counted, then retried.
        resets.push((e as Error).message);
        client.close();
      }
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL'); // not left behind by a failed start
      throw new Error(`vireo service did not answer on ${sock}:\n${log}`);
    }
    await sleep(30); // polling the socket the new service binds
  }
}
const resets: string[] = [];

async function killService(g: Gen): Promise<void> {
  g.client.close();
  if (g.proc.exitCode === null && g.proc.signalCode === null) g.proc.kill('SIGKILL');
  await g.exited;
}

/** Processes (pid, command line) whose environment carries this generation's mark. */
function procsOf(id: string): Array<{ pid: number; cmd: string }> {
  const mark = Buffer.from(`VIREO_KILL_GEN=${id}\0`);
  const out: Array<{ pid: number; cmd: string }> = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const envb = fs.readFileSync(`/proc/${p}/environ`);
      if (envb.indexOf(mark) < 0) continue;
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      if (/\) Z /.test(stat)) continue; // a zombie is dead, only not yet reaped
      out.push({ pid: Number(p), cmd: fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' ').trim() });
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return out;
}

// ---- files ----

function defs(): Map<string, string> {
  const out = new Map<string, string>();
  const vms = path.join(cfg, 'vms');
  if (!fs.existsSync(vms)) return out;
  for (const f of fs.readdirSync(vms)) out.set(f, fs.readFileSync(path.join(vms, f), 'utf8'));
  return out;
}

function walk(d: string, out: string[] = []): string[] {
  if (!fs.existsSync(d)) return out;
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    out.push(p);
    if (e.isDirectory()) walk(p, out);
  }
  return out;
}

const sha = (f: string) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
function qemuImg(args: string[]): { status: number | null; out: string } {
  const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}
function qcowInfo(f: string): { 'virtual-size': number; 'backing-filename'?: string } {
  const r = qemuImg(['info', '-U', '--output=json', f]);
  expect(r.status, r.out).toBe(0);
  return JSON.parse(r.out);
}

/** Where a VM made by this test came from, to judge whether its disk is whole. */
type Origin = { kind: 'create'; format: 'raw' | 'qcow2' } | { kind: 'full'; src: string } | { kind: 'linked'; src: string };

// ---- the test ----

let keep = false;
afterAll(() => {
  if (!keep) fs.rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!!skip)('kill -9 of the Vireo service or an engine host during create / clone / delete', () => {
  afterAll(async () => {
    if (gen) {
      gen.client.close();
      gen.proc.kill('SIGTERM'); // a graceful stop: its VMs go with it
      await Promise.race([gen.exited, sleep(15000)]);
      if (gen.proc.exitCode === null && gen.proc.signalCode === null) await killService(gen);
    }
  });

  it(`leaves no orphaned or partial files, no process, and intact definitions after the next start (×${ROUNDS})`, { timeout: 900_000 }, async () => {
    const t0 = Date.now();
    console.log(`kill-recovery: ${ROUNDS} rounds, VIREO_KILL_SEED=${SEED}, files in ${dir}`);
    const noEngine = engineCapability();
    const echo = noEngine ? null : path.join(ROOT, 'native', 'out', 'core', 'guests', 'echo.bin');
    const guest = echo && fs.existsSync(echo) ? echo : noEngine ? null : buildGuest('echo', dir);
    if (!guest) console.log(`kill-recovery: no engine-host rounds: ${noEngine ?? 'no echo guest (nasm missing)'}`);

    gen = await startService();
    const call = <T = any>(method: string, params: unknown): Promise<T> => (gen!.client.request as any)(method, params);
    const iso = path.join(dir, 'media.iso');
    fs.writeFileSync(iso, Buffer.alloc(64 * 1024, 1));
    const origins = new Map<string, Origin>();
    const req = (name: string, format: 'raw' | 'qcow2', media: unknown = { kind: 'iso', path: iso }) => ({
      media,
      os: 'generic',
      memoryMiB: 32,
      cpus: 1,
      storage: { kind: 'create', sizeGiB: DISK / 1024 / MiB, format },
      name,
      network: 'none',
    });

    // Sources with real data, so a full clone copies for a while and its content can be compared.
    const data = path.join(dir, 'data.raw');
    const buf = Buffer.alloc(DISK);
    for (let i = 0; i < DISK; i += 4) buf.writeUInt32LE((i * 2654435761) >>> 0, i);
    fs.writeFileSync(data, buf);
    const src = (await call('vm.create', req('src', 'raw'))).vm as VmDefinition;
    const srcq = (await call('vm.create', req('srcq', 'qcow2'))).vm as VmDefinition;
    fs.copyFileSync(data, src.disks[0]!.path);
    const fillQcow = (to: string) => {
      const tmpq = path.join(dir, 'fill.qcow2');
      expect(qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', data, tmpq]).status).toBe(0);
      fs.renameSync(tmpq, to);
    };
    fillQcow(srcq.disks[0]!.path);
    const srcSha = sha(src.disks[0]!.path);
    const sources = new Map<string, VmDefinition>([['src', src], ['srcq', srcq]]);
    let runVm: VmDefinition | undefined;
    if (guest) {
      runVm = (await call('vm.create', req('run', 'qcow2', { kind: 'kernel', kernel: guest }))).vm as VmDefinition;
      fillQcow(runVm.disks[0]!.path);
      sources.set('run', runVm);
    }

    const stateOf = async (uuid: string): Promise<string | undefined> => ((await call<any[]>('vm.list', {})).find((v) => v.uuid === uuid) as { state?: string } | undefined)?.state;
    const waitState = async (uuid: string, want: string, ms = 60000) => {
      const end = Date.now() + ms;
      for (;;) {
        const st = await stateOf(uuid);
        if (st === want) return;
        if (Date.now() > end) throw new Error(`VM state ${st}, not ${want}`);
        await sleep(50);
      }
    };
    /** Starts the running-VM source and pauses it (a full clone of a paused VM is allowed: pause flushed its disks). */
    const pauseRun = async () => {
      if (!runVm) throw new Error('no run VM');
      await call('vm.action', { uuid: runVm.uuid, action: 'start' });
      await waitState(runVm.uuid, 'running');
      await call('vm.action', { uuid: runVm.uuid, action: 'pause' });
      await waitState(runVm.uuid, 'paused');
    };
    /** A job's end (job.done), seen on this generation's client. */
    const jobDone = (client: RpcClient): { wait: (jobId: string) => Promise<{ ok: boolean; error?: string }> } => {
      const done = new Map<string, { ok: boolean; error?: string }>();
      const waiters = new Map<string, (r: { ok: boolean; error?: string }) => void>();
      client.onEvent((name, p) => {
        if (name !== 'job.done') return;
        const d = p as { jobId: string; ok: boolean; error?: string };
        done.set(d.jobId, d);
        waiters.get(d.jobId)?.(d);
      });
      return { wait: (jobId) => (done.has(jobId) ? Promise.resolve(done.get(jobId)!) : new Promise((r) => waiters.set(jobId, r))) };
    };

    type Op = 'create-raw' | 'create-qcow2' | 'clone-full' | 'clone-linked' | 'delete' | 'clone-paused';
    /** Sends one operation; resolves when it has ended (its reply, or a clone's job.done). */
    const begin = (op: Op, name: string, victim?: VmDefinition, from?: VmDefinition): Promise<unknown> => {
      const c = gen!.client;
      if (op === 'create-raw' || op === 'create-qcow2') {
        origins.set(name, { kind: 'create', format: op === 'create-raw' ? 'raw' : 'qcow2' });
        return c.request('vm.create', req(name, op === 'create-raw' ? 'raw' : 'qcow2') as any);
      }
      if (op === 'delete') {
        return c.request('vm.delete', { uuid: victim!.uuid, deleteDisks: victim!.disks.filter((d) => d.media === 'disk').map((d) => d.path) });
      }
      const linked = op === 'clone-linked';
      origins.set(name, { kind: linked ? 'linked' : 'full', src: from!.name });
      const jobs = jobDone(c);
      return c.request('vm.clone', { uuid: from!.uuid, name, mode: linked ? 'linked' : 'full' }).then((r) => {
        if (!r.jobId) throw new Error(`clone refused: ${JSON.stringify(r.errors)}`);
        return jobs.wait(r.jobId).then((d) => {
          if (!d.ok) throw new Error(`clone failed: ${d.error}`);
        });
      });
    };

    /**
     * What a client asks first, as the UI does (the wizard's dry-run check, the Clone and
     * Delete dialogs' plans): the first create on a fresh service also loads osinfo-db,
     * seconds here, and the kill should land in the operation, not in that.
     */
    const warm = async (op: Op, name: string, victim?: VmDefinition, from?: VmDefinition): Promise<void> => {
      if (op === 'create-raw' || op === 'create-qcow2') {
        const r = await call<{ errors: unknown[] }>('vm.create', { ...req(name, op === 'create-raw' ? 'raw' : 'qcow2'), dryRun: true });
        expect(r.errors).toEqual([]);
      } else if (op === 'delete') await call('vm.deletePlan', { uuid: victim!.uuid });
      else await call('vm.clonePlan', { uuid: from!.uuid });
    };

    // ---- calibration: each operation once, no kill, timed ----
    const dur: Record<string, number> = {};
    // Each on a fresh service, as in the rounds (a first call pays for what a warm service has cached).
    const timed = async (key: string, op: Op, name: string, victim?: VmDefinition, from?: VmDefinition) => {
      await killService(gen!);
      gen = await startService();
      if (op === 'clone-paused') await pauseRun();
      await warm(op, name, victim, from);
      const s = Date.now();
      await begin(op, name, victim, from);
      dur[key] = Date.now() - s;
    };
    await timed('create-raw', 'create-raw', 'cal-r');
    await timed('create-qcow2', 'create-qcow2', 'cal-q');
    await timed('clone-full', 'clone-full', 'cal-c', undefined, src);
    await timed('clone-full-q', 'clone-full', 'cal-cq', undefined, srcq);
    await timed('clone-linked', 'clone-linked', 'cal-l', undefined, srcq);
    const calR = (await call<any[]>('vm.list', {})).find((v) => v.name === 'cal-r') as VmDefinition;
    await timed('delete', 'delete', '', calR);
    if (runVm) {
      await timed('clone-paused', 'clone-paused', 'cal-p', undefined, runVm);
      await call('vm.action', { uuid: runVm.uuid, action: 'forceoff' });
      await waitState(runVm.uuid, 'shutoff');
    }
    console.log(`kill-recovery: calibration (ms, no kill): ${JSON.stringify(dur)}`);
    // New qcow2 VMs get a snapshot (a disk snapshot and its list under <config>/snapshots/<uuid>/),
    // so that a delete has that to remove too.
    const snapshot = async (def: VmDefinition) => {
      if (!def.disks.some((d) => d.media === 'disk') || def.disks.some((d) => d.media === 'disk' && d.format !== 'qcow2')) return;
      const r = await call<{ errors: unknown[] }>('snapshot.create', { uuid: def.uuid, name: 's1' });
      expect(r.errors).toEqual([]);
    };
    for (const v of await call<VmDefinition[]>('vm.list', {})) if (v.name.startsWith('cal-')) await snapshot(v);

    // ---- what must hold after every next start ----
    const verified = new Map<string, string>();
    const compared = new Map<string, string>();
    const check = (before: Map<string, string>, round: { name: string; target?: string }): { added: string[]; gone: boolean } => {
      // no journal entry, no hidden temporary, no partial save, anywhere Vireo writes
      const pending = path.join(cfg, 'pending');
      expect(fs.existsSync(pending) ? fs.readdirSync(pending) : [], 'journal entries left').toEqual([]);
      const leftovers = [...walk(cfg), ...walk(path.join(dir, 'data', 'vireo'))].filter((p) => /\.tmp$|\.vireo-convert-|\.partial$/.test(path.basename(p)));
      expect(leftovers, 'temporaries left').toEqual([]);
      // definitions: parse, named by UUID, before-round ones intact, at most the round's new one added
      const after = defs();
      const byUuid = new Map<string, VmDefinition>();
      for (const [f, text] of after) {
        const def = VmDefinitionSchema.parse(JSON.parse(text), f);
        expect(f, 'definition file name').toBe(`${def.uuid}.json`);
        byUuid.set(def.uuid, def);
      }
      let gone = false;
      for (const [f, text] of before) {
        if (f === round.target && !after.has(f)) {
          gone = true;
          continue;
        }
        expect(after.get(f), `definition ${f}`).toBe(text);
      }
      const added = [...after.keys()].filter((f) => !before.has(f));
      expect(added.length, `definitions added: ${added.join(', ')}`).toBeLessThanOrEqual(1);
      for (const f of added) expect(byUuid.get(f.slice(0, -5))!.name).toBe(round.name);
      // per-VM state of unknown VMs: snapshots and managed saves
      const snaps = path.join(cfg, 'snapshots');
      for (const u of fs.existsSync(snaps) ? fs.readdirSync(snaps) : []) expect(byUuid.has(u), `snapshots of unknown VM ${u}`).toBe(true);
      const saves = path.join(cfg, 'save');
      for (const f of fs.existsSync(saves) ? fs.readdirSync(saves) : []) expect(byUuid.has(f.replace(/\.vstate$/, '')), `saved state ${f} of an unknown VM`).toBe(true);
      // the pool: every file belongs to a definition, every disk exists and is whole
      const used = new Map<string, { def: VmDefinition; format: string }>();
      for (const def of byUuid.values()) {
        for (const d of def.disks) {
          if (!d.path) continue;
          expect(fs.existsSync(d.path), `${def.name}'s disk ${d.path}`).toBe(true);
          if (d.media === 'disk') used.set(d.path, { def, format: d.format });
        }
      }
      for (const f of fs.readdirSync(pool)) {
        const p = path.join(pool, f);
        const u = used.get(p);
        expect(u, `orphaned file ${f} in the pool`).toBeDefined();
        if (u!.format === 'qcow2') {
          // qemu-img runs on images that are new or changed since they last passed (inode, size, mtime, ctime)
          const st = fs.statSync(p);
          const id = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
          if (verified.get(p) === id) continue;
          const r = qemuImg(['check', '-U', p]);
          expect(r.status, `qemu-img check ${f}: ${r.out}`).toBe(0);
          expect(qcowInfo(p)['virtual-size'], `virtual size of ${f}`).toBe(DISK);
          verified.set(p, id);
        } else expect(fs.statSync(p).size, `size of ${f}`).toBe(DISK);
      }
      // the sources are untouched; the new VM's disk is what its operation makes
      expect(sha(src.disks[0]!.path), 'src disk').toBe(srcSha);
      for (const s of [srcq, runVm]) {
        if (!s) continue;
        const st = fs.statSync(s.disks[0]!.path);
        const id = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
        if (compared.get(s.name) === id) continue;
        expect(qemuImg(['compare', '-U', '-f', 'raw', '-F', 'qcow2', data, s.disks[0]!.path]).status, `${s.name}'s disk`).toBe(0);
        compared.set(s.name, id);
      }
      for (const f of added) {
        const def = byUuid.get(f.slice(0, -5))!;
        const o = origins.get(def.name)!;
        const disk = def.disks.find((d) => d.media === 'disk')!.path;
        if (o.kind === 'full') {
          const from = sources.get(o.src)!;
          if (from.disks[0]!.format === 'raw') expect(sha(disk), `${def.name}: a whole copy of ${o.src}`).toBe(srcSha);
          else expect(qemuImg(['compare', '-U', '-f', 'raw', '-F', 'qcow2', data, disk]).status, `${def.name}: a whole copy of ${o.src}`).toBe(0);
        } else if (o.kind === 'linked') {
          expect(qcowInfo(disk)['backing-filename'], `${def.name}'s backing file`).toBe(sources.get(o.src)!.disks[0]!.path);
        } else expect(def.disks.find((d) => d.media === 'disk')!.format).toBe(o.format);
      }
      return { added, gone };
    };

    // ---- the rounds ----
    const outcomes: Record<string, number> = {};
    // Delays from 0 to 125 % of the operation's duration: before, during and after it. The
    // estimate follows this host's load: an operation that ended before its kill gives a
    // sample; one still unfinished near the estimate's end raises it.
    const FRACTION = 1.25;
    for (let round = 0; round < ROUNDS; round++) {
      const before = defs();
      const list = (await call<VmDefinition[]>('vm.list', {})).filter((v) => !sources.has(v.name));
      const weights: Array<[Op, number]> = [['create-raw', 2], ['create-qcow2', 2], ['clone-full', 3], ['clone-linked', 1]];
      if (list.length) weights.push(['delete', 4]);
      if (runVm) weights.push(['clone-paused', 2]);
      let op: Op;
      if (list.length >= 6) op = 'delete';
      else {
        let r = rnd(weights.reduce((a, w) => a + w[1], 0));
        op = weights.find((w) => (r -= w[1]) < 0)![0];
      }
      const name = `r${round}`;
      let victim: VmDefinition | undefined;
      let from: VmDefinition | undefined;
      let key: string = op;
      if (op === 'delete') victim = list[rnd(list.length)];
      if (op === 'clone-full') {
        from = rnd(2) ? src : srcq;
        key = from === src ? 'clone-full' : 'clone-full-q';
      }
      if (op === 'clone-linked') from = srcq;
      if (op === 'clone-paused') from = runVm;
      const killHost = op === 'clone-paused' && rnd(2) === 1;
      const frac = rnd(1000) / 1000;
      const est = dur[key]!;
      const delay = Math.round(frac * FRACTION * est);
      const what = `round ${round} of seed ${SEED}: ${op}${from ? ` of ${from.name}` : ''}${victim ? ` of ${victim.name}` : ''}, SIGKILL to the ${killHost ? 'engine host' : 'service'} after ${delay} ms (${Math.round(frac * FRACTION * 100)} % of ${est} ms)`;
      try {
        if (op === 'clone-paused') await pauseRun();
        await warm(op, name, victim, from);
        const old = gen!;
        const sent = Date.now();
        let took: number | undefined;
        const running = begin(op, name, victim, from).then(
          () => ((took = Date.now() - sent), 'finished'),
          (e: Error) => `stopped: ${e.message}`,
        );
        await sleep(delay);
        if (took !== undefined) dur[key] = Math.round((est + took) / 2);
        else if (delay >= 0.8 * est) dur[key] = Math.round(est * 1.5);
        if (killHost) {
          const host = procsOf(old.id).find((p) => /engine-host\/main\.js/.test(p.cmd) && p.cmd.includes(runVm!.uuid));
          expect(host, 'the paused VM\'s engine host').toBeDefined();
          process.kill(host!.pid, 'SIGKILL');
          // The clone reads the image the pause flushed: it goes on to its end without the host.
          const how = await Promise.race([running, sleep(60000).then(() => 'still running after 60 s')]);
          expect(how, 'the clone after its source\'s engine host was killed').toBe('finished');
          await waitState(runVm!.uuid, 'crashed');
        }
        await killService(old);
        gen = await startService();
        // Nothing of the killed generation may outlive it: cp and vireo-img die with it (gone by
        // the time the new service answers), engine hosts stop their VM and exit when it goes.
        const isHost = (p: { cmd: string }) => /engine-host\/main\.js/.test(p.cmd);
        let left = procsOf(old.id);
        expect(left.filter((p) => !isHost(p)).map((p) => `${p.pid} ${p.cmd}`), 'helpers of the killed generation').toEqual([]);
        const end = Date.now() + 20000;
        while (left.length && Date.now() < end) {
          await sleep(100);
          left = procsOf(old.id);
        }
        expect(left.map((p) => `${p.pid} ${p.cmd}`), 'processes of the killed generation').toEqual([]);
        const { added, gone } = check(before, { name, ...(victim ? { target: `${victim.uuid}.json` } : {}) });
        expect((await call<unknown[]>('vm.list', {})).length, 'VMs listed by the new service').toBe(defs().size);
        const log = gen.log();
        const cleaned = [/left by an unfinished create, clone or delete/.test(log) ? 'journal' : '', /removed the temporary/.test(log) ? 'temps' : '', /the snapshots of a VM whose definition is gone/.test(log) ? 'snapshots' : ''].filter(Boolean).join('+');
        const outcome = `${op}${killHost ? '(host)' : ''}:${added.length ? 'made' : gone ? 'deleted' : 'nothing'}${cleaned ? `:${cleaned}` : ''}`;
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        console.log(`kill-recovery: ${what} -> ${outcome}`);
        const made = added.length ? defs().get(added[0]!) : undefined;
        if (made) await snapshot(VmDefinitionSchema.parse(JSON.parse(made)));
      } catch (e) {
        keep = true;
        console.log(`kill-recovery FAILED in ${what}\n(reproduce: VIREO_KILL_SEED=${SEED} VIREO_KILL_ROUNDS=${round + 1}; files kept in ${dir})\nservice log:\n${gen?.log() ?? ''}`);
        (e as Error).message = `${what}: ${(e as Error).message}`;
        throw e;
      }
    }
    console.log(`kill-recovery outcomes (op:result[:what the next start cleaned]): ${JSON.stringify(outcomes)}`);
    console.log(`kill-recovery: connections to the old socket reset while the new service started: ${resets.length}${resets.length ? ` (${[...new Set(resets)].join('; ')})` : ''}`);
    console.log(`kill-recovery: ${ROUNDS} rounds in ${((Date.now() - t0) / 1000).toFixed(1)} s; durations at the end (ms): ${JSON.stringify(dur)}`);
  });
});

// `kill -9` of a real `vireo serve` at random points of create / clone / delete, then a
// fresh start on the same files (issue 15, finding 9): after each next start there is
// no orphaned or partial file in the pool, no hidden temporary anywhere, no journal entry
// left, no `cp` still running, and every definition loads and is what it was (or is the
// one the interrupted request made or removed). VIREO_KILL_ROUNDS sets the number of
// rounds (default 6; the issue's ×50 is VIREO_KILL_ROUNDS=50). VIREO_KILL_SEED fixes the
// random sequence.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { VmDefinitionSchema } from '../electron/common/contracts/vm';
import { apiCall, distReady, startServe } from './harness';

const why = distReady();
if (why) console.log(`SKIP kill-recovery e2e: ${why}`);

const ROUNDS = Number(process.env.VIREO_KILL_ROUNDS ?? 6);
let seed = Number(process.env.VIREO_KILL_SEED ?? Date.now() % 100000);
console.log(`kill-recovery: ${ROUNDS} rounds, VIREO_KILL_SEED=${seed}`);
/** mulberry32: a small PRNG whose every bit is usable. */
function rnd(n: number): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return (((t ^ (t >>> 14)) >>> 0) % 4294967296) % n;
}

type Serve = Awaited<ReturnType<typeof startServe>>;
const DISK_MIB = 48;

/** Sends a call and does not wait for its answer. Resolves once it is on the wire. */
async function fire(app: Serve, method: string, params: unknown): Promise<void> {
  const WebSocket = (await import('ws')).default;
  const u = new URL(app.url);
  const ws = new WebSocket(`ws://${u.host}/api?token=${app.token}`, { origin: app.origin });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.on('error', () => undefined); // the server is about to be killed
  ws.send(JSON.stringify({ t: 'call', id: 1, method, params }));
}

function defs(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const vms = path.join(dir, 'config', 'vireo', 'vms');
  if (!fs.existsSync(vms)) return out;
  for (const f of fs.readdirSync(vms)) out.set(f, fs.readFileSync(path.join(vms, f), 'utf8'));
  return out;
}

function cpsUnder(dir: string): string[] {
  const ps = spawnSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' }).stdout;
  return ps.split('\n').filter((l) => l.includes(dir) && /\bcp\b/.test(l));
}

/** Everything the next start must have put right. */
function checkTree(dir: string): void {
  const cfg = path.join(dir, 'config', 'vireo');
  const pool = path.join(dir, 'data', 'vireo', 'images');
  for (const d of [pool, path.join(cfg, 'vms'), path.join(cfg, 'pools'), path.join(cfg, 'pending')]) {
    if (!fs.existsSync(d)) continue;
    const tmps = fs.readdirSync(d).filter((f) => f.endsWith('.tmp') || f.includes('.vireo-convert-')); // vireo-img convert's too
    expect(tmps, `temporaries left in ${d}`).toEqual([]);
  }
  expect(fs.existsSync(path.join(cfg, 'pending')) ? fs.readdirSync(path.join(cfg, 'pending')) : [], 'journal entries left').toEqual([]);
  const used = new Set<string>();
  for (const [f, text] of defs(dir)) {
    const def = VmDefinitionSchema.parse(JSON.parse(text));
    expect(f).toBe(`${def.uuid}.json`);
    for (const d of def.disks) {
      if (!d.path) continue;
      expect(fs.existsSync(d.path), `${def.name}'s disk ${d.path}`).toBe(true);
      used.add(d.path);
    }
  }
  for (const f of fs.readdirSync(pool)) {
    const p = path.join(pool, f);
    expect(used.has(p), `orphaned file ${f} in the pool`).toBe(true);
    // Partial files: every raw disk here is a whole copy of the same size; every qcow2 starts with its magic.
    if (f.endsWith('.qcow2')) expect(fs.readFileSync(p).subarray(0, 4).toString('latin1')).toBe('QFI\xfb');
    else expect(fs.statSync(p).size, `size of ${f}`).toBe(DISK_MIB * 1024 * 1024);
  }
}

describe.skipIf(!!why)('kill -9 of vireo serve during create / clone / delete', () => {
  let srv: Serve | undefined;
  let dir: string | undefined;
  afterAll(async () => {
    await srv?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it(`leaves no orphaned or partial files and intact definitions after the next start (×${ROUNDS})`, async () => {
    srv = await startServe({ VIREO_SERVE_STANDALONE: '1' }); // the kills must hit the process that owns the services
    dir = srv.dir;
    const iso = path.join(dir, 'media.iso');
    fs.writeFileSync(iso, Buffer.alloc(64 * 1024, 1));
    // A base VM with real data in its disk, so a full clone copies for a while.
    const base = await apiCall(srv, 'vm.create', { media: { kind: 'iso', path: iso }, os: 'generic', memoryMiB: 64, cpus: 1, storage: { kind: 'create', sizeGiB: DISK_MIB / 1024, format: 'raw' }, name: 'base', network: 'none' });
    expect(base.errors).toEqual([]);
    const fd = fs.openSync(base.vm.disks[0].path, 'r+');
    const chunk = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < DISK_MIB; i++) {
      chunk.fill(i + 1);
      fs.writeSync(fd, chunk, 0, chunk.length, i * chunk.length);
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    const outcomes: Record<string, number> = {};

    for (let round = 0; round < ROUNDS; round++) {
      const before = defs(dir);
      const list: Array<{ uuid: string; name: string; disks: Array<{ path: string; media: string }> }> = await apiCall(srv, 'vm.list', {});
      const others = list.filter((v) => v.name !== 'base');
      const ops = ['create-raw', 'create-qcow2', 'clone-full', 'clone-linked'];
      if (others.length) ops.push('delete', 'delete');
      const op = ops[rnd(ops.length)]!;
      const name = `r${round}`;
      let target: string | undefined;
      if (op.startsWith('create')) {
        await fire(srv, 'vm.create', { media: { kind: 'iso', path: iso }, os: 'generic', memoryMiB: 64, cpus: 1, storage: { kind: 'create', sizeGiB: DISK_MIB / 1024, format: op === 'create-raw' ? 'raw' : 'qcow2' }, name, network: 'user' });
      } else if (op.startsWith('clone')) {
        await fire(srv, 'vm.clone', { uuid: base.vm.uuid, name, mode: op === 'clone-linked' ? 'linked' : 'full' });
      } else {
        const victim = others[rnd(others.length)]!;
        target = `${victim.uuid}.json`;
        await fire(srv, 'vm.delete', { uuid: victim.uuid, deleteDisks: victim.disks.filter((d) => d.media === 'disk').map((d) => d.path) });
      }
      await new Promise((r) => setTimeout(r, rnd(250)));
      const gone = new Promise((r) => srv!.server.once('exit', r));
      srv.server.kill('SIGKILL');
      await gone;
      // Next start on the same files.
      srv = await startServe({ VIREO_SERVE_STANDALONE: '1' }, dir);
      expect(cpsUnder(dir), 'cp processes outliving the killed server').toEqual([]);
      checkTree(dir);
      // Definitions: all that were there still are, byte for byte (but the delete's target,
      // which is gone or intact), plus at most the one new VM.
      const after = defs(dir);
      for (const [f, text] of before) {
        if (f === target && !after.has(f)) continue;
        expect(after.get(f), `definition ${f}`).toBe(text);
      }
      const added = [...after.keys()].filter((f) => !before.has(f));
      expect(added.length).toBeLessThanOrEqual(1);
      const listed: unknown[] = await apiCall(srv, 'vm.list', {});
      expect(listed.length).toBe(after.size);
      // What the next start cleaned up (vireo serve says so on stderr): shows the kills landed mid-operation.
      const log = srv.output();
      const cleaned = [/left by an unfinished create, clone or delete/.test(log) ? 'journal' : '', /removed the temporary/.test(log) ? 'temps' : ''].filter(Boolean).join('+');
      const outcome = `${op}:${added.length ? 'made' : target && !after.has(target) ? 'deleted' : 'nothing'}${cleaned ? `:${cleaned}` : ''}`;
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    }
    console.log(`kill-recovery outcomes (op:result[:what the next start cleaned]): ${JSON.stringify(outcomes)}`);
  });
});

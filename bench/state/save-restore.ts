// Save and restore of a running VM: time and state-file size, Vireo vs QEMU-KVM,
// the same guest (native/guests/touch.asm: a multiboot kernel that fills 100 MiB
// of its 512 MiB with a non-zero pattern, prints "touched" and halts).
//
//   npx tsc -p tsconfig.json && node dist/bench/state/save-restore.js [--runs 3] [--mib 512]
//
// Vireo: the engine addon in this process: Machine started, "touched" seen on
// COM1, pause(), then saveState(file) timed (writes FILE.partial, fsync, rename),
// and a new Machine of the same config timed from construction through
// loadState(file) and start() (what `vireo boot --restore` and Restore in the
// app do). QEMU: `-kernel touch.bin -enable-kvm`, QMP `stop`, then `migrate
// exec:cat > FILE` timed to status "completed" (plus an fsync of FILE, which
// QEMU does not do, so both are durable); restore: a new QEMU with `-incoming
// "exec:cat FILE" -S` timed from spawn until `query-migrate` on it says
// "completed". Sizes are the files' byte counts. Ratios are Vireo ÷ QEMU (target
// ≤ 1.0× for both time and size, issue 12).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadAddon } from '../../electron/engine-host/addon';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const argv = process.argv.slice(2);
const opt = (k: string, d: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1]! : d);
const runs = Number(opt('--runs', '3'));
const mib = Number(opt('--mib', '512'));
const guest = path.join(ROOT, 'native', 'out', 'core', 'guests', 'touch.bin');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-bench-state-'));
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN; };
const sleep = (n: number) => new Promise((r) => setTimeout(r, n));

async function vireoOnce(file: string): Promise<{ saveMs: number; restoreMs: number; bytes: number }> {
  const { Machine } = loadAddon();
  const m = new Machine({ memoryMiB: mib, cpus: 1, kernel: guest });
  let out = '';
  const touched = new Promise<void>((resolve) => m.onSerial((port, d) => {
    if (port === 0 && (out += Buffer.from(d).toString('latin1')).includes('touched')) resolve();
  }));
  m.start();
  await Promise.race([touched, sleep(300_000).then(() => { throw new Error(`Vireo: no "touched" in 300 s (serial: ${JSON.stringify(out)})`); })]);
  m.pause();
  let t0 = process.hrtime.bigint();
  m.saveState(file);
  const saveMs = ms(t0);
  m.stop();
  const bytes = fs.statSync(file).size;
  t0 = process.hrtime.bigint();
  const m2 = new Machine({ memoryMiB: mib, cpus: 1, kernel: guest });
  m2.loadState(file);
  m2.start();
  const restoreMs = ms(t0);
  if (m2.state !== 'running') throw new Error(`Vireo: restored machine is ${m2.state}`);
  m2.stop();
  return { saveMs, restoreMs, bytes };
}

class Qmp {
  private buf = '';
  private waiters: Array<(v: Record<string, unknown>) => void> = [];
  constructor(private readonly sock: net.Socket) {
    sock.on('data', (d) => {
      this.buf += String(d);
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ('return' in msg || 'error' in msg || 'QMP' in msg) this.waiters.shift()?.(msg);
      }
    });
  }
  static async connect(p: string): Promise<Qmp> {
    for (let i = 0; i < 400; i++) {
      try {
        const s = await new Promise<net.Socket>((resolve, reject) => {
          const c = net.connect(p, () => resolve(c));
          c.on('error', reject);
        });
        const q = new Qmp(s);
        await q.next();  // greeting
        await q.cmd('qmp_capabilities');
        return q;
      } catch {
        await sleep(25);
      }
    }
    throw new Error(`QMP socket ${p} did not answer`);
  }
  private next(): Promise<Record<string, unknown>> {
    return new Promise((r) => this.waiters.push(r));
  }
  async cmd(execute: string, args?: Record<string, unknown>): Promise<Record<string, unknown>> {
    const p = this.next();
    this.sock.write(JSON.stringify({ execute, ...(args ? { arguments: args } : {}) }) + '\n');
    const r = await p;
    if ('error' in r) throw new Error(`QMP ${execute}: ${JSON.stringify(r.error)}`);
    return r.return as Record<string, unknown>;
  }
  async migrated(): Promise<void> {
    for (;;) {
      const st = (await this.cmd('query-migrate')).status;
      if (st === 'completed') return;
      if (st === 'failed' || st === 'cancelled') throw new Error(`QEMU migration ${st}`);
      await sleep(5);
    }
  }
  close(): void {
    this.sock.destroy();
  }
}

const qemuBase = ['-enable-kvm', '-cpu', 'qemu64,-cx16,-xsave', '-m', String(mib), '-display', 'none', '-nodefaults', '-kernel', guest];

async function qemuOnce(file: string): Promise<{ saveMs: number; restoreMs: number; bytes: number }> {
  const sock1 = path.join(dir, 'qmp1.sock');
  let out = '';
  const q1: ChildProcess = spawn('qemu-system-x86_64', [...qemuBase, '-serial', 'stdio', '-qmp', `unix:${sock1},server=on,wait=off`], { stdio: ['ignore', 'pipe', 'pipe'] });
  const touched = new Promise<void>((resolve) => q1.stdout!.on('data', (d) => (out += String(d)).includes('touched') && resolve()));
  try {
    await Promise.race([touched, sleep(300_000).then(() => { throw new Error(`QEMU: no "touched" in 300 s (serial: ${JSON.stringify(out)})`); })]);
    const qmp = await Qmp.connect(sock1);
    await qmp.cmd('stop');
    let t0 = process.hrtime.bigint();
    await qmp.cmd('migrate', { uri: `exec:cat > ${file}` });
    await qmp.migrated();
    const fd = fs.openSync(file, 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    const saveMs = ms(t0);
    qmp.close();
    q1.kill('SIGKILL');
    const bytes = fs.statSync(file).size;
    const sock2 = path.join(dir, 'qmp2.sock');
    t0 = process.hrtime.bigint();
    const q2 = spawn('qemu-system-x86_64', [...qemuBase, '-serial', 'null', '-S', '-incoming', `exec:cat ${file}`, '-qmp', `unix:${sock2},server=on,wait=off`], { stdio: 'ignore' });
    try {
      const qmp2 = await Qmp.connect(sock2);
      await qmp2.migrated();
      const restoreMs = ms(t0);
      qmp2.close();
      return { saveMs, restoreMs, bytes };
    } finally {
      q2.kill('SIGKILL');
    }
  } finally {
    q1.kill('SIGKILL');
  }
}

(async () => {
  if (!fs.existsSync(guest)) throw new Error(`${guest} is missing: build the test guests (cmake --build native/out/core --target guests)`);
  const haveQemu = spawnSync('qemu-system-x86_64', ['--version']).status === 0;
  const res: Record<string, Array<{ saveMs: number; restoreMs: number; bytes: number }>> = { Vireo: [], 'QEMU-KVM': [] };
  for (let i = 0; i < runs; i++) {
    const f1 = path.join(dir, `vireo-${i}.vstate`);
    process.stderr.write(`[state] Vireo run ${i + 1}/${runs}\n`);
    res.Vireo!.push(await vireoOnce(f1));
    fs.rmSync(f1, { force: true });
    if (haveQemu) {
      const f2 = path.join(dir, `qemu-${i}.mig`);
      process.stderr.write(`[state] QEMU-KVM run ${i + 1}/${runs}\n`);
      res['QEMU-KVM']!.push(await qemuOnce(f2));
      fs.rmSync(f2, { force: true });
    }
  }
  const kvm = fs.existsSync('/sys/module/kvm_pvm') ? 'kvm_pvm' : 'hardware KVM';
  console.log(`Guest touch.bin: ${mib} MiB RAM, 100 MiB written with a non-zero pattern; host ${kvm}; medians of ${runs}\n`);
  console.log('| engine | save (ms) | restore (ms) | state file (MiB) |');
  console.log('|---|---|---|---|');
  const row = (name: string) => {
    const r = res[name]!;
    return { save: median(r.map((x) => x.saveMs)), restore: median(r.map((x) => x.restoreMs)), mib: median(r.map((x) => x.bytes)) / 2 ** 20 };
  };
  const v = row('Vireo');
  console.log(`| Vireo | ${v.save.toFixed(0)} | ${v.restore.toFixed(0)} | ${v.mib.toFixed(1)} |`);
  if (haveQemu && res['QEMU-KVM']!.length) {
    const q = row('QEMU-KVM');
    console.log(`| QEMU-KVM (migrate to file) | ${q.save.toFixed(0)} | ${q.restore.toFixed(0)} | ${q.mib.toFixed(1)} |`);
    console.log(`| **Vireo ÷ QEMU** | **${(v.save / q.save).toFixed(2)}×** | **${(v.restore / q.restore).toFixed(2)}×** | **${(v.mib / q.mib).toFixed(2)}×** |`);
  } else console.log('(QEMU not installed: no peer row)');
  fs.rmSync(dir, { recursive: true, force: true });
})().catch((e) => {
  console.error(`bench/state: ${(e as Error).message}`);
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(1);
});

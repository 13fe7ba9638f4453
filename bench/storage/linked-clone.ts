// bench/storage: linked clone time at 1, 10, 100 GiB virtual size (target < 50 ms
// each) and full clone throughput vs `cp --sparse=always` on the same file (target
// >= 0.9x). Build with `bash scripts/setup.sh`, run `node dist/bench/storage/linked-clone.js [--mib N,N] [--runs N]`.
// Real files in a temp dir on the file system of $TMPDIR; the real vireo-img.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { VireoService } from '../../electron/services/app';
import type { Launcher } from '../../electron/services/supervisor';
import { resolvePaths } from '../../electron/services/paths';
import { copySparse } from '../../electron/services/pool';
import { copyDisk } from '../../electron/services/storage/copy';
import { imgToolProblem } from '../../electron/services/storage/img';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const flag = (n: string) => {
  const i = process.argv.indexOf(n);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const RUNS = Number(flag('--runs') ?? 5);
// --mib 512,16384: the full copy's file sizes. 512 MiB fits the page cache's dirty
// limit (cp never waits for the disk); 16 GiB (8 GiB of data) does not (20 % of RAM here).
const COPY_MIB = (flag('--mib') ?? '512,16384').split(',').map(Number);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main() {
  const why = imgToolProblem();
  if (why) {
    console.log(`SKIP bench/storage: ${why}`);
    return;
  }
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'vireo-bench-storage-'));
  try {
    const paths = resolvePaths({ HOME: root, XDG_CONFIG_HOME: path.join(root, 'cfg'), XDG_DATA_HOME: path.join(root, 'data') });
    // Clone never starts an engine: a launcher that refuses is enough.
    const launcher = (() => {
      throw new Error('not used');
    }) as unknown as Launcher;
    const svc = await new VireoService({ paths, launcher, host: { cpus: 2, memoryMiB: 4096 } }).init();
    const kernel = path.join(root, 'k.bin');
    fs.writeFileSync(kernel, Buffer.alloc(512));

    console.log(`## Linked clone (vm.clone mode=linked, request -> job.done; median of ${RUNS})`);
    console.log('| virtual size | source | linked clone | overlay file | target |');
    console.log('|---|---|---|---|---|');
    const linked: Record<string, number> = {};
    for (const g of [1, 10, 100]) {
      for (const fmt of ['qcow2', 'raw'] as const) {
        const r = await svc['vm.create']({ media: { kind: 'kernel', kernel }, os: 'generic', memoryMiB: 64, cpus: 1, network: 'none', name: `src-${g}-${fmt}`, storage: { kind: 'create', sizeGiB: g, format: fmt } });
        const src = r.vm!;
        const times: number[] = [];
        let overlayBytes = 0;
        for (let i = 0; i < RUNS; i++) {
          const name = `lc-${g}-${fmt}-${i}`;
          const t0 = performance.now();
          const job = await svc['vm.clone']({ uuid: src.uuid, name, mode: 'linked' });
          const done = await new Promise<any>((resolve) => {
            const off = svc.onEvent((n, p: any) => {
              if (n === 'job.done' && p.jobId === job.jobId) (off(), resolve(p));
            });
          });
          times.push(performance.now() - t0);
          await new Promise((r) => setTimeout(r, 5)); // the job's bookkeeping ends just after job.done
          if (!done.ok) throw new Error(done.error);
          const d = svc.store.get(done.vmUuid)!.disks[0]!.path;
          overlayBytes = fs.statSync(d).blocks * 512;
        }
        const ms = median(times);
        linked[`${g}-${fmt}`] = ms;
        console.log(`| ${g} GiB | ${fmt} | ${ms.toFixed(1)} ms | ${(overlayBytes / 1024).toFixed(0)} KiB | < 50 ms — ${ms < 50 ? 'met' : 'NOT met'} |`);
      }
    }

    // Full copy: a file of `mib` MiB, alternating 1 MiB of data and 1 MiB of hole. Every
    // timed copy starts after a `sync`, so no copy pays for the writeback of the one before.
    const ratios: Record<string, number> = {};
    const data = Buffer.alloc(MiB);
    for (let i = 0; i < MiB; i += 8) data.writeUInt32LE((i * 2654435761) >>> 0, i);
    process.env.VIREO_NO_REFLINK = '0';
    for (const mib of COPY_MIB) {
      // The source and one copy hold mib MiB of data between them; keep 2 GiB spare.
      const st = fs.statfsSync(root);
      const free = st.bavail * st.bsize;
      if (free < mib * MiB + 2 * GiB) {
        console.log(`\nSKIP full copy of ${mib} MiB: ${(free / GiB).toFixed(1)} GiB free in ${root}, it needs ${(mib / 1024 + 2).toFixed(1)}`);
        continue;
      }
      const src = path.join(root, 'half.img');
      const fd = fs.openSync(src, 'w');
      for (let off = 0; off < mib * MiB; off += 2 * MiB) fs.writeSync(fd, data, 0, MiB, off);
      fs.ftruncateSync(fd, mib * MiB);
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      const run = async (label: string, fn: (dst: string) => Promise<void> | void) => {
        const ts: number[] = [];
        for (let i = 0; i < 3; i++) {
          const dst = path.join(root, `copy-${label.replace(/\W+/g, '_')}-${i}.img`);
          execFileSync('sync');
          const t0 = performance.now();
          await fn(dst);
          ts.push(performance.now() - t0);
          fs.rmSync(dst);
        }
        return median(ts) / 1000;
      };
      const cp = await run('cp', (dst) => void execFileSync('cp', ['--sparse=always', src, dst]));
      const cpSync = await run('cp+sync', (dst) => {
        execFileSync('cp', ['--sparse=always', src, dst]);
        execFileSync('sync', ['-f', dst]);
      });
      const ours = await run('copySparse', (dst) => copySparse(src, dst, () => undefined));
      let how = '';
      const full = await run('copyDisk', async (dst) => void (how = await copyDisk(src, dst, () => undefined)));
      fs.rmSync(src);
      const mbs = (s: number) => (mib / s).toFixed(0);
      console.log('');
      console.log(`## Full clone copy: ${mib} MiB raw, half data / half holes (median of 3, source in the page cache, sync before each copy)`);
      console.log('| copy | seconds | MiB/s | vs cp (cp time / ours) |');
      console.log('|---|---|---|---|');
      console.log(`| cp --sparse=always | ${cp.toFixed(3)} | ${mbs(cp)} | 1.00 |`);
      console.log(`| cp --sparse=always + sync -f (durable, like ours) | ${cpSync.toFixed(3)} | ${mbs(cpSync)} | ${(cp / cpSync).toFixed(2)} |`);
      console.log(`| copySparse (Clone's sparse copy, ends with fsync) | ${ours.toFixed(3)} | ${mbs(ours)} | ${(cp / ours).toFixed(2)} (vs cp+sync ${(cpSync / ours).toFixed(2)}) |`);
      console.log(`| copyDisk (Clone's full copy: ${how}) | ${full.toFixed(3)} | ${mbs(full)} | ${(cp / full).toFixed(2)} (vs cp+sync ${(cpSync / full).toFixed(2)}) |`);
      ratios[`${mib}MiB`] = cp / full;
    }
    const fsType = spawnSync('stat', ['-f', '-c', '%T', root], { encoding: 'utf8' }).stdout.trim();
    console.log(`\nfile system of ${os.tmpdir()}: ${fsType}; ${os.cpus().length} CPUs`);
    for (const [k, v] of Object.entries(ratios)) console.log(`RATIO full-clone-${k}-vs-cp ${v.toFixed(2)} (target >= 0.9)`);
    for (const [k, v] of Object.entries(linked)) console.log(`RATIO linked-clone-${k}-ms ${v.toFixed(1)} (target < 50)`);
    svc.shutdown();
  } finally {
    await fsp.rm(root, { recursive: true, force: true });
  }
}

void main().catch((e) => {
  console.error(e);
  process.exit(1);
});

// `vireo list` round trip against the per-user service (services/service-host.ts):
//  1. one vm.list call on an open socket connection (the transport alone),
//  2. connect + vm.list + close (what each verb does),
//  3. the whole `vireo list --all` command (a new Node process), and, for scale,
//     `virsh -c test:///default list --all` (virsh's in-process test driver: no
//     libvirtd, which can't run on this host) when virsh is installed.
// Runs in fresh XDG dirs with 20 VM definitions; prints medians (ms) as Markdown.
// Usage: node dist/bench/service/list-latency.js
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RpcClient } from '../../electron/services/rpc-socket';
import { ensureService, serviceLocation } from '../../electron/services/service-host';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-bench-svc-'));
  const env = { ...process.env, HOME: dir, XDG_CONFIG_HOME: path.join(dir, 'c'), XDG_DATA_HOME: path.join(dir, 'd'), XDG_RUNTIME_DIR: path.join(dir, 'r') };
  const iso = path.join(dir, 'x.iso');
  fs.writeFileSync(iso, Buffer.alloc(4096));
  const c = await ensureService({ env });
  try {
    for (let i = 0; i < 20; i++) {
      await c.request('vm.create', { media: { kind: 'iso', path: iso }, os: 'generic', memoryMiB: 64, cpus: 1, storage: { kind: 'none' }, name: `vm${i}`, network: 'none' });
    }
    const sock = serviceLocation(env).socket;
    const call: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t = process.hrtime.bigint();
      await c.request('vm.list', {});
      call.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    const conn: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t = process.hrtime.bigint();
      const k = await RpcClient.connect(sock);
      await k.request('vm.list', {});
      k.close();
      conn.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    const proc = (cmd: string, args: string[]) => {
      const out: number[] = [];
      for (let i = 0; i < 15; i++) {
        const t = process.hrtime.bigint();
        const r = spawnSync(cmd, args, { env, encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
        out.push(Number(process.hrtime.bigint() - t) / 1e6);
      }
      return out;
    };
    const cli = proc(process.execPath, [path.join(ROOT, 'bin', 'vireo.js'), 'list', '--all']);
    const node = proc(process.execPath, ['-e', '0']);
    const hasVirsh = spawnSync('virsh', ['--version']).status === 0;
    const virsh = hasVirsh ? proc('virsh', ['-c', 'test:///default', 'list', '--all']) : null;
    console.log('| what | median ms |\n|---|---|');
    console.log(`| vm.list on an open connection (20 VMs) | ${median(call).toFixed(3)} |`);
    console.log(`| connect + vm.list + close | ${median(conn).toFixed(3)} |`);
    console.log(`| \`vireo list --all\` (whole process) | ${median(cli).toFixed(1)} |`);
    console.log(`| \`node -e 0\` (Node start alone) | ${median(node).toFixed(1)} |`);
    if (virsh) console.log(`| \`virsh -c test:///default list --all\` (no daemon) | ${median(virsh).toFixed(1)} |`);
    else console.log('| virsh | not installed |');
  } finally {
    c.close();
    spawnSync(process.execPath, [path.join(ROOT, 'bin', 'vireo.js'), 'service', '--stop'], { env });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

void main().catch((e) => {
  console.error(e);
  process.exit(1);
});

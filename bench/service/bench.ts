// The Vireo service vs libvirtd, side by side in one run (issue 13):
//  1. `vireo list --all` vs `virsh list --all`: a whole new client process each time;
//  2. one list call on an open connection: `vm.list` over the RPC client vs libvirt's
//     listAllDomains() (and + state() of each, which is what virsh list asks) through
//     python3-libvirt; then connect + list + close for both;
//  3. `vireo start` → running → `vireo destroy` vs `virsh start` / `virsh destroy` of the
//     same tiny domain (one domain XML defined in both: 64 MiB, 1 vCPU, direct kernel boot
//     of native/out/core/guests/echo.bin, which stays up), as processes and as API calls.
// Both sides hold the same 20 definitions (vbench-0 … vbench-19). Runs are interleaved
// (Vireo, libvirt, Vireo, …); medians and p90 in ms are printed as Markdown.
// The peer is libvirtd with its QEMU driver on --uri (default qemu:///system; it must
// already run: see docs/benchmarks.md for how it was started here). Without one, the
// Vireo rows are printed alone and the reason why. virsh's test:///default driver is
// not used as a peer: it has no daemon and no VMM.
//
// Usage: node dist/bench/service/bench.js [--runs N] [--cycles N] [--calls N] [--uri URI] [--json FILE]
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { VmState } from '../../electron/common/contracts/vm';
import { RpcClient } from '../../electron/services/rpc-socket';
import { ensureService, serviceLocation } from '../../electron/services/service-host';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const VIREO = path.join(ROOT, 'bin', 'vireo.js');
const PY = path.join(ROOT, 'bench', 'service', 'libvirt-api.py');
const GUEST = path.join(ROOT, 'native', 'out', 'core', 'guests', 'echo.bin');
const DOMS = 20;

function opt(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}
const RUNS = Number(opt('--runs', '15'));
const CYCLES = Number(opt('--cycles', '10'));
const CALLS = Number(opt('--calls', '200'));
const URI = opt('--uri', 'qemu:///system');
const JSON_OUT = opt('--json', '');

const sorted = (a: number[]) => [...a].sort((x, y) => x - y);
const median = (a: number[]) => sorted(a)[Math.floor(a.length / 2)]!;
const p90 = (a: number[]) => sorted(a)[Math.max(0, Math.ceil(a.length * 0.9) - 1)]!;
const ms = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e6;

function domainXml(name: string, type: 'kvm' | 'qemu'): string {
  // qemu64 without cx16/xsave: the CPU model a kvm_pvm host's KVM can run (as bench/engine does);
  // check='none' because libvirt's qemu64 lists svm, which such a host lacks.
  const cpu =
    type === 'kvm'
      ? "<cpu mode='custom' match='exact' check='none'><model fallback='allow'>qemu64</model>" +
        "<feature policy='disable' name='cx16'/><feature policy='disable' name='xsave'/></cpu>"
      : '';
  return `<domain type='${type}'>
  <name>${name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>${GUEST}</kernel></os>
  ${cpu}
  <devices>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
  </devices>
</domain>
`;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): { ms: number; out: string } {
  const t = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, encoding: 'utf8' });
  const took = ms(t);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${r.stderr || r.error?.message}`);
  return { ms: took, out: r.stdout };
}

/** Why libvirtd can't be the peer here, or null when it can. */
function peerProblem(): string | null {
  const v = spawnSync('virsh', ['-c', URI, 'list', '--all'], { encoding: 'utf8' });
  if (v.error) return `virsh is not installed (${v.error.message})`;
  if (v.status !== 0) return `virsh -c ${URI} does not connect: ${v.stderr.trim()}`;
  // The first Python with libvirt's binding (a pyenv's python3 may lack the distribution's python3-libvirt).
  for (const cand of [process.env.PYTHON ?? 'python3', '/usr/bin/python3']) {
    if (spawnSync(cand, ['-c', 'import libvirt'], { encoding: 'utf8' }).status === 0) {
      python = cand;
      return null;
    }
  }
  return 'python3-libvirt is missing (no `import libvirt` in python3 or /usr/bin/python3)';
}

let python = 'python3';
function py(args: string[]): Record<string, number[]> {
  const r = spawnSync(python, [PY, URI, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`libvirt-api.py ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, number[]>;
}

interface Row {
  what: string;
  vireo: number[];
  libvirt: number[] | null;
}

async function waitState(c: RpcClient, uuid: string, want: VmState): Promise<void> {
  const end = Date.now() + 30000;
  for (;;) {
    const vm = (await c.request('vm.list', {})).find((v) => v.uuid === uuid);
    if (vm?.state === want) return;
    if (Date.now() > end) throw new Error(`${uuid} did not reach ${want} within 30 s (it is ${vm?.state})`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

async function main(): Promise<void> {
  if (!fs.existsSync(GUEST)) throw new Error(`${GUEST} is missing: build native/out/core first`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vireo-bench-svc-'));
  const env = { ...process.env, HOME: dir, XDG_CONFIG_HOME: path.join(dir, 'c'), XDG_DATA_HOME: path.join(dir, 'd'), XDG_RUNTIME_DIR: path.join(dir, 'r') };
  const problem = peerProblem();
  const virsh = (args: string[]) => run('virsh', ['-c', URI, ...args], env);
  let libvirtType: 'kvm' | 'qemu' = 'kvm';
  let libvirtNote = '';
  const rows: Row[] = [];
  const c = await ensureService({ env });
  try {
    // The same definitions on both sides.
    for (let i = 0; i < DOMS; i++) {
      const f = path.join(dir, `vbench-${i}.xml`);
      fs.writeFileSync(f, domainXml(`vbench-${i}`, 'kvm'));
      run(process.execPath, [VIREO, 'define', f], env);
    }
    if (!problem) {
      for (let i = 0; i < DOMS; i++) spawnSync('virsh', ['-c', URI, 'undefine', `vbench-${i}`], { encoding: 'utf8' }); // an earlier run's
      for (let i = 0; i < DOMS; i++) virsh(['define', path.join(dir, `vbench-${i}.xml`)]);
      // KVM first; libvirt with -accel tcg when this host's KVM is refused.
      const s = spawnSync('virsh', ['-c', URI, 'start', 'vbench-0'], { encoding: 'utf8' });
      if (s.status !== 0) {
        libvirtNote = `KVM refused (${s.stderr.trim().split('\n').pop()}): libvirt's domains are type='qemu' (TCG)`;
        libvirtType = 'qemu';
        for (let i = 0; i < DOMS; i++) {
          const f = path.join(dir, `vbench-${i}.xml`);
          fs.writeFileSync(f, domainXml(`vbench-${i}`, 'qemu'));
          virsh(['undefine', `vbench-${i}`]);
          virsh(['define', f]);
        }
        virsh(['start', 'vbench-0']);
      }
      virsh(['destroy', 'vbench-0']);
    }

    // 1. Whole client processes, interleaved, after one warm-up each.
    const list = { vireo: [] as number[], libvirt: [] as number[] };
    run(process.execPath, [VIREO, 'list', '--all'], env);
    if (!problem) virsh(['list', '--all']);
    for (let i = 0; i < RUNS; i++) {
      const v = run(process.execPath, [VIREO, 'list', '--all'], env);
      if (!v.out.includes('vbench-19')) throw new Error(`vireo list --all did not list vbench-19:\n${v.out}`);
      list.vireo.push(v.ms);
      if (!problem) {
        const l = virsh(['list', '--all']);
        if (!l.out.includes('vbench-19')) throw new Error(`virsh list --all did not list vbench-19:\n${l.out}`);
        list.libvirt.push(l.ms);
      }
    }
    rows.push({ what: `\`list --all\`, a whole client process (${DOMS} VMs)`, ...pair(list, problem) });
    const node = [];
    for (let i = 0; i < RUNS; i++) node.push(run(process.execPath, ['-e', '0'], env).ms);

    // 2. API calls, in interleaved blocks (the Python side times inside its one process).
    const sock = serviceLocation(env).socket;
    const call = { vireo: [] as number[], libvirt: [] as number[] };
    const callState = { vireo: [] as number[], libvirt: [] as number[] };
    const conn = { vireo: [] as number[], libvirt: [] as number[] };
    const blocks = 4;
    for (let b = 0; b < blocks; b++) {
      for (let i = 0; i < CALLS / blocks; i++) {
        const t = process.hrtime.bigint();
        const all = await c.request('vm.list', {});
        call.vireo.push(ms(t));
        if (all.length !== DOMS) throw new Error(`vm.list gave ${all.length} VMs, not ${DOMS}`);
      }
      if (!problem) {
        call.libvirt.push(...py(['call', String(CALLS / blocks)]).ms!);
        callState.libvirt.push(...py(['call-state', String(CALLS / blocks)]).ms!);
      }
      for (let i = 0; i < RUNS; i++) {
        const t = process.hrtime.bigint();
        const k = await RpcClient.connect(sock);
        await k.request('vm.list', {});
        k.close();
        conn.vireo.push(ms(t));
      }
      if (!problem) conn.libvirt.push(...py(['connect', String(RUNS)]).ms!);
    }
    callState.vireo = call.vireo; // vm.list's summaries carry each VM's state already
    rows.push({ what: 'one list call on an open connection: `vm.list` vs `listAllDomains()`', ...pair(call, problem) });
    rows.push({ what: '… with every VM\'s state: `vm.list` vs `listAllDomains()` + `state()` each', ...pair(callState, problem) });
    rows.push({ what: 'connect + list + close', ...pair(conn, problem) });

    // 3. Start → running → destroy of vbench-0.
    const startP = { vireo: [] as number[], libvirt: [] as number[] };
    const destroyP = { vireo: [] as number[], libvirt: [] as number[] };
    const uuid = (await c.request('vm.list', {})).find((v) => v.name === 'vbench-0')!.uuid;
    for (let i = 0; i < CYCLES; i++) {
      startP.vireo.push(run(process.execPath, [VIREO, 'start', 'vbench-0'], env).ms);
      const st = (await c.request('vm.list', {})).find((v) => v.uuid === uuid)!.state;
      if (st !== 'running') throw new Error(`after vireo start, vbench-0 is ${st}`);
      destroyP.vireo.push(run(process.execPath, [VIREO, 'destroy', 'vbench-0'], env).ms);
      await waitState(c, uuid, 'shutoff');
      if (!problem) {
        startP.libvirt.push(virsh(['start', 'vbench-0']).ms);
        const s = virsh(['domstate', 'vbench-0']).out.trim();
        if (s !== 'running') throw new Error(`after virsh start, vbench-0 is ${s}`);
        destroyP.libvirt.push(virsh(['destroy', 'vbench-0']).ms);
      }
    }
    rows.push({ what: '`start vbench-0`, a whole client process (returns when running)', ...pair(startP, problem) });
    rows.push({ what: '`destroy vbench-0`, a whole client process', ...pair(destroyP, problem) });
    const startA = { vireo: [] as number[], libvirt: [] as number[] };
    const destroyA = { vireo: [] as number[], libvirt: [] as number[] };
    for (let i = 0; i < CYCLES; i++) {
      let t = process.hrtime.bigint();
      await c.request('vm.action', { uuid, action: 'start' });
      await waitState(c, uuid, 'running');
      startA.vireo.push(ms(t));
      t = process.hrtime.bigint();
      await c.request('vm.action', { uuid, action: 'forceoff' });
      await waitState(c, uuid, 'shutoff');
      destroyA.vireo.push(ms(t));
      if (!problem) {
        const r = py(['cycle', '1', 'vbench-0']);
        startA.libvirt.push(...r.start!);
        destroyA.libvirt.push(...r.destroy!);
      }
    }
    rows.push({ what: 'start → running, API: `vm.action start` vs `create()`', ...pair(startA, problem) });
    rows.push({ what: 'destroy → shut off, API: `vm.action forceoff` vs `destroy()`', ...pair(destroyA, problem) });

    const f = (a: number[]) => (median(a) < 10 ? `${median(a).toFixed(2)} (${p90(a).toFixed(2)})` : `${median(a).toFixed(1)} (${p90(a).toFixed(1)})`);
    console.log('| what | Vireo service, median (p90) ms | libvirtd, median (p90) ms | Vireo ÷ libvirt |\n|---|---|---|---|');
    for (const r of rows) {
      const l = r.libvirt && r.libvirt.length ? r.libvirt : null;
      console.log(`| ${r.what} | ${f(r.vireo)} | ${l ? f(l) : 'n/a'} | ${l ? `${(median(r.vireo) / median(l)).toFixed(2)}×` : '–'} |`);
    }
    console.log(`| *context:* \`node -e 0\` (Node's own start) | ${f(node)} | | |`);
    console.log('');
    console.log(`runs: ${RUNS} processes, ${CALLS} calls, ${CYCLES} start/destroy cycles each; ${os.cpus().length} cores, load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
    if (problem) console.log(`no libvirt peer: ${problem}`);
    else console.log(`peer: libvirtd ${URI}, domain type='${libvirtType}'${libvirtNote ? ` — ${libvirtNote}` : ''}; Vireo: its own engine on /dev/kvm`);
    if (JSON_OUT) fs.writeFileSync(JSON_OUT, JSON.stringify({ rows, node, problem, uri: URI, libvirtType }, null, 1));
  } finally {
    c.close();
    spawnSync(process.execPath, [VIREO, 'service', '--stop'], { env });
    if (!problem) {
      for (let i = 0; i < DOMS; i++) {
        spawnSync('virsh', ['-c', URI, 'destroy', `vbench-${i}`], { encoding: 'utf8' });
        spawnSync('virsh', ['-c', URI, 'undefine', `vbench-${i}`], { encoding: 'utf8' });
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function pair(x: { vireo: number[]; libvirt: number[] }, problem: string | null): { vireo: number[]; libvirt: number[] | null } {
  return { vireo: x.vireo, libvirt: problem ? null : x.libvirt };
}

void main().catch((e) => {
  console.error(e);
  process.exit(1);
});

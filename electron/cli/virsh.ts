// The `vireo` verbs on the service's VMs, named and laid out like virsh's: list,
// start, shutdown, destroy, console, dominfo, pool-list, ... Each verb is one entry in
// VERBS (name, help, run); other verb families (net-*, dumpxml/define, ...) plug in
// with registerVerb() from their own files, listed in cli/main.ts.
//
// Every verb talks to the per-user service over its socket (services/service-host.ts),
// starting it when none runs, so the VMs are the same ones `vireo serve` and the app show.
// Exit codes: 0 done, 1 failed (the message names the VM and the reason), 2 bad usage.
// `--output json` prints one JSON value for scripts instead of the table or message.
import type { Method, Params, Result } from '../common/contracts/api';
import type { VmState, VmSummary } from '../common/contracts/vm';
import { UUID_PATTERN } from '../common/contracts/vm';
import { encodeUiToHost, decodeHostToUi } from '../common/contracts/stream';
import type { RpcClient } from '../services/rpc-socket';
import { ensureService } from '../services/service-host';
import { cliServiceCommand } from './runtime';

export class VerbError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export interface VerbContext {
  /** The service client (connected, or started and connected, on first use). */
  client(): Promise<RpcClient>;
  call<M extends Method>(method: M, params: Params<M>): Promise<Result<M>>;
  json: boolean;
  out(text: string): void;
  /** Finds a VM by name or UUID; a VerbError naming it when there is none. */
  vm(nameOrUuid: string): Promise<VmSummary>;
  stdin: NodeJS.ReadStream;
  stdout: NodeJS.WriteStream;
}

export interface Verb {
  name: string;
  summary: string;
  /** e.g. "[--all]" or "<domain>" */
  usage: string;
  /** Longer help: options, what it does. */
  help?: string;
  /** Flags it takes (without a value); everything else that starts with -- is refused. */
  flags?: string[];
  /** Options that take a value (`--name X` or `--name=X`; repeatable: every value is kept, in order). */
  options?: string[];
  /** How many positional arguments it wants. */
  args?: { min: number; max: number; names?: string[] };
  run(ctx: VerbContext, flags: Set<string>, args: string[], opts: Map<string, string[]>): Promise<number>;
}

export const VERBS = new Map<string, Verb>();
export function registerVerb(v: Verb): void {
  VERBS.set(v.name, v);
}

/** virsh's names for the states. A VM with a managed save is "shut off", as in virsh (dominfo: "Managed save: yes"). */
export function stateName(s: VmState): string {
  return { shutoff: 'shut off', starting: 'starting', running: 'running', paused: 'paused', shuttingdown: 'in shutdown', crashed: 'crashed', saved: 'shut off' }[s];
}
const active = (s: VmState) => s === 'running' || s === 'paused' || s === 'starting' || s === 'shuttingdown';

/** A table laid out like virsh's: a leading space, columns 3 spaces apart, a dashed rule. */
export function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => (' ' + r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('   ')).trimEnd();
  const width = 1 + w.reduce((a, b) => a + b, 0) + 3 * (w.length - 1) + 2;
  return [line(head), '-'.repeat(width), ...rows.map(line)].join('\n') + '\n';
}

/** Running VMs get ids 1..n in list order, like virsh's Id column (not stable across calls: use names or UUIDs). */
function ids(vms: VmSummary[]): Map<string, number> {
  const m = new Map<string, number>();
  let n = 1;
  for (const v of vms) if (active(v.state)) m.set(v.uuid, n++);
  return m;
}

const vmArg = { min: 1, max: 1, names: ['domain'] };

function exitText(v: VmSummary): string {
  const e = v.lastExit;
  if (!e) return '';
  return e.kind === 'shutdown' ? e.detail : e.kind === 'crashed' ? e.reason : `killed by ${e.signal}`;
}

registerVerb({
  name: 'list',
  summary: 'list VMs (running ones; --all: every one)',
  usage: '[--all] [--inactive] [--name] [--uuid]',
  help: '  --all       running and shut off VMs\n  --inactive  only VMs that are not running\n  --name      only the names, one a line\n  --uuid      only the UUIDs, one a line',
  flags: ['--all', '--inactive', '--name', '--uuid'],
  args: { min: 0, max: 0 },
  async run(ctx, f) {
    const all = await ctx.call('vm.list', {});
    const id = ids(all);
    const vms = all.filter((v) => (f.has('--all') ? true : f.has('--inactive') ? !active(v.state) : active(v.state)));
    if (ctx.json) {
      ctx.out(JSON.stringify(vms.map((v) => ({ id: id.get(v.uuid) ?? null, name: v.name, uuid: v.uuid, state: stateName(v.state) })), null, 2) + '\n');
    } else if (f.has('--name') || f.has('--uuid')) {
      ctx.out(vms.map((v) => (f.has('--uuid') ? v.uuid : v.name) + '\n').join(''));
    } else {
      ctx.out(table(['Id', 'Name', 'State'], vms.map((v) => [String(id.get(v.uuid) ?? '-'), v.name, stateName(v.state)])) + '\n');
    }
    return 0;
  },
});

/** A verb that is one vm.action; `done` is virsh's message. */
function actionVerb(name: string, action: Params<'vm.action'>['action'], summary: string, done: string, help?: string): void {
  registerVerb({
    name,
    summary,
    usage: '<domain>',
    ...(help ? { help } : {}),
    args: vmArg,
    async run(ctx, _f, [dom]) {
      const vm = await ctx.vm(dom!);
      try {
        await ctx.call('vm.action', { uuid: vm.uuid, action });
      } catch (e) {
        throw new VerbError(`Failed to ${name} domain '${vm.name}': ${(e as Error).message}`);
      }
      ctx.out(ctx.json ? JSON.stringify({ name: vm.name, uuid: vm.uuid, action: name, ok: true }) + '\n' : `Domain '${vm.name}' ${done}\n\n`);
      return 0;
    },
  });
}

actionVerb('start', 'start', 'start a (shut off) VM', 'started');
actionVerb('shutdown', 'shutdown', 'ask a VM to shut down (ACPI power button; the guest decides, nothing is killed; refused if its guest has not enabled ACPI)', 'is being shutdown');
actionVerb('destroy', 'forceoff', 'stop a VM at once (force off: the engine flushes its disks and stops; killed only if it does not within 15 s)', 'destroyed');
actionVerb('suspend', 'pause', 'pause a running VM', 'suspended');
actionVerb('resume', 'resume', 'resume a paused VM', 'resumed');
actionVerb('reset', 'reset', 'reset a VM (like pressing its reset button: a hard reset of the board)', 'was reset');
actionVerb('reboot', 'reboot', 'ask a VM to reboot (Ctrl+Alt+Del to its keyboard; a machine without one is reset)', 'is being rebooted');

registerVerb({
  name: 'domstate',
  summary: "a VM's state",
  usage: '[--reason] <domain>',
  flags: ['--reason'],
  args: vmArg,
  async run(ctx, f, [dom]) {
    const vm = await ctx.vm(dom!);
    const why = exitText(vm);
    if (ctx.json) ctx.out(JSON.stringify({ name: vm.name, uuid: vm.uuid, state: stateName(vm.state), ...(why ? { reason: why } : {}) }) + '\n');
    else ctx.out(`${stateName(vm.state)}${f.has('--reason') && why ? ` (${why})` : ''}\n\n`);
    return 0;
  },
});

registerVerb({
  name: 'dominfo',
  summary: 'basic facts about a VM',
  usage: '<domain>',
  args: vmArg,
  async run(ctx, _f, [dom]) {
    const vm = await ctx.vm(dom!);
    const id = ids(await ctx.call('vm.list', {})).get(vm.uuid);
    const info: Array<[string, string]> = [
      ['Id', id ? String(id) : '-'],
      ['Name', vm.name],
      ['UUID', vm.uuid],
      ['OS Type', 'hvm'],
      ['State', stateName(vm.state)],
      ['CPU(s)', String(vm.cpus)],
      ['Max memory', `${vm.memoryMiB * 1024} KiB`],
      ['Used memory', `${vm.memoryMiB * 1024} KiB`],
      ['Persistent', 'yes'],
      ['Autostart', vm.autostart ? 'enable' : 'disable'],
      ['Managed save', vm.hasManagedSave ? 'yes' : 'no'],
    ];
    if (ctx.json) {
      ctx.out(JSON.stringify({ id: id ?? null, name: vm.name, uuid: vm.uuid, osType: 'hvm', state: stateName(vm.state), cpus: vm.cpus, maxMemoryKiB: vm.memoryMiB * 1024, usedMemoryKiB: vm.memoryMiB * 1024, persistent: true, autostart: !!vm.autostart, managedSave: !!vm.hasManagedSave, ...(vm.lastExit ? { lastExit: vm.lastExit } : {}) }, null, 2) + '\n');
    } else ctx.out(info.map(([k, v]) => `${(k + ':').padEnd(16)}${v}`).join('\n') + '\n\n');
    return 0;
  },
});

registerVerb({
  name: 'undefine',
  summary: "remove a VM's definition (--remove-all-storage: and its disk images)",
  usage: '[--remove-all-storage] <domain>',
  help:
    "  --remove-all-storage  also delete the VM's disk images (not its CD/DVD images);\n" +
    '                        a disk another VM uses is refused and nothing is removed',
  flags: ['--remove-all-storage'],
  args: vmArg,
  async run(ctx, f, [dom]) {
    const vm = await ctx.vm(dom!);
    let disks: string[] = [];
    if (f.has('--remove-all-storage')) {
      const plan = await ctx.call('vm.deletePlan', { uuid: vm.uuid });
      disks = plan.disks.filter((d) => d.media === 'disk' && d.exists).map((d) => d.path);
    }
    let deleted: string[];
    try {
      // The user named the VM and asked for all its storage: every disk is confirmed,
      // in or outside Vireo's pool; disks other VMs use are still refused by the service.
      ({ deleted } = await ctx.call('vm.delete', { uuid: vm.uuid, deleteDisks: disks, confirm: disks }));
    } catch (e) {
      throw new VerbError(`Failed to undefine domain '${vm.name}': ${(e as Error).message}`);
    }
    if (ctx.json) ctx.out(JSON.stringify({ name: vm.name, uuid: vm.uuid, undefined: true, removedStorage: deleted }) + '\n');
    else ctx.out(`Domain '${vm.name}' has been undefined\n${deleted.map((p) => `Volume '${p}' removed.\n`).join('')}\n`);
    return 0;
  },
});

registerVerb({
  name: 'pool-list',
  summary: 'list storage pools',
  usage: '[--all] [--details]',
  help: '  --details  capacity, allocation and available space',
  flags: ['--all', '--inactive', '--details'],
  args: { min: 0, max: 0 },
  async run(ctx, f) {
    const pools = await ctx.call('storage.pools', {});
    if (ctx.json) return ctx.out(JSON.stringify(pools, null, 2) + '\n'), 0;
    const state = (p: (typeof pools)[number]) => (p.problem ? 'inactive' : 'active');
    if (f.has('--details')) {
      ctx.out(table(['Name', 'State', 'Autostart', 'Persistent', 'Capacity', 'Allocation', 'Available'], pools.map((p) => [p.name, state(p), 'yes', 'yes', size(p.capacityBytes), size(p.allocationBytes), size(p.availableBytes)])) + '\n');
    } else ctx.out(table(['Name', 'State', 'Autostart'], pools.map((p) => [p.name, state(p), 'yes'])) + '\n');
    return 0;
  },
});

registerVerb({
  name: 'vol-list',
  summary: 'list the volumes (disk images) of a pool',
  usage: '[--details] <pool>',
  help: '  --details  type, capacity and allocation',
  flags: ['--details'],
  args: { min: 1, max: 1, names: ['pool'] },
  async run(ctx, f, [pool]) {
    let vols;
    try {
      vols = await ctx.call('storage.volumes', { pool: pool! });
    } catch (e) {
      throw new VerbError(`failed to get pool '${pool}': ${(e as Error).message}`);
    }
    if (ctx.json) return ctx.out(JSON.stringify(vols, null, 2) + '\n'), 0;
    if (f.has('--details')) ctx.out(table(['Name', 'Path', 'Type', 'Capacity', 'Allocation'], vols.map((v) => [v.name, v.path, 'file', size(v.capacityBytes), size(v.allocationBytes)])) + '\n');
    else ctx.out(table(['Name', 'Path'], vols.map((v) => [v.name, v.path])) + '\n');
    return 0;
  },
});

/** virsh's sizes: "1.00 GiB". */
export function size(b: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) (b /= 1024), i++;
  return `${b.toFixed(2)} ${u[i]}`;
}

registerVerb({
  name: 'console',
  summary: "a running VM's serial console on this terminal (Ctrl-] leaves)",
  usage: '<domain>',
  help: '  Connects this terminal to the first serial port (raw mode). What the guest wrote\n  before is shown first. Ctrl-] leaves; the VM keeps running.',
  args: vmArg,
  async run(ctx, _f, [dom]) {
    const vm = await ctx.vm(dom!);
    if (!active(vm.state)) throw new VerbError(`domain '${vm.name}' is not running`);
    const client = await ctx.client();
    const st = client.openStream(vm.uuid);
    const tty = ctx.stdin.isTTY;
    process.stderr.write(`Connected to domain '${vm.name}'\nEscape character is ^] (Ctrl + ])\n`);
    return new Promise<number>((resolve) => {
      let done = false;
      const finish = (code: number, msg?: string) => {
        if (done) return;
        done = true;
        ctx.stdin.off('data', onIn);
        ctx.stdin.off('end', onEnd);
        if (tty) ctx.stdin.setRawMode(false);
        ctx.stdin.pause();
        st.close();
        if (msg) process.stderr.write(`\n${msg}\n`);
        resolve(code);
      };
      st.onData((d) => {
        let m;
        try {
          m = decodeHostToUi(d);
        } catch {
          return;
        }
        if (m.op === 'serial' && m.port === 0) {
          ctx.stdout.write(m.data);
          st.send(encodeUiToHost({ op: 'ackSerial', bytes: m.data.byteLength }));
        } else if (m.op === 'info' && (m.info.state === 'stopped' || m.info.state === 'crashed')) {
          finish(0, `domain '${vm.name}' ${m.info.state}${m.info.message ? `: ${m.info.message}` : ''}`);
        }
      });
      st.onClose((why) => finish(0, `domain '${vm.name}': ${why}`));
      st.send(encodeUiToHost({ op: 'subscribe', frames: false, serial: true }));
      const onIn = (b: Buffer) => {
        const esc = b.indexOf(0x1d); // Ctrl-]
        const data = esc >= 0 ? b.subarray(0, esc) : b;
        if (data.length) st.send(encodeUiToHost({ op: 'serialIn', port: 0, data: new Uint8Array(data) }));
        if (esc >= 0) finish(0);
      };
      // Piped input that ends without Ctrl-] leaves too (after what was sent is delivered).
      const onEnd = () => setTimeout(() => finish(0), 200);
      if (tty) ctx.stdin.setRawMode(true);
      ctx.stdin.on('data', onIn);
      ctx.stdin.on('end', onEnd);
      ctx.stdin.resume();
    });
  },
});

function verbHelp(v: Verb): string {
  return `usage: vireo ${v.name} ${v.usage}\n\n${v.summary[0]!.toUpperCase()}${v.summary.slice(1)}.\n` +
    (v.help ? `${v.help}\n` : '') +
    (v.args?.names?.includes('domain') ? '  <domain>    the VM, by name or UUID\n' : '') +
    '  --output json  print JSON for scripts\n  --help         this text';
}

/** Runs one verb: parses its flags, connects to the service, maps errors to virsh-like messages and exit codes. */
export async function runVerb(name: string, argv: string[], io: { stdin?: NodeJS.ReadStream; stdout?: NodeJS.WriteStream } = {}): Promise<number> {
  const v = VERBS.get(name);
  if (!v) {
    console.error(`vireo: unknown command '${name}'`);
    return 2;
  }
  const flags = new Set<string>();
  const opts = new Map<string, string[]>();
  const args: string[] = [];
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') {
      console.log(verbHelp(v));
      return 0;
    } else if (a === '--output' || a.startsWith('--output=')) {
      const val = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (val !== 'json' && val !== 'text') return usageError(v, `--output wants 'json' or 'text', not '${val ?? ''}'`);
      json = val === 'json';
    } else if (a === '--domain' && v.args?.names?.includes('domain')) {
      const val = argv[++i];
      if (val === undefined) return usageError(v, '--domain wants a VM name or UUID');
      args.push(val);
    } else if (a.startsWith('--') && v.options?.includes(a.includes('=') ? a.slice(0, a.indexOf('=')) : a)) {
      const key = a.includes('=') ? a.slice(0, a.indexOf('=')) : a;
      const val = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (val === undefined) return usageError(v, `${key} wants a value`);
      opts.set(key, [...(opts.get(key) ?? []), val]);
    } else if (a.startsWith('--') && a !== '--') {
      if (!v.flags?.includes(a)) return usageError(v, `unknown option '${a}'`);
      flags.add(a);
    } else args.push(a);
  }
  const want = v.args ?? { min: 0, max: 0 };
  if (args.length < want.min) return usageError(v, `missing ${want.names?.[args.length] ?? 'argument'}`);
  if (args.length > want.max) return usageError(v, `unexpected argument '${args[want.max]}'`);
  let client: RpcClient | undefined;
  const stdout = io.stdout ?? process.stdout;
  const ctx: VerbContext = {
    json,
    stdin: io.stdin ?? process.stdin,
    stdout,
    out: (t) => void stdout.write(t),
    client: async () => (client ??= await ensureService({ command: cliServiceCommand() })),
    call: async (m, p) => (await ctx.client()).request(m, p),
    vm: async (key) => {
      const all = await ctx.call('vm.list', {});
      const vm = UUID_PATTERN.test(key.toLowerCase()) ? all.find((x) => x.uuid.toLowerCase() === key.toLowerCase()) : (all.find((x) => x.name === key) ?? all.find((x) => x.name.toLowerCase() === key.toLowerCase()));
      if (!vm) throw new VerbError(`failed to get domain '${key}': no VM with this name or UUID`);
      return vm;
    },
  };
  try {
    return await v.run(ctx, flags, args, opts);
  } catch (e) {
    const msg = (e as Error).message;
    if (json) console.error(JSON.stringify({ error: msg }));
    else console.error(`error: ${msg}`);
    return e instanceof VerbError ? e.exitCode : 1;
  } finally {
    client?.close();
  }
}

function usageError(v: Verb, why: string): number {
  console.error(`error: ${why}\nusage: vireo ${v.name} ${v.usage} (see vireo ${v.name} --help)`);
  return 2;
}

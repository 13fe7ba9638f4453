// `vireo install`: virt-install's common options, made into the New VM wizard's request
// (vm.create) and sent to the per-user service. The service checks the request field by
// field; each field's problem is reported under the option that set it (--memory, --disk,
// ...). --print-xml asks the service for the libvirt domain XML it would define
// (vm.createXml); --dry-run only checks. Without --noautoconsole, on a terminal, the new
// VM's serial console is attached (`vireo console`), as virt-install attaches one.
import type { NewVmRequest, WizardField } from '../common/contracts/vm';
import { VERBS, VerbError, registerVerb, type VerbContext } from './virsh';

/** One option's comma-separated sub-options: bare words in order, key=value pairs. */
export interface SubOpts {
  bare: string[];
  kv: Map<string, string>;
}

/**
 * Splits "size=1,format=qcow2,bus=virtio" (or "/path,format=raw"). `rest` keys take the
 * remainder of the text, commas and all (kernel_args=console=ttyS0,115200).
 */
export function subopts(text: string, rest: string[] = []): SubOpts {
  const bare: string[] = [];
  const kv = new Map<string, string>();
  let s = text;
  while (s.length) {
    const eq = s.indexOf('=');
    const comma = s.indexOf(',');
    const key = eq >= 0 && (comma < 0 || eq < comma) ? s.slice(0, eq) : null;
    if (key !== null && rest.includes(key)) {
      kv.set(key, s.slice(eq + 1));
      break;
    }
    const item = comma < 0 ? s : s.slice(0, comma);
    s = comma < 0 ? '' : s.slice(comma + 1);
    if (!item) continue;
    if (key !== null) kv.set(key, item.slice(key.length + 1));
    else bare.push(item);
  }
  return { bare, kv };
}

function only(o: SubOpts, option: string, keys: string[]): void {
  for (const k of o.kv.keys()) if (!keys.includes(k)) throw new VerbError(`${option}: unknown sub-option '${k}' (known: ${keys.join(', ')})`, 2);
}

function positiveInt(v: string, option: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new VerbError(`${option}: '${v}' is not a positive whole number`, 2);
  return Number(v);
}

export type DiskSpec =
  | { kind: 'none' }
  | { kind: 'create'; sizeGiB: number; format?: 'qcow2' | 'raw'; bus?: 'virtio' | 'ide' }
  | { kind: 'path'; path: string; format?: 'qcow2' | 'raw'; bus?: 'virtio' | 'ide' };

export function parseDisk(text: string): DiskSpec {
  if (text === 'none') return { kind: 'none' };
  const o = subopts(text);
  only(o, '--disk', ['size', 'format', 'bus', 'path']);
  if (o.bare.length > 1) throw new VerbError(`--disk: one path at most, not '${o.bare.join("', '")}'`, 2);
  const path = o.kv.get('path') ?? o.bare[0];
  const format = o.kv.get('format');
  if (format !== undefined && format !== 'qcow2' && format !== 'raw') throw new VerbError(`--disk: format '${format}' is not qcow2 or raw`, 2);
  const bus = o.kv.get('bus');
  if (bus !== undefined && bus !== 'virtio' && bus !== 'ide') throw new VerbError(`--disk: bus '${bus}' is not virtio or ide (sata, scsi, usb are not emulated)`, 2);
  const extra = { ...(format ? { format: format as 'qcow2' | 'raw' } : {}), ...(bus ? { bus: bus as 'virtio' | 'ide' } : {}) };
  const size = o.kv.get('size');
  if (path !== undefined && size !== undefined) throw new VerbError('--disk: give size= (a new disk) or path= (an existing image), not both', 2);
  if (path !== undefined) return { kind: 'path', path, ...extra };
  if (size === undefined) throw new VerbError("--disk: give size=GiB for a new disk, path=FILE for an existing image, or 'none'", 2);
  const g = Number(size);
  if (!/^\d+(\.\d+)?$/.test(size) || !(g > 0)) throw new VerbError(`--disk: size '${size}' is not a size in GiB`, 2);
  return { kind: 'create', sizeGiB: g, ...extra };
}

export type NetSpec = { kind: 'none' } | { kind: 'network'; network: string; model?: 'virtio' | 'e1000'; mac?: string };

export function parseNetwork(text: string): NetSpec {
  if (text === 'none') return { kind: 'none' };
  const o = subopts(text);
  if (o.kv.has('bridge') || o.kv.has('type')) throw new VerbError(`--network: only network=NAME (a Vireo network) or none: bridged and direct networking are not built yet`, 2);
  only(o, '--network', ['network', 'model', 'mac']);
  let network = o.kv.get('network');
  for (const b of o.bare) {
    // virt-install's shorthands: 'default', 'network=NAME' as 'network:NAME', 'user' (slirp: the default NAT here).
    if (b === 'default' || b === 'user') network ??= 'default';
    else if (b.startsWith('network:')) network ??= b.slice('network:'.length);
    else if (b.startsWith('bridge')) throw new VerbError(`--network: only network=NAME (a Vireo network) or none: bridged and direct networking are not built yet`, 2);
    else throw new VerbError(`--network: '${b}' is not network=NAME or none`, 2);
  }
  const model = o.kv.get('model');
  if (model !== undefined && model !== 'virtio' && model !== 'e1000') throw new VerbError(`--network: model '${model}' is not virtio or e1000`, 2);
  return { kind: 'network', network: network ?? 'default', ...(model ? { model: model as 'virtio' | 'e1000' } : {}), ...(o.kv.has('mac') ? { mac: o.kv.get('mac')! } : {}) };
}

export type OsSpec = { kind: 'id'; id: string } | { kind: 'detect'; require: boolean };

export function parseOsVariant(text: string | undefined): OsSpec {
  if (text === undefined) return { kind: 'detect', require: false };
  const o = subopts(text);
  only(o, '--os-variant', ['detect', 'require', 'name', 'short-id', 'id']);
  if (o.kv.has('detect')) {
    if (o.kv.get('detect') !== 'on') throw new VerbError("--os-variant: detect= is 'on' (or name an OS)", 2);
    return { kind: 'detect', require: o.kv.get('require') === 'on' };
  }
  const id = o.kv.get('name') ?? o.kv.get('short-id') ?? o.bare[0];
  if (!id) throw new VerbError('--os-variant: name an OS (osinfo short-id, e.g. debian12) or detect=on', 2);
  return { kind: 'id', id };
}

export interface BootSpec {
  kernel: string;
  initrd?: string;
  append?: string;
}

export function parseBoot(text: string): BootSpec {
  const o = subopts(text, ['kernel_args', 'cmdline']);
  only(o, '--boot', ['kernel', 'initrd', 'kernel_args', 'cmdline']);
  if (o.bare.length) throw new VerbError(`--boot: only direct kernel boot is taken (kernel=,initrd=,kernel_args=), not '${o.bare.join(',')}': firmware boots the disk, or the CD-ROM first with --cdrom`, 2);
  const kernel = o.kv.get('kernel');
  if (!kernel) throw new VerbError('--boot: kernel= names the kernel to boot', 2);
  const append = o.kv.get('kernel_args') ?? o.kv.get('cmdline');
  return { kernel, ...(o.kv.get('initrd') ? { initrd: o.kv.get('initrd')! } : {}), ...(append ? { append } : {}) };
}

/** Each wizard field is set by one option: a service error on the field is reported under it. */
export function optionOf(field: WizardField, req: Pick<NewVmRequest, 'media'>): string {
  if (field === 'media') return req.media.kind === 'iso' ? '--cdrom' : req.media.kind === 'import' ? '--disk (--import)' : '--boot';
  return { kernel: '--boot', os: '--os-variant', memory: '--memory', cpus: '--vcpus', storage: '--disk', name: '--name', network: '--network' }[field];
}

export interface InstallPlan {
  name?: string;
  memoryMiB?: number;
  cpus?: number;
  media: NewVmRequest['media'] | null;
  disk: DiskSpec | null;
  os: OsSpec;
  net: NetSpec;
}

const one = (opts: Map<string, string[]>, k: string): string | undefined => {
  const v = opts.get(k);
  if (v && v.length > 1) throw new VerbError(`${k} is given ${v.length} times`, 2);
  return v?.[0];
};

/** The options as a plan (no service needed): usage problems are VerbErrors with exit code 2. */
export function parseInstall(flags: Set<string>, opts: Map<string, string[]>): InstallPlan {
  const mem = one(opts, '--memory');
  let memoryMiB: number | undefined;
  if (mem !== undefined) {
    const o = subopts(mem);
    only(o, '--memory', ['memory', 'currentMemory']);
    memoryMiB = positiveInt(o.kv.get('memory') ?? o.kv.get('currentMemory') ?? o.bare[0] ?? '', '--memory');
  }
  const vc = one(opts, '--vcpus');
  let cpus: number | undefined;
  if (vc !== undefined) {
    const o = subopts(vc);
    only(o, '--vcpus', ['vcpus', 'maxvcpus']);
    cpus = positiveInt(o.kv.get('vcpus') ?? o.bare[0] ?? '', '--vcpus');
  }
  const disks = (opts.get('--disk') ?? []).map(parseDisk);
  if (disks.length > 1) throw new VerbError('--disk: one disk here (add more in the VM details afterwards)', 2);
  const disk = disks[0] ?? null;
  const nets = (opts.get('--network') ?? []).map(parseNetwork);
  if (nets.length > 1) throw new VerbError('--network: one NIC here (add more in the VM details afterwards)', 2);
  const cdrom = one(opts, '--cdrom');
  const bootText = one(opts, '--boot');
  const imp = flags.has('--import');
  const how = [cdrom !== undefined && '--cdrom', bootText !== undefined && '--boot kernel=', imp && '--import'].filter(Boolean);
  if (how.length > 1) throw new VerbError(`${how.join(' and ')}: choose one install method`, 2);
  let media: InstallPlan['media'] = null;
  if (cdrom !== undefined) media = { kind: 'iso', path: cdrom };
  else if (bootText !== undefined) media = { kind: 'kernel', ...parseBoot(bootText) };
  else if (imp) {
    if (disk?.kind !== 'path') throw new VerbError('--import boots an existing disk: give it with --disk path=FILE', 2);
    media = { kind: 'import', path: disk.path, ...(disk.format ? { format: disk.format } : {}), ...(disk.bus ? { bus: disk.bus } : {}) };
  }
  const name = one(opts, '--name');
  return { ...(name !== undefined ? { name } : {}), ...(memoryMiB !== undefined ? { memoryMiB } : {}), ...(cpus !== undefined ? { cpus } : {}), media, disk, os: parseOsVariant(one(opts, '--os-variant')), net: nets[0] ?? { kind: 'network', network: 'default' } };
}

/** A free name like virt-install's: the OS id, then -2, -3 ... */
export function freeName(base: string, taken: string[]): string {
  const t = new Set(taken.map((n) => n.toLowerCase()));
  const b = base.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '') || 'vm';
  if (!t.has(b.toLowerCase())) return b;
  for (let i = 2; ; i++) if (!t.has(`${b}-${i}`.toLowerCase())) return `${b}-${i}`;
}

/** os.detect's sentence without the wizard's prompt. */
const plain = (m: string) => m.replace(/\s*Choose the operating system.*$/, '');

const warn = (ctx: VerbContext, msg: string) => void (ctx.json ? undefined : process.stderr.write(`WARNING  ${msg}\n`));

registerVerb({
  name: 'install',
  summary: 'create a VM and start its install (like virt-install)',
  usage: '--cdrom ISO | --boot kernel=PATH | --import --disk path=IMG  [options]',
  help:
    '  --name NAME              the VM\'s name (default: the OS id, made unique)\n' +
    '  --memory MiB             RAM (default: the OS\'s recommendation)\n' +
    '  --vcpus N                CPUs (default: the OS\'s recommendation)\n' +
    '  --cdrom PATH             install from this ISO (the VM boots it first)\n' +
    '  --boot kernel=PATH[,initrd=PATH][,kernel_args=ARGS]\n' +
    '                           direct kernel boot (kernel_args takes the rest of the text)\n' +
    '  --import                 boot the existing disk given with --disk path=\n' +
    '  --disk size=GiB[,format=qcow2|raw][,bus=virtio|ide]   a new disk in the default pool\n' +
    '  --disk path=FILE[,format=qcow2|raw][,bus=virtio|ide]  an existing image\n' +
    '  --disk none              no disk. Default: a qcow2 disk of the OS\'s recommended size\n' +
    '                           (virtio when the OS has the driver)\n' +
    '  --os-variant ID          an osinfo short-id (debian12, win11, generic, ...); default\n' +
    '                           detect=on: from the --cdrom medium; when nothing is detected:\n' +
    '                           generic, with a warning (detect=on,require=on: an error)\n' +
    '  --network network=NAME[,model=virtio|e1000][,mac=52:54:00:..]   default: network=default\n' +
    '  --network none           no NIC\n' +
    '  --noautoconsole          do not attach the serial console (the default off a terminal)\n' +
    '  --print-xml              print the libvirt domain XML; define and create nothing\n' +
    '  --dry-run                check everything; create nothing',
  flags: ['--import', '--noautoconsole', '--print-xml', '--dry-run'],
  options: ['--name', '--memory', '--vcpus', '--cdrom', '--disk', '--os-variant', '--osinfo', '--network', '--boot'],
  args: { min: 0, max: 0 },
  async run(ctx, flags, _args, opts) {
    if (opts.has('--osinfo')) opts.set('--os-variant', [...(opts.get('--os-variant') ?? []), ...opts.get('--osinfo')!]);
    const plan = parseInstall(flags, opts);
    if (!plan.media) throw new VerbError('an install method is needed: --cdrom ISO, --boot kernel=PATH or --import with --disk path=IMG', 2);
    const media = plan.media;

    // The OS: named, or detected from the medium as virt-install does.
    let osId: string;
    if (plan.os.kind === 'id') osId = plan.os.id;
    else {
      const det = media.kind === 'iso' ? await ctx.call('os.detect', { path: media.path }) : null;
      if (det?.os) {
        osId = det.os.id;
        if (!ctx.json) process.stderr.write(`Using ${det.os.name} (${det.os.id}): ${plain(det.message)}\n`);
      } else if (plan.os.require) {
        throw new VerbError(`--os-variant: no OS was detected${det ? ` (${plain(det.message)})` : ' (nothing to detect from without --cdrom)'}: name one, e.g. --os-variant generic`);
      } else {
        osId = 'generic';
        warn(ctx, `--os-variant: no OS detected${det ? ` (${plain(det.message)})` : ''}: using 'generic'. Name one (osinfo short-id) for better defaults.`);
      }
    }
    const entry = (await ctx.call('os.list', { query: osId, limit: 500 })).find((o) => o.id === osId);
    const taken = (await ctx.call('vm.list', {})).map((v) => v.name);
    const name = plan.name ?? freeName(osId, taken);

    let storage: NewVmRequest['storage'];
    const d = plan.disk;
    const defaultBus = entry?.virtioDisk ? 'virtio' : 'ide';
    if (media.kind === 'import' || d?.kind === 'none') storage = { kind: 'none' };
    else if (d?.kind === 'path') storage = { kind: 'existing', path: d.path, ...(d.format ? { format: d.format } : {}), bus: d.bus ?? defaultBus };
    else storage = { kind: 'create', sizeGiB: d?.sizeGiB ?? entry?.diskGiB ?? 2, format: d?.format ?? 'qcow2', bus: d?.bus ?? defaultBus };

    const net = plan.net;
    const req: NewVmRequest = {
      media,
      os: osId,
      memoryMiB: plan.memoryMiB ?? entry?.memoryMiB ?? 256,
      cpus: plan.cpus ?? entry?.cpus ?? 1,
      storage,
      name,
      network: net.kind === 'none' ? 'none' : net.network,
      // Without model=, the service picks the OS's NIC (what the wizard gives it).
      ...(net.kind === 'network' && net.model ? { nicModel: net.model } : {}),
      ...(net.kind === 'network' && net.mac ? { mac: net.mac } : {}),
    };
    const fail = (errors: Array<{ field: WizardField; message: string }>) => {
      const lines = errors.map((e) => `${optionOf(e.field, req)}: ${e.field === 'os' ? `'${osId}' is not an OS known here (osinfo short-ids, or generic)` : e.message}`);
      throw new VerbError(lines.join('\n'));
    };

    if (flags.has('--print-xml')) {
      const r = await ctx.call('vm.createXml', req);
      if (r.errors.length || !r.xml) return fail(r.errors), 1;
      ctx.out(ctx.json ? JSON.stringify({ name, xml: r.xml }) + '\n' : r.xml);
      return 0;
    }
    if (flags.has('--dry-run')) {
      const r = await ctx.call('vm.create', { ...req, dryRun: true });
      if (r.errors.length) return fail(r.errors), 1;
      ctx.out(ctx.json ? JSON.stringify({ name, dryRun: true, request: req }, null, 2) + '\n' : 'Dry run completed successfully\n');
      return 0;
    }

    // Checked first, so nothing is said to be starting that is refused.
    const check = await ctx.call('vm.create', { ...req, dryRun: true });
    if (check.errors.length) return fail(check.errors), 1;
    if (!ctx.json) ctx.out('\nStarting install...\n');
    const r = await ctx.call('vm.create', req);
    if (r.errors.length || !r.vm) return fail(r.errors), 1;
    const vm = r.vm;
    if (!ctx.json && storage.kind === 'create') ctx.out(`Allocating '${vm.disks[0]?.path ?? name}' (${storage.sizeGiB} GiB ${storage.format})\n`);
    if (!ctx.json) ctx.out('Creating domain...\n');
    try {
      await ctx.call('vm.action', { uuid: vm.uuid, action: 'start' });
    } catch (e) {
      throw new VerbError(`Domain '${name}' was defined but did not start: ${(e as Error).message}\n(its definition stays: vireo start ${name}, or vireo undefine --remove-all-storage ${name})`);
    }
    const attach = !flags.has('--noautoconsole') && !ctx.json && ctx.stdin.isTTY && ctx.stdout.isTTY;
    if (ctx.json) {
      ctx.out(JSON.stringify({ name: vm.name, uuid: vm.uuid, os: vm.os, started: true, disks: vm.disks.map((x) => ({ path: x.path, media: x.media, format: x.format, bus: x.bus })) }, null, 2) + '\n');
      return 0;
    }
    ctx.out('Domain creation completed.\n');
    if (!attach) {
      ctx.out(`Domain is running. Connect to its serial console with: vireo console ${vm.name}\n(or open it in the Vireo app for its screen)\n`);
      return 0;
    }
    return VERBS.get('console')!.run(ctx, new Set(), [vm.name], new Map());
  },
});

// virsh's storage verbs beyond pool-list/vol-list (cli/virsh.ts): vol-create-as,
// vol-delete, vol-resize, pool-define-as (directory pools), pool-undefine, on the
// service's storage.* calls (contracts/storage.ts).
import { VerbError, registerVerb, type VerbContext } from './virsh';

const UNITS: Record<string, number> = {
  '': 1, b: 1, bytes: 1,
  k: 1024, kib: 1024, kb: 1000,
  m: 1024 ** 2, mib: 1024 ** 2, mb: 1e6,
  g: 1024 ** 3, gib: 1024 ** 3, gb: 1e9,
  t: 1024 ** 4, tib: 1024 ** 4, tb: 1e12,
};

/** virsh's scaled sizes: "1G" and "1GiB" are 1024^3, "1GB" is 10^9, a bare number is bytes. */
export function parseSize(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(text.trim());
  if (!m) return null;
  const u = UNITS[m[2]!.toLowerCase()];
  if (u === undefined) return null;
  const n = Math.round(Number(m[1]) * u);
  return Number.isSafeInteger(n) ? n : null;
}

async function pool(ctx: VerbContext, name: string): Promise<string> {
  const pools = await ctx.call('storage.pools', {});
  const p = pools.find((x) => x.name === name);
  if (!p) throw new VerbError(`failed to get pool '${name}': no storage pool with this name (vireo pool-list --all)`);
  return p.name;
}

registerVerb({
  name: 'vol-create-as',
  summary: 'create a volume (disk image) in a pool',
  usage: '<pool> <name> <capacity> [--format qcow2|raw] [--backing-vol PATH]',
  help:
    '  <capacity>         bytes, or with a suffix: K, M, G, T (KiB...), KB, MB, GB, TB (1000s)\n' +
    '  --format FMT       qcow2 or raw (default raw, as virsh); a name without an extension\n' +
    '                     gets .qcow2 or .img\n' +
    '  --backing-vol PATH a qcow2 overlay based on this image (absolute path)\n' +
    '  --allocation SIZE  accepted and not used: images are made sparse',
  options: ['--format', '--backing-vol', '--allocation'],
  args: { min: 3, max: 3, names: ['pool', 'name', 'capacity'] },
  async run(ctx, _f, [poolName, name, cap], opts) {
    const capacityBytes = parseSize(cap!);
    if (capacityBytes === null) throw new VerbError(`capacity '${cap}': not a size (e.g. 1G, 512M, 1073741824)`, 2);
    const format = opts.get('--format')?.[0] ?? (opts.has('--backing-vol') ? 'qcow2' : 'raw');
    if (format !== 'qcow2' && format !== 'raw') throw new VerbError(`--format '${format}': qcow2 or raw`, 2);
    const backing = opts.get('--backing-vol')?.[0];
    const p = await pool(ctx, poolName!);
    let v;
    try {
      v = await ctx.call('storage.volumeCreate', { pool: p, name: name!, format, capacityBytes, ...(backing ? { backing } : {}) });
    } catch (e) {
      throw new VerbError(`Failed to create vol ${name}: ${(e as Error).message}`);
    }
    ctx.out(ctx.json ? JSON.stringify(v, null, 2) + '\n' : `Vol ${v.name} created\n\n`);
    return 0;
  },
});

/** A volume named as virsh names one: a name (in --pool, else the default pool) or a full path (its pool found). */
async function findVol(ctx: VerbContext, vol: string, poolOpt: string | undefined): Promise<{ pool: string; name: string; path: string; capacityBytes: number }> {
  if (vol.startsWith('/')) {
    for (const p of await ctx.call('storage.pools', {})) {
      if (poolOpt && p.name !== poolOpt) continue;
      const hit = (await ctx.call('storage.volumes', { pool: p.name })).find((v) => v.path === vol);
      if (hit) return { pool: p.name, name: hit.name, path: hit.path, capacityBytes: hit.capacityBytes };
    }
    throw new VerbError(`failed to get vol '${vol}': no volume with this path in a pool`);
  }
  const poolName = await pool(ctx, poolOpt ?? 'default');
  const hit = (await ctx.call('storage.volumes', { pool: poolName })).find((v) => v.name === vol);
  if (!hit) throw new VerbError(`failed to get vol '${vol}': no volume with this name in pool '${poolName}'`);
  return { pool: poolName, name: hit.name, path: hit.path, capacityBytes: hit.capacityBytes };
}

registerVerb({
  name: 'vol-delete',
  summary: 'delete a volume (refused while a VM uses it or another image is based on it)',
  usage: '<vol> [--pool POOL]',
  help: '  <vol>        a volume name (with --pool, else the default pool) or a full path',
  options: ['--pool'],
  args: { min: 1, max: 1, names: ['vol'] },
  async run(ctx, _f, [vol], opts) {
    const v = await findVol(ctx, vol!, opts.get('--pool')?.[0]);
    const poolName = v.pool, volName = v.name, full = v.path;
    try {
      // The user named this volume: that is the confirmation a volume outside Vireo's own pool needs.
      await ctx.call('storage.volumeDelete', { pool: poolName, name: volName, confirm: full });
    } catch (e) {
      throw new VerbError(`Failed to delete vol ${volName}: ${(e as Error).message}`);
    }
    ctx.out(ctx.json ? JSON.stringify({ pool: poolName, name: volName, path: full, deleted: true }) + '\n' : `Vol ${volName} deleted\n\n`);
    return 0;
  },
});

registerVerb({
  name: 'vol-resize',
  summary: 'change a volume\'s capacity (shrinking needs --shrink)',
  usage: '<vol> <capacity> [--pool POOL] [--delta] [--shrink]',
  help:
    '  <vol>        a volume name (with --pool, else the default pool) or a full path\n' +
    '  <capacity>   the new size (K, M, G, T: 1024s; KB, MB, GB, TB: 1000s); with --delta the\n' +
    '               change, and a leading - (with --shrink) makes it smaller\n' +
    '  --shrink     allow a smaller size: the data past the new end is lost (qcow2 internal\n' +
    '               snapshots keep theirs). Refused while a VM runs on it or an image is based on it\n' +
    '  --allocate   accepted and not used: images stay sparse',
  options: ['--pool'],
  flags: ['--delta', '--shrink', '--allocate'],
  args: { min: 2, max: 2, names: ['vol', 'capacity'] },
  async run(ctx, flags, [vol, cap], opts) {
    const delta = flags.has('--delta'), shrink = flags.has('--shrink');
    const negative = cap!.startsWith('-');
    if (negative && !shrink) throw new VerbError(`capacity '${cap}': a negative size needs --shrink (and --delta)`, 2);
    const amount = parseSize(negative ? cap!.slice(1) : cap!);
    if (amount === null) throw new VerbError(`capacity '${cap}': not a size (e.g. 1G, 512M, 1073741824)`, 2);
    const v = await findVol(ctx, vol!, opts.get('--pool')?.[0]);
    const capacityBytes = delta || negative ? v.capacityBytes + (negative ? -amount : amount) : amount;
    if (capacityBytes <= 0) throw new VerbError(`Failed to change size of volume '${v.name}': the new size would be ${capacityBytes} bytes`);
    if (capacityBytes < v.capacityBytes && !shrink)
      throw new VerbError(`Failed to change size of volume '${v.name}': it is ${v.capacityBytes} bytes; a smaller size needs --shrink (the data past it is lost)`);
    let out;
    try {
      out = await ctx.call('storage.volumeResize', { pool: v.pool, name: v.name, capacityBytes, ...(shrink ? { shrink: true } : {}), confirm: v.path });
    } catch (e) {
      throw new VerbError(`Failed to change size of volume '${v.name}': ${(e as Error).message}`);
    }
    ctx.out(ctx.json ? JSON.stringify(out, null, 2) + '\n' : `Size of volume '${v.name}' successfully changed to ${cap}\n\n`);
    return 0;
  },
});

registerVerb({
  name: 'pool-define-as',
  summary: 'define a directory storage pool',
  usage: '<name> dir --target PATH',
  help: '  Only directory pools (type dir): PATH must be an existing directory. Its files stay\n  where they are; `vireo pool-undefine` forgets the pool, not the files.',
  options: ['--target'],
  args: { min: 2, max: 2, names: ['name', 'type'] },
  async run(ctx, _f, [name, type], opts) {
    if (type !== 'dir') throw new VerbError(`pool type '${type}' is not supported: only 'dir' (a directory of images)`, 2);
    const target = opts.get('--target')?.[0];
    if (!target) throw new VerbError('--target PATH (the pool\'s directory) is needed', 2);
    let p;
    try {
      p = await ctx.call('storage.poolDefine', { name: name!, path: target });
    } catch (e) {
      throw new VerbError(`Failed to define pool ${name}: ${(e as Error).message}`);
    }
    ctx.out(ctx.json ? JSON.stringify(p, null, 2) + '\n' : `Pool ${p.name} defined\n\n`);
    return 0;
  },
});

registerVerb({
  name: 'pool-undefine',
  summary: 'forget a user-defined storage pool (its files stay)',
  usage: '<pool>',
  args: { min: 1, max: 1, names: ['pool'] },
  async run(ctx, _f, [name]) {
    const p = await pool(ctx, name!);
    try {
      await ctx.call('storage.poolUndefine', { name: p });
    } catch (e) {
      throw new VerbError(`Failed to undefine pool ${p}: ${(e as Error).message}`);
    }
    ctx.out(ctx.json ? JSON.stringify({ name: p, undefined: true }) + '\n' : `Pool ${p} has been undefined\n\n`);
    return 0;
  },
});

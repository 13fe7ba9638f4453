// virsh's snapshot verbs: snapshot-create-as, snapshot-list (--tree), snapshot-revert,
// snapshot-delete, snapshot-current (docs/state.md, "Snapshots"). A running or paused VM
// gets a disk + RAM snapshot (it pauses only for the capture), a shut-off one a disk-only
// snapshot. As virsh does, snapshot-revert stops a running VM without asking.
import type { Snapshot } from '../common/contracts/snapshots';
import { VerbError, registerVerb, table } from './virsh';

/** virsh's creation time: "2024-05-17 10:20:30 +0000" (UTC here). */
export function snapshotTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

/** virsh snapshot-list's table: Name, Creation Time, State (and the kind, which virsh shows with --memory/--disk-only). */
export function snapshotTable(snaps: Snapshot[], parent = false): string {
  const head = parent ? ['Name', 'Creation Time', 'State', 'Parent'] : ['Name', 'Creation Time', 'State'];
  const rows = snaps.map((s) => {
    const r = [s.name, snapshotTime(s.createdAt), s.kind === 'disk+ram' ? s.state : 'disk-snapshot'];
    if (parent) r.push(s.parent ?? '');
    return r;
  });
  return table(head, rows);
}

/**
 * virsh snapshot-list --tree:
 *   a
 *     |
 *     +- b
 *     |   |
 *     |   +- c
 *     |
 *     +- d
 */
export function snapshotTree(snaps: Snapshot[]): string {
  const byName = new Map(snaps.map((s) => [s.name, s]));
  const kids = (p: string | null) => snaps.filter((s) => (p === null ? s.parent === null || !byName.has(s.parent) : s.parent === p));
  const out: string[] = [];
  const walk = (s: Snapshot, prefix: string) => {
    const children = kids(s.name);
    children.forEach((c, i) => {
      const last = i === children.length - 1;
      out.push(`${prefix}  |`);
      out.push(`${prefix}  +- ${c.name}`);
      walk(c, `${prefix}${last ? '    ' : '  | '}`);
    });
  };
  for (const root of kids(null)) {
    out.push(root.name);
    walk(root, '');
    out.push('');
  }
  return out.join('\n') + (out.length ? '\n' : '');
}

registerVerb({
  name: 'snapshot-create-as',
  summary: 'take a snapshot: disk + RAM of a running or paused VM, disk-only when shut off',
  usage: '<domain> <name> [--description TEXT]',
  help: "  Every writable disk must be qcow2 (internal snapshots). A running VM pauses only for the capture;\n  its machine state goes to <config>/vireo/snapshots/<uuid>/. --name NAME may stand for <name>.",
  options: ['--description', '--name'],
  args: { min: 1, max: 2, names: ['domain', 'name'] },
  async run(ctx, _f, [dom, pos], opts) {
    const vm = await ctx.vm(dom!);
    const name = pos ?? opts.get('--name')?.at(-1);
    if (name === undefined) throw new VerbError('snapshot-create-as: a snapshot name is required (<name> or --name NAME)', 2);
    let r;
    try {
      r = await ctx.call('snapshot.create', { uuid: vm.uuid, name, description: opts.get('--description')?.at(-1) ?? '' });
    } catch (e) {
      throw new VerbError(`Failed to create snapshot '${name}' of domain '${vm.name}': ${(e as Error).message}`);
    }
    if (r.errors.length) throw new VerbError(`invalid snapshot: ${r.errors.map((e) => `${e.field}: ${e.message}`).join('; ')}`);
    ctx.out(ctx.json ? JSON.stringify({ domain: vm.name, snapshot: r.snapshot }) + '\n' : `Domain snapshot ${name} created\n`);
    return 0;
  },
});

registerVerb({
  name: 'snapshot-list',
  summary: "list a VM's snapshots (--tree: as a tree; --parent: with each one's parent)",
  usage: '<domain> [--tree] [--parent]',
  flags: ['--tree', '--parent'],
  args: { min: 1, max: 1, names: ['domain'] },
  async run(ctx, flags, [dom]) {
    const vm = await ctx.vm(dom!);
    const l = await ctx.call('snapshot.list', { uuid: vm.uuid });
    if (ctx.json) ctx.out(JSON.stringify(l) + '\n');
    else if (flags.has('--tree')) ctx.out(snapshotTree(l.snapshots));
    else ctx.out(snapshotTable(l.snapshots, flags.has('--parent')) + '\n');
    return 0;
  },
});

registerVerb({
  name: 'snapshot-revert',
  summary: 'revert a VM to a snapshot (a running VM is stopped first; disk + RAM snapshots resume)',
  usage: '<domain> <snapshot>',
  help: '  The disks go back to the snapshot and the VM definition to its hardware; everything since is lost.',
  args: { min: 2, max: 2, names: ['domain', 'snapshot'] },
  async run(ctx, _f, [dom, name]) {
    const vm = await ctx.vm(dom!);
    let r;
    try {
      r = await ctx.call('snapshot.revert', { uuid: vm.uuid, name: name!, force: true });
    } catch (e) {
      throw new VerbError(`Failed to revert domain '${vm.name}' to snapshot '${name}': ${(e as Error).message}`);
    }
    if (ctx.json) ctx.out(JSON.stringify({ domain: vm.name, snapshot: name, started: r.started }) + '\n');
    return 0;
  },
});

registerVerb({
  name: 'snapshot-delete',
  summary: "delete a snapshot (its children move to its parent; the disks stay)",
  usage: '<domain> <snapshot>',
  args: { min: 2, max: 2, names: ['domain', 'snapshot'] },
  async run(ctx, _f, [dom, name]) {
    const vm = await ctx.vm(dom!);
    try {
      await ctx.call('snapshot.delete', { uuid: vm.uuid, name: name! });
    } catch (e) {
      throw new VerbError(`Failed to delete snapshot '${name}' of domain '${vm.name}': ${(e as Error).message}`);
    }
    ctx.out(ctx.json ? JSON.stringify({ domain: vm.name, snapshot: name, deleted: true }) + '\n' : `Domain snapshot ${name} deleted\n`);
    return 0;
  },
});

registerVerb({
  name: 'snapshot-current',
  summary: "the VM's current snapshot (the one last taken or reverted to)",
  usage: '<domain> [--name]',
  help: '  Prints its name (virsh prints XML without --name; Vireo prints the name either way).',
  flags: ['--name'],
  args: { min: 1, max: 1, names: ['domain'] },
  async run(ctx, _f, [dom]) {
    const vm = await ctx.vm(dom!);
    const l = await ctx.call('snapshot.list', { uuid: vm.uuid });
    if (l.current === null) throw new VerbError(`domain '${vm.name}' has no current snapshot`);
    const cur = l.snapshots.find((s) => s.name === l.current);
    ctx.out(ctx.json ? JSON.stringify(cur ?? { name: l.current }) + '\n' : `${l.current}\n`);
    return 0;
  },
});

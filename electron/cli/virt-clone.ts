// `vireo clone`: virt-clone's options on the service's clone job (vm.clone): a full copy
// of each writable disk (reflinked where the file system can), or --linked qcow2 overlays
// backed by the original's disks. Progress comes as job.progress events (a bar on a
// terminal); Ctrl-C cancels the job and the service removes what it made.
import { VerbError, registerVerb, size } from './virsh';

/** "Cloning x   42% [=======       ]  1.00 GiB/2.38 GiB" for a terminal line. */
export function progressLine(label: string, done: number, total: number, width = 24): string {
  const f = total > 0 ? Math.min(1, done / total) : 1;
  const bar = '='.repeat(Math.round(f * width)).padEnd(width);
  return `${label.padEnd(28).slice(0, 28)} ${String(Math.floor(f * 100)).padStart(3)}% [${bar}] ${size(done)}/${size(total)}`;
}

registerVerb({
  name: 'clone',
  summary: 'copy a VM with its disks (like virt-clone)',
  usage: '--original NAME (--name NEW | --auto-clone) [--linked]',
  help:
    '  --original NAME   the VM to clone (by name or UUID); shut off or paused\n' +
    '  --name NEW        the clone\'s name\n' +
    '  --auto-clone      name it like virt-clone does (NAME-clone, NAME-clone2, ...)\n' +
    '  --linked          qcow2 overlays backed by the original\'s disks instead of copies\n' +
    '                    (the original must be shut off; its disks become the base)\n' +
    '  --file PATH       not taken: the service names the new disks in the default pool\n' +
    '                    (NEW.qcow2, ...) and they are listed when done\n' +
    '  CD-ROM images and read-only disks are shared, not copied; every NIC gets a new MAC.\n' +
    '  Exit codes: 0 cloned, 1 failed or cancelled (nothing is left behind), 2 bad usage.',
  flags: ['--auto-clone', '--linked'],
  options: ['--original', '--name', '--file'],
  args: { min: 0, max: 0 },
  async run(ctx, flags, _args, opts) {
    const original = opts.get('--original')?.[0];
    if (!original) throw new VerbError('--original NAME is needed', 2);
    if (opts.has('--file')) throw new VerbError('--file: the service names the clone\'s disks itself (in the default pool): leave --file out', 2);
    const name = opts.get('--name')?.[0];
    if (!name && !flags.has('--auto-clone')) throw new VerbError('--name NEW or --auto-clone is needed', 2);
    if (name && flags.has('--auto-clone')) throw new VerbError('--name and --auto-clone: give one', 2);
    const vm = await ctx.vm(original);
    const plan = await ctx.call('vm.clonePlan', { uuid: vm.uuid });
    if (plan.blocker) throw new VerbError(`Cannot clone '${vm.name}': ${plan.blocker}`);
    const newName = name ?? plan.suggestedName;

    const client = await ctx.client();
    const tty = !ctx.json && ctx.stdout.isTTY;
    let jobId: string | undefined;
    let lastLabel = '';
    const done = new Promise<{ ok: boolean; cancelled: boolean; error?: string; vmUuid?: string }>((resolve) => {
      // Subscribed before vm.clone is sent (the socket keeps order): no event is missed.
      client.onEvent((ev, p) => {
        const e = p as { jobId?: string };
        if (jobId === undefined || e.jobId !== jobId) return;
        if (ev === 'job.progress') {
          const pr = p as { doneBytes: number; totalBytes: number; label: string };
          if (tty) ctx.stdout.write(`\r${progressLine(pr.label, pr.doneBytes, pr.totalBytes)}`);
          lastLabel = pr.label;
        } else if (ev === 'job.done') resolve(p as { ok: boolean; cancelled: boolean; error?: string; vmUuid?: string });
      });
    });
    const r = await ctx.call('vm.clone', { uuid: vm.uuid, name: newName, mode: flags.has('--linked') ? 'linked' : 'full' });
    if (r.errors.length || !r.jobId) throw new VerbError(r.errors.map((e) => `${e.field === 'name' ? (name ? '--name' : '--auto-clone') : e.field}: ${e.message}`).join('\n') || 'the service started no clone job');
    jobId = r.jobId;
    const onSigint = () => void ctx.call('job.cancel', { jobId: jobId! }).catch(() => undefined);
    process.on('SIGINT', onSigint);
    let end;
    try {
      end = await done;
    } finally {
      process.off('SIGINT', onSigint);
    }
    if (tty) ctx.stdout.write('\n');
    if (!end.ok) throw new VerbError(end.cancelled ? `Clone of '${vm.name}' cancelled: nothing was kept` : `Failed to clone '${vm.name}': ${end.error ?? lastLabel}`);
    const clone = (await ctx.call('vm.list', {})).find((v) => v.uuid === end.vmUuid);
    const disks = clone ? clone.disks.filter((d) => d.media === 'disk' && !d.readOnly).map((d) => d.path) : [];
    if (ctx.json) ctx.out(JSON.stringify({ name: newName, uuid: end.vmUuid, original: vm.name, mode: flags.has('--linked') ? 'linked' : 'full', disks }, null, 2) + '\n');
    else ctx.out(`${disks.map((p) => `Allocating '${p}'\n`).join('')}\nClone '${newName}' created successfully.\n`);
    return 0;
  },
});

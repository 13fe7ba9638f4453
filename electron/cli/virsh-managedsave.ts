// `vireo managedsave <domain>` / `vireo managedsave-remove <domain>` (virsh's verbs): save
// a running or paused VM's whole state to its managed-save file and stop it; remove that
// file. `vireo start` restores a VM with a managed save ("Domain 'x' started", like virsh).
// As virsh does, `list` shows such a VM as "shut off" and `dominfo` says "Managed save: yes"
// (the app shows it as "Saved", like virt-manager).
import { VerbError, registerVerb } from './virsh';

registerVerb({
  name: 'managedsave',
  summary: "save a running or paused VM's state and stop it; `start` restores it",
  usage: '<domain>',
  help: "  The state goes to <config>/vireo/save/<uuid>.vstate; the next start resumes the guest\n  where it was and removes the file. managedsave-remove discards it.",
  args: { min: 1, max: 1, names: ['domain'] },
  async run(ctx, _f, [dom]) {
    const vm = await ctx.vm(dom!);
    try {
      await ctx.call('vm.action', { uuid: vm.uuid, action: 'save' });
    } catch (e) {
      throw new VerbError(`Failed to save domain '${vm.name}' state: ${(e as Error).message}`);
    }
    ctx.out(ctx.json ? JSON.stringify({ name: vm.name, uuid: vm.uuid, action: 'managedsave', ok: true }) + '\n' : `\nDomain '${vm.name}' state saved by Vireo\n\n`);
    return 0;
  },
});

registerVerb({
  name: 'managedsave-remove',
  summary: "discard a VM's managed save (its next start boots fresh)",
  usage: '<domain>',
  args: { min: 1, max: 1, names: ['domain'] },
  async run(ctx, _f, [dom]) {
    const vm = await ctx.vm(dom!);
    try {
      await ctx.call('vm.action', { uuid: vm.uuid, action: 'discardSave' });
    } catch (e) {
      throw new VerbError(`Failed to remove managed save image for domain '${vm.name}': ${(e as Error).message}`);
    }
    ctx.out(ctx.json ? JSON.stringify({ name: vm.name, uuid: vm.uuid, action: 'managedsave-remove', ok: true }) + '\n' : `Removed managedsave image for domain '${vm.name}'\n\n`);
    return 0;
  },
});

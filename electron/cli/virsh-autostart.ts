// `vireo autostart [--disable] <domain>`: mark a VM to start when the Vireo service starts
// (virsh autostart; libvirtd starts such domains when it starts, the Vireo service likewise).
// `dominfo` shows the mark as "Autostart: enable/disable".
import { VerbError, registerVerb } from './virsh';

registerVerb({
  name: 'autostart',
  summary: 'start a VM when the Vireo service starts (--disable: not any more)',
  usage: '[--disable] <domain>',
  help: '  --disable   unmark it\n  The mark is in the VM\'s definition (Details → Boot options in the app).',
  flags: ['--disable'],
  args: { min: 1, max: 1, names: ['domain'] },
  async run(ctx, f, [dom]) {
    const vm = await ctx.vm(dom!);
    const enabled = !f.has('--disable');
    try {
      await ctx.call('vm.setAutostart', { uuid: vm.uuid, enabled });
    } catch (e) {
      throw new VerbError(`Failed to ${enabled ? 'mark' : 'unmark'} domain '${vm.name}' as autostarted: ${(e as Error).message}`);
    }
    ctx.out(ctx.json ? JSON.stringify({ name: vm.name, uuid: vm.uuid, autostart: enabled }) + '\n' : `Domain '${vm.name}' ${enabled ? 'marked' : 'unmarked'} as autostarted\n\n`);
    return 0;
  },
});

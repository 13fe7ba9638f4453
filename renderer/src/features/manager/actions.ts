import type { VmAction } from '../../../../electron/common/contracts/api';
import type { VmSummary } from '../../../../electron/common/contracts/vm';
import { getClient } from '../../services/client';
import { useVms } from '../../stores/vms';

/** startTemporary: Run with temporary changes (every writable disk gets a throwaway overlay). */
export type MenuCommand = 'open' | 'details' | VmAction | 'startTemporary' | 'clone' | 'delete';

export interface MenuItem {
  cmd: MenuCommand;
  label: string;
  enabled: boolean;
}

/** The context menu for a VM in the state it is in (virt-manager's rules). */
export function menuFor(vm: VmSummary): MenuItem[] {
  const s = vm.state;
  const on = s === 'running' || s === 'paused' || s === 'starting' || s === 'shuttingdown';
  return [
    { cmd: 'open', label: 'Open', enabled: true },
    { cmd: 'details', label: 'Details', enabled: true },
    // A saved VM's Run restores it (virt-manager's "Restore").
    { cmd: 'start', label: s === 'saved' ? 'Restore' : 'Run', enabled: !on },
    { cmd: 'startTemporary', label: 'Run with temporary changes', enabled: !on && s !== 'saved' },
    s === 'paused' ? { cmd: 'resume', label: 'Resume', enabled: true } : { cmd: 'pause', label: 'Pause', enabled: s === 'running' || s === 'shuttingdown' },
    // Shut Down presses the power button and waits; the guest must be running to see it.
    { cmd: 'shutdown', label: 'Shut Down', enabled: s === 'running' },
    { cmd: 'reboot', label: 'Reboot', enabled: s === 'running' },
    { cmd: 'reset', label: 'Reset', enabled: s === 'running' || s === 'paused' || s === 'shuttingdown' },
    { cmd: 'forceoff', label: 'Force Off', enabled: on },
    // Save: the machine's state to disk, then off (virt-manager's "Save", virsh managedsave).
    { cmd: 'save', label: 'Save', enabled: s === 'running' || s === 'paused' },
    ...(s === 'saved' ? [{ cmd: 'discardSave' as const, label: 'Discard saved state', enabled: true }] : []),
    { cmd: 'clone', label: 'Clone…', enabled: !on || s === 'paused' },
    { cmd: 'delete', label: 'Delete…', enabled: !on },
  ];
}

export async function runAction(uuid: string, action: VmAction, opts: { temporary?: boolean } = {}): Promise<void> {
  try {
    await getClient().call('vm.action', { uuid, action, ...(opts.temporary ? { temporary: true } : {}) });
  } catch (e) {
    useVms.getState().setError((e as Error).message);
  }
}

import type { VmAction } from '../../../../electron/common/contracts/api';
import type { VmSummary } from '../../../../electron/common/contracts/vm';
import { getClient } from '../../services/client';
import { useVms } from '../../stores/vms';

export type MenuCommand = 'open' | 'details' | VmAction | 'clone' | 'delete';

export interface MenuItem {
  cmd: MenuCommand;
  label: string;
  enabled: boolean;
}

/** The context menu for a VM in the state it is in (virt-manager's rules). */
export function menuFor(vm: VmSummary): MenuItem[] {
  const s = vm.state;
  const on = s === 'running' || s === 'paused' || s === 'starting';
  return [
    { cmd: 'open', label: 'Open', enabled: true },
    { cmd: 'details', label: 'Details', enabled: true },
    { cmd: 'start', label: 'Run', enabled: !on },
    s === 'paused' ? { cmd: 'resume', label: 'Resume', enabled: true } : { cmd: 'pause', label: 'Pause', enabled: s === 'running' },
    { cmd: 'shutdown', label: 'Shut Down', enabled: s === 'running' || s === 'paused' },
    { cmd: 'reboot', label: 'Reboot', enabled: s === 'running' },
    { cmd: 'forceoff', label: 'Force Off', enabled: on },
    { cmd: 'clone', label: 'Clone…', enabled: !on || s === 'paused' },
    { cmd: 'delete', label: 'Delete…', enabled: !on },
  ];
}

export async function runAction(uuid: string, action: VmAction): Promise<void> {
  try {
    await getClient().call('vm.action', { uuid, action });
  } catch (e) {
    useVms.getState().setError((e as Error).message);
  }
}

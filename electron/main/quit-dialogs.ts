// The quit questions (quit-plan.ts's QuitUi) as Electron message boxes.
import { type BrowserWindow, type MessageBoxOptions, dialog } from 'electron';
import type { VmSummary } from '../common/contracts/vm';
import { CHOICE_LABELS, type QuitChoice, type QuitUi, describeOutcome } from './quit-plan';

const CHOICES: QuitChoice[] = ['keep', 'save', 'shutdown', 'forceoff'];

const EXPLAIN = [
  'Keep running in the background: they run on in the Vireo service; open Vireo again to see them.',
  'Save state: each VM is saved to disk and stops; its next start resumes where it was.',
  'Shut down: each guest is asked to power off (ACPI power button) and Vireo waits for it.',
  'Force off: they stop now, like pulling the plug (unsaved guest data is lost).',
].join('\n');

const line = (v: VmSummary) => `• ${v.name} (${v.state})`;

export function electronQuitUi(parent: () => BrowserWindow | undefined): QuitUi {
  const ask = async (o: MessageBoxOptions): Promise<number> => {
    const w = parent();
    const opts: MessageBoxOptions = { noLink: true, title: 'Quit Vireo', ...o };
    return (w && !w.isDestroyed() ? await dialog.showMessageBox(w, opts) : await dialog.showMessageBox(opts)).response;
  };
  return {
    async chooseAll(vms) {
      const each = vms.length > 1;
      const buttons = [...CHOICES.map((c) => CHOICE_LABELS[c]), ...(each ? ['Choose for each VM…'] : []), 'Cancel'];
      const r = await ask({
        type: 'question',
        message: vms.length === 1 ? `${vms[0]!.name} is running. What should happen to it when Vireo quits?` : `${vms.length} VMs are running. What should happen to them when Vireo quits?`,
        detail: `${vms.map(line).join('\n')}\n\n${EXPLAIN}`,
        buttons,
        defaultId: 0,
        cancelId: buttons.length - 1,
      });
      if (r < CHOICES.length) return CHOICES[r]!;
      return each && r === CHOICES.length ? 'each' : 'cancel';
    },
    async chooseOne(vm, i, n) {
      const buttons = [...CHOICES.map((c) => CHOICE_LABELS[c]), 'Cancel quitting'];
      const r = await ask({
        type: 'question',
        message: `${vm.name} (${vm.state}): what should happen to it when Vireo quits? (VM ${i + 1} of ${n})`,
        detail: EXPLAIN,
        buttons,
        defaultId: 0,
        cancelId: buttons.length - 1,
      });
      return r < CHOICES.length ? CHOICES[r]! : 'cancel';
    },
    async waiting(pending, signal) {
      const r = await ask({
        type: 'info',
        message: `Waiting for ${pending.length === 1 ? `${pending[0]!.name} to shut down` : `${pending.length} VMs to shut down`}…`,
        detail: `${pending.map(line).join('\n')}\n\nA guest that does not power off can be forced off. Cancel keeps Vireo open; the guests go on shutting down.`,
        buttons: ['Force off', 'Cancel quitting'],
        defaultId: 1,
        cancelId: 1,
        signal,
      });
      if (signal.aborted) return 'closed';
      return r === 0 ? 'forceoff' : 'cancel';
    },
    async failed(outcomes) {
      const bad = outcomes.filter((o) => o.result === 'failed');
      const r = await ask({
        type: 'warning',
        message: bad.length === 1 ? `${bad[0]!.name}: ${CHOICE_LABELS[bad[0]!.choice]} did not work.` : `${bad.length} VMs did not do what was chosen.`,
        detail: `${outcomes.map(describeOutcome).join('\n')}\n\nQuit anyway leaves those VMs as they are, in the Vireo service.`,
        buttons: ['Back to Vireo', 'Quit anyway'],
        defaultId: 0,
        cancelId: 0,
      });
      return r === 1 ? 'quit' : 'stay';
    },
  };
}

import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'react';
import type { VmSummary } from '../../../../electron/common/contracts/vm';
import { getClient } from '../../services/client';
import { useVms } from '../../stores/vms';
import { CloneDialog } from '../dialogs/CloneDialog';
import { DeleteDialog } from '../dialogs/DeleteDialog';
import { ImportXmlDialog, exportXml } from '../dialogs/XmlDialogs';
import { DetailsView } from '../details/DetailsView';
import { NewVmWizard } from '../wizard/NewVmWizard';
import { StorageButton } from '../storage/StorageView';
import { NetworksButton } from '../networks/NetworksView';
import { type MenuCommand, type MenuItem, menuFor, runAction } from './actions';
import { ContextMenu } from './ContextMenu';
import { Sparkline } from './Sparkline';

const STATE_LABEL: Record<VmSummary['state'], string> = {
  shutoff: 'Shut off',
  starting: 'Starting',
  running: 'Running',
  paused: 'Paused',
  shuttingdown: 'Shutting down',
  crashed: 'Crashed',
  saved: 'Saved',
};

export function useManagerFeed() {
  useEffect(() => {
    const c = getClient();
    const st = useVms.getState();
    const offs = [
      c.on('vm.changed', ({ vm }) => useVms.getState().upsert(vm)),
      c.on('vm.removed', ({ uuid }) => useVms.getState().remove(uuid)),
      c.on('vm.stats', ({ uuid, cpuPercent, memoryMiB }) => useVms.getState().stats(uuid, cpuPercent, memoryMiB)),
      c.on('job.progress', (p) => useVms.getState().job(p)),
      c.on('job.done', (p) => {
        const j = useVms.getState().jobs[p.jobId];
        useVms.getState().job({ jobId: p.jobId, label: j?.label ?? '', doneBytes: j?.doneBytes ?? 0, totalBytes: j?.totalBytes ?? 0, finished: p });
      }),
    ];
    c.call('host.info', {}).then(st.setHost, (e) => st.setError((e as Error).message));
    c.call('vm.list', {}).then(
      (list) => {
        st.setAll(list);
        document.documentElement.dataset.vireoReady = 'manager';
      },
      (e) => st.setError((e as Error).message),
    );
    return () => offs.forEach((o) => o());
  }, []);
}

type Dialog = { kind: 'new' } | { kind: 'details'; uuid: string; customizing?: boolean } | { kind: 'clone'; vm: VmSummary } | { kind: 'delete'; vm: VmSummary } | { kind: 'importXml' } | undefined;

export function Manager() {
  useManagerFeed();
  const vmsMap = useVms((s) => s.vms);
  const selected = useVms((s) => s.selected);
  const select = useVms((s) => s.select);
  const error = useVms((s) => s.error);
  const host = useVms((s) => s.host);
  const cpu = useVms((s) => s.cpu);
  const mem = useVms((s) => s.mem);
  const vms = useMemo(() => Object.values(vmsMap).sort((a, b) => a.name.localeCompare(b.name)), [vmsMap]);
  const [menu, setMenu] = useState<{ vm: VmSummary; x: number; y: number } | undefined>();
  const [dialog, setDialog] = useState<Dialog>();
  const listRef = useRef<HTMLUListElement>(null);
  useEffect(() => getClient().on('ui.newVm', () => setDialog({ kind: 'new' })), []);
  // For bench/app: when the list first commits to the DOM.
  const marked = useRef(false);
  useLayoutEffect(() => {
    if (!marked.current && vms.length > 0) {
      marked.current = true;
      performance.mark('vireo:list-rendered');
    }
  }, [vms.length]);
  const sel = selected ? vmsMap[selected] : undefined;

  const command = (vm: VmSummary, cmd: MenuCommand) => {
    setMenu(undefined);
    if (cmd === 'open') getClient().openConsole(vm.uuid);
    else if (cmd === 'details') setDialog({ kind: 'details', uuid: vm.uuid });
    else if (cmd === 'clone') setDialog({ kind: 'clone', vm });
    else if (cmd === 'delete') setDialog({ kind: 'delete', vm });
    else if (cmd === 'startTemporary') void runAction(vm.uuid, 'start', { temporary: true });
    else void runAction(vm.uuid, cmd);
  };

  const openMenuFor = (vm: VmSummary, el: HTMLElement | null) => {
    const r = el?.getBoundingClientRect();
    setMenu({ vm, x: r ? r.left + 40 : 100, y: r ? r.bottom : 100 });
  };

  const onListKey = (e: React.KeyboardEvent) => {
    const i = vms.findIndex((v) => v.uuid === selected);
    const go = (j: number) => {
      const vm = vms[Math.max(0, Math.min(vms.length - 1, j))];
      if (vm) {
        select(vm.uuid);
        listRef.current?.querySelector<HTMLElement>(`[data-uuid="${vm.uuid}"]`)?.scrollIntoView({ block: 'nearest' });
      }
    };
    if (e.key === 'ArrowDown') go(i + 1);
    else if (e.key === 'ArrowUp') go(i < 0 ? 0 : i - 1);
    else if (e.key === 'Home') go(0);
    else if (e.key === 'End') go(vms.length - 1);
    else if (e.key === 'Enter' && sel) getClient().openConsole(sel.uuid);
    else if ((e.key === 'ContextMenu' || (e.key === 'F10' && e.shiftKey)) && sel) {
      openMenuFor(sel, listRef.current?.querySelector<HTMLElement>(`[data-uuid="${sel.uuid}"]`) ?? null);
    } else if (e.key === 'Delete' && sel && (sel.state === 'shutoff' || sel.state === 'saved')) setDialog({ kind: 'delete', vm: sel });
    else return;
    e.preventDefault();
  };

  return (
    <div className="manager">
      <header className="toolbar" role="toolbar" aria-label="Virtual machine actions">
        <span className="brand">Vireo</span>
        <button className="primary" onClick={() => setDialog({ kind: 'new' })}>
          New VM
        </button>
        <span className="sep" />
        <button disabled={!sel} onClick={() => sel && getClient().openConsole(sel.uuid)}>
          Open
        </button>
        <button disabled={!sel} onClick={() => sel && setDialog({ kind: 'details', uuid: sel.uuid })}>
          Details
        </button>
        <button disabled={!sel || !menuFor(sel).find((m) => m.cmd === 'start')!.enabled} onClick={() => sel && runAction(sel.uuid, 'start')}>
          {sel?.state === 'saved' ? 'Restore' : 'Run'}
        </button>
        <button
          disabled={!sel || (sel.state !== 'running' && sel.state !== 'paused')}
          onClick={() => sel && runAction(sel.uuid, sel.state === 'paused' ? 'resume' : 'pause')}
        >
          {sel?.state === 'paused' ? 'Resume' : 'Pause'}
        </button>
        <button disabled={!sel || sel.state !== 'running'} onClick={() => sel && runAction(sel.uuid, 'shutdown')}>
          Shut Down
        </button>
        <button
          disabled={!sel || !menuFor(sel).find((m) => m.cmd === 'save')!.enabled}
          onClick={() => sel && runAction(sel.uuid, 'save')}
          title="Save the VM's state to disk and stop it; Restore resumes it where it was (virsh managedsave)"
        >
          Save
        </button>
        <button disabled={!sel || !menuFor(sel).find((m) => m.cmd === 'forceoff')!.enabled} onClick={() => sel && runAction(sel.uuid, 'forceoff')}>
          Force Off
        </button>
        <span className="sep" />
        <StorageButton />
        <button onClick={() => setDialog({ kind: 'importXml' })} title="Define a VM from libvirt domain XML (virsh dumpxml)">
          Import XML…
        </button>
        <button disabled={!sel} onClick={() => sel && void exportXml(sel.uuid)} title="Download the VM as libvirt domain XML">
          Export XML
        </button>
        <NetworksButton />
        <span className="grow" />
        {host && (
          <span className="hostinfo" title={`Pool: ${host.poolPath}`}>
            {host.cpus} CPUs · {(host.memoryMiB / 1024).toFixed(1)} GiB
            {host.engineProblem ? ' · engine not built' : host.kvmProblem ? ' · KVM unavailable' : ''}
          </span>
        )}
      </header>
      {error && (
        <div className="banner error" role="alert">
          {error}
          <button aria-label="Dismiss" onClick={() => useVms.getState().setError(undefined)}>
            ×
          </button>
        </div>
      )}
      <div className="listhead" aria-hidden="true">
        <span>Name</span>
        <span>State</span>
        <span>CPU usage</span>
        <span>Memory</span>
      </div>
      <ul className="vmlist" role="listbox" aria-label="Virtual machines" tabIndex={0} ref={listRef} onKeyDown={onListKey}
        aria-activedescendant={selected ? `vm-${selected}` : undefined}>
        {vms.map((vm) => (
          <li
            key={vm.uuid}
            id={`vm-${vm.uuid}`}
            data-uuid={vm.uuid}
            data-state={vm.state}
            role="option"
            aria-selected={vm.uuid === selected}
            aria-label={vm.name}
            className={`vmrow ${vm.uuid === selected ? 'selected' : ''}`}
            onClick={() => select(vm.uuid)}
            onDoubleClick={() => getClient().openConsole(vm.uuid)}
            onContextMenu={(e) => {
              e.preventDefault();
              select(vm.uuid);
              setMenu({ vm, x: e.clientX, y: e.clientY });
            }}
          >
            <span className="name">
              <span className={`dot ${vm.state}`} aria-hidden="true" />
              <span>
                <strong>{vm.name}</strong>
                <small>{vm.os} · {vm.memoryMiB} MiB · {vm.cpus} vCPU</small>
                {vm.addresses && vm.addresses.length > 0 && vm.state !== 'shutoff' && (
                  <small className="addresses" title="Leased by the network's DHCP server (vireo domifaddr)">
                    IP {vm.addresses.join(', ')}
                  </small>
                )}
              </span>
            </span>
            <span className="state" title={vm.lastExit ? exitText(vm) : undefined}>
              {STATE_LABEL[vm.state]}
              {vm.temporary && <small className="temporary">temporary changes</small>}
              {vm.notice && <small className="notice" role="status">{vm.notice}</small>}
              {vm.state !== 'running' && vm.state !== 'shuttingdown' && vm.lastExit && <small className="exit">{exitText(vm)}</small>}
            </span>
            <Sparkline values={vm.state === 'shutoff' ? undefined : cpu[vm.uuid]} max={100} label="CPU" unit="%" />
            <Sparkline values={vm.state === 'shutoff' ? undefined : mem[vm.uuid]} max={vm.memoryMiB} label="Memory" unit=" MiB" />
          </li>
        ))}
        {vms.length === 0 && useVms.getState().loaded && (
          <li className="empty" role="presentation">
            No virtual machines yet. Click <strong>New VM</strong> to create one from an ISO image.
          </li>
        )}
      </ul>
      {menu && (
        <ContextMenu
          x={menu.x}
          y={menu.y}
          label={`Actions for ${menu.vm.name}`}
          items={menuFor(vmsMap[menu.vm.uuid] ?? menu.vm)}
          onClose={() => {
            setMenu(undefined);
            listRef.current?.focus();
          }}
          onPick={(it: MenuItem) => command(menu.vm, it.cmd)}
        />
      )}
      {dialog?.kind === 'new' && (
        <NewVmWizard onClose={() => setDialog(undefined)} onCustomize={(uuid) => setDialog({ kind: 'details', uuid, customizing: true })} />
      )}
      {dialog?.kind === 'details' && <DetailsView uuid={dialog.uuid} customizing={!!dialog.customizing} onClose={() => setDialog(undefined)} />}
      {dialog?.kind === 'clone' && <CloneDialog vm={dialog.vm} onClose={() => setDialog(undefined)} />}
      {dialog?.kind === 'importXml' && <ImportXmlDialog onClose={() => setDialog(undefined)} />}
      {dialog?.kind === 'delete' && <DeleteDialog vm={dialog.vm} onClose={() => setDialog(undefined)} />}
    </div>
  );
}

function exitText(vm: VmSummary): string {
  const r = vm.lastExit!;
  return r.kind === 'shutdown' ? r.detail : r.kind === 'crashed' ? `crashed: ${r.reason}` : `killed (${r.signal})`;
}

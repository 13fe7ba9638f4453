// The hardware details editor (virt-manager's VM details): Overview, CPUs, Memory, Boot
// options, Disks, Display, Serial, NIC. It edits a copy of the definition; Apply sends it
// to vm.update, which checks every field and writes atomically. Problems come back tied
// to fields and are shown on them. On a running VM the changes wait for the next start,
// except the first CD-ROM drive: Eject and Change… apply now (vm.changeMedia).
import { useEffect, useMemo, useRef, useState } from 'react';
import type { DetailsFieldError, VmDefinition, VmEdit } from '../../../../electron/common/contracts/vm';
import { DEFAULT_DISPLAY, DISPLAY_SIZES, OS_CHOICES, editOf, nicModelFor } from '../../../../electron/common/contracts/vm';
import type { NetworkSummary } from '../../../../electron/common/contracts/network';
import type { VmInterface } from '../../../../electron/common/contracts/interfaces';
import { fmtBytes as bytes } from '../storage/StorageView';
import { getClient } from '../../services/client';
import { useVms } from '../../stores/vms';
import { Field } from '../dialogs/Modal';
import { PerformanceView } from './PerformanceView';
import { SnapshotsPanel } from './SnapshotsPanel';
import './details.css';

export const SECTIONS = ['Overview', 'Performance', 'CPUs', 'Memory', 'Boot options', 'Disks', 'Display', 'Serial', 'NIC', 'Snapshots'] as const;
type Section = (typeof SECTIONS)[number];

/** Which section shows a field's error. */
function sectionOf(field: string): Section {
  if (field === 'cpus') return 'CPUs';
  if (field === 'memory') return 'Memory';
  if (field.startsWith('boot')) return 'Boot options';
  if (field.startsWith('disks')) return 'Disks';
  if (field.startsWith('serial')) return 'Serial';
  if (field.startsWith('nics')) return 'NIC';
  if (field === 'display') return 'Display';
  return 'Overview';
}

const BOOT_DEVICES: Record<string, string> = { c: 'Hard disk', d: 'CD-ROM', n: 'Network (PXE)' };

function randomMac(): string {
  const b = crypto.getRandomValues(new Uint8Array(3));
  return `52:54:00:${[...b].map((x) => x.toString(16).padStart(2, '0')).join(':')}`;
}

type Disk = VmEdit['disks'][number];

export function DetailsView({ uuid, onClose, customizing }: { uuid: string; onClose: () => void; customizing?: boolean }) {
  const summary = useVms((s) => s.vms[uuid]);
  const host = useVms((s) => s.host);
  const [def, setDef] = useState<VmDefinition | undefined>();
  const [edit, setEdit] = useState<VmEdit | undefined>();
  const [section, setSection] = useState<Section>('Overview');
  const [errors, setErrors] = useState<DetailsFieldError[]>([]);
  const [status, setStatus] = useState<{ kind: 'saved' | 'error' | 'info'; text: string } | undefined>();
  const [busy, setBusy] = useState(false);
  const [bootOrder, setBootOrder] = useState<string[]>(['c', 'd', 'n']);
  const [addPath, setAddPath] = useState('');
  const [addMedia, setAddMedia] = useState<'disk' | 'cdrom'>('disk');
  const [addBus, setAddBus] = useState<'ide' | 'virtio'>('ide');
  /** Live CD change of a running VM: the Change… field, and what the last change did. */
  const [cdChange, setCdChange] = useState<string | undefined>();
  const [cdLive, setCdLive] = useState<{ kind: 'ok' | 'error'; text: string } | undefined>();
  const [networks, setNetworks] = useState<NetworkSummary[]>([]);
  /** A running VM's NICs as the engine has them (link, counters, leased addresses), polled on the NIC page. */
  const [live, setLive] = useState<VmInterface[] | undefined>();
  const [linkError, setLinkError] = useState<string | undefined>();
  const ref = useRef<HTMLDivElement>(null);
  const navRef = useRef<HTMLUListElement>(null);

  const load = (d: VmDefinition) => {
    setDef(d);
    setEdit(editOf(d));
    if (d.boot.kind === 'firmware') {
      const on = [...d.boot.order];
      setBootOrder([...on, ...['c', 'd', 'n'].filter((x) => !on.includes(x))]);
    }
  };

  useEffect(() => {
    const get = () => getClient().call('network.list', {}).then(setNetworks, () => undefined);
    void get();
    return getClient().on('network.changed', () => void get());
  }, []);

  useEffect(() => {
    getClient()
      .call('vm.get', { uuid })
      .then(load, (e) => setStatus({ kind: 'error', text: (e as Error).message }));
  }, [uuid]);

  // A snapshot revert puts the snapshot's hardware back in the definition: show it.
  useEffect(
    () =>
      getClient().on('snapshot.changed', (p) => {
        if (p.uuid === uuid) void getClient().call('vm.get', { uuid }).then(load, () => undefined);
      }),
    [uuid],
  );

  useEffect(() => {
    const prev = document.activeElement as HTMLElement | null;
    navRef.current?.querySelector<HTMLElement>('[aria-selected=true]')?.focus();
    return () => prev?.focus?.();
  }, [def === undefined]);

  const running = summary?.state === 'running' || summary?.state === 'paused' || summary?.state === 'starting';

  useEffect(() => {
    if (!running || section !== 'NIC') {
      setLive(undefined);
      return;
    }
    let stop = false;
    const poll = () =>
      getClient()
        .call('vm.interfaces', { uuid })
        .then((r) => !stop && setLive(r.running ? r.interfaces : undefined), () => !stop && setLive(undefined));
    void poll();
    const t = setInterval(poll, 3000);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, [uuid, running, section]);

  const setLink = async (iface: string, up: boolean) => {
    setLinkError(undefined);
    try {
      const r = await getClient().call('vm.setLink', { uuid, iface, up });
      setLive((l) => l?.map((x) => (x.name === r.name ? r : x)));
    } catch (e) {
      setLinkError((e as Error).message);
    }
  };
  const dirty = useMemo(() => !!def && !!edit && JSON.stringify(editOf(def)) !== JSON.stringify(edit), [def, edit]);
  const err = (field: string) => errors.find((e) => e.field === field)?.message;
  const bad = (s: Section) => errors.some((e) => sectionOf(e.field) === s);
  const set = (patch: Partial<VmEdit>) => {
    setEdit((e) => (e ? { ...e, ...patch } : e));
    setStatus(undefined);
  };
  const setDisk = (i: number, patch: Partial<Disk>) => set({ disks: edit!.disks.map((d, j) => (j === i ? { ...d, ...patch } : d)) });
  const setOrder = (list: string[], enabled: string) => {
    setBootOrder(list);
    if (edit?.boot.kind === 'firmware') set({ boot: { ...edit.boot, order: list.filter((x) => enabled.includes(x)).join('') } });
  };

  const apply = async (): Promise<boolean> => {
    if (!edit) return false;
    setBusy(true);
    try {
      const r = await getClient().call('vm.update', { uuid, edit });
      setErrors(r.errors);
      if (r.errors.length) {
        const first = SECTIONS.find((s) => r.errors.some((e) => sectionOf(e.field) === s))!;
        setSection(first);
        const saved = r.errors.find((e) => e.field === 'saved');
        setStatus({ kind: 'error', text: saved ? `Not saved: ${saved.message}` : `Not saved: ${r.errors.length === 1 ? 'one field needs' : `${r.errors.length} fields need`} attention.` });
        return false;
      }
      if (r.vm) useVms.getState().upsert(r.vm);
      load(await getClient().call('vm.get', { uuid }));
      setStatus({
        kind: 'saved',
        text: r.nextBoot ? 'Saved. The VM is running: the changes apply the next time it starts.' : 'Saved.',
      });
      return true;
    } catch (e) {
      setStatus({ kind: 'error', text: (e as Error).message });
      return false;
    } finally {
      setBusy(false);
    }
  };

  /** Eject (null) or insert an ISO now, in the running VM; the definition follows (vm.changeMedia). */
  const changeMedia = async (i: number, path: string | null) => {
    setBusy(true);
    setCdLive(undefined);
    try {
      const r = await getClient().call('vm.changeMedia', { uuid, path });
      if (r.locked) {
        setCdLive({ kind: 'error', text: 'The guest has locked the tray: it was asked to eject the disc. Try again once it lets go.' });
        return;
      }
      if (r.vm) useVms.getState().upsert(r.vm);
      const p = path ?? '';
      const cd = (ds: Disk[]) => ds.map((d, j) => (j === i ? { ...d, path: p } : d));
      setDef((d) => (d ? { ...d, disks: cd(d.disks) } : d));
      setEdit((e) => (e ? { ...e, disks: cd(e.disks) } : e));
      setCdChange(undefined);
      setCdLive({ kind: 'ok', text: r.live ? (path ? 'Inserted now' : 'Ejected now') : 'Saved' });
    } catch (e) {
      setCdLive({ kind: 'error', text: (e as Error).message });
    } finally {
      setBusy(false);
    }
  };

  const beginInstall = async () => {
    if (dirty && !(await apply())) return;
    onClose();
    getClient().openConsole(uuid);
    try {
      await getClient().call('vm.action', { uuid, action: 'start' });
    } catch (e) {
      useVms.getState().setError(`${def?.name ?? 'The VM'} did not start: ${(e as Error).message}`);
    }
  };

  const onNavKey = (e: React.KeyboardEvent) => {
    const i = SECTIONS.indexOf(section);
    const go = (j: number) => {
      const s = SECTIONS[(j + SECTIONS.length) % SECTIONS.length]!;
      setSection(s);
      navRef.current?.querySelector<HTMLElement>(`[data-section="${s}"]`)?.focus();
    };
    if (e.key === 'ArrowDown') go(i + 1);
    else if (e.key === 'ArrowUp') go(i - 1);
    else if (e.key === 'Home') go(0);
    else if (e.key === 'End') go(SECTIONS.length - 1);
    else return;
    e.preventDefault();
  };

  const title = `Details of ${def?.name ?? summary?.name ?? 'VM'}`;
  const pendingNote = running ? (
    <div className="details-note pending" role="note">
      {summary?.name} is {summary?.state}: changes are saved now and apply the next time it starts (after it is shut off).
    </div>
  ) : summary?.state === 'saved' ? (
    // The machine in the saved state has this hardware: it can't change until the VM is restored or the state discarded.
    <div className="details-note pending" role="note" data-testid="saved-note">
      {summary.name} has a saved state: its memory, CPUs, boot options, disks and network cards can't change until it is
      restored (Restore) or the saved state is discarded. Name, OS, serial log and autostart can.
    </div>
  ) : null;

  const panel = () => {
    if (!edit || !def) return <p>Loading…</p>;
    switch (section) {
      case 'Performance':
        return <PerformanceView uuid={uuid} running={!!summary && ['starting', 'running', 'paused', 'shuttingdown'].includes(summary.state)} />;
      case 'Overview':
        return (
          <>
            <h3>Overview</h3>
            <div className="details-grid">
              <Field id="d-name" label="Name" error={err('name')}>
                <input id="d-name" value={edit.name} aria-invalid={!!err('name')} aria-describedby={err('name') ? 'd-name-error' : undefined}
                  onChange={(e) => set({ name: e.target.value })} />
              </Field>
              <Field id="d-os" label="Operating system" error={err('os')}>
                <select id="d-os" value={edit.os} onChange={(e) => set({ os: e.target.value })}>
                  {OS_CHOICES.map((o) => (
                    <option key={o.id} value={o.id}>
                      {o.label}
                    </option>
                  ))}
                  {!OS_CHOICES.some((o) => o.id === edit.os) && <option value={edit.os}>{edit.os}</option>}
                </select>
              </Field>
            </div>
            <dl className="kv">
              <dt>UUID</dt>
              <dd>{def.uuid}</dd>
              <dt>State</dt>
              <dd data-testid="details-state">{summary?.state ?? 'shutoff'}</dd>
              <dt>Created</dt>
              <dd>{new Date(def.createdAt).toLocaleString()}</dd>
              <dt>Firmware</dt>
              <dd>
                {def.boot.kind === 'firmware'
                  ? 'SeaBIOS (i440FX/PIIX3 PC)'
                  : def.boot.flatAddress === undefined
                    ? 'SeaBIOS (i440FX/PIIX3 PC), then direct kernel boot'
                    : 'None: flat binary on a bare machine'}
              </dd>
            </dl>
          </>
        );
      case 'CPUs':
        return (
          <>
            <h3>CPUs</h3>
            <Field id="d-cpus" label="Virtual CPUs" error={err('cpus')} hint={`The host has ${host?.cpus ?? '?'} CPUs.`}>
              <input id="d-cpus" type="number" min={1} max={host?.cpus} value={Number.isNaN(edit.cpus) ? '' : edit.cpus}
                aria-invalid={!!err('cpus')} aria-describedby={err('cpus') ? 'd-cpus-error' : undefined}
                onChange={(e) => set({ cpus: e.target.valueAsNumber })} />
            </Field>
          </>
        );
      case 'Memory':
        return (
          <>
            <h3>Memory</h3>
            <Field id="d-memory" label="Memory (MiB)" error={err('memory')} hint={`The host has ${host?.memoryMiB ?? '?'} MiB.`}>
              <input id="d-memory" type="number" min={16} max={host?.memoryMiB} step={16} value={Number.isNaN(edit.memoryMiB) ? '' : edit.memoryMiB}
                aria-invalid={!!err('memory')} aria-describedby={err('memory') ? 'd-memory-error' : undefined}
                onChange={(e) => set({ memoryMiB: e.target.valueAsNumber })} />
            </Field>
          </>
        );
      case 'Boot options': {
        if (edit.boot.kind === 'kernel') {
          const b = edit.boot;
          return (
            <>
              <h3>Boot options: direct kernel boot</h3>
              <label className="check">
                <input type="checkbox" checked={!!edit.autostart} onChange={(e) => set({ autostart: e.target.checked })} /> Start when the Vireo service starts
              </label>
              <Field id="d-kernel" label="Kernel path" error={err('boot.kernel')}>
                <input id="d-kernel" value={b.kernel} aria-invalid={!!err('boot.kernel')} onChange={(e) => set({ boot: { ...b, kernel: e.target.value } })} />
              </Field>
              <Field id="d-initrd" label="Initrd path" error={err('boot.initrd')}>
                <input id="d-initrd" value={b.initrd ?? ''} aria-invalid={!!err('boot.initrd')} onChange={(e) => set({ boot: { ...b, initrd: e.target.value } })} />
              </Field>
              <Field id="d-append" label="Kernel arguments">
                <input id="d-append" value={b.append ?? ''} onChange={(e) => set({ boot: { ...b, append: e.target.value } })} />
              </Field>
            </>
          );
        }
        const b = edit.boot;
        return (
          <>
            <h3>Boot options</h3>
            <label className="check">
              <input type="checkbox" checked={!!edit.autostart} onChange={(e) => set({ autostart: e.target.checked })} /> Start when the Vireo service starts
            </label>
            <label className="check">
              <input type="checkbox" checked={!!b.menu} onChange={(e) => set({ boot: { ...b, menu: e.target.checked } })} /> Enable boot menu
            </label>
            <Field id="d-bootorder" label="Boot device order" error={err('boot.order')} hint="SeaBIOS tries the checked devices from the top.">
              <ul className="bootlist" id="d-bootorder" aria-label="Boot device order">
                {bootOrder.map((dev, i) => (
                  <li key={dev}>
                    <label className="check">
                      <input type="checkbox" checked={b.order.includes(dev)}
                        onChange={(e) => setOrder(bootOrder, e.target.checked ? bootOrder.filter((x) => b.order.includes(x) || x === dev).join('') : b.order.replace(dev, ''))} />
                      {BOOT_DEVICES[dev]}
                    </label>
                    <button aria-label={`Move ${BOOT_DEVICES[dev]} up`} disabled={i === 0}
                      onClick={() => setOrder(bootOrder.map((x, j) => (j === i - 1 ? dev : j === i ? bootOrder[i - 1]! : x)), b.order)}>
                      ↑
                    </button>
                    <button aria-label={`Move ${BOOT_DEVICES[dev]} down`} disabled={i === bootOrder.length - 1}
                      onClick={() => setOrder(bootOrder.map((x, j) => (j === i + 1 ? dev : j === i ? bootOrder[i + 1]! : x)), b.order)}>
                      ↓
                    </button>
                  </li>
                ))}
              </ul>
            </Field>
          </>
        );
      }
      case 'Disks':
        return (
          <>
            <h3>Disks</h3>
            {err('disks') && <div className="field-error" role="alert">{err('disks')}</div>}
            {edit.disks.length === 0 && <p className="hint">No disks or CD-ROM drives.</p>}
            {edit.disks.map((d, i) => {
              const label = d.media === 'cdrom' ? `CD-ROM ${i + 1}` : `Disk ${i + 1}`;
              // The engine's one drive: the definition's first CD-ROM, changed live while the VM runs.
              const live = running && d.media === 'cdrom' && i === def.disks.findIndex((x) => x.media === 'cdrom') && def.disks[i]?.path === d.path;
              return (
                <div className="details-row" key={i} role="group" aria-label={label} data-media={d.media}>
                  <div className="row-head">
                    <strong>{label}{d.media === 'cdrom' && !d.path ? ' (empty)' : ''}</strong>
                    {live ? (
                      <>
                        {d.path && <button disabled={busy} onClick={() => void changeMedia(i, null)}>Eject</button>}
                        <button disabled={busy} onClick={() => (setCdChange(cdChange === undefined ? '' : undefined), setCdLive(undefined))}>Change…</button>
                      </>
                    ) : (
                      d.media === 'cdrom' && d.path && <button onClick={() => setDisk(i, { path: '' })}>Eject</button>
                    )}
                    <button onClick={() => set({ disks: edit.disks.filter((_, j) => j !== i) })}>Remove</button>
                  </div>
                  <div className="row-fields">
                    <Field id={`d-disk-${i}-path`} label={d.media === 'cdrom' ? 'ISO image' : 'Path'} error={err(`disks.${i}.path`)}>
                      <input id={`d-disk-${i}-path`} value={d.path} placeholder={live ? 'No disc: Change… inserts one now' : d.media === 'cdrom' ? 'No disc: type an ISO path to insert one' : ''}
                        readOnly={live} aria-invalid={!!err(`disks.${i}.path`)} onChange={(e) => setDisk(i, { path: e.target.value })} />
                    </Field>
                    <Field id={`d-disk-${i}-format`} label="Format" error={err(`disks.${i}.format`)}>
                      <select id={`d-disk-${i}-format`} value={d.format} disabled={d.media === 'cdrom'} onChange={(e) => setDisk(i, { format: e.target.value as Disk['format'] })}>
                        <option value="raw">raw</option>
                        <option value="qcow2">qcow2</option>
                      </select>
                    </Field>
                    <Field id={`d-disk-${i}-bus`} label="Bus" error={err(`disks.${i}.bus`)}>
                      <select id={`d-disk-${i}-bus`} value={d.bus} onChange={(e) => setDisk(i, { bus: e.target.value as Disk['bus'] })}>
                        <option value="ide">IDE</option>
                        <option value="virtio">VirtIO</option>
                      </select>
                    </Field>
                  </div>
                  <label className="check">
                    <input type="checkbox" checked={d.media === 'cdrom' || !!d.readOnly} disabled={d.media === 'cdrom'} onChange={(e) => setDisk(i, { readOnly: e.target.checked })} />
                    Read-only
                  </label>
                  {live && cdChange !== undefined && (
                    <form className="cd-change" onSubmit={(e) => (e.preventDefault(), void changeMedia(i, cdChange.trim()))}>
                      <Field id={`d-disk-${i}-change`} label="Insert this ISO image now" error={cdLive?.kind === 'error' ? cdLive.text : undefined}>
                        <input id={`d-disk-${i}-change`} value={cdChange} placeholder="/path/to/image.iso" autoFocus aria-invalid={cdLive?.kind === 'error'}
                          onChange={(e) => (setCdChange(e.target.value), setCdLive(undefined))} />
                      </Field>
                      <button type="submit" className="primary" disabled={busy || !cdChange.trim()}>Insert</button>
                      <button type="button" onClick={() => (setCdChange(undefined), setCdLive(undefined))}>Cancel</button>
                    </form>
                  )}
                  {live && (() => {
                    // An error of Change… shows on its field; anything else here.
                    const shown = cdLive && !(cdLive.kind === 'error' && cdChange !== undefined) ? cdLive : undefined;
                    return (
                      <div className={shown?.kind === 'error' ? 'field-error' : shown ? 'hint live-ok' : 'hint'} role={shown?.kind === 'error' ? 'alert' : 'status'}
                        data-testid="cdrom-live-status" data-kind={shown?.kind ?? ''}>
                        {shown?.text ?? 'Eject and Change… apply to the running VM now and are saved for its next start.'}
                      </div>
                    );
                  })()}
                  {d.media === 'cdrom' && running && !live && <div className="hint">Changing this disc applies on the VM's next boot (the engine changes its first CD-ROM drive live).</div>}
                </div>
              );
            })}
            <fieldset>
              <legend>Add existing storage</legend>
              <div className="row-fields" style={{ display: 'grid', gridTemplateColumns: '1fr 120px 110px auto', gap: 8, alignItems: 'end' }}>
                <Field id="d-add-path" label="Path of the image">
                  <input id="d-add-path" value={addPath} onChange={(e) => setAddPath(e.target.value)} placeholder="/var/lib/images/disk.img" />
                </Field>
                <Field id="d-add-media" label="Device">
                  <select id="d-add-media" value={addMedia} onChange={(e) => setAddMedia(e.target.value as 'disk' | 'cdrom')}>
                    <option value="disk">Disk</option>
                    <option value="cdrom">CD-ROM</option>
                  </select>
                </Field>
                <Field id="d-add-bus" label="Bus ">
                  <select id="d-add-bus" value={addMedia === 'cdrom' ? 'ide' : addBus} disabled={addMedia === 'cdrom'} onChange={(e) => setAddBus(e.target.value as 'ide' | 'virtio')}>
                    <option value="ide">IDE</option>
                    <option value="virtio">VirtIO</option>
                  </select>
                </Field>
                <button
                  disabled={addMedia === 'disk' && !addPath.trim()}
                  onClick={() => {
                    const p = addPath.trim();
                    const disk: Disk =
                      addMedia === 'cdrom'
                        ? { path: p, format: 'raw', media: 'cdrom', bus: 'ide', readOnly: true }
                        : { path: p, format: /\.qcow2$/i.test(p) ? 'qcow2' : 'raw', media: 'disk', bus: addBus };
                    set({ disks: [...edit.disks, disk] });
                    setAddPath('');
                  }}
                >
                  Add
                </button>
              </div>
            </fieldset>
          </>
        );
      case 'Display':
        return (
          <>
            <h3>Display</h3>
            {/* A kernel boots on the same PC as firmware (SeaBIOS, then Vireo's kernel-boot ROM); only a flat binary runs bare. */}
            {def.boot.kind === 'firmware' || def.boot.flatAddress === undefined ? (
              <dl className="kv">
                <dt>Video</dt>
                <dd>Standard VGA with Bochs VBE (SeaBIOS VGA BIOS)</dd>
                <dt>Console</dt>
                <dd>Vireo's console window (canvas, dirty rectangles, flow-controlled)</dd>
                <dt>Input</dt>
                <dd>PS/2 keyboard and mouse; a USB tablet (PIIX3 UHCI) for the pointer without a grab</dd>
              </dl>
            ) : (
              <p>A flat binary runs on a bare machine without firmware: serial ports only, no display.</p>
            )}
            <Field id="d-display-size" label="Preferred resolution" error={err('display')}
              hint="What the display's EDID offers the guest as its preferred mode (GRUB's gfxmode=auto, Linux, Windows pick it when they probe modes). The console's “Resize guest with window” offers the window's size instead while it is on.">
              <select id="d-display-size" aria-invalid={!!err('display')}
                value={edit.display?.width && edit.display?.height ? `${edit.display.width}x${edit.display.height}` : ''}
                onChange={(e) => {
                  const [w, h] = e.target.value.split('x').map(Number);
                  set({ display: w && h ? { width: w, height: h } : {} });
                }}>
                <option value="">{DEFAULT_DISPLAY.width}×{DEFAULT_DISPLAY.height} (default)</option>
                {[...DISPLAY_SIZES,
                  ...(edit.display?.width && edit.display?.height && !DISPLAY_SIZES.some((d) => d.width === edit.display!.width && d.height === edit.display!.height) ? [edit.display as { width: number; height: number }] : [])].map((d) => (
                  <option key={`${d.width}x${d.height}`} value={`${d.width}x${d.height}`}>
                    {d.width}×{d.height}
                  </option>
                ))}
              </select>
            </Field>
          </>
        );
      case 'Serial':
        return (
          <>
            <h3>Serial</h3>
            <dl className="kv">
              <dt>Device</dt>
              <dd>COM1 (16550A UART, I/O 0x3f8, IRQ 4)</dd>
              <dt>Console</dt>
              <dd>The Serial tab of the console window</dd>
            </dl>
            <Field id="d-serial-log" label="Also log COM1 output to a file" error={err('serial.logFile')}
              hint={`A file name in Vireo's log directory (${host?.logsPath ?? '~/.local/share/vireo/logs'}); capped at 8 MiB, then rotated to .1. Leave empty for no log file.`}>
              <input id="d-serial-log" value={edit.serial.logFile ?? ''} aria-invalid={!!err('serial.logFile')} placeholder={`${(summary?.name ?? 'vm').replace(/[^\w.-]/g, '_')}-com1.log`}
                onChange={(e) => set({ serial: e.target.value ? { logFile: e.target.value } : {} })} />
            </Field>
          </>
        );
      case 'Snapshots':
        return <SnapshotsPanel uuid={uuid} vmName={def.name} state={summary?.state} />;
      case 'NIC':
        return (
          <>
            <h3>Network interfaces</h3>
            {err('nics') && <div className="field-error" role="alert">{err('nics')}</div>}
            {edit.nics.length === 0 && <div className="details-note">No network interfaces: the VM has no network.</div>}
            {linkError && <div className="field-error" role="alert">{linkError}</div>}
            {edit.nics.map((n, i) => {
              const net = networks.find((x) => x.name === n.network);
              const note = !net ? undefined : net.engineProblem ? `The VM won't start with this NIC yet: ${net.engineProblem}.` : !net.active ? `${net.name} is not active: start it under Networks.` : net.mode === 'bridge' ? `bridged to host bridge ${net.bridge ?? '?'}` : net.mode === 'isolated' ? `isolated ${net.ipv4.address}/${net.ipv4.prefix} (VMs on it reach each other only)` : `NAT ${net.ipv4.address}/${net.ipv4.prefix}, gateway ${net.ipv4.gateway}`;
              return (
                <div className="details-row" key={i} role="group" aria-label={`NIC ${i + 1}`}>
                  <div className="row-head">
                    <strong>NIC {i + 1}</strong>
                    <button onClick={() => set({ nics: edit.nics.filter((_, j) => j !== i) })}>Remove</button>
                  </div>
                  {(() => {
                    // The running NIC this row is (same place and MAC in the saved definition).
                    const l = live?.[i];
                    if (!l || def?.nics[i]?.mac !== n.mac) return null;
                    const c = l.counters;
                    return (
                      <div className="nic-live" role="status" aria-label={`NIC ${i + 1} now`}>
                        <span>Link {l.linkUp ? 'up' : 'down'}</span>{' '}
                        <button onClick={() => void setLink(l.name, !l.linkUp)}>{l.linkUp ? 'Unplug cable' : 'Plug in cable'}</button>
                        <span>
                          {' · '}
                          {l.addresses.length
                            ? l.addresses.map((a) => `IP ${a.ip}/${a.prefix}${a.hostname ? ` (${a.hostname})` : ''}`).join(', ') + ' from DHCP'
                            : l.mode === 'bridge'
                              ? 'IP address: given by the LAN, not known here'
                              : 'No DHCP lease yet'}
                        </span>
                        {c && <span>{` · received ${c.rxPackets} packets (${bytes(c.rxBytes)}), sent ${c.txPackets} (${bytes(c.txBytes)})`}</span>}
                      </div>
                    );
                  })()}
                  <div className="row-fields nic-fields">
                    <Field id={`d-nic-${i}-net`} label="Network" error={err(`nics.${i}.network`)} {...(note ? { hint: note } : {})}>
                      <select id={`d-nic-${i}-net`} value={n.network} aria-invalid={!!err(`nics.${i}.network`)} onChange={(e) => set({ nics: edit.nics.map((x, j) => (j === i ? { ...x, network: e.target.value } : x)) })}>
                        {!net && <option value={n.network}>{n.network} (not defined)</option>}
                        {networks.map((x) => (
                          <option key={x.name} value={x.name}>
                            {x.name} ({x.mode === 'nat' ? 'NAT' : x.mode}){x.active ? '' : ' – inactive'}
                          </option>
                        ))}
                      </select>
                    </Field>
                    <Field id={`d-nic-${i}-model`} label="Device model">
                      <select id={`d-nic-${i}-model`} value={n.model} onChange={(e) => set({ nics: edit.nics.map((x, j) => (j === i ? { ...x, model: e.target.value as 'e1000' | 'virtio' } : x)) })}>
                        <option value="virtio">virtio (virtio-net)</option>
                        <option value="e1000">e1000 (Intel 82540EM)</option>
                      </select>
                    </Field>
                    <Field id={`d-nic-${i}-mac`} label="MAC address" error={err(`nics.${i}.mac`)}>
                      <input id={`d-nic-${i}-mac`} value={n.mac} aria-invalid={!!err(`nics.${i}.mac`)}
                        onChange={(e) => set({ nics: edit.nics.map((x, j) => (j === i ? { ...x, mac: e.target.value } : x)) })} />
                    </Field>
                  </div>
                </div>
              );
            })}
            <div>
              <button disabled={edit.nics.length >= 8} onClick={() => set({ nics: [...edit.nics, { mac: randomMac(), network: 'default', model: nicModelFor(edit.os) }] })}>
                Add NIC
              </button>
            </div>
          </>
        );
    }
  };

  return (
    <div className="backdrop">
      <div
        ref={ref}
        className="modal details-dlg"
        role="dialog"
        aria-modal="true"
        aria-label={title}
        data-dirty={dirty ? 'yes' : 'no'}
        onKeyDown={(e) => {
          if (e.key === 'Escape') {
            e.stopPropagation();
            onClose();
          }
        }}
      >
        <h2>{title}</h2>
        <div className="details-main">
          <ul className="details-nav" role="tablist" aria-orientation="vertical" aria-label="Hardware" ref={navRef} onKeyDown={onNavKey}>
            {SECTIONS.map((s) => (
              <li key={s} role="tab" data-section={s} id={`d-tab-${s}`} aria-selected={s === section} aria-controls="d-panel" tabIndex={s === section ? 0 : -1}
                onClick={() => setSection(s)}>
                {s}
                {bad(s) && <span className="bad" aria-label="has a problem">!</span>}
              </li>
            ))}
          </ul>
          <div className="details-panel" role="tabpanel" id="d-panel" aria-labelledby={`d-tab-${section}`}>
            {section !== 'Performance' && section !== 'Snapshots' && pendingNote}
            {panel()}
          </div>
        </div>
        <div className="modal-footer">
          <span className={`details-status ${status?.kind ?? ''}`} role="status" data-testid="details-status">
            {status?.text ?? (dirty ? 'Unsaved changes.' : '')}
          </span>
          <span className="grow" />
          <button disabled={!dirty || busy} onClick={() => (def && load(def), setErrors([]), setStatus(undefined))}>
            Revert
          </button>
          <button className={customizing ? '' : 'primary'} disabled={!dirty || busy} onClick={() => void apply()}>
            Apply
          </button>
          {customizing ? (
            <button className="primary" disabled={busy || !edit} onClick={() => void beginInstall()}>
              Begin Installation
            </button>
          ) : null}
          <button onClick={onClose}>Close</button>
        </div>
      </div>
    </div>
  );
}

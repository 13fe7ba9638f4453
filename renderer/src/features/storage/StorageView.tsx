// Storage (virt-manager's Connection Details → Storage): pools on the left with
// capacity/allocation bars, the selected pool's volumes on the right, and New
// Volume / Resize / Delete dialogs that show the service's refusal where the user
// is looking. Refreshes on storage.changed events.
import { useCallback, useEffect, useMemo, useState } from 'react';
import type { PoolSummary, Volume, VolumeFormat } from '../../../../electron/common/contracts/storage';
import { volumeNameProblem } from '../../../../electron/common/contracts/storage';
import { getClient } from '../../services/client';
import { Field, Modal, ErrorBanner, CloseFooter, DialogButtons } from '../dialogs/Modal';
import './storage.css';

const GiB = 1024 ** 3;

export function fmtBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${u[i]}`;
}

function Bar({ used, total, label }: { used: number; total: number; label: string }) {
  const pct = total > 0 ? Math.min(100, Math.round((used / total) * 100)) : 0;
  return (
    <div className="usage" role="meter" aria-label={label} aria-valuemin={0} aria-valuemax={100} aria-valuenow={pct}>
      <div className={`usage-fill ${pct > 90 ? 'high' : ''}`} style={{ width: `${pct}%` }} />
    </div>
  );
}

/** The toolbar button and the window it opens. */
export function StorageButton() {
  const [open, setOpen] = useState(false);
  return (
    <>
      <button onClick={() => setOpen(true)}>Storage</button>
      {open && <StorageView onClose={() => setOpen(false)} />}
    </>
  );
}

type Sub = { kind: 'new' } | { kind: 'resize'; vol: Volume } | { kind: 'delete'; vol: Volume } | { kind: 'pool' } | undefined;

export function StorageView({ onClose }: { onClose: () => void }) {
  const [pools, setPools] = useState<PoolSummary[]>([]);
  const [pool, setPool] = useState('default');
  const [vols, setVols] = useState<Volume[] | undefined>();
  const [sel, setSel] = useState<string | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [sub, setSub] = useState<Sub>();
  const [gen, setGen] = useState(0);

  const reload = useCallback(async () => {
    try {
      const [ps, vs] = await Promise.all([getClient().call('storage.pools', {}), getClient().call('storage.volumes', { pool })]);
      setPools(ps);
      setVols(vs);
      setGen((g) => g + 1);
    } catch (e) {
      setError((e as Error).message);
    }
  }, [pool]);

  useEffect(() => {
    setVols(undefined);
    void reload();
    return getClient().on('storage.changed', () => void reload());
  }, [reload]);

  const vol = vols?.find((v) => v.name === sel);
  const poolInfo = pools.find((p) => p.name === pool);
  const byPath = useMemo(() => new Map((vols ?? []).map((v) => [v.path, v.name])), [vols]);

  return (
    <Modal
      title="Storage"
      wide
      onClose={() => (sub ? undefined : onClose())}
      footer={<CloseFooter onClose={onClose} />}
    >
      <div className="storage" data-generation={gen}>
        <aside className="pools">
          <ul role="listbox" aria-label="Storage pools">
            {pools.map((p) => (
              <li
                key={p.name}
                role="option"
                aria-selected={p.name === pool}
                aria-label={p.name}
                tabIndex={0}
                className={p.name === pool ? 'selected' : ''}
                onClick={() => (setPool(p.name), setSel(undefined), setError(undefined))}
                onKeyDown={(e) => e.key === 'Enter' && (setPool(p.name), setSel(undefined))}
              >
                <strong>{p.name}</strong>
                <small title={p.path}>{p.path}</small>
                {p.problem ? (
                  <small className="field-error">{p.problem}</small>
                ) : (
                  <>
                    <Bar used={p.allocationBytes} total={p.capacityBytes} label={`${p.name} usage`} />
                    <small>
                      {fmtBytes(p.availableBytes)} free of {fmtBytes(p.capacityBytes)} · {p.volumeCount} volume{p.volumeCount === 1 ? '' : 's'}
                    </small>
                  </>
                )}
              </li>
            ))}
          </ul>
          <button onClick={() => setSub({ kind: 'pool' })}>Add Pool…</button>
        </aside>
        <section className="volumes">
          <div className="vol-toolbar" role="toolbar" aria-label="Volume actions">
            <strong>{poolInfo ? `Volumes in ${poolInfo.name}` : 'Volumes'}</strong>
            <span className="grow" />
            <button className="primary" onClick={() => (setError(undefined), setSub({ kind: 'new' }))}>
              New Volume…
            </button>
            <button disabled={!vol} onClick={() => vol && (setError(undefined), setSub({ kind: 'resize', vol }))}>
              Resize…
            </button>
            <button disabled={!vol} onClick={() => vol && (setError(undefined), setSub({ kind: 'delete', vol }))}>
              Delete Volume
            </button>
            <button aria-label="Refresh volumes" onClick={() => void reload()}>
              ⟳
            </button>
          </div>
          <ErrorBanner error={error} />
          <table aria-label="Volumes" data-loaded={vols ? 'yes' : 'no'}>
            <thead>
              <tr>
                <th>Name</th>
                <th>Format</th>
                <th>Capacity</th>
                <th>Allocation</th>
                <th>Used by</th>
                <th>Backing</th>
              </tr>
            </thead>
            <tbody>
              {(vols ?? []).map((v) => (
                <tr
                  key={v.name}
                  aria-selected={v.name === sel}
                  aria-label={v.name}
                  className={v.name === sel ? 'selected' : ''}
                  data-format={v.format}
                  data-capacity={v.capacityBytes}
                  data-backing={v.backing ?? ''}
                  tabIndex={0}
                  onClick={() => setSel(v.name)}
                  onKeyDown={(e) => e.key === 'Delete' && setSub({ kind: 'delete', vol: v })}
                >
                  <td>
                    {v.name}
                    {v.problem && <small className="field-error"> {v.problem}</small>}
                  </td>
                  <td>{v.format}</td>
                  <td>{fmtBytes(v.capacityBytes)}</td>
                  <td>
                    {fmtBytes(v.allocationBytes)}
                    <Bar used={v.allocationBytes} total={v.capacityBytes} label={`${v.name} allocation`} />
                  </td>
                  <td>{v.usedBy.map((u) => `${u.name}${u.running ? ' (running)' : ''}`).join(', ') || '—'}</td>
                  <td title={v.backing ?? undefined}>
                    {v.backing ? byPath.get(v.backing) ?? v.backing : '—'}
                    {v.backs.length > 0 && <small className="hint"> backs {v.backs.length}</small>}
                  </td>
                </tr>
              ))}
              {vols && vols.length === 0 && (
                <tr>
                  <td colSpan={6} className="empty">
                    No volumes in this pool.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
        </section>
      </div>
      {sub?.kind === 'new' && <NewVolumeDialog pool={pool} volumes={vols ?? []} onClose={() => setSub(undefined)} onDone={(v) => (setSub(undefined), setSel(v.name), void reload())} />}
      {sub?.kind === 'resize' && <ResizeDialog pool={pool} vol={sub.vol} onClose={() => setSub(undefined)} onDone={() => (setSub(undefined), void reload())} />}
      {sub?.kind === 'delete' && <DeleteVolumeDialog pool={pool} vol={sub.vol} onClose={() => setSub(undefined)} onDone={() => (setSub(undefined), setSel(undefined), void reload())} />}
      {sub?.kind === 'pool' && <AddPoolDialog onClose={() => setSub(undefined)} onDone={(p) => (setSub(undefined), setPool(p.name))} />}
    </Modal>
  );
}

function NewVolumeDialog({ pool, volumes, onClose, onDone }: { pool: string; volumes: Volume[]; onClose: () => void; onDone: (v: Volume) => void }) {
  const [name, setName] = useState('volume1');
  const [format, setFormat] = useState<VolumeFormat>('qcow2');
  const [size, setSize] = useState(20);
  const [backing, setBacking] = useState('');
  const [errors, setErrors] = useState<{ name?: string; size?: string; general?: string }>({});
  const [busy, setBusy] = useState(false);
  const base = volumes.find((v) => v.path === backing);

  const create = async () => {
    const np = volumeNameProblem(name.trim());
    if (np) return setErrors({ name: np });
    if (!backing && !(size > 0)) return setErrors({ size: 'Enter a size larger than 0.' });
    setBusy(true);
    try {
      const v = await getClient().call('storage.volumeCreate', {
        pool,
        name: name.trim(),
        format: backing ? 'qcow2' : format,
        capacityBytes: backing && base && size * GiB <= base.capacityBytes ? 0 : Math.round(size * GiB),
        ...(backing ? { backing } : {}),
      });
      onDone(v);
    } catch (e) {
      const m = (e as Error).message;
      setErrors(/name|exists|letters/i.test(m) ? { name: m } : /size|Shrink|larger/i.test(m) ? { size: m } : { general: m });
    } finally {
      setBusy(false);
    }
  };

  return (
    <Modal
      title="New Volume"
      onClose={onClose}
      footer={<DialogButtons onCancel={onClose} onAction={create} label="Create Volume" disabled={busy} />}
    >
      <ErrorBanner error={errors.general} />
      <form onSubmit={(e) => (e.preventDefault(), void create())}>
        <Field id="vol-name" label="Volume name" error={errors.name} hint={name.includes('.') ? undefined : `Saved as ${name || 'name'}.${backing || format === 'qcow2' ? 'qcow2' : 'img'}`}>
          <input id="vol-name" value={name} onChange={(e) => setName(e.target.value)} aria-invalid={!!errors.name} spellCheck={false} />
        </Field>
        <Field id="vol-format" label="Format">
          <select id="vol-format" value={backing ? 'qcow2' : format} disabled={!!backing} onChange={(e) => setFormat(e.target.value as VolumeFormat)}>
            <option value="qcow2">qcow2 (grows as written, snapshots, linked images)</option>
            <option value="raw">raw (sparse file)</option>
          </select>
        </Field>
        <Field id="vol-size" label="Capacity (GiB)" error={errors.size} hint={base ? `At least ${fmtBytes(base.capacityBytes)}, the size of ${base.name}.` : undefined}>
          <input id="vol-size" type="number" min={0} step={1} value={size} onChange={(e) => setSize(Number(e.target.value))} aria-invalid={!!errors.size} />
        </Field>
        <Field id="vol-backing" label="Based on (linked)" hint="Optional: a qcow2 overlay that reads this image and writes only its own changes.">
          <select
            id="vol-backing"
            value={backing}
            onChange={(e) => {
              setBacking(e.target.value);
              const b = volumes.find((v) => v.path === e.target.value);
              if (b) setSize(Math.ceil(b.capacityBytes / GiB));
            }}
          >
            <option value="">None</option>
            {volumes.map((v) => (
              <option key={v.path} value={v.path}>
                {v.name} ({v.format}, {fmtBytes(v.capacityBytes)})
              </option>
            ))}
          </select>
        </Field>
        <button type="submit" hidden />
      </form>
    </Modal>
  );
}

function ResizeDialog({ pool, vol, onClose, onDone }: { pool: string; vol: Volume; onClose: () => void; onDone: () => void }) {
  const [size, setSize] = useState(Math.ceil(vol.capacityBytes / GiB) + 1);
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const go = async () => {
    setBusy(true);
    try {
      await getClient().call('storage.volumeResize', { pool, name: vol.name, capacityBytes: Math.round(size * GiB), confirm: vol.path }); // the dialog names vol.path
      onDone();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal
      title={`Resize ${vol.name}`}
      onClose={onClose}
      footer={<DialogButtons onCancel={onClose} onAction={go} label="Resize" disabled={busy} />}
    >
      <form onSubmit={(e) => (e.preventDefault(), void go())}>
        <Field id="vol-new-size" label="New capacity (GiB)" error={error} hint={`${vol.path}: now ${fmtBytes(vol.capacityBytes)}. Volumes only grow; the guest must grow its partitions itself.`}>
          <input id="vol-new-size" type="number" min={1} step={1} value={size} onChange={(e) => setSize(Number(e.target.value))} aria-invalid={!!error} />
        </Field>
        <button type="submit" hidden />
      </form>
    </Modal>
  );
}

function DeleteVolumeDialog({ pool, vol, onClose, onDone }: { pool: string; vol: Volume; onClose: () => void; onDone: () => void }) {
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const go = async () => {
    setBusy(true);
    try {
      // The dialog shows vol.path; the request names it (needed outside Vireo's own pool).
      await getClient().call('storage.volumeDelete', { pool, name: vol.name, confirm: vol.path });
      onDone();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal
      title={`Delete ${vol.name}`}
      onClose={onClose}
      footer={<DialogButtons onCancel={onClose} onAction={go} label="Delete" danger disabled={busy || !!error} />}
    >
      <p>
        Delete <code>{vol.path}</code> ({fmtBytes(vol.allocationBytes)} on disk)? This can't be undone.
      </p>
      {pool !== 'default' && <p className="banner warning">This file is outside Vireo's own storage pool: it is deleted from your file system.</p>}
      <ErrorBanner error={error} />
    </Modal>
  );
}

function AddPoolDialog({ onClose, onDone }: { onClose: () => void; onDone: (p: PoolSummary) => void }) {
  const [name, setName] = useState('');
  const [dir, setDir] = useState('');
  const [error, setError] = useState<string | undefined>();
  const go = async () => {
    try {
      onDone(await getClient().call('storage.poolDefine', { name: name.trim(), path: dir.trim() }));
    } catch (e) {
      setError((e as Error).message);
    }
  };
  return (
    <Modal
      title="Add Storage Pool"
      onClose={onClose}
      footer={<DialogButtons onCancel={onClose} onAction={go} label="Add Pool" />}
    >
      <form onSubmit={(e) => (e.preventDefault(), void go())}>
        <Field id="pool-name" label="Pool name">
          <input id="pool-name" value={name} onChange={(e) => setName(e.target.value)} spellCheck={false} />
        </Field>
        <Field id="pool-path" label="Directory" error={error} hint="An existing directory; its files become the pool's volumes.">
          <input id="pool-path" value={dir} onChange={(e) => setDir(e.target.value)} aria-invalid={!!error} spellCheck={false} />
        </Field>
        <button type="submit" hidden />
      </form>
    </Modal>
  );
}

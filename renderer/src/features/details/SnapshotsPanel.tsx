// The Snapshots tab of Details (virt-manager's snapshot browser): the VM's snapshots as a
// tree (name, time, kind, description; the current one marked), Take (name + description,
// problems on the fields), Revert (says what is lost; a running VM is forced off only
// after that is confirmed) and Delete (never a disk). A VM with raw disks gets why not.
import { useCallback, useEffect, useState } from 'react';
import type { Snapshot, SnapshotFieldError } from '../../../../electron/common/contracts/snapshots';
import type { VmState } from '../../../../electron/common/contracts/vm';
import { getClient } from '../../services/client';
import { Field, Modal } from '../dialogs/Modal';

type Dialog = { kind: 'take' } | { kind: 'revert'; snap: Snapshot } | { kind: 'delete'; snap: Snapshot };

function depthOf(s: Snapshot, all: Snapshot[]): number {
  let d = 0;
  let p = s.parent;
  const seen = new Set<string>();
  while (p && !seen.has(p)) {
    seen.add(p);
    const parent = all.find((x) => x.name === p);
    if (!parent) break;
    d++;
    p = parent.parent;
  }
  return d;
}

export function SnapshotsPanel({ uuid, vmName, state }: { uuid: string; vmName: string; state: VmState | undefined }) {
  const [list, setList] = useState<{ snapshots: Snapshot[]; current: string | null; problem: string | null } | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [note, setNote] = useState<string | undefined>();
  const [selected, setSelected] = useState<string | undefined>();
  const [dialog, setDialog] = useState<Dialog | undefined>();
  const [busy, setBusy] = useState(false);
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [fieldErrors, setFieldErrors] = useState<SnapshotFieldError[]>([]);
  const [dialogError, setDialogError] = useState<string | undefined>();

  const reload = useCallback(() => {
    getClient()
      .call('snapshot.list', { uuid })
      .then(
        (r) => {
          setList(r);
          setError(undefined);
        },
        (e) => setError((e as Error).message),
      );
  }, [uuid]);

  useEffect(() => {
    reload();
    return getClient().on('snapshot.changed', (p) => p.uuid === uuid && reload());
  }, [uuid, reload]);

  const live = state === 'running' || state === 'paused';
  const stopped = !live && state !== 'starting' && state !== 'shuttingdown';
  const sel = list?.snapshots.find((s) => s.name === selected);
  const fieldErr = (f: 'name' | 'description') => fieldErrors.find((e) => e.field === f)?.message;

  const openTake = () => {
    setName('');
    setDescription('');
    setFieldErrors([]);
    setDialogError(undefined);
    setDialog({ kind: 'take' });
  };
  const close = () => (busy ? undefined : setDialog(undefined));

  const take = async () => {
    setBusy(true);
    setDialogError(undefined);
    try {
      const r = await getClient().call('snapshot.create', { uuid, name, description });
      setFieldErrors(r.errors);
      if (r.errors.length) return;
      setDialog(undefined);
      setSelected(name);
      setNote(`Snapshot '${name}' taken (${r.snapshot?.kind === 'disk+ram' ? 'disk and memory' : 'disk only'}).`);
      reload();
    } catch (e) {
      setDialogError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  const revert = async (snap: Snapshot) => {
    setBusy(true);
    setDialogError(undefined);
    try {
      const r = await getClient().call('snapshot.revert', { uuid, name: snap.name, force: true });
      setDialog(undefined);
      setNote(r.started ? `Reverted to '${snap.name}': ${vmName} runs from that moment.` : `Reverted to '${snap.name}'.`);
      reload();
    } catch (e) {
      setDialogError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  const remove = async (snap: Snapshot) => {
    setBusy(true);
    setDialogError(undefined);
    try {
      await getClient().call('snapshot.delete', { uuid, name: snap.name });
      setDialog(undefined);
      setSelected(undefined);
      setNote(`Snapshot '${snap.name}' deleted.`);
      reload();
    } catch (e) {
      setDialogError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  const kindLabel = (s: Snapshot) => (s.kind === 'disk+ram' ? `Disk + memory (${s.state})` : 'Disk only');

  return (
    <>
      <h3>Snapshots</h3>
      {list?.problem && (
        <div className="details-note" role="note" data-testid="snapshot-problem">
          {vmName} can't take snapshots: {list.problem}. Snapshots are stored inside qcow2 images (internal snapshots, as
          virsh snapshot-create-as and qemu-img snapshot make them); a raw image has nowhere to keep them. Convert the disk to
          qcow2 (vireo img convert -O qcow2) and attach the copy to use snapshots.
        </div>
      )}
      {error && <div className="field-error" role="alert">{error}</div>}
      {note && <div className="hint" role="status" data-testid="snapshot-note">{note}</div>}
      <div className="snapshot-toolbar">
        <button className="primary" disabled={!list || !!list.problem || busy || !(live || stopped)} onClick={openTake}>
          Take snapshot…
        </button>
        <button disabled={!sel || busy} onClick={() => sel && (setDialogError(undefined), setDialog({ kind: 'revert', snap: sel }))}>
          Revert…
        </button>
        <button disabled={!sel || busy} onClick={() => sel && (setDialogError(undefined), setDialog({ kind: 'delete', snap: sel }))}>
          Delete…
        </button>
        <span className="hint">
          {live ? 'Taken now: disk and memory (the VM pauses only for the capture).' : 'Taken now: disk only (the VM is off).'}
        </span>
      </div>
      {list && list.snapshots.length === 0 && <p className="hint">No snapshots yet.</p>}
      {list && list.snapshots.length > 0 && (
        <table className="snapshot-list" role="grid" aria-label="Snapshots">
          <thead>
            <tr>
              <th>Name</th>
              <th>Taken</th>
              <th>Kind</th>
              <th>Description</th>
            </tr>
          </thead>
          <tbody>
            {list.snapshots.map((s) => (
              <tr key={s.name} data-snapshot={s.name} aria-selected={s.name === selected} className={s.name === selected ? 'selected' : ''}
                tabIndex={0} onClick={() => setSelected(s.name)} onKeyDown={(e) => (e.key === 'Enter' || e.key === ' ') && (e.preventDefault(), setSelected(s.name))}>
                <td style={{ paddingLeft: 8 + 16 * depthOf(s, list.snapshots) }}>
                  {depthOf(s, list.snapshots) > 0 ? '└ ' : ''}
                  {s.name}
                  {s.current && <span className="badge" title="The VM was last reverted to, or taken at, this snapshot"> (current)</span>}
                  {s.external && <span className="badge" title="Made outside Vireo (qemu-img snapshot): disk only"> (made outside Vireo)</span>}
                </td>
                <td>{new Date(s.createdAt).toLocaleString()}</td>
                <td data-testid="snapshot-kind">{kindLabel(s)}</td>
                <td>{s.description}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}

      {dialog?.kind === 'take' && (
        <Modal
          title={`Take a snapshot of ${vmName}`}
          onClose={close}
          footer={
            <>
              <button onClick={close} disabled={busy}>Cancel</button>
              <button className="primary" disabled={busy} onClick={() => void take()}>
                {busy ? 'Taking…' : 'Take snapshot'}
              </button>
            </>
          }
        >
          <form onSubmit={(e) => (e.preventDefault(), void take())}>
            <Field id="snap-name" label="Name" error={fieldErr('name')} hint="Up to 64 characters, no “/”.">
              <input id="snap-name" value={name} aria-invalid={!!fieldErr('name')} aria-describedby={fieldErr('name') ? 'snap-name-error' : undefined}
                onChange={(e) => (setName(e.target.value), setFieldErrors((x) => x.filter((f) => f.field !== 'name')))} />
            </Field>
            <Field id="snap-description" label="Description" error={fieldErr('description')}>
              <textarea id="snap-description" rows={3} value={description} aria-invalid={!!fieldErr('description')} onChange={(e) => setDescription(e.target.value)} />
            </Field>
            <p className="hint">
              {live
                ? `${vmName} is ${state}: the snapshot holds its disks and its memory and device state; ${vmName} pauses only while it is captured.`
                : `${vmName} is off: the snapshot holds its disks.`}
            </p>
            {dialogError && <div className="field-error" role="alert">{dialogError}</div>}
          </form>
        </Modal>
      )}

      {dialog?.kind === 'revert' && (
        <Modal
          title={`Revert ${vmName} to '${dialog.snap.name}'?`}
          onClose={close}
          footer={
            <>
              <button onClick={close} disabled={busy}>Cancel</button>
              <button className="primary danger" disabled={busy} onClick={() => void revert(dialog.snap)}>
                {busy ? 'Reverting…' : live ? 'Force off and revert' : 'Revert'}
              </button>
            </>
          }
        >
          <p role="alert" data-testid="revert-warning">
            Everything {vmName}'s disks received since '{dialog.snap.name}' was taken ({new Date(dialog.snap.createdAt).toLocaleString()}) is lost
            {live ? `, and so is what is running now: ${vmName} is ${state} and will be forced off (as pulling the plug)` : ''}
            {state === 'saved' ? `, and its saved state is discarded` : ''}. Its hardware settings go back to the snapshot's.
            {dialog.snap.kind === 'disk+ram' ? ` ${vmName} then resumes from the moment the snapshot was taken.` : ` ${vmName} stays off.`}
          </p>
          <p className="hint">Take a snapshot first if you want to come back to the present.</p>
          {dialogError && <div className="field-error" role="alert">{dialogError}</div>}
        </Modal>
      )}

      {dialog?.kind === 'delete' && (
        <Modal
          title={`Delete snapshot '${dialog.snap.name}'?`}
          onClose={close}
          footer={
            <>
              <button onClick={close} disabled={busy}>Cancel</button>
              <button className="primary danger" disabled={busy} onClick={() => void remove(dialog.snap)}>
                {busy ? 'Deleting…' : 'Delete snapshot'}
              </button>
            </>
          }
        >
          <p>
            The snapshot is removed from {vmName}'s disks{dialog.snap.kind === 'disk+ram' ? ', with its saved memory' : ''}. The disks and
            the VM as it is now are not changed{dialog.snap.children.length ? `; ${dialog.snap.children.join(', ')} move up to its parent` : ''}.
          </p>
          {dialogError && <div className="field-error" role="alert">{dialogError}</div>}
        </Modal>
      )}
    </>
  );
}

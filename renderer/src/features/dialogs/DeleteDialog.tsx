import { useEffect, useState } from 'react';
import type { DiskPlan } from '../../../../electron/common/contracts/api';
import type { VmSummary } from '../../../../electron/common/contracts/vm';
import { getClient } from '../../services/client';
import { useVms } from '../../stores/vms';
import { Modal, ErrorBanner, DialogButtons } from './Modal';

export function DeleteDialog({ vm, onClose }: { vm: VmSummary; onClose: () => void }) {
  const [disks, setDisks] = useState<DiskPlan[] | undefined>();
  const [checked, setChecked] = useState<Set<string>>(new Set());
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    getClient()
      .call('vm.deletePlan', { uuid: vm.uuid })
      .then((p) => {
        setDisks(p.disks);
        setChecked(new Set(p.disks.filter((d) => d.defaultChecked).map((d) => d.path)));
      }, (e) => setError((e as Error).message));
  }, [vm.uuid]);
  const del = async () => {
    setBusy(true);
    try {
      // Files outside Vireo's pool are listed in the dialog (below) before the user presses Delete: confirmed by name.
      const confirm = (disks ?? []).filter((d) => d.outsidePool && checked.has(d.path)).map((d) => d.path);
      await getClient().call('vm.delete', { uuid: vm.uuid, deleteDisks: [...checked], ...(confirm.length ? { confirm } : {}) });
      useVms.getState().remove(vm.uuid);
      onClose();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  const outside = (disks ?? []).filter((d) => d.outsidePool && checked.has(d.path)).map((d) => d.path);
  return (
    <Modal
      title={`Delete ${vm.name}`}
      onClose={onClose}
      footer={<DialogButtons onCancel={onClose} onAction={del} label="Delete" danger disabled={busy || !disks} />}
    >
      <p>
        Delete the virtual machine <strong>{vm.name}</strong>? Choose which storage to delete with it:
      </p>
      <ErrorBanner error={error} />
      <ul className="disks" aria-label="Storage to delete">
        {disks?.map((d) => (
          <li key={d.path}>
            <label className="check">
              <input
                type="checkbox"
                aria-label={`Delete ${d.path}`}
                checked={checked.has(d.path)}
                onChange={(e) => {
                  const n = new Set(checked);
                  if (e.target.checked) n.add(d.path);
                  else n.delete(d.path);
                  setChecked(n);
                }}
              />
              <code>{d.path}</code>
            </label>
            <small>
              {d.media === 'cdrom' ? ' install media' : ''}
              {d.sharedWith.length ? ` · also used by ${d.sharedWith.join(', ')}` : ''}
              {!d.exists ? ' · missing' : ''}
              {d.outsidePool ? " · outside Vireo's storage pool" : ''}
            </small>
          </li>
        ))}
        {disks?.length === 0 && <li>No storage.</li>}
      </ul>
      {outside.length > 0 && (
        <div className="banner warning" data-testid="delete-outside">
          <p>These files are outside Vireo's storage pool. Delete removes them from your file system:</p>
          <ul>
            {outside.map((p) => (
              <li key={p}>
                <code>{p}</code>
              </li>
            ))}
          </ul>
        </div>
      )}
    </Modal>
  );
}

import { useEffect, useState } from 'react';
import type { DiskPlan } from '../../../../electron/common/contracts/api';
import { type VmSummary, nameProblem } from '../../../../electron/common/contracts/vm';
import { getClient } from '../../services/client';
import { useVms } from '../../stores/vms';
import { Field, Modal, ErrorBanner } from './Modal';

export function CloneDialog({ vm, onClose }: { vm: VmSummary; onClose: () => void }) {
  const [name, setName] = useState('');
  const [disks, setDisks] = useState<DiskPlan[]>([]);
  const [blocker, setBlocker] = useState<string | null>(null);
  const [error, setError] = useState<string | undefined>();
  const [jobId, setJobId] = useState<string | undefined>();
  const [mode, setMode] = useState<'full' | 'linked'>('full');
  const job = useVms((s) => (jobId ? s.jobs[jobId] : undefined));

  useEffect(() => {
    getClient()
      .call('vm.clonePlan', { uuid: vm.uuid })
      .then((p) => {
        setName(p.suggestedName);
        setDisks(p.disks);
        setBlocker(p.blocker);
      }, (e) => setBlocker((e as Error).message));
  }, [vm.uuid]);

  useEffect(() => {
    if (job?.finished?.ok) onClose();
  }, [job?.finished?.ok, onClose]);

  const start = async () => {
    const np = nameProblem(name.trim());
    if (np) return setError(np);
    try {
      const r = await getClient().call('vm.clone', { uuid: vm.uuid, name: name.trim(), mode });
      if (r.errors.length) return setError(r.errors[0]!.message);
      setError(undefined);
      setJobId(r.jobId);
    } catch (e) {
      setBlocker((e as Error).message);
    }
  };

  const running = jobId && !job?.finished;
  const pct = job && job.totalBytes ? Math.floor((job.doneBytes / job.totalBytes) * 100) : 0;
  return (
    <Modal
      title={`Clone ${vm.name}`}
      onClose={() => (running ? undefined : onClose())}
      footer={
        <>
          <span className="grow" />
          {running ? (
            <button onClick={() => getClient().call('job.cancel', { jobId: jobId! })}>Cancel clone</button>
          ) : (
            <>
              <button onClick={onClose}>Cancel</button>
              <button className="primary" disabled={!!blocker} onClick={start}>
                Clone
              </button>
            </>
          )}
        </>
      }
    >
      <ErrorBanner error={blocker} />
      <form onSubmit={(e) => (e.preventDefault(), void start())}>
        <Field id="clone-name" label="Name for the clone" error={error}>
          <input id="clone-name" value={name} disabled={!!running} onChange={(e) => setName(e.target.value)} aria-invalid={!!error} spellCheck={false} />
        </Field>
      </form>
      <fieldset disabled={!!running}>
        <legend>Storage</legend>
        <label className="radio">
          <input type="radio" name="clone-mode" checked={mode === 'full'} onChange={() => setMode('full')} /> Full copy
          <small className="hint">independent disks (reflinked where the file system can, else a sparse copy)</small>
        </label>
        <label className="radio">
          <input type="radio" name="clone-mode" checked={mode === 'linked'} onChange={() => setMode('linked')} /> Linked (qcow2 overlay)
          <small className="hint">instant; reads {vm.name}'s disks, which then must stay and can't be written by {vm.name}</small>
        </label>
      </fieldset>
      <p className="hint">A new UUID and new MAC addresses are made. Disks:</p>
      <ul className="disks">
        {disks.map((d) => (
          <li key={d.path}>
            <code>{d.path}</code> — {d.media === 'cdrom' ? 'shared (install media)' : mode === 'linked' ? 'new qcow2 overlay backed by this disk' : `copied (${(d.sizeBytes / 2 ** 30).toFixed(1)} GiB, holes kept)`}
          </li>
        ))}
      </ul>
      {jobId && (
        <div className="progress">
          <div>{job?.label ?? 'Starting…'}</div>
          <progress aria-label="Clone progress" max={100} value={pct} />
          {job?.finished && !job.finished.ok && (
            <div className="field-error" role="alert">
              {job.finished.cancelled ? 'Cancelled: the partial copies were removed.' : job.finished.error}
            </div>
          )}
        </div>
      )}
    </Modal>
  );
}

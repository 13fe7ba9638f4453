// The New VM wizard, in virt-manager's five steps. Every step asks the service to
// check the request (dryRun: nothing is written) and shows each problem on its field.
import { useEffect, useMemo, useState } from 'react';
import type { NetworkSummary } from '../../../../electron/common/contracts/network';
import type { OsDetection, OsEntry } from '../../../../electron/common/contracts/osinfo';
import { type FieldError, type NewVmRequest, type NicModel, type WizardField, OS_CHOICES, nameProblem, nicModelFor } from '../../../../electron/common/contracts/vm';
import { getClient } from '../../services/client';
import { useVms } from '../../stores/vms';
import { Field, Modal } from '../dialogs/Modal';

type MediaKind = 'iso' | 'import' | 'kernel';
const STEPS = ['Install media', 'Operating system', 'Memory and CPUs', 'Storage', 'Name and review'] as const;
const STEP_FIELDS: WizardField[][] = [['media', 'kernel'], ['os'], ['memory', 'cpus'], ['storage'], ['name', 'network']];

/** What the wizard assumes until the medium is read (or when nothing is detected). */
const GENERIC: OsEntry = { id: OS_CHOICES[0].id, name: OS_CHOICES[0].label, family: 'other', memoryMiB: OS_CHOICES[0].memoryMiB, diskGiB: OS_CHOICES[0].diskGiB, cpus: 1, virtioDisk: false, virtioNet: false };

function defaultName(path: string, os: string): string {
  const base = path.split('/').pop()?.replace(/\.(iso|img|qcow2|raw|bin|elf)$/i, '') ?? '';
  const clean = base.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 40);
  return clean || os;
}

export function NewVmWizard({ onClose, onCustomize }: { onClose: () => void; onCustomize?: (uuid: string) => void }) {
  const host = useVms((s) => s.host);
  const maxMem = host?.memoryMiB ?? 4096;
  const maxCpus = host?.cpus ?? 1;
  const [step, setStep] = useState(0);
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<FieldError[]>([]);
  const [media, setMedia] = useState<MediaKind>('iso');
  const [isoPath, setIsoPath] = useState('');
  const [diskPath, setDiskPath] = useState('');
  const [kernel, setKernel] = useState('');
  const [initrd, setInitrd] = useState('');
  const [append, setAppend] = useState('');
  /** The OS the user chose over the detected one. */
  const [picked, setPicked] = useState<OsEntry | undefined>();
  const [detection, setDetection] = useState<OsDetection | null>(null);
  const [osQuery, setOsQuery] = useState('');
  const [osList, setOsList] = useState<OsEntry[]>([]);
  const [memory, setMemory] = useState<number | undefined>();
  const [cpusSet, setCpus] = useState<number | undefined>();
  const [createDisk, setCreateDisk] = useState(true);
  const [sizeGiB, setSizeGiB] = useState<number | undefined>();
  const [diskFormat, setDiskFormat] = useState<'qcow2' | 'raw'>('qcow2');
  const [busSet, setDiskBus] = useState<'ide' | 'virtio' | undefined>();
  const [linked, setLinked] = useState(false);
  const [basePath, setBasePath] = useState('');
  const [importFormat, setImportFormat] = useState<'' | 'raw' | 'qcow2'>('');
  const [name, setName] = useState<string | undefined>();
  const [network, setNetwork] = useState('default');
  const [nicModel, setNicModel] = useState<NicModel | undefined>();
  const [networks, setNetworks] = useState<NetworkSummary[]>([]);
  useEffect(() => {
    getClient().call('network.list', {}).then(setNetworks, () => undefined);
  }, []);
  const [customize, setCustomize] = useState(false);

  const mediaPath = media === 'iso' ? isoPath : media === 'import' ? diskPath : kernel;
  // The OS: detected from the medium (osinfo-db) when the OS step opens, or the user's pick.
  useEffect(() => {
    if (step !== 1) return;
    let live = true;
    setDetection(null);
    getClient()
      .call('os.detect', { path: mediaPath.trim() })
      .then((d) => live && setDetection(d))
      .catch((e: Error) => live && setDetection({ os: null, source: 'none', message: `Could not read the medium: ${e.message}`, iso: null, db: null }));
    return () => void (live = false);
  }, [step, mediaPath]);
  useEffect(() => {
    if (step !== 1) return;
    let live = true;
    const t = setTimeout(() => void getClient().call('os.list', { query: osQuery, limit: 200 }).then((l) => live && setOsList(l), () => undefined), 150);
    return () => ((live = false), clearTimeout(t));
  }, [step, osQuery]);
  const osChoice = picked ?? detection?.os ?? GENERIC;
  const osId = osChoice.id;
  const memoryMiB = memory ?? Math.min(osChoice.memoryMiB, maxMem);
  const cpus = cpusSet ?? Math.min(osChoice.cpus, maxCpus);
  const diskBus = busSet ?? (osChoice.virtioDisk ? 'virtio' : 'ide');
  const disk = sizeGiB ?? osChoice.diskGiB;
  const vmName = name ?? defaultName(mediaPath, osId);
  // An osinfo-db OS: its own preference (a virtio-net driver or not); a built-in choice: the built-in list's.
  const model: NicModel = nicModel ?? (osChoice.osinfoUrl ? (osChoice.virtioNet ? 'virtio' : 'e1000') : nicModelFor(osId));
  const chosenNet = networks.find((n) => n.name === network);

  const request = useMemo<NewVmRequest>(
    () => ({
      media:
        media === 'iso'
          ? { kind: 'iso', path: isoPath.trim() }
          : media === 'import'
            ? { kind: 'import', path: diskPath.trim(), ...(importFormat ? { format: importFormat } : {}) }
            : { kind: 'kernel', kernel: kernel.trim(), ...(initrd.trim() ? { initrd: initrd.trim() } : {}), ...(append ? { append } : {}) },
      os: osId,
      memoryMiB: Math.round(memoryMiB),
      cpus: Math.round(cpus),
      storage:
        createDisk && media !== 'import'
          ? { kind: 'create', sizeGiB: disk, format: linked ? 'qcow2' : diskFormat, bus: diskBus, ...(linked ? { backing: basePath.trim() } : {}) }
          : { kind: 'none' },
      name: vmName.trim(),
      network,
      ...(network !== 'none' ? { nicModel: model } : {}),
      customize,
    }),
    [media, isoPath, diskPath, importFormat, kernel, initrd, append, osId, memoryMiB, cpus, createDisk, disk, diskFormat, diskBus, linked, basePath, vmName, network, model, customize],
  );

  const err = (f: WizardField) => errors.find((e) => e.field === f)?.message;

  /** Checks with the service; keeps the errors of steps up to `upTo`; returns the first step with one. */
  const check = async (upTo: number): Promise<number | undefined> => {
    const local: FieldError[] = [];
    const np = nameProblem(request.name);
    if (upTo >= 4 && np) local.push({ field: 'name', message: np });
    const res = await getClient().call('vm.create', { ...request, dryRun: true });
    const fields = new Set(STEP_FIELDS.slice(0, upTo + 1).flat());
    const all = [...local, ...res.errors.filter((e) => !local.some((l) => l.field === e.field))].filter((e) => fields.has(e.field));
    setErrors(all);
    const firstBad = STEP_FIELDS.findIndex((fs) => fs.some((f) => all.some((e) => e.field === f)));
    return firstBad >= 0 ? firstBad : undefined;
  };

  const next = async () => {
    setBusy(true);
    try {
      const bad = await check(step);
      if (bad === undefined) setStep(step + 1);
      else setStep(bad);
    } catch (e) {
      useVms.getState().setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  const finish = async () => {
    setBusy(true);
    try {
      const bad = await check(4);
      if (bad !== undefined) return setStep(bad);
      const res = await getClient().call('vm.create', request);
      if (res.errors.length) {
        setErrors(res.errors);
        const first = STEP_FIELDS.findIndex((fs) => fs.some((f) => res.errors.some((e) => e.field === f)));
        return setStep(Math.max(0, first));
      }
      const vm = res.vm!;
      useVms.getState().upsert(vm);
      useVms.getState().select(vm.uuid);
      onClose();
      if (customize) onCustomize?.(vm.uuid); // the hardware details editor, with Begin Installation
      else {
        getClient().openConsole(vm.uuid);
        try {
          await getClient().call('vm.action', { uuid: vm.uuid, action: 'start' });
        } catch (e) {
          useVms.getState().setError(`${vm.name} was created but did not start: ${(e as Error).message}`);
        }
      }
    } catch (e) {
      useVms.getState().setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  const footer = (
    <>
      <span className="steps" aria-label={`Step ${step + 1} of ${STEPS.length}`}>
        Step {step + 1} of {STEPS.length}
      </span>
      <span className="grow" />
      <button onClick={onClose}>Cancel</button>
      <button disabled={step === 0 || busy} onClick={() => (setErrors([]), setStep(step - 1))}>
        Back
      </button>
      {step < 4 ? (
        <button className="primary" disabled={busy} onClick={next}>
          Forward
        </button>
      ) : (
        <button className="primary" disabled={busy} onClick={finish}>
          Finish
        </button>
      )}
    </>
  );

  return (
    <Modal title="New VM" onClose={onClose} footer={footer} wide>
      <ol className="wizard-steps" aria-label="Steps">
        {STEPS.map((s, i) => (
          <li key={s} className={i === step ? 'current' : i < step ? 'done' : ''} aria-current={i === step ? 'step' : undefined}>
            {s}
          </li>
        ))}
      </ol>
      <form
        className="wizard-page"
        data-step={step + 1}
        onSubmit={(e) => {
          e.preventDefault();
          void (step < 4 ? next() : finish());
        }}
      >
        <h3>{STEPS[step]}</h3>
        {step === 0 && (
          <>
            <fieldset>
              <legend>How would you like to install the operating system?</legend>
              {(
                [
                  ['iso', 'Local install media (ISO image)'],
                  ['import', 'Import existing disk image'],
                  ['kernel', 'Direct kernel boot'],
                ] as const
              ).map(([k, l]) => (
                <label key={k} className="radio">
                  <input type="radio" name="media" checked={media === k} onChange={() => (setMedia(k), setErrors([]))} /> {l}
                </label>
              ))}
            </fieldset>
            {media === 'iso' && (
              <Field id="iso-path" label="ISO image path" error={err('media')} hint="A file on this computer, e.g. /usr/lib/grub-rescue/grub-rescue-cdrom.iso">
                <input id="iso-path" value={isoPath} onChange={(e) => setIsoPath(e.target.value)} aria-invalid={!!err('media')} aria-describedby={err('media') ? 'iso-path-error' : undefined} spellCheck={false} />
              </Field>
            )}
            {media === 'import' && (
              <Field id="disk-path" label="Disk image path" error={err('media')} hint="A raw or qcow2 image; it is used in place, not copied.">
                <input id="disk-path" value={diskPath} onChange={(e) => setDiskPath(e.target.value)} aria-invalid={!!err('media')} spellCheck={false} />
              </Field>
            )}
            {media === 'import' && (
              <Field id="import-format" label="Disk image format" hint="A qcow2 image that reads from other files (a backing chain) is imported only with its format chosen here.">
                <select id="import-format" value={importFormat} onChange={(e) => setImportFormat(e.target.value as '' | 'raw' | 'qcow2')}>
                  <option value="">Read it from the file</option>
                  <option value="qcow2">qcow2</option>
                  <option value="raw">raw</option>
                </select>
              </Field>
            )}
            {media === 'kernel' && (
              <>
                <Field id="kernel-path" label="Kernel path" error={err('kernel')}>
                  <input id="kernel-path" value={kernel} onChange={(e) => setKernel(e.target.value)} aria-invalid={!!err('kernel')} spellCheck={false} />
                </Field>
                <Field id="initrd-path" label="Initrd path (optional)">
                  <input id="initrd-path" value={initrd} onChange={(e) => setInitrd(e.target.value)} spellCheck={false} />
                </Field>
                <Field id="kernel-args" label="Kernel arguments (optional)">
                  <input id="kernel-args" value={append} onChange={(e) => setAppend(e.target.value)} spellCheck={false} />
                </Field>
              </>
            )}
          </>
        )}
        {step === 1 && (
          <>
            <p className={`detected ${detection?.source ?? 'pending'}`} role="status" aria-label="OS detection">
              {detection ? detection.message : 'Reading the install medium…'}
            </p>
            <Field id="os-find" label="Find an OS" hint={detection?.db ? `From osinfo-db ${detection.db}; type to search, e.g. "debian", "windows 11".` : 'Type to search the OS list.'}>
              <input id="os-find" type="search" value={osQuery} onChange={(e) => setOsQuery(e.target.value)} spellCheck={false} />
            </Field>
            <Field id="os" label="Operating system" error={err('os')} hint={picked ? 'Chosen by you.' : detection?.os ? 'Detected; choose another if it is wrong.' : undefined}>
              <select
                id="os"
                value={osId}
                onChange={(e) => {
                  const o = osList.find((x) => x.id === e.target.value);
                  if (o) setPicked(o);
                }}
              >
                {!osList.some((o) => o.id === osId) && <option value={osId}>{osChoice.name}</option>}
                {osList.map((o) => (
                  <option key={o.id} value={o.id}>
                    {o.name}
                  </option>
                ))}
              </select>
            </Field>
            <p className="hint" aria-label="OS defaults">
              Defaults for {osChoice.name}: {Math.min(osChoice.memoryMiB, maxMem)} MiB memory, {osChoice.diskGiB} GiB disk, {Math.min(osChoice.cpus, maxCpus)} CPU{osChoice.cpus > 1 ? 's' : ''}, {osChoice.virtioDisk ? 'VirtIO' : 'IDE'} disk
              {osChoice.minMemoryMiB ? ` (needs at least ${osChoice.minMemoryMiB} MiB)` : ''}.
            </p>
          </>
        )}
        {step === 2 && (
          <>
            <Field id="memory" label="Memory (MiB)" error={err('memory')} hint={`Up to ${maxMem} MiB available on this host.`}>
              <input id="memory" type="number" min={16} max={maxMem} step={16} value={memoryMiB} onChange={(e) => setMemory(Number(e.target.value))} aria-invalid={!!err('memory')} />
            </Field>
            <Field id="cpus" label="CPUs" error={err('cpus')} hint={`Up to ${maxCpus} available.`}>
              <input id="cpus" type="number" min={1} max={maxCpus} value={cpus} onChange={(e) => setCpus(Number(e.target.value))} aria-invalid={!!err('cpus')} />
            </Field>
          </>
        )}
        {step === 3 && (
          <>
            {media === 'import' ? (
              <p className="hint">The imported disk image is the VM's storage: {diskPath}</p>
            ) : (
              <>
                <label className="check">
                  <input type="checkbox" checked={createDisk} onChange={(e) => setCreateDisk(e.target.checked)} /> Create a disk image for the virtual machine
                </label>
                <Field id="disk-size" label="Disk size (GiB)" error={err('storage')} hint={`Created sparse in ${host?.poolPath ?? 'the default pool'}: it takes space only as the guest writes.`}>
                  <input id="disk-size" type="number" min={1} step={1} value={disk} disabled={!createDisk || linked} onChange={(e) => setSizeGiB(Number(e.target.value))} aria-invalid={!!err('storage')} />
                </Field>
                <div className="row2">
                  <Field id="disk-format" label="Disk format">
                    <select id="disk-format" value={linked ? 'qcow2' : diskFormat} disabled={!createDisk || linked} onChange={(e) => setDiskFormat(e.target.value as 'qcow2' | 'raw')}>
                      <option value="qcow2">qcow2 (default)</option>
                      <option value="raw">raw</option>
                    </select>
                  </Field>
                  <Field id="disk-bus" label="Disk bus">
                    <select id="disk-bus" value={diskBus} disabled={!createDisk} onChange={(e) => setDiskBus(e.target.value as 'ide' | 'virtio')}>
                      <option value="ide">IDE</option>
                      <option value="virtio">VirtIO (virtio-blk)</option>
                    </select>
                  </Field>
                </div>
                <label className="check">
                  <input type="checkbox" checked={linked} disabled={!createDisk} onChange={(e) => setLinked(e.target.checked)} /> Based on an existing image (linked)
                </label>
                {linked && (
                  <Field id="disk-base" label="Base image path" hint="The new qcow2 disk reads this image and keeps only its own changes; the image must stay and not be written to.">
                    <input id="disk-base" value={basePath} onChange={(e) => setBasePath(e.target.value)} spellCheck={false} />
                  </Field>
                )}
              </>
            )}
          </>
        )}
        {step === 4 && (
          <>
            <Field id="vm-name" label="Name" error={err('name')}>
              <input id="vm-name" value={vmName} onChange={(e) => setName(e.target.value)} aria-invalid={!!err('name')} aria-describedby={err('name') ? 'vm-name-error' : undefined} spellCheck={false} />
            </Field>
            <div className="row2">
              <Field id="network" label="Network" error={err('network')}
                hint={chosenNet?.engineProblem ? `The VM won't start on it yet: ${chosenNet.engineProblem}.` : chosenNet && !chosenNet.active ? `${chosenNet.name} is not active: start it under Networks before starting the VM.` : undefined}>
                <select id="network" value={network} onChange={(e) => setNetwork(e.target.value)}>
                  {networks.length === 0 && <option value="default">default</option>}
                  {networks.map((n) => (
                    <option key={n.name} value={n.name}>
                      {n.name} ({n.mode === 'nat' ? 'NAT' : n.mode}, {n.ipv4.address}/{n.ipv4.prefix}){n.active ? '' : ' – inactive'}
                    </option>
                  ))}
                  <option value="none">No network</option>
                </select>
              </Field>
              <Field id="nic-model" label="Device model" hint={nicModel ? undefined : `What ${osChoice.name} has a driver for.`}>
                <select id="nic-model" value={model} disabled={network === 'none'} onChange={(e) => setNicModel(e.target.value as NicModel)}>
                  <option value="virtio">virtio (virtio-net)</option>
                  <option value="e1000">e1000 (Intel 82540EM)</option>
                </select>
              </Field>
            </div>
            <dl className="review" aria-label="Review">
              <dt>Install</dt>
              <dd>{media === 'iso' ? `ISO: ${isoPath}` : media === 'import' ? `Import: ${diskPath}` : `Kernel: ${kernel}`}</dd>
              <dt>OS</dt>
              <dd>{osChoice.name}</dd>
              <dt>Memory</dt>
              <dd>{memoryMiB} MiB</dd>
              <dt>CPUs</dt>
              <dd>{cpus}</dd>
              <dt>Storage</dt>
              <dd>{media === 'import' ? diskPath : createDisk ? (linked ? `new qcow2 disk based on ${basePath} (${diskBus})` : `${disk} GiB new ${diskFormat} disk (${diskBus})`) : 'None'}</dd>
              <dt>Network</dt>
              <dd>{network === 'none' ? 'None' : `${model} NIC on ${network}`}</dd>
            </dl>
            <label className="check">
              <input type="checkbox" checked={customize} onChange={(e) => setCustomize(e.target.checked)} /> Customize configuration before install
            </label>
          </>
        )}
        <button type="submit" hidden />
      </form>
    </Modal>
  );
}

// libvirt domain XML: Import… (a file picker or pasted XML → a new VM, virsh define)
// and Export (the VM's XML as a file download, virsh dumpxml). docs/libvirt-xml.md.
import { useState } from 'react';
import type { DetailsFieldError } from '../../../../electron/common/contracts/vm';
import { getClient } from '../../services/client';
import { useVms } from '../../stores/vms';
import { Field, Modal } from './Modal';

/** Downloads the VM's domain XML as NAME.xml (a file download in the browser and in Electron). */
export async function exportXml(uuid: string): Promise<void> {
  try {
    const { xml, fileName } = await getClient().call('vm.exportXml', { uuid });
    const url = URL.createObjectURL(new Blob([xml], { type: 'application/xml' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = fileName;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (e) {
    useVms.getState().setError(`Export failed: ${(e as Error).message}`);
  }
}

export function ImportXmlDialog({ onClose }: { onClose: () => void }) {
  const [xml, setXml] = useState('');
  const [name, setName] = useState('');
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<DetailsFieldError[]>([]);
  const [ignored, setIgnored] = useState<Array<{ path: string; reason: string }>>([]);
  const [done, setDone] = useState<string | null>(null);
  const err = (f: string) => errors.find((e) => e.field === f)?.message;

  const run = async () => {
    setBusy(true);
    try {
      const res = await getClient().call('vm.importXml', { xml, ...(name.trim() ? { name: name.trim() } : {}) });
      setErrors(res.errors);
      setIgnored(res.ignored);
      if (res.vm) {
        useVms.getState().upsert(res.vm);
        useVms.getState().select(res.vm.uuid);
        setDone(res.vm.name);
      }
    } catch (e) {
      setErrors([{ field: 'xml', message: (e as Error).message }]);
    } finally {
      setBusy(false);
    }
  };

  const footer = done ? (
    <button className="primary" onClick={onClose}>
      Close
    </button>
  ) : (
    <>
      <span className="grow" />
      <button onClick={onClose}>Cancel</button>
      <button className="primary" disabled={busy || !xml.trim()} onClick={run}>
        Import
      </button>
    </>
  );

  return (
    <Modal title="Import libvirt XML" onClose={onClose} footer={footer} wide>
      {done ? (
        <p role="status">Imported {done}.</p>
      ) : (
        <>
          <Field id="xml-file" label="Domain XML file" hint="What virsh dumpxml or virt-install --print-xml writes; or paste it below.">
            <input
              id="xml-file"
              type="file"
              accept=".xml,application/xml,text/xml"
              onChange={async (e) => {
                const f = e.target.files?.[0];
                if (f) setXml(await f.text());
              }}
            />
          </Field>
          <Field id="xml-text" label="Domain XML" error={err('xml')}>
            <textarea id="xml-text" rows={10} value={xml} onChange={(e) => setXml(e.target.value)} spellCheck={false} aria-invalid={!!err('xml')} style={{ width: '100%', fontFamily: 'monospace' }} />
          </Field>
          <Field id="xml-name" label="Name (optional)" error={err('name')} hint="Leave empty to keep the XML's name.">
            <input id="xml-name" value={name} onChange={(e) => setName(e.target.value)} aria-invalid={!!err('name')} spellCheck={false} />
          </Field>
        </>
      )}
      {ignored.length > 0 && (
        <details open={!!done}>
          <summary>Not taken over from the XML ({ignored.length})</summary>
          <ul aria-label="Ignored XML" className="hint">
            {ignored.map((i) => (
              <li key={i.path + i.reason}>
                <code>{i.path}</code>: {i.reason}
              </li>
            ))}
          </ul>
        </details>
      )}
    </Modal>
  );
}

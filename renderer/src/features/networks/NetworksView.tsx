// Virtual networks (virt-manager's Connection Details → Virtual Networks, virsh
// net-*): the list with mode, subnet, state and autostart; New / Edit / Start /
// Stop / Delete. The service's field errors show under the field they are about.
// Refreshes on network.changed and vm.changed events.
import { useCallback, useEffect, useState } from 'react';
import {
  type NetworkDef,
  type NetworkFieldError,
  type NetworkSummary,
  type PortForward,
  defaultIpv4,
} from '../../../../electron/common/contracts/network';
import { getClient } from '../../services/client';
import { Field, Modal, ErrorBanner, CloseFooter, DialogButtons } from '../dialogs/Modal';
import '../storage/storage.css';
import './networks.css';

const MODE_LABEL: Record<NetworkDef['mode'], string> = { nat: 'NAT', isolated: 'Isolated', bridge: 'Bridge' };

/** The toolbar button and the window it opens. */
export function NetworksButton() {
  const [open, setOpen] = useState(false);
  return (
    <>
      <button onClick={() => setOpen(true)}>Networks</button>
      {open && <NetworksView onClose={() => setOpen(false)} />}
    </>
  );
}

type Sub = { kind: 'new' } | { kind: 'edit'; net: NetworkSummary } | { kind: 'delete'; net: NetworkSummary } | undefined;

export function NetworksView({ onClose }: { onClose: () => void }) {
  const [nets, setNets] = useState<NetworkSummary[] | undefined>();
  const [sel, setSel] = useState<string>('default');
  const [error, setError] = useState<string | undefined>();
  const [sub, setSub] = useState<Sub>();

  const reload = useCallback(async () => {
    try {
      setNets(await getClient().call('network.list', {}));
    } catch (e) {
      setError((e as Error).message);
    }
  }, []);

  useEffect(() => {
    void reload();
    const offs = [getClient().on('network.changed', () => void reload()), getClient().on('vm.changed', () => void reload()), getClient().on('vm.removed', () => void reload())];
    return () => offs.forEach((off) => off());
  }, [reload]);

  const net = nets?.find((n) => n.name === sel);
  const act = async (fn: () => Promise<unknown>) => {
    setError(undefined);
    try {
      await fn();
      await reload();
    } catch (e) {
      setError((e as Error).message);
    }
  };

  return (
    <Modal
      title="Networks"
      wide
      onClose={() => (sub ? undefined : onClose())}
      footer={<CloseFooter onClose={onClose} />}
    >
      <div className="networks">
        <div className="vol-toolbar" role="toolbar" aria-label="Network actions">
          <strong>Virtual networks</strong>
          <span className="grow" />
          <button className="primary" onClick={() => (setError(undefined), setSub({ kind: 'new' }))}>
            New Network…
          </button>
          <button disabled={!net} onClick={() => net && (setError(undefined), setSub({ kind: 'edit', net }))}>
            Edit…
          </button>
          <button disabled={!net || net.active} onClick={() => net && void act(() => getClient().call('network.start', { name: net.name }))}>
            Start
          </button>
          <button disabled={!net || !net.active} onClick={() => net && void act(() => getClient().call('network.stop', { name: net.name }))}>
            Stop
          </button>
          <button disabled={!net || net.isDefault} onClick={() => net && (setError(undefined), setSub({ kind: 'delete', net }))}>
            Delete
          </button>
        </div>
        <ErrorBanner error={error} />
        <table aria-label="Networks" data-loaded={nets ? 'yes' : 'no'}>
          <thead>
            <tr>
              <th>Name</th>
              <th>Mode</th>
              <th>IPv4 subnet</th>
              <th>DHCP</th>
              <th>State</th>
              <th>Autostart</th>
              <th>Used by</th>
            </tr>
          </thead>
          <tbody>
            {(nets ?? []).map((n) => (
              <tr
                key={n.name}
                aria-selected={n.name === sel}
                aria-label={n.name}
                className={n.name === sel ? 'selected' : ''}
                data-mode={n.mode}
                data-active={n.active ? 'yes' : 'no'}
                tabIndex={0}
                onClick={() => setSel(n.name)}
                onKeyDown={(e) => e.key === 'Delete' && !n.isDefault && setSub({ kind: 'delete', net: n })}
              >
                <td>
                  <strong>{n.name}</strong>
                  {n.engineProblem && <small className="hint"> VMs on it can't start yet: {n.engineProblem}.</small>}
                  {n.forwards.length > 0 && <small className="hint"> {n.forwards.length} port forward{n.forwards.length === 1 ? '' : 's'}</small>}
                </td>
                <td>{MODE_LABEL[n.mode]}</td>
                <td>
                  {n.ipv4.address}/{n.ipv4.prefix}
                  <small className="hint"> gateway {n.ipv4.gateway}</small>
                </td>
                <td>
                  {n.ipv4.dhcpStart} – {n.ipv4.dhcpEnd}
                </td>
                <td>
                  <span className={`net-state ${n.active ? 'on' : 'off'}`}>{n.active ? 'Active' : 'Inactive'}</span>
                </td>
                <td>
                  <input
                    type="checkbox"
                    aria-label={`Autostart ${n.name}`}
                    checked={n.autostart}
                    onClick={(e) => e.stopPropagation()}
                    onChange={(e) => void act(() => getClient().call('network.autostart', { name: n.name, autostart: e.target.checked }))}
                  />
                </td>
                <td>{n.usedBy.map((u) => `${u.name}${u.running ? ' (running)' : ''}`).join(', ') || '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
        <p className="hint">
          A NAT network gives each VM on it its own user-mode NAT with these addresses: the VM reaches the outside and the host (at the gateway address), and
          port forwards reach the VM; VMs on one NAT network do not see each other. Isolated networks are kept for when the engine has its switch.
        </p>
      </div>
      {sub?.kind === 'new' && <NetworkDialog nets={nets ?? []} onClose={() => setSub(undefined)} onDone={(n) => (setSub(undefined), setSel(n.name), void reload())} />}
      {sub?.kind === 'edit' && <NetworkDialog nets={nets ?? []} current={sub.net} onClose={() => setSub(undefined)} onDone={(n) => (setSub(undefined), setSel(n.name), void reload())} />}
      {sub?.kind === 'delete' && (
        <DeleteNetworkDialog net={sub.net} onClose={() => setSub(undefined)} onDone={() => (setSub(undefined), setSel('default'), void reload())} />
      )}
    </Modal>
  );
}

/** A free /24 for a new network's suggestion: 192.168.100.0, .101.0, ... */
function freeSubnet(nets: NetworkSummary[]): string {
  for (let i = 100; i < 255; i++) {
    const a = `192.168.${i}.`;
    if (!nets.some((n) => n.ipv4.address.startsWith(a))) return `${a}0`;
  }
  return '10.10.0.0';
}

function NetworkDialog({ nets, current, onClose, onDone }: { nets: NetworkSummary[]; current?: NetworkSummary; onClose: () => void; onDone: (n: NetworkSummary) => void }) {
  const [def, setDef] = useState<NetworkDef>(() =>
    current
      ? { name: current.name, mode: current.mode, ipv4: current.ipv4, forwards: current.forwards, autostart: current.autostart, ...(current.bridge ? { bridge: current.bridge } : {}) }
      : { name: `network${nets.length}`, mode: 'isolated', ipv4: defaultIpv4(freeSubnet(nets), 24), forwards: [], autostart: true },
  );
  const [start, setStart] = useState(true);
  const [errors, setErrors] = useState<NetworkFieldError[]>([]);
  const [general, setGeneral] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const err = (f: string) => errors.filter((e) => e.field === f).map((e) => e.message).join(' ') || undefined;
  const ip = def.ipv4;
  const setIp = (p: Partial<NetworkDef['ipv4']>) => setDef({ ...def, ipv4: { ...ip, ...p } });
  const setFwd = (i: number, p: Partial<PortForward>) => setDef({ ...def, forwards: def.forwards.map((f, j) => (j === i ? { ...f, ...p } : f)) });
  const vms = [...new Set(nets.flatMap((n) => n.usedBy.map((u) => u.name)))].sort();

  const save = async () => {
    setBusy(true);
    setGeneral(undefined);
    try {
      const r = current ? await getClient().call('network.edit', { name: current.name, def }) : await getClient().call('network.define', { def, start });
      setErrors(r.errors);
      if (!r.errors.length && r.network) onDone(r.network);
    } catch (e) {
      setGeneral((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Modal
      title={current ? `Edit network ${current.name}` : 'New Network'}
      wide
      onClose={onClose}
      footer={
        <DialogButtons
          onCancel={onClose}
          onAction={() => void save()}
          label={current ? 'Save' : 'Create Network'}
          disabled={busy}
          left={
            !current && (
              <label className="check">
                <input type="checkbox" checked={start} onChange={(e) => setStart(e.target.checked)} /> Start it now
              </label>
            )
          }
        />
      }
    >
      <ErrorBanner error={general} />
      <ErrorBanner error={err('forwards')} />
      <form className="net-form" onSubmit={(e) => (e.preventDefault(), void save())}>
        <div className="row2">
          <Field id="net-name" label="Name" error={err('name')}>
            <input id="net-name" value={def.name} disabled={current?.isDefault} onChange={(e) => setDef({ ...def, name: e.target.value })} aria-invalid={!!err('name')} spellCheck={false} />
          </Field>
          <Field id="net-mode" label="Mode" error={err('mode')}>
            <select
              id="net-mode"
              value={def.mode}
              onChange={(e) => {
                const mode = e.target.value as NetworkDef['mode'];
                const { bridge: _b, ...rest } = def;
                setDef(mode === 'bridge' ? { ...rest, mode, bridge: def.bridge ?? 'br0', forwards: [] } : { ...rest, mode });
              }}>
              <option value="nat">NAT (user-mode, to the outside and the host)</option>
              <option value="isolated">Isolated (VMs on it reach each other only)</option>
              <option value="bridge">Bridge (a host bridge; needs CAP_NET_ADMIN)</option>
            </select>
          </Field>
        </div>
        {def.mode === 'bridge' && (
          <Field id="net-bridge" label="Host bridge" error={err('bridge')} hint="Each NIC gets a TAP device on this bridge; the LAN behind it gives the addresses (the IPv4 settings below are not used).">
            <input id="net-bridge" value={def.bridge ?? ''} aria-invalid={!!err('bridge')} onChange={(e) => setDef({ ...def, bridge: e.target.value })} spellCheck={false} />
          </Field>
        )}
        <div className="row2">
          <Field id="net-address" label="Network address" error={err('ipv4.address')}>
            <input
              id="net-address"
              value={ip.address}
              aria-invalid={!!err('ipv4.address')}
              onChange={(e) => setDef({ ...def, ipv4: current ? { ...ip, address: e.target.value } : defaultIpv4(e.target.value.trim(), ip.prefix) })}
              spellCheck={false}
            />
          </Field>
          <Field id="net-prefix" label="Prefix length" error={err('ipv4.prefix')}>
            <input id="net-prefix" type="number" min={8} max={29} value={ip.prefix} aria-invalid={!!err('ipv4.prefix')} onChange={(e) => setIp({ prefix: Number(e.target.value) })} />
          </Field>
        </div>
        <div className="row2">
          <Field id="net-gateway" label="Gateway" error={err('ipv4.gateway')}>
            <input id="net-gateway" value={ip.gateway} aria-invalid={!!err('ipv4.gateway')} onChange={(e) => setIp({ gateway: e.target.value })} spellCheck={false} />
          </Field>
          <Field id="net-dns" label="DNS server" error={err('ipv4.dns')}>
            <input id="net-dns" value={ip.dns} aria-invalid={!!err('ipv4.dns')} onChange={(e) => setIp({ dns: e.target.value })} spellCheck={false} />
          </Field>
        </div>
        <div className="row2">
          <Field id="net-dhcp-start" label="DHCP start" error={err('ipv4.dhcpStart')} hint={def.mode === 'isolated' ? 'Vireo\'s DHCP on the switch hands out this range; the gateway is its own address.' : 'The NAT hands out up to 16 leases from here.'}>
            <input id="net-dhcp-start" value={ip.dhcpStart} aria-invalid={!!err('ipv4.dhcpStart')} onChange={(e) => setIp({ dhcpStart: e.target.value })} spellCheck={false} />
          </Field>
          <Field id="net-dhcp-end" label="DHCP end" error={err('ipv4.dhcpEnd')}>
            <input id="net-dhcp-end" value={ip.dhcpEnd} aria-invalid={!!err('ipv4.dhcpEnd')} onChange={(e) => setIp({ dhcpEnd: e.target.value })} spellCheck={false} />
          </Field>
        </div>
        <label className="check">
          <input type="checkbox" checked={def.autostart} onChange={(e) => setDef({ ...def, autostart: e.target.checked })} /> Start when Vireo starts (autostart)
        </label>
        {def.mode === 'nat' && (
          <fieldset className="forwards">
            <legend>Port forwards (host → guest)</legend>
            {def.forwards.map((f, i) => (
              <div className="fwd-row" key={i} role="group" aria-label={`Forward ${i + 1}`}>
                <select aria-label="Protocol" value={f.proto} onChange={(e) => setFwd(i, { proto: e.target.value as 'tcp' | 'udp' })}>
                  <option value="tcp">TCP</option>
                  <option value="udp">UDP</option>
                </select>
                <Field id={`fwd-${i}-haddr`} label="Host address" error={err(`forwards.${i}.hostAddress`)}>
                  <input id={`fwd-${i}-haddr`} value={f.hostAddress} placeholder="all" onChange={(e) => setFwd(i, { hostAddress: e.target.value })} spellCheck={false} />
                </Field>
                <Field id={`fwd-${i}-hport`} label="Host port" error={err(`forwards.${i}.hostPort`)}>
                  <input id={`fwd-${i}-hport`} type="number" min={1} max={65535} value={f.hostPort} onChange={(e) => setFwd(i, { hostPort: Number(e.target.value) })} />
                </Field>
                <Field id={`fwd-${i}-gport`} label="Guest port">
                  <input id={`fwd-${i}-gport`} type="number" min={1} max={65535} value={f.guestPort} onChange={(e) => setFwd(i, { guestPort: Number(e.target.value) })} />
                </Field>
                <Field id={`fwd-${i}-vm`} label="To VM" error={err(`forwards.${i}.vm`) ?? err(`forwards.${i}.guestAddress`)}>
                  <select id={`fwd-${i}-vm`} value={f.vm ?? ''} onChange={(e) => setFwd(i, { vm: e.target.value || undefined })}>
                    <option value="">Whichever VM runs on it</option>
                    {vms.map((v) => (
                      <option key={v} value={v}>
                        {v}
                      </option>
                    ))}
                  </select>
                </Field>
                <button type="button" onClick={() => setDef({ ...def, forwards: def.forwards.filter((_, j) => j !== i) })}>
                  Remove
                </button>
              </div>
            ))}
            <button type="button" onClick={() => setDef({ ...def, forwards: [...def.forwards, { proto: 'tcp', hostAddress: '127.0.0.1', hostPort: 2222, guestPort: 22 }] })}>
              Add Forward
            </button>
          </fieldset>
        )}
        <button type="submit" hidden />
      </form>
    </Modal>
  );
}

function DeleteNetworkDialog({ net, onClose, onDone }: { net: NetworkSummary; onClose: () => void; onDone: () => void }) {
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const go = async () => {
    setBusy(true);
    try {
      await getClient().call('network.undefine', { name: net.name });
      onDone();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal
      title={`Delete network ${net.name}`}
      onClose={onClose}
      footer={<DialogButtons onCancel={onClose} onAction={() => void go()} label="Delete" danger disabled={busy || !!error} />}
    >
      <p>
        Delete the network <strong>{net.name}</strong> ({net.ipv4.address}/{net.ipv4.prefix})? VMs keep their definitions; none may still have a NIC on it.
      </p>
      <ErrorBanner error={error} />
    </Modal>
  );
}

// A VM definition becomes the engine's MachineConfig here, and only here.
import type { MachineConfig, NicConfig } from '../common/engine-api';
import type { VmDefinition } from '../common/contracts/vm';
import type { NetworkDef } from '../common/contracts/network';
import { defaultNetwork, engineProblem, hostfwdsFor } from './networks';

/** Without a network service (tests, tools): only the standard `default` NAT network. */
const standardNetworks = (name: string): NetworkDef | undefined => (name === 'default' ? defaultNetwork() : undefined);

export interface FirmwarePaths {
  bios: string;
  vgaBios: string;
}

export function firmwarePaths(env: NodeJS.ProcessEnv = process.env): FirmwarePaths {
  return {
    bios: env.VIREO_BIOS ?? '/usr/share/seabios/bios.bin',
    vgaBios: env.VIREO_VGABIOS ?? '/usr/share/seabios/vgabios-stdvga.bin',
  };
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Each NIC on a NAT network becomes a card on the engine's user-mode NAT with the
 * network's addresses and (on the VM's first NIC there) its port forwards; a NIC
 * on an isolated network a port of that network's switch (`switchSocket` gives
 * its socket, undefined when the switch is not running); a NIC on a bridged
 * network a TAP on the host bridge. A NIC the engine can't carry (unknown
 * network, isolated without a running switch) is an error naming it, never a
 * card without a backend.
 */
export function toMachineConfig(
  def: VmDefinition,
  fw: FirmwarePaths = firmwarePaths(),
  networks: (name: string) => NetworkDef | undefined = standardNetworks,
  switchSocket: (name: string) => string | undefined = () => undefined,
): MachineConfig {
  const cfg: MachineConfig = {
    memoryMiB: def.memoryMiB,
    cpus: def.cpus,
    // A USB tablet on the PC (virt-manager adds one to every VM): the console's pointer without a grab.
    usbTablet: true,
    // The size the display's EDID offers as preferred (the engine's default is 1024x768).
    ...(def.display ? { display: { width: def.display.width, height: def.display.height } } : {}),
    // The definition's UUID is the machine's (SMBIOS type 1, as libvirt does).
    ...(UUID_RE.test(def.uuid) ? { uuid: def.uuid } : {}),
    // A CD-ROM drive with no disc is left out (the engine has no empty drive yet).
    disks: def.disks.filter((d) => d.path !== '').map((d) => ({
      path: d.path,
      format: d.format,
      bus: d.bus,
      media: d.media,
      ...(d.readOnly || d.media === 'cdrom' ? { readOnly: true } : {}),
    })),
  };
  if (def.nics.length) {
    const forwarded = new Set<string>();
    cfg.nics = def.nics.map((nic, i): NicConfig => {
      const net = networks(nic.network);
      if (!net) throw new Error(`NIC ${i + 1} of ${def.name}: no network named '${nic.network}'`);
      const why = engineProblem(net.mode);
      if (why) throw new Error(`NIC ${i + 1} of ${def.name} is on ${net.mode} network '${net.name}': ${why}`);
      if (net.mode === 'isolated') {
        const socket = switchSocket(net.name);
        if (!socket) throw new Error(`NIC ${i + 1} of ${def.name} is on isolated network '${net.name}', whose switch is not running: start the network under Networks`);
        return { model: nic.model, mac: nic.mac, backend: 'switch', socket };
      }
      if (net.mode === 'bridge') {
        if (!net.bridge) throw new Error(`NIC ${i + 1} of ${def.name} is on bridged network '${net.name}', which names no host bridge`);
        return { model: nic.model, mac: nic.mac, backend: 'tap', bridge: net.bridge };
      }
      const ip = net.ipv4;
      const hostfwd = forwarded.has(net.name) ? [] : hostfwdsFor(net, def.name);
      forwarded.add(net.name);
      return {
        model: nic.model,
        mac: nic.mac,
        backend: 'user',
        net: `${ip.address}/${ip.prefix}`,
        host: ip.gateway,
        dhcpStart: ip.dhcpStart,
        dns: ip.dns,
        ...(hostfwd.length ? { hostfwd } : {}),
      };
    });
  }
  if (def.serial?.logFile) cfg.serialFile = def.serial.logFile;
  if (def.boot.kind === 'firmware') {
    cfg.bios = fw.bios;
    cfg.vgaBios = fw.vgaBios;
    cfg.bootOrder = def.boot.order;
    if (def.boot.menu) cfg.bootMenu = true;
    if (def.boot.menu && def.boot.menuTimeoutMs !== undefined) cfg.bootMenuTimeout = def.boot.menuTimeoutMs;
  } else if (def.boot.flatAddress !== undefined) {
    cfg.flat = def.boot.kernel;
    cfg.flatAddress = def.boot.flatAddress;
  } else {
    // Direct kernel boot runs on the same PC as a firmware boot (display,
    // disks, input): SeaBIOS, then Vireo's kernel-boot option ROM.
    cfg.bios = fw.bios;
    cfg.vgaBios = fw.vgaBios;
    cfg.kernel = def.boot.kernel;
    if (def.boot.initrd) cfg.initrd = def.boot.initrd;
    if (def.boot.append) cfg.append = def.boot.append;
  }
  return cfg;
}

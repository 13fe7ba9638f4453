// A VM's network interfaces as virsh's domifaddr / domifstat / domif-setlink see
// them: the definition's NICs, and while it runs their link, counters and the
// addresses the network's DHCP server leased to their MACs (the isolated switch's
// own server; on NAT, libslirp's, watched by the engine). No guest agent: an
// address the guest set statically is not known.
import * as s from './schema';

export const IfaceAddressSchema = s.object({
  ip: s.string(),
  prefix: s.number({ int: true }),
  /** Where it is known from: the network's DHCP lease (virsh domifaddr --source lease). */
  source: s.literal('lease'),
  /** Seconds since the epoch. */
  expires: s.number(),
  hostname: s.optional(s.string()),
});
export type IfaceAddress = s.Infer<typeof IfaceAddressSchema>;

export const IfaceCountersSchema = s.object({
  rxPackets: s.number(),
  rxBytes: s.number(),
  rxDropped: s.number(),
  txPackets: s.number(),
  txBytes: s.number(),
  txDropped: s.number(),
  /** Frames or rings the guest got wrong (malformed frames + bad receive buffers): virsh's rx/tx errs. */
  errors: s.number(),
});
export type IfaceCounters = s.Infer<typeof IfaceCountersSchema>;

export const VmInterfaceSchema = s.object({
  /** net0, net1, ... in definition order (what the verbs take, as does the MAC). */
  name: s.string(),
  mac: s.string(),
  model: s.string(),
  network: s.string(),
  /** The network's mode, when it still exists. */
  mode: s.optional(s.enums(['nat', 'isolated', 'bridge'] as const)),
  /** Running VMs only: the cable plugged in. */
  linkUp: s.optional(s.boolean()),
  counters: s.optional(IfaceCountersSchema),
  addresses: s.array(IfaceAddressSchema),
});
export type VmInterface = s.Infer<typeof VmInterfaceSchema>;

const id = s.string({ min: 1, max: 64 });

export const interfacesApi = {
  /** virsh domifaddr / domifstat / domif-getlink: every NIC; link, counters and addresses while running. */
  'vm.interfaces': { params: s.object({ uuid: id }), result: s.object({ running: s.boolean(), interfaces: s.array(VmInterfaceSchema) }) },
  /** virsh domif-setlink: plug (up) or pull the cable of a running VM's NIC, named net<N> or by MAC; the guest sees it. */
  'vm.setLink': { params: s.object({ uuid: id, iface: s.string({ min: 1, max: 32 }), up: s.boolean() }), result: VmInterfaceSchema },
} as const;

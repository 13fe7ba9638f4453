// vm.exportXml / vm.importXml: libvirt domain XML out of and into the VM store
// (virsh dumpxml / virsh define). Composed in app.ts.
import type { Params, Result } from '../../common/contracts/api';
import { type DetailsFieldError, type VmDefinition, VmDefinitionSchema, nameProblem } from '../../common/contracts/vm';
import { ValidationError } from '../../common/contracts/schema';
import type { OsInfoDb } from '../osinfo/db';
import type { VmStore } from '../vm-store';
import { DomainXmlError, type Ignored, fromDomainXml, toDomainXml } from './domain-xml';

export class LibvirtXml {
  constructor(private readonly deps: { store: VmStore; osinfo: OsInfoDb; nameBusy: (name: string) => boolean }) {}

  export(def: VmDefinition): Result<'vm.exportXml'> {
    const url = this.deps.osinfo.byId(def.os)?.osinfoUrl;
    return { xml: toDomainXml(def, url ? { osinfoUrl: url } : {}), fileName: `${def.name}.xml` };
  }

  /** virsh edit: what `xml` makes of the existing VM `def` (same UUID; its MACs may stay its own). */
  planUpdate(def: VmDefinition, xml: string): { errors: DetailsFieldError[]; def?: VmDefinition; ignored: Ignored[] } {
    let parsed;
    try {
      parsed = fromDomainXml(xml, { osFromOsinfo: (u) => this.deps.osinfo.byUrl(u)?.id });
    } catch (e) {
      if (e instanceof DomainXmlError) return { errors: [{ field: 'xml', message: e.message }], ignored: [] };
      throw e;
    }
    const ignored = [...parsed.ignored];
    if (parsed.vm.uuid !== def.uuid) return { errors: [{ field: 'xml', message: `/domain/uuid: ${parsed.vm.uuid} is not this VM's UUID (${def.uuid}): a VM's UUID cannot change` }], ignored };
    const next: VmDefinition = { ...parsed.vm, createdAt: def.createdAt };
    if (!this.deps.osinfo.knows(next.os)) {
      ignored.push({ path: '/domain/metadata', reason: `OS '${next.os}' is not known here: kept ${def.os}` });
      next.os = def.os;
    }
    return { errors: [], def: next, ignored };
  }

  /** The definition `xml` would make, or the problems (by field), plus what was ignored. */
  plan({ xml, name }: Params<'vm.importXml'>): { errors: DetailsFieldError[]; def?: VmDefinition; ignored: Ignored[] } {
    let parsed;
    try {
      parsed = fromDomainXml(xml, { osFromOsinfo: (u) => this.deps.osinfo.byUrl(u)?.id });
    } catch (e) {
      if (e instanceof DomainXmlError) return { errors: [{ field: 'xml', message: e.message }], ignored: [] };
      throw e;
    }
    const { store } = this.deps;
    const ignored = [...parsed.ignored];
    const def: VmDefinition = { ...parsed.vm, createdAt: new Date().toISOString() };
    if (name !== undefined && name !== def.name) def.name = name.trim();
    const errors: DetailsFieldError[] = [];
    const np = nameProblem(def.name);
    if (np) errors.push({ field: 'name', message: np });
    else if (store.byName(def.name) || this.deps.nameBusy(def.name)) errors.push({ field: 'name', message: `A VM named '${def.name}' already exists: import it under another name.` });
    if (def.uuid === '00000000-0000-0000-0000-000000000000' || store.get(def.uuid)) {
      if (store.get(def.uuid)) ignored.push({ path: '/domain/uuid', reason: `${def.uuid} is ${store.get(def.uuid)!.name}'s UUID: a new one was made` });
      def.uuid = store.newUuid();
    }
    const taken = new Set<string>();
    for (const other of store.list()) for (const n of other.nics) taken.add(n.mac);
    def.nics = def.nics.map((n, i) => {
      if (!taken.has(n.mac)) return taken.add(n.mac), n;
      const mac = store.newMac(taken);
      taken.add(mac);
      ignored.push({ path: `/domain/devices/interface${def.nics.length > 1 ? `[${i + 1}]` : ''}/mac`, reason: `${n.mac} is used by another VM: ${mac} was given instead` });
      return { ...n, mac };
    });
    if (!this.deps.osinfo.knows(def.os)) {
      ignored.push({ path: '/domain/metadata', reason: `OS '${def.os}' is not known here: generic` });
      def.os = 'generic';
    }
    if (errors.length) return { errors, ignored };
    try {
      return { errors, def: VmDefinitionSchema.parse(def), ignored };
    } catch (e) {
      if (e instanceof ValidationError) return { errors: [{ field: 'xml', message: e.message }], ignored };
      throw e;
    }
  }
}

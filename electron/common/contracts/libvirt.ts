// libvirt domain XML export and import (docs/libvirt-xml.md): what the UI sees and sends.
import * as s from './schema';
import { DetailsFieldErrorSchema, VmSummarySchema } from './vm';

export const IgnoredSchema = s.object({ path: s.string(), reason: s.string() });

export const libvirtApi = {
  /** The VM as libvirt domain XML (what `virsh define` takes), with a file name for it. */
  'vm.exportXml': { params: s.object({ uuid: s.string({ min: 1, max: 64 }) }), result: s.object({ xml: s.string(), fileName: s.string() }) },
  /**
   * Defines a new VM from libvirt domain XML (virsh define). `name` replaces the XML's
   * name. Problems come back as data on a field: 'xml' (unreadable or unsupported, with
   * the element's path) or 'name' (taken or invalid). `ignored`: every element or
   * attribute not taken over, by path, with why. A UUID or MAC another VM has is
   * replaced by a new one (listed in `ignored` too). dryRun: check only.
   */
  'vm.importXml': {
    params: s.object({ xml: s.string({ max: 1024 * 1024 }), name: s.optional(s.string({ max: 256 })), dryRun: s.optional(s.boolean()) }),
    result: s.object({ errors: s.array(DetailsFieldErrorSchema), vm: s.optional(VmSummarySchema), ignored: s.array(IgnoredSchema) }),
  },
} as const;

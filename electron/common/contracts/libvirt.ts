// libvirt domain XML export and import (docs/libvirt-xml.md): what the UI sees and sends.
import * as s from './schema';
import { DetailsFieldErrorSchema, FieldErrorSchema, NewVmRequestSchema, VmSummarySchema } from './vm';

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
  /**
   * virt-install --print-xml: the domain XML a New VM request would define, checked like
   * vm.create (field problems come back as data); nothing is created. A disk to be made
   * is named by the path vm.create would give it now.
   */
  'vm.createXml': {
    params: NewVmRequestSchema,
    result: s.object({ errors: s.array(FieldErrorSchema), xml: s.optional(s.string()) }),
  },
  /**
   * virsh edit: replaces a VM's definition from domain XML. The XML's UUID must be the
   * VM's; the result goes through vm.update's checks (field errors as data, 'xml' for
   * what cannot be read), and on a running VM applies at its next start (`nextBoot`).
   * `ignored` as for vm.importXml.
   */
  'vm.updateXml': {
    params: s.object({ uuid: s.string({ min: 1, max: 64 }), xml: s.string({ max: 1024 * 1024 }), dryRun: s.optional(s.boolean()) }),
    result: s.object({ errors: s.array(DetailsFieldErrorSchema), vm: s.optional(VmSummarySchema), nextBoot: s.boolean(), ignored: s.array(IgnoredSchema) }),
  },
} as const;

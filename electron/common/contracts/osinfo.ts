// Operating systems the wizard offers and detects from the install medium (osinfo-db,
// docs/libvirt-xml.md): what the UI sees and sends.
import * as s from './schema';

export const OsEntrySchema = s.object({
  /** Vireo's OS id: an osinfo-db short-id (debian11, win11) or a built-in one (generic, linux). */
  id: s.string({ min: 1, max: 64 }),
  name: s.string(),
  version: s.optional(s.string()),
  /** osinfo-db's family: linux, winnt, freebsd, … ('other' for the built-in generic ones). */
  family: s.string(),
  /** Wizard defaults: the OS's recommended RAM and storage (else its minimum), and vCPUs. */
  memoryMiB: s.number(),
  minMemoryMiB: s.optional(s.number()),
  diskGiB: s.number(),
  cpus: s.number(),
  /** The OS has virtio drivers (osinfo-db <devices>): the wizard picks virtio-blk / virtio-net. */
  virtioDisk: s.boolean(),
  virtioNet: s.boolean(),
  osinfoUrl: s.optional(s.string()),
  releaseDate: s.optional(s.string()),
});
export type OsEntry = s.Infer<typeof OsEntrySchema>;

export const IsoInfoSchema = s.object({
  volumeId: s.string(),
  systemId: s.string(),
  publisherId: s.string(),
  applicationId: s.string(),
  elTorito: s.boolean(),
  volumeBytes: s.number(),
});

export const OsDetectionSchema = s.object({
  /** The OS found, or null (unknown medium). */
  os: s.nullable(OsEntrySchema),
  /** How: the medium's identifiers matched an osinfo-db rule, or only a guess from the file name. */
  source: s.enums(['medium', 'filename', 'none'] as const),
  /** The sentence the wizard shows, e.g. "Detected: Debian 11 (from the medium's volume label)". */
  message: s.string(),
  /** The medium's ISO 9660 identifiers, or null when it is not an ISO image. */
  iso: s.nullable(IsoInfoSchema),
  /** osinfo-db's version, or null when it is not installed (then only the name-based guess runs). */
  db: s.nullable(s.string()),
});
export type OsDetection = s.Infer<typeof OsDetectionSchema>;

export const osinfoApi = {
  /** Names the OS on an install medium (ISO) from its volume descriptor and osinfo-db. */
  'os.detect': { params: s.object({ path: s.string({ max: 4096 }) }), result: OsDetectionSchema },
  /** The OS list to choose from: built-in choices first, then osinfo-db's, filtered by words. */
  'os.list': { params: s.object({ query: s.optional(s.string({ max: 200 })), limit: s.optional(s.number({ int: true, min: 1, max: 500 })) }), result: s.array(OsEntrySchema) },
} as const;

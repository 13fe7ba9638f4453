// Storage pools and volumes (virt-manager's Connection Details → Storage): what the
// UI sees and sends. Directory pools only; a volume is a file in a pool's directory.
import * as s from './schema';

/** Pool and volume names: a letter or digit, then letters, digits, '.', '_', '-' (no '/', no leading '.'). */
export const POOL_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export const VOLUME_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function volumeNameProblem(name: string): string | null {
  if (name.length === 0) return 'Enter a name.';
  if (name.length > 128) return 'Volume names are at most 128 characters.';
  if (!VOLUME_NAME_PATTERN.test(name)) return 'Use letters, digits, ".", "_" and "-" only, starting with a letter or digit.';
  return null;
}

export const VolumeFormatSchema = s.enums(['qcow2', 'raw'] as const);
export type VolumeFormat = s.Infer<typeof VolumeFormatSchema>;

export const PoolSummarySchema = s.object({
  name: s.string(),
  path: s.string(),
  /** The default pool ($XDG_DATA_HOME/vireo/images): always there, can't be removed. */
  isDefault: s.boolean(),
  /** File system figures of the pool's directory (statfs). */
  capacityBytes: s.number(),
  allocationBytes: s.number(),
  availableBytes: s.number(),
  volumeCount: s.number(),
  /** Why the pool can't be used now (directory missing, unreadable), or null. */
  problem: s.nullable(s.string()),
});
export type PoolSummary = s.Infer<typeof PoolSummarySchema>;

export const VolumeSchema = s.object({
  name: s.string(),
  path: s.string(),
  format: VolumeFormatSchema,
  /** Virtual size (what the guest sees). */
  capacityBytes: s.number(),
  /** Blocks on disk. */
  allocationBytes: s.number(),
  /** Absolute path of the backing file, or null. */
  backing: s.nullable(s.string()),
  backingFormat: s.nullable(s.string()),
  /** VMs whose definition names this file, with whether they run. */
  usedBy: s.array(s.object({ name: s.string(), running: s.boolean() })),
  /** Images (absolute paths) whose backing chain includes this file. */
  backs: s.array(s.string()),
  /** Why the image could not be read (vireo-img info failed), or null. */
  problem: s.nullable(s.string()),
});
export type Volume = s.Infer<typeof VolumeSchema>;

const poolName = s.string({ min: 1, max: 64 });

export const storageApi = {
  'storage.pools': { params: s.object({}), result: s.array(PoolSummarySchema) },
  'storage.poolDefine': {
    params: s.object({ name: s.string({ max: 64 }), path: s.string({ max: 4096 }) }),
    result: PoolSummarySchema,
  },
  /** Forgets a user-defined pool; its files stay. */
  'storage.poolUndefine': { params: s.object({ name: poolName }), result: s.object({}) },
  'storage.volumes': { params: s.object({ pool: poolName }), result: s.array(VolumeSchema) },
  'storage.volumeCreate': {
    params: s.object({
      pool: poolName,
      name: s.string({ max: 256 }),
      format: VolumeFormatSchema,
      capacityBytes: s.number({ int: true, min: 0 }),
      /** An existing image (absolute path) to base the new qcow2 on: a linked overlay. */
      backing: s.optional(s.string({ max: 4096 })),
    }),
    result: VolumeSchema,
  },
  /** Grows a volume (shrinking is refused). */
  /** Outside Vireo's own pool `confirm` must be the volume's full path (a raw grow writes into the file). */
  'storage.volumeResize': {
    // shrink: a smaller capacity is allowed (virsh vol-resize --shrink); the data past it is lost.
    params: s.object({ pool: poolName, name: s.string({ min: 1, max: 256 }), capacityBytes: s.number({ int: true, min: 1 }), shrink: s.optional(s.boolean()), confirm: s.optional(s.string({ max: 4096 })) }),
    result: VolumeSchema,
  },
  /** Outside Vireo's own pool (a user-defined pool can be any directory) `confirm` must be the volume's full path. */
  'storage.volumeDelete': { params: s.object({ pool: poolName, name: s.string({ min: 1, max: 256 }), confirm: s.optional(s.string({ max: 4096 })) }), result: s.object({}) },
} as const;

export const storageEvents = {
  /** A pool's volumes changed (created, resized, deleted, or a clone made a disk in it). */
  'storage.changed': s.object({ pool: s.string() }),
} as const;

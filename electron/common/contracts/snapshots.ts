// VM snapshots (virsh snapshot-create-as / snapshot-list --tree / snapshot-revert /
// snapshot-delete / snapshot-current; the Details page's Snapshots tab). A snapshot is
// an internal qcow2 snapshot of every writable disk, named alike, plus for a VM taken
// while running or paused its whole machine state (RAM, vCPUs, devices) in a state
// file beside the metadata. docs/state.md, "Snapshots".
import * as s from './schema';
import { VmDefinitionSchema } from './vm';

export const SNAPSHOT_NAME_MAX = 64;

/** Why `name` can't name a snapshot (shape only; uniqueness is the service's), or null. */
export function snapshotNameProblem(name: string): string | null {
  if (name.trim().length === 0) return 'Enter a name.';
  if (name.length > SNAPSHOT_NAME_MAX) return `Snapshot names are at most ${SNAPSHOT_NAME_MAX} characters.`;
  if (name.includes('/')) return 'Snapshot names cannot contain "/".';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'Snapshot names cannot contain control characters.';
  if (name !== name.trim()) return 'Snapshot names cannot start or end with a space.';
  return null;
}

export const SnapshotKindSchema = s.enums(['disk', 'disk+ram'] as const);
export type SnapshotKind = s.Infer<typeof SnapshotKindSchema>;

export const SnapshotSchema = s.object({
  name: s.string({ max: 1024 }),
  description: s.string({ max: 4096 }),
  /** ISO 8601. */
  createdAt: s.string({ max: 64 }),
  /** The snapshot this one was taken on top of (the current one then), or null for a root. */
  parent: s.nullable(s.string({ max: 1024 })),
  children: s.array(s.string({ max: 1024 })),
  /** 'disk+ram': taken running or paused, a revert resumes the machine; 'disk': taken shut off (or made outside Vireo). */
  kind: SnapshotKindSchema,
  /** The VM's state when it was taken (virsh's snapshot-list "State"). */
  state: s.enums(['running', 'paused', 'shutoff'] as const),
  /** The VM was last reverted to, or taken at, this snapshot. */
  current: s.boolean(),
  /** Found only on the disks (qemu-img snapshot -c, or made outside Vireo): disk-only, no definition kept. */
  external: s.optional(s.boolean()),
});
export type Snapshot = s.Infer<typeof SnapshotSchema>;

/** What the service keeps per snapshot (snapshots/<uuid>/snapshots.json). */
export const SnapshotRecordSchema = s.object({
  name: s.string({ min: 1, max: SNAPSHOT_NAME_MAX }),
  description: s.string({ max: 4096 }),
  createdAt: s.string({ max: 64 }),
  parent: s.nullable(s.string({ max: SNAPSHOT_NAME_MAX })),
  kind: SnapshotKindSchema,
  state: s.enums(['running', 'paused', 'shutoff'] as const),
  /** The state file's name in the VM's snapshot directory ('disk+ram' only). */
  stateFile: s.optional(s.string({ pattern: /^[0-9a-f]{16}\.vstate$/ })),
  /** The VM's definition when it was taken: a revert restores its hardware. */
  definition: VmDefinitionSchema,
});
export type SnapshotRecord = s.Infer<typeof SnapshotRecordSchema>;

export const SnapshotIndexSchema = s.object({
  version: s.literal(1),
  current: s.nullable(s.string({ max: SNAPSHOT_NAME_MAX })),
  snapshots: s.array(SnapshotRecordSchema, { max: 1024 }),
});
export type SnapshotIndex = s.Infer<typeof SnapshotIndexSchema>;

export const SnapshotFieldErrorSchema = s.object({ field: s.enums(['name', 'description'] as const), message: s.string() });
export type SnapshotFieldError = s.Infer<typeof SnapshotFieldErrorSchema>;

const id = s.string({ min: 1, max: 64 });
const snapName = s.string({ max: 1024 });

export const snapshotsApi = {
  /**
   * virsh snapshot-list (--tree): every snapshot, parents before children, with the
   * current one; `problem` says why this VM can't take snapshots now (raw disks), or null.
   */
  'snapshot.list': {
    params: s.object({ uuid: id }),
    result: s.object({ snapshots: s.array(SnapshotSchema), current: s.nullable(s.string()), problem: s.nullable(s.string()) }),
  },
  /**
   * virsh snapshot-create-as: a running or paused VM → disk + RAM (it pauses only for the
   * capture); a shut-off VM → disk only. Name problems come back as field errors.
   */
  'snapshot.create': {
    params: s.object({ uuid: id, name: snapName, description: s.optional(s.string({ max: 8192 })) }),
    result: s.object({ errors: s.array(SnapshotFieldErrorSchema), snapshot: s.optional(SnapshotSchema) }),
  },
  /**
   * virsh snapshot-revert: the disks go back to the snapshot, the definition to its
   * hardware, and a disk + RAM snapshot starts the VM where it was. A running, paused or
   * saved VM is refused unless `force` (the UI asked): it is forced off (its saved state
   * discarded) first. `started`: the VM runs from the snapshot's RAM.
   */
  'snapshot.revert': {
    params: s.object({ uuid: id, name: snapName, force: s.optional(s.boolean()) }),
    result: s.object({ started: s.boolean() }),
  },
  /** virsh snapshot-delete: the disks' snapshot and the state file go; children move up to its parent. Never a disk. */
  'snapshot.delete': { params: s.object({ uuid: id, name: snapName }), result: s.object({}) },
} as const;

export const snapshotEvents = {
  /** A VM's snapshots changed (taken, reverted to, deleted). */
  'snapshot.changed': s.object({ uuid: id }),
} as const;

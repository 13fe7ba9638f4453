// osinfo-db (Debian `osinfo-db`, /usr/share/osinfo): the OS list, each OS's resources
// and device support, and its install media's ISO identifier rules, loaded lazily
// once and indexed. Detection follows libosinfo: every <iso> field the entry states
// must match (GLib regex, unanchored, case-sensitive) the medium's field.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { OsEntry } from '../../common/contracts/osinfo';
import { OS_CHOICES } from '../../common/contracts/vm';
import { type XmlElement, parseXml } from '../libvirt/xml';
import type { IsoInfo } from './iso';

export const OSINFO_DIR = '/usr/share/osinfo';
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

interface MediaRule {
  arch: string;
  volumeId?: RegExp;
  systemId?: RegExp;
  publisherId?: RegExp;
  applicationId?: RegExp;
}

interface Resources {
  minRam?: number;
  recRam?: number;
  minStorage?: number;
  recStorage?: number;
  minCpus?: number;
  recCpus?: number;
}

interface RawOs {
  url: string;
  shortIds: string[];
  name: string;
  version?: string;
  family?: string;
  distro?: string;
  releaseDate?: string;
  eolDate?: string;
  resources: Resources;
  devices: Set<string>;
  parents: string[];
  media: MediaRule[];
}

export interface MediaMatch {
  os: OsEntry;
  /** Which identifiers matched (volume-id, publisher-id, …). */
  fields: string[];
}

const VIRTIO_BLK = ['http://pcisig.com/pci/1af4/1001', 'http://pcisig.com/pci/1af4/1042'];
const VIRTIO_NET = ['http://pcisig.com/pci/1af4/1000', 'http://pcisig.com/pci/1af4/1041'];

/** GLib (PCRE) regex → JS; null when JS can't take it (such a rule never matches). */
function regex(src: string | undefined): RegExp | undefined | null {
  if (src === undefined) return undefined;
  try {
    return new RegExp(src);
  } catch {
    return null;
  }
}

const childText = (el: XmlElement, name: string) => el.children.find((c) => c.name === name && !c.attrs.has('xml:lang'))?.text.trim();

function parseOs(el: XmlElement): RawOs {
  const res: Resources = {};
  for (const r of el.children.filter((c) => c.name === 'resources')) {
    const arch = r.attrs.get('arch')?.value ?? 'all';
    if (arch !== 'all' && arch !== 'x86_64') continue;
    const num = (parent: string, n: string) => {
      const p = r.children.find((c) => c.name === parent);
      const t = p && childText(p, n);
      return t && /^\d+$/.test(t) ? Number(t) : undefined;
    };
    // x86_64 figures win over "all".
    const take = <K extends keyof Resources>(k: K, v: number | undefined) => {
      if (v !== undefined && (arch === 'x86_64' || res[k] === undefined)) res[k] = v;
    };
    take('minRam', num('minimum', 'ram'));
    take('recRam', num('recommended', 'ram'));
    take('minStorage', num('minimum', 'storage'));
    take('recStorage', num('recommended', 'storage'));
    take('minCpus', num('minimum', 'n-cpus'));
    take('recCpus', num('recommended', 'n-cpus'));
  }
  const media: MediaRule[] = [];
  for (const m of el.children.filter((c) => c.name === 'media')) {
    const arch = m.attrs.get('arch')?.value ?? 'all';
    if (!['x86_64', 'i686', 'i386', 'all'].includes(arch)) continue;
    for (const iso of m.children.filter((c) => c.name === 'iso')) {
      const rule: MediaRule = { arch };
      const fields = [['volume-id', 'volumeId'], ['system-id', 'systemId'], ['publisher-id', 'publisherId'], ['application-id', 'applicationId']] as const;
      let bad = false;
      for (const [tag, key] of fields) {
        const re = regex(childText(iso, tag));
        if (re === null) bad = true;
        else if (re) rule[key] = re;
      }
      if (!bad && (rule.volumeId || rule.publisherId || rule.applicationId || rule.systemId)) media.push(rule);
    }
  }
  const devices = new Set<string>();
  for (const d of el.children.filter((c) => c.name === 'devices')) for (const dev of d.children) if (dev.name === 'device') devices.add(dev.attrs.get('id')?.value ?? '');
  return {
    url: el.attrs.get('id')?.value ?? '',
    shortIds: el.children.filter((c) => c.name === 'short-id').map((c) => c.text.trim()),
    name: childText(el, 'name') ?? '',
    version: childText(el, 'version'),
    family: childText(el, 'family'),
    distro: childText(el, 'distro'),
    releaseDate: childText(el, 'release-date'),
    eolDate: childText(el, 'eol-date'),
    resources: res,
    devices,
    parents: el.children.filter((c) => c.name === 'derives-from' || c.name === 'upgrades').map((c) => c.attrs.get('id')?.value ?? ''),
    media,
  };
}

/** Wizard defaults for an OS: recommended (else minimum) figures, sane floors, virtio where the OS has drivers. */
function entryOf(os: RawOs, byUrl: Map<string, RawOs>): OsEntry {
  // Resources and devices come from the OS, else from what it derives from / upgrades.
  const chain: RawOs[] = [];
  const seen = new Set<string>();
  const walk = (o: RawOs | undefined) => {
    if (!o || seen.has(o.url) || chain.length > 8) return;
    seen.add(o.url);
    chain.push(o);
    o.parents.forEach((p) => walk(byUrl.get(p)));
  };
  walk(os);
  const pick = (k: keyof Resources) => chain.map((o) => o.resources[k]).find((v) => v !== undefined);
  const devices = new Set(chain.flatMap((o) => [...o.devices]));
  const ram = pick('recRam') ?? pick('minRam');
  const storage = pick('recStorage') ?? pick('minStorage');
  const minRam = pick('minRam');
  return {
    id: os.shortIds[0],
    name: os.name,
    ...(os.version ? { version: os.version } : {}),
    family: os.family ?? 'other',
    memoryMiB: ram ? Math.max(64, Math.round(ram / MiB)) : 1024,
    ...(minRam ? { minMemoryMiB: Math.round(minRam / MiB) } : {}),
    diskGiB: storage ? Math.max(1, Math.round(storage / GiB)) : 10,
    cpus: pick('recCpus') ?? pick('minCpus') ?? 1,
    virtioDisk: VIRTIO_BLK.some((d) => devices.has(d)),
    virtioNet: VIRTIO_NET.some((d) => devices.has(d)),
    osinfoUrl: os.url,
    ...(os.releaseDate ? { releaseDate: os.releaseDate } : {}),
  };
}

/** Vireo's built-in OS list (used where osinfo-db is not installed, and for 'generic'/'linux'). */
export function builtinEntries(): OsEntry[] {
  return OS_CHOICES.map((o) => ({
    id: o.id,
    name: o.label,
    family: o.id === 'generic' || o.id === 'freedos' ? 'other' : 'linux',
    memoryMiB: o.memoryMiB,
    diskGiB: o.diskGiB,
    cpus: 1,
    virtioDisk: false,
    virtioNet: false,
  }));
}

/** The <os> entries of one osinfo-db file; a file this reader can't parse gives none (the rest still works). */
function parseFile(text: string): RawOs[] {
  try {
    return parseXml(text).children.filter((el) => el.name === 'os').map(parseOs);
  } catch {
    return [];
  }
}

export class OsInfoDb {
  private index: { entries: OsEntry[]; byId: Map<string, OsEntry>; byUrl: Map<string, OsEntry>; media: Array<{ os: OsEntry; rule: MediaRule }>; version: string } | null | undefined;
  /** Why the DB could not be read (absent, unreadable), once loaded. */
  problem: string | null = null;

  constructor(readonly dir: string = process.env.VIREO_OSINFO_DIR ?? OSINFO_DIR) {}

  private loading: Promise<void> | undefined;

  /**
   * Loads and indexes the DB without blocking the event loop for long (file by file);
   * the service awaits this before answering. Safe to call often: it loads once.
   */
  ready(): Promise<void> {
    this.loading ??= (async () => {
      if (this.index !== undefined) return;
      const osDir = path.join(this.dir, 'os');
      let files: string[];
      try {
        files = (await fs.promises.readdir(osDir, { recursive: true })).map(String).filter((f) => f.endsWith('.xml'));
      } catch {
        return void this.load(); // absent: load() records why
      }
      const raw: RawOs[] = [];
      for (const f of files) {
        const text = await fs.promises.readFile(path.join(osDir, f), 'utf8').catch(() => null);
        if (text !== null) raw.push(...parseFile(text));
      }
      if (this.index === undefined) this.index = this.build(raw);
    })();
    return this.loading;
  }

  /** The index (loading it synchronously if ready() has not run); null (with `problem` set) when the DB is not there. */
  load(): typeof this.index {
    if (this.index !== undefined) return this.index;
    const osDir = path.join(this.dir, 'os');
    if (!fs.existsSync(osDir)) {
      this.problem = `osinfo-db is not installed (${osDir} is missing; Debian: apt-get install osinfo-db)`;
      return (this.index = null);
    }
    const raw: RawOs[] = [];
    for (const f of fs.readdirSync(osDir, { recursive: true }).map(String).filter((x) => x.endsWith('.xml'))) {
      raw.push(...parseFile(fs.readFileSync(path.join(osDir, f), 'utf8')));
    }
    return (this.index = this.build(raw));
  }

  private build(raw: RawOs[]): NonNullable<typeof this.index> {
    const rawByUrl = new Map(raw.map((o) => [o.url, o]));
    const entries: OsEntry[] = [];
    const media: Array<{ os: OsEntry; rule: MediaRule }> = [];
    for (const o of raw) {
      if (!o.shortIds.length || !o.name) continue;
      const e = entryOf(o, rawByUrl);
      entries.push(e);
      for (const rule of o.media) media.push({ os: e, rule });
    }
    entries.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
    let version = '';
    try {
      version = fs.readFileSync(path.join(this.dir, 'VERSION'), 'utf8').trim();
    } catch {
      /* no VERSION file */
    }
    const index = { entries, byId: new Map<string, OsEntry>(), byUrl: new Map(entries.map((e) => [e.osinfoUrl!, e])), media, version };
    for (const o of raw) {
      const e = index.byUrl.get(o.url);
      if (e) for (const sid of o.shortIds) index.byId.set(sid, e);
    }
    return index;
  }

  get version(): string | null {
    return this.load()?.version ?? null;
  }

  byId(id: string): OsEntry | undefined {
    return this.load()?.byId.get(id) ?? builtinEntries().find((e) => e.id === id);
  }

  byUrl(url: string): OsEntry | undefined {
    return this.load()?.byUrl.get(url);
  }

  /** Whether `id` is an OS Vireo knows (built-in or osinfo-db short-id). */
  knows(id: string): boolean {
    return this.byId(id) !== undefined;
  }

  /** OSes whose name or id contains every word of `query`; built-ins first. Capped at `limit`. */
  search(query: string, limit = 50): OsEntry[] {
    const words = query.toLowerCase().split(/\s+/).filter(Boolean);
    const all = [...builtinEntries(), ...(this.load()?.entries ?? [])];
    const hit = (e: OsEntry) => words.every((w) => e.name.toLowerCase().includes(w) || e.id.toLowerCase().includes(w));
    // Newest first within the DB's part: what people install today is at the top.
    const db = all.slice(builtinEntries().length).filter(hit).sort((a, b) => (b.releaseDate ?? '').localeCompare(a.releaseDate ?? ''));
    return [...all.slice(0, builtinEntries().length).filter(hit), ...db].slice(0, limit);
  }

  /**
   * The OS whose media rules match this ISO, as libosinfo matches: every identifier the
   * rule states must match. Among matches, the rule stating more identifiers wins, then
   * the newer OS.
   */
  matchMedia(iso: IsoInfo): MediaMatch | null {
    const idx = this.load();
    if (!idx) return null;
    let best: MediaMatch | null = null;
    for (const { os, rule } of idx.media) {
      const fields: string[] = [];
      const test = (re: RegExp | undefined, v: string, name: string) => {
        if (!re) return true;
        if (!v || !re.test(v)) return false;
        fields.push(name);
        return true;
      };
      if (
        test(rule.volumeId, iso.volumeId, 'volume-id') &&
        test(rule.systemId, iso.systemId, 'system-id') &&
        test(rule.publisherId, iso.publisherId, 'publisher-id') &&
        test(rule.applicationId, iso.applicationId, 'application-id')
      ) {
        const better =
          !best ||
          fields.length > best.fields.length ||
          (fields.length === best.fields.length && (os.releaseDate ?? '') > (best.os.releaseDate ?? ''));
        if (better) best = { os, fields };
      }
    }
    return best;
  }
}

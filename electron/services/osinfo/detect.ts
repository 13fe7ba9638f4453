// OS detection for the wizard: the medium's ISO identifiers against osinfo-db, else
// (no DB, not an ISO, no rule matches) the name-based guess Vireo made before, said so.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { OsDetection } from '../../common/contracts/osinfo';
import { guessOs } from '../../common/contracts/vm';
import type { OsInfoDb } from './db';
import { readIsoInfo } from './iso';

const FIELD_WORDS: Record<string, string> = {
  'volume-id': 'volume label',
  'publisher-id': 'publisher',
  'application-id': 'application id',
  'system-id': 'system id',
};

export async function detectOs(db: OsInfoDb, file: string): Promise<OsDetection> {
  let iso = null;
  if (path.isAbsolute(file)) {
    try {
      // Regular files only: a FIFO or device would block or read something else.
      if ((await fs.stat(file)).isFile()) iso = await readIsoInfo(file);
    } catch {
      iso = null; // unreadable or missing: the wizard's media field says why
    }
  }
  const idx = db.load();
  const version = idx?.version ?? null;
  if (iso && idx) {
    const m = db.matchMedia(iso);
    if (m) {
      const how = m.fields.map((f) => FIELD_WORDS[f]).join(' and ');
      return { os: m.os, source: 'medium', message: `Detected: ${m.os.name} (from the medium's ${how})`, iso, db: version };
    }
  }
  // The name-based guess (what the wizard did before osinfo-db).
  const guess = guessOs(file);
  const fallback = guess !== 'generic' ? db.byId(guess) ?? null : null;
  const why = !idx ? `${db.problem}` : !iso ? 'the file is not an ISO 9660 image' : `no osinfo-db entry matches its volume label '${iso.volumeId}'`;
  if (fallback) {
    return { os: fallback, source: 'filename', message: `Guessed from the file name: ${fallback.name} (${why})`, iso, db: version };
  }
  return { os: null, source: 'none', message: `Unknown medium: ${why}. Choose the operating system below.`, iso, db: version };
}

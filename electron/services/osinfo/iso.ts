// ISO 9660 volume descriptors: the primary volume descriptor's identifiers (what
// osinfo-db's <media><iso> rules match) and whether an El Torito boot record is there.
import * as fs from 'node:fs/promises';

export interface IsoInfo {
  volumeId: string;
  systemId: string;
  publisherId: string;
  applicationId: string;
  /** An El Torito boot record volume descriptor: the medium is bootable from CD. */
  elTorito: boolean;
  /** Volume space size × logical block size. */
  volumeBytes: number;
}

const SECTOR = 2048;
const text = (b: Buffer, from: number, len: number) => b.toString('latin1', from, from + len).replace(/[\s\0]+$/, '');

/** The ISO's identifiers, or null when the file is not an ISO 9660 image (too short, no CD001). */
export async function readIsoInfo(path: string): Promise<IsoInfo | null> {
  const fh = await fs.open(path, 'r');
  try {
    let pvd: Buffer | null = null;
    let elTorito = false;
    // Descriptors start at sector 16 and end with a terminator (type 255); read at most 32.
    for (let s = 16; s < 48; s++) {
      const b = Buffer.alloc(SECTOR);
      const { bytesRead } = await fh.read(b, 0, SECTOR, s * SECTOR);
      if (bytesRead < SECTOR || b.toString('latin1', 1, 6) !== 'CD001') break;
      const type = b[0];
      if (type === 0 && text(b, 7, 32) === 'EL TORITO SPECIFICATION') elTorito = true;
      if (type === 1 && !pvd) pvd = b;
      if (type === 255) break;
    }
    if (!pvd) return null;
    return {
      systemId: text(pvd, 8, 32),
      volumeId: text(pvd, 40, 32),
      publisherId: text(pvd, 318, 128),
      applicationId: text(pvd, 574, 128),
      elTorito,
      volumeBytes: pvd.readUInt32LE(80) * pvd.readUInt16LE(128),
    };
  } finally {
    await fh.close();
  }
}

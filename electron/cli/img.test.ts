import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { unpackedPath } from './img';

describe('vireo-img in a packaged app', () => {
  it('runs from app.asar.unpacked, since a binary inside the asar archive cannot be executed', () => {
    const inAsar = path.join('/opt/Vireo/resources/app.asar', 'native', 'out', 'core', 'vireo-img');
    expect(unpackedPath(inAsar)).toBe(path.join('/opt/Vireo/resources/app.asar.unpacked', 'native', 'out', 'core', 'vireo-img'));
    const dev = path.join('/home/u/vireo', 'native', 'out', 'core', 'vireo-img');
    expect(unpackedPath(dev)).toBe(dev);
  });
});

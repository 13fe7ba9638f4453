import { describe, expect, it } from 'vitest';
import { releaseKeyFrom, releaseMatch } from './release';

const key = (over: Partial<{ key: string; code: string; ctrlKey: boolean; altKey: boolean; shiftKey: boolean; metaKey: boolean }>) => ({
  key: '', code: '', ctrlKey: false, altKey: false, shiftKey: false, metaKey: false, ...over,
});

describe('release key', () => {
  it('Ctrl+Alt (default): the second of the two ends the capture, either order; Ctrl+Alt+Del does not', () => {
    expect(releaseMatch('ctrl-alt', key({ key: 'Alt', code: 'AltLeft', ctrlKey: true, altKey: true }))).toContain('ControlLeft');
    expect(releaseMatch('ctrl-alt', key({ key: 'Control', code: 'ControlRight', ctrlKey: true, altKey: true }))).toContain('AltLeft');
    expect(releaseMatch('ctrl-alt', key({ key: 'Delete', code: 'Delete', ctrlKey: true, altKey: true }))).toBeNull();
    expect(releaseMatch('ctrl-alt', key({ key: 'Control', code: 'ControlLeft', ctrlKey: true }))).toBeNull();
  });
  it('Ctrl+Alt+G: Ctrl+Alt alone stays with the guest', () => {
    expect(releaseMatch('ctrl-alt-g', key({ key: 'Alt', code: 'AltLeft', ctrlKey: true, altKey: true }))).toBeNull();
    expect(releaseMatch('ctrl-alt-g', key({ key: 'g', code: 'KeyG', ctrlKey: true, altKey: true }))).not.toBeNull();
    expect(releaseMatch('ctrl-alt-g', key({ key: 'g', code: 'KeyG', ctrlKey: true }))).toBeNull();
  });
  it('Right Ctrl: alone, not Left Ctrl, not with Alt', () => {
    expect(releaseMatch('right-ctrl', key({ key: 'Control', code: 'ControlRight', ctrlKey: true }))).not.toBeNull();
    expect(releaseMatch('right-ctrl', key({ key: 'Control', code: 'ControlLeft', ctrlKey: true }))).toBeNull();
    expect(releaseMatch('right-ctrl', key({ key: 'Control', code: 'ControlRight', ctrlKey: true, altKey: true }))).toBeNull();
  });
  it('a stored choice that is not one of them falls back to Ctrl+Alt', () => {
    expect(releaseKeyFrom(null)).toBe('ctrl-alt');
    expect(releaseKeyFrom('right-ctrl')).toBe('right-ctrl');
    expect(releaseKeyFrom('toString')).toBe('ctrl-alt');
  });
});

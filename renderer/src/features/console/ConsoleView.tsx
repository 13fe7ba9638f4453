// The console window: the guest display on a canvas (scale to fit, 1:1, fullscreen),
// keyboard and mouse capture with a visible release key, a send-key menu, a
// screenshot, and the serial console in a tab.
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { COMBOS } from '../../../../electron/common/contracts/stream';
import { MAX_TYPED_CHARS, textToKeyEvents } from '../../../../electron/common/keys';
import type { VmSummary } from '../../../../electron/common/contracts/vm';
import { type ConsoleStream, getClient } from '../../services/client';
import { useVms } from '../../stores/vms';
import { runAction } from '../manager/actions';
import { ScreenPainter, canvasToFramebuffer, wheelNotches } from './paint';
import { RELEASE_KEYS, type ReleaseKey, releaseKeyFrom, releaseMatch } from './release';
import { type SerialSink, SerialTerminal } from './SerialTerminal';

type Scale = 'fit' | '1:1';
const COMBO_LABEL = (c: string) => c.split('-').map((p) => (p.length <= 3 && p !== 'del' ? p.toUpperCase() : p[0]!.toUpperCase() + p.slice(1))).join('+').replace('CTRL', 'Ctrl').replace('ALT', 'Alt').replace('Del', 'Del');

export function ConsoleView({ uuid }: { uuid: string }) {
  const vm = useVms((s) => s.vms[uuid]) as VmSummary | undefined;
  const [tab, setTab] = useState<'display' | 'serial'>('display');
  const [scale, setScale] = useState<Scale>('fit');
  const [captured, setCaptured] = useState(false);
  const [keysOpen, setKeysOpen] = useState(false);
  const [size, setSize] = useState<{ w: number; h: number } | undefined>();
  const [stream, setStream] = useState<ConsoleStream | undefined>();
  const [note, setNote] = useState<string | undefined>();
  // The guest drives the USB tablet (the engine says so in the stream's info):
  // the pointer is sent as absolute positions, no grab needed.
  const [tablet, setTablet] = useState(false);
  // Input the guest did not take since power-on (engine counters in vm.stats): shown
  // next to the display, where the user notices that keys went nowhere.
  const [lost, setLost] = useState<{ keys: number; clicks: number }>({ keys: 0, clicks: 0 });
  // "Resize guest with window" (virt-manager's "Auto resize VM with window"): the display
  // area's size in device pixels becomes the size the guest's display offers as preferred
  // (EDID). A guest picks it up when it probes modes (Linux bochs-drm: xrandr, a new
  // login; GRUB gfxmode=auto at its next start). Off: the VM's own setting (Details → Display).
  const [resizeGuest, setResizeGuest] = useState(() => localStorage.getItem('vireo.resizeGuest') !== 'off');
  const [releaseKey, setReleaseKey] = useState<ReleaseKey>(() => releaseKeyFrom(localStorage.getItem('vireo.releaseKey')));
  const releaseHint = RELEASE_KEYS[releaseKey];
  const canvas = useRef<HTMLCanvasElement>(null);
  const wrap = useRef<HTMLDivElement>(null);
  const serialSink = useRef<SerialSink | undefined>(undefined);
  const frames = useRef(0);
  const wireBytes = useRef(0);
  const pendingAck = useRef(false);
  const live = vm && (vm.state === 'running' || vm.state === 'paused');

  useEffect(() => {
    document.title = vm ? `${vm.name} — Vireo console` : 'Vireo console';
  }, [vm]);

  useEffect(() => {
    if (!live) return setLost({ keys: 0, clicks: 0 });
    return getClient().on('vm.stats', (e) => {
      const p = e.point;
      if (e.uuid !== uuid || !p) return;
      setLost((o) => (o.keys === p.inputDroppedKeys && o.clicks === p.inputMergedClicks ? o : { keys: p.inputDroppedKeys, clicks: p.inputMergedClicks }));
    });
  }, [uuid, live]);

  // One stream per running VM: frames for the canvas, bytes for the terminal.
  useEffect(() => {
    if (!live) return;
    const s = getClient().openStream(uuid);
    const ctxOf = () => canvas.current?.getContext('2d', { alpha: false }) ?? null;
    const painter = new ScreenPainter();
    s.onMessage((m) => {
      if (m.op === 'frame') {
        const c = canvas.current;
        if (!c) return;
        if (c.width !== m.width || c.height !== m.height) {
          c.width = m.width;
          c.height = m.height;
          setSize({ w: m.width, h: m.height });
        }
        const ctx = ctxOf();
        if (ctx) {
          try {
            painter.paint(ctx, m.width, m.height, m.rects);
          } catch (e) {
            // Corrupt pixels: say so and ask for a whole new screen (the stream itself goes on).
            setNote(`display: ${(e as Error).message}`);
            s.send({ op: 'fullFrame' });
          }
        }
        frames.current++;
        c.dataset.frames = String(frames.current);
        wireBytes.current += m.bytes;
        c.dataset.wireBytes = String(wireBytes.current);
        // Ack on the next animation frame: the engine never runs ahead of what we can show.
        if (!pendingAck.current) {
          pendingAck.current = true;
          requestAnimationFrame(() => {
            pendingAck.current = false;
            s.send({ op: 'ackFrame' });
          });
        } else s.send({ op: 'ackFrame' });
      } else if (m.op === 'serial') {
        serialSink.current?.write(m.data);
      } else if (m.op === 'info') {
        if (m.info.message) setNote(m.info.message);
        if (typeof m.info.tablet === 'boolean') setTablet(m.info.tablet);
      }
    });
    s.onClose((why) => why && why !== 'closed' && setNote(why));
    s.send({ op: 'subscribe', frames: true, serial: true });
    setStream(s);
    return () => {
      s.close();
      setStream(undefined);
      setTablet(false);
    };
  }, [uuid, live]);

  useEffect(() => {
    if (canvas.current) canvas.current.dataset.streaming = stream ? 'yes' : 'no';
  }, [stream]);

  useEffect(() => {
    const el = wrap.current;
    if (!stream || !el) return;
    if (!resizeGuest) {
      stream.send({ op: 'displaySize', width: 0, height: 0 });
      return;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    let sent = '';
    const send = () => {
      const dpr = window.devicePixelRatio || 1;
      const w = Math.round(el.clientWidth * dpr);
      const h = Math.round(el.clientHeight * dpr);
      if (!w || !h || `${w}x${h}` === sent) return;
      sent = `${w}x${h}`;
      el.dataset.offered = sent;
      stream.send({ op: 'displaySize', width: w, height: h });
    };
    send();
    // Dragging a window edge fires many resizes: offer the size it settles at.
    const ro = new ResizeObserver(() => {
      clearTimeout(timer);
      timer = setTimeout(send, 250);
    });
    ro.observe(el);
    return () => {
      clearTimeout(timer);
      ro.disconnect();
    };
  }, [stream, resizeGuest]);

  const release = useCallback(() => {
    setCaptured(false);
    if (document.pointerLockElement) document.exitPointerLock();
  }, []);

  const onKey = (e: React.KeyboardEvent, down: boolean) => {
    if (!captured || !stream) return;
    e.preventDefault();
    e.stopPropagation();
    // The release key (release.ts; Ctrl+Alt unless chosen otherwise): every modifier the
    // guest may hold is released, and the key itself never reaches it.
    const up = down ? releaseMatch(releaseKey, e) : null;
    if (up) {
      for (const code of up) stream.send({ op: 'key', code, down: false });
      release();
      return;
    }
    if (e.code) stream.send({ op: 'key', code: e.code, down });
  };

  const buttons = useRef(0);
  // The last absolute position sent (the wheel goes with it).
  const lastPos = useRef({ x: 0, y: 0 });
  // From the client coordinates and the canvas's own rect, not offsetX/Y: Chromium gives
  // those as whole pixels cut from a canvas that may sit at a fractional position, which
  // put scaled clicks up to a CSS pixel (more than half a guest pixel) off.
  const pointerAt = (clientX: number, clientY: number) => {
    const c = canvas.current!;
    const r = c.getBoundingClientRect();
    return canvasToFramebuffer(clientX - r.left - c.clientLeft, clientY - r.top - c.clientTop, c.clientWidth, c.clientHeight, c.width, c.height, scale === 'fit');
  };
  const onMouse = (e: React.MouseEvent) => {
    if (tablet && stream && !document.pointerLockElement) {
      // USB tablet: where the pointer is over the picture, whether or not the keyboard is captured.
      if (e.type !== 'mousemove') e.preventDefault();
      lastPos.current = pointerAt(e.clientX, e.clientY);
      stream.send({ op: 'pointer', ...lastPos.current, buttons: e.buttons & 31, wheel: 0, hwheel: 0 });
      return;
    }
    if (!captured || !stream) return;
    e.preventDefault();
    if (e.type === 'mousedown') buttons.current |= e.button === 0 ? 1 : e.button === 2 ? 2 : 4;
    if (e.type === 'mouseup') buttons.current &= ~(e.button === 0 ? 1 : e.button === 2 ? 2 : 4);
    // A move that did not move (Chromium sends them while the pointer is locked) says nothing.
    if (e.type === 'mousemove' && !e.movementX && !e.movementY) return;
    stream.send({ op: 'mouse', dx: e.movementX, dy: e.movementY, dz: 0, buttons: buttons.current });
  };

  // The wheel: PS/2 IntelliMouse Z (the i8042 model reports it once the guest
  // has switched its mouse to the 4-byte protocol). Down is positive, as in the
  // browser's deltaY; one notch per 100 px or 3 lines, at least one.
  useEffect(() => {
    const c = canvas.current;
    if (!c || !stream || !(captured || tablet)) return;
    const onWheel = (e: WheelEvent) => {
      e.preventDefault();
      if (tablet && !document.pointerLockElement) {
        // The tablet's wheel counts up (away from the user); the horizontal one right.
        const wheel = -wheelNotches(e.deltaY, e.deltaMode);
        const hwheel = wheelNotches(e.deltaX, e.deltaMode);
        if (wheel || hwheel) stream.send({ op: 'pointer', ...lastPos.current, buttons: e.buttons & 31, wheel, hwheel });
        return;
      }
      const dz = wheelNotches(e.deltaY, e.deltaMode);
      if (dz) stream.send({ op: 'mouse', dx: 0, dy: 0, dz, buttons: buttons.current });
    };
    c.addEventListener('wheel', onWheel, { passive: false });
    return () => c.removeEventListener('wheel', onWheel);
  }, [captured, stream, tablet]);

  // Once the guest drives the tablet a pointer grab is no longer needed: give the pointer back.
  useEffect(() => {
    if (tablet && document.pointerLockElement === canvas.current) document.exitPointerLock();
  }, [tablet]);

  // "Type clipboard": the host clipboard's text as keystrokes (US layout), for
  // guests without an agent -- what virt-manager users do by hand today.
  const typeClipboard = async () => {
    if (!stream) return;
    let text: string;
    try {
      text = await navigator.clipboard.readText();
    } catch (e) {
      setNote(`Could not read the clipboard: ${(e as Error).message}`);
      return;
    }
    const { events, skipped, truncated } = textToKeyEvents(text);
    for (const k of events) stream.send({ op: 'key', code: k.code, down: k.down });
    const notes: string[] = [];
    if (!text) notes.push('The clipboard holds no text.');
    if (skipped.length) notes.push(`${skipped.length} character(s) have no key on a US keyboard and were not typed: ${[...new Set(skipped)].map((c) => JSON.stringify(c)).join(' ')}`);
    if (truncated) notes.push(`Only the first ${MAX_TYPED_CHARS} characters were typed (${truncated} left out).`);
    setNote(notes.length ? notes.join(' ') : undefined);
  };

  const screenshot = async () => {
    try {
      const { pngBase64 } = await getClient().call('vm.screenshot', { uuid });
      const a = document.createElement('a');
      a.href = `data:image/png;base64,${pngBase64}`;
      a.download = `${vm?.name ?? 'vm'}-${new Date().toISOString().replace(/[:.]/g, '-')}.png`;
      document.body.appendChild(a);
      a.click();
      a.remove();
    } catch (e) {
      setNote((e as Error).message);
    }
  };

  const fullscreen = () => {
    void wrap.current?.requestFullscreen?.().catch(() => undefined);
  };

  // 1:1 is one guest pixel to one device pixel: on a HiDPI screen (devicePixelRatio 2) the
  // canvas is laid out at half its framebuffer size in CSS pixels, so it is not upscaled.
  const dpr = typeof window !== 'undefined' ? window.devicePixelRatio || 1 : 1;
  const style = useMemo<React.CSSProperties>(
    () =>
      scale === 'fit'
        ? { maxWidth: '100%', maxHeight: '100%', objectFit: 'contain', width: '100%', height: '100%' }
        : size && dpr !== 1
          ? { width: `${size.w / dpr}px`, height: `${size.h / dpr}px` }
          : {},
    [scale, size, dpr],
  );

  if (!vm) return <div className="console-empty">Loading…</div>;
  return (
    <div className="console">
      <header className="toolbar" role="toolbar" aria-label="Console">
        <span className="brand">{vm.name}</span>
        <span className={`badge ${vm.state}`} data-testid="console-state">
          {vm.state}
        </span>
        <div role="tablist" aria-label="Console view" className="tabs">
          <button role="tab" aria-selected={tab === 'display'} onClick={() => setTab('display')}>
            Display
          </button>
          <button role="tab" aria-selected={tab === 'serial'} onClick={() => setTab('serial')}>
            Serial
          </button>
        </div>
        <span className="sep" />
        {!live ? (
          <button className="primary" onClick={() => runAction(uuid, 'start')}>
            Run
          </button>
        ) : (
          <>
            <button onClick={() => runAction(uuid, vm.state === 'paused' ? 'resume' : 'pause')}>{vm.state === 'paused' ? 'Resume' : 'Pause'}</button>
            <button onClick={() => runAction(uuid, 'shutdown')}>Shut Down</button>
          </>
        )}
        <span className="sep" />
        <label className="inline">
          Scale{' '}
          <select aria-label="Scale" value={scale} onChange={(e) => setScale(e.target.value as Scale)}>
            <option value="fit">Scale to fit</option>
            <option value="1:1">1:1</option>
          </select>
        </label>
        <label className="inline">
          Release key{' '}
          <select aria-label="Release key" value={releaseKey} onChange={(e) => {
            const k = releaseKeyFrom(e.target.value);
            localStorage.setItem('vireo.releaseKey', k);
            setReleaseKey(k);
          }}>
            {Object.entries(RELEASE_KEYS).map(([k, label]) => (
              <option key={k} value={k}>{label}</option>
            ))}
          </select>
        </label>
        <label className="inline" title="Offer the window's size to the guest as its preferred display size (it applies when the guest probes modes again)">
          <input type="checkbox" checked={resizeGuest} onChange={(e) => {
            localStorage.setItem('vireo.resizeGuest', e.target.checked ? 'on' : 'off');
            setResizeGuest(e.target.checked);
          }} /> Resize guest with window
        </label>
        <button onClick={fullscreen}>Fullscreen</button>
        <div className="menuwrap">
          <button aria-haspopup="menu" aria-expanded={keysOpen} disabled={!stream} onClick={() => setKeysOpen(!keysOpen)}>
            Send Key ▾
          </button>
          {keysOpen && (
            <ul className="menu dropdown" role="menu" aria-label="Send key">
              {COMBOS.map((c) => (
                <li
                  key={c}
                  role="menuitem"
                  tabIndex={0}
                  onClick={() => {
                    stream?.send({ op: 'combo', name: c });
                    setKeysOpen(false);
                  }}
                  onKeyDown={(e) => {
                    if (e.key === 'Enter') {
                      stream?.send({ op: 'combo', name: c });
                      setKeysOpen(false);
                    } else if (e.key === 'Escape') setKeysOpen(false);
                  }}
                >
                  {COMBO_LABEL(c)}
                </li>
              ))}
              <li
                role="menuitem"
                tabIndex={0}
                className="menu-sep-above"
                onClick={() => {
                  setKeysOpen(false);
                  void typeClipboard();
                }}
                onKeyDown={(e) => {
                  if (e.key === 'Enter') {
                    setKeysOpen(false);
                    void typeClipboard();
                  } else if (e.key === 'Escape') setKeysOpen(false);
                }}
              >
                Type clipboard text
              </li>
            </ul>
          )}
        </div>
        <button disabled={!live} onClick={screenshot}>
          Screenshot
        </button>
      </header>
      {note && (
        <div className="banner" role="status">
          {note}
          <button aria-label="Dismiss" onClick={() => setNote(undefined)}>
            ×
          </button>
        </div>
      )}
      <div className="console-body">
        <div ref={wrap} className={`display ${scale === 'fit' ? 'fit' : 'one'}`} hidden={tab !== 'display'}>
          {!live && (
            <div className="off">
              {vm.name} is {vm.state === 'crashed' ? 'crashed' : 'not running'}.
              {vm.lastExit && <div className="hint">{vm.lastExit.kind === 'crashed' ? vm.lastExit.reason : vm.lastExit.kind === 'killed' ? `Killed (${vm.lastExit.signal})` : vm.lastExit.detail}</div>}
            </div>
          )}
          <canvas
            ref={canvas}
            width={640}
            height={400}
            hidden={!live}
            style={style}
            tabIndex={0}
            aria-label={`${vm.name} display`}
            data-frames="0"
            className={captured ? 'captured' : ''}
            data-tablet={tablet ? 'yes' : 'no'}
            onClick={() => {
              if (!captured && stream) {
                setCaptured(true);
                canvas.current?.focus();
                // With the tablet only the keyboard is captured; the pointer stays free.
                if (!tablet) void Promise.resolve(canvas.current?.requestPointerLock?.()).catch(() => undefined);
              }
            }}
            onKeyDown={(e) => onKey(e, true)}
            onKeyUp={(e) => onKey(e, false)}
            onBlur={release}
            onMouseMove={onMouse}
            onMouseDown={onMouse}
            onMouseUp={onMouse}
            onContextMenu={(e) => (captured || tablet) && e.preventDefault()}
          />
          {live && (
            <div className={`capture-hint ${captured ? 'on' : ''}`} role="status" aria-live="polite">
              {tablet
                ? captured
                  ? `Keyboard captured — press ${releaseHint} to release · pointer: USB tablet`
                  : 'Pointer: USB tablet (no grab) · click the display to type'
                : captured
                  ? `Keyboard and mouse captured — press ${releaseHint} to release`
                  : 'Click the display to capture keyboard and mouse'}
              {size && ` · ${size.w}×${size.h}`}
              {(lost.keys > 0 || lost.clicks > 0) && (
                <span className="input-lost" data-testid="input-lost">
                  {` · the guest is not reading its input: ${lost.keys} key event${lost.keys === 1 ? '' : 's'} dropped${lost.clicks ? `, ${lost.clicks} click${lost.clicks === 1 ? '' : 's'} merged` : ''}`}
                </span>
              )}
            </div>
          )}
        </div>
        <div className="serialwrap" hidden={tab !== 'serial'}>
          <SerialTerminal stream={stream} visible={tab === 'serial'} sinkRef={serialSink} />
        </div>
      </div>
    </div>
  );
}

export function useConsoleFeed(uuid: string) {
  useEffect(() => {
    const c = getClient();
    const offs = [
      c.on('vm.changed', ({ vm }) => vm.uuid === uuid && useVms.getState().upsert(vm)),
      c.on('vm.removed', ({ uuid: u }) => u === uuid && useVms.getState().remove(u)),
    ];
    c.call('vm.list', {}).then((l) => {
      useVms.getState().setAll(l);
      document.documentElement.dataset.vireoReady = 'console';
    }, (e) => useVms.getState().setError((e as Error).message));
    return () => offs.forEach((o) => o());
  }, [uuid]);
}

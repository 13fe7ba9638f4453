// The serial console: xterm.js fed straight from the stream. Flow control: bytes are
// acked only after xterm has parsed them (write callback), so the engine host stops
// sending while the terminal is behind; typing goes out at once, never queued
// behind output.
import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';
import '@xterm/xterm/css/xterm.css';
import { useEffect, useRef } from 'react';
import type { ConsoleStream } from '../../services/client';

export interface SerialSink {
  write(data: Uint8Array): void;
}

export function SerialTerminal({ stream, visible, sinkRef }: { stream: ConsoleStream | undefined; visible: boolean; sinkRef: React.MutableRefObject<SerialSink | undefined> }) {
  const el = useRef<HTMLDivElement>(null);
  const term = useRef<Terminal>(undefined);
  const fit = useRef<FitAddon>(undefined);
  const streamRef = useRef(stream);
  streamRef.current = stream;

  useEffect(() => {
    const t = new Terminal({
      convertEol: false,
      cursorBlink: true,
      scrollback: 5000,
      fontFamily: 'DejaVu Sans Mono, monospace',
      fontSize: 14,
      theme: { background: '#101418' },
    });
    const f = new FitAddon();
    t.loadAddon(f);
    t.open(el.current!);
    term.current = t;
    fit.current = f;
    const enc = new TextEncoder();
    let received = 0;
    // Adler-32 of everything received, for the no-byte-lost check (bench/app, e2e).
    let a = 1;
    let b = 0;
    t.onData((s) => streamRef.current?.send({ op: 'serialIn', port: 0, data: enc.encode(s) }));
    t.onBinary((s) => streamRef.current?.send({ op: 'serialIn', port: 0, data: Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff) }));
    // Copy / paste: Ctrl+Shift+C / Ctrl+Shift+V (Ctrl+C goes to the guest).
    t.attachCustomKeyEventHandler((e) => {
      if (e.type !== 'keydown' || !e.ctrlKey || !e.shiftKey) return true;
      if (e.code === 'KeyC') {
        void navigator.clipboard?.writeText(t.getSelection());
        return false;
      }
      if (e.code === 'KeyV') {
        void navigator.clipboard?.readText().then((txt) => t.paste(txt));
        return false;
      }
      return true;
    });
    sinkRef.current = {
      write: (data) => {
        for (let i = 0; i < data.length; i++) {
          a = (a + data[i]!) % 65521;
          b = (b + a) % 65521;
        }
        t.write(data, () => {
          received += data.byteLength;
          el.current?.setAttribute('data-bytes', String(received));
          el.current?.setAttribute('data-adler32', String(((b << 16) | a) >>> 0));
          streamRef.current?.send({ op: 'ackSerial', bytes: data.byteLength });
        });
      },
    };
    const ro = new ResizeObserver(() => {
      if (el.current?.offsetParent) f.fit();
    });
    ro.observe(el.current!);
    return () => {
      ro.disconnect();
      sinkRef.current = undefined;
      t.dispose();
    };
  }, [sinkRef]);

  useEffect(() => {
    if (visible) {
      fit.current?.fit();
      term.current?.focus();
    }
  }, [visible]);

  return <div className="serial" ref={el} data-bytes="0" aria-label="Serial console" role="region" />;
}

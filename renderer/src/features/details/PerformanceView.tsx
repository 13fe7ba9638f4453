// Details → Performance (issue 14 "Live graphs from the engine"): guest CPU %,
// touched memory, disk read/write bytes/s and network rx/tx bytes/s over the
// last minutes, as virt-manager's Performance page. History comes from
// vm.statsHistory (the service keeps ~5 minutes per running VM), then each
// vm.stats event adds a point. SVG, no chart library.
import { useEffect, useState } from 'react';
import { PERF_HISTORY_POINTS, type PerfPoint } from '../../../../electron/common/contracts/perf';
import { getClient } from '../../services/client';

export function fmtRate(bps: number): string {
  if (bps < 1024) return `${Math.round(bps)} B/s`;
  if (bps < 1024 * 1024) return `${(bps / 1024).toFixed(1)} KiB/s`;
  return `${(bps / (1024 * 1024)).toFixed(1)} MiB/s`;
}
function fmtTotal(b: number): string {
  if (b < 1024) return `${b} B`;
  if (b < 1024 * 1024) return `${(b / 1024).toFixed(1)} KiB`;
  if (b < 1024 ** 3) return `${(b / (1024 * 1024)).toFixed(1)} MiB`;
  return `${(b / 1024 ** 3).toFixed(2)} GiB`;
}

interface Series {
  name: string;
  values: number[];
  color: string;
}

const W = 520;
const H = 90;

/** One graph: series over the window (newest at the right), a fixed or automatic top. */
function Graph({ id, title, series, top, now, children }: { id: string; title: string; series: Series[]; top?: number; now: React.ReactNode; children?: React.ReactNode }) {
  const n = PERF_HISTORY_POINTS;
  const max = Math.max(top ?? 0, 1, ...series.flatMap((s) => s.values));
  const x = (i: number, len: number) => W - ((len - 1 - i) / (n - 1)) * W;
  const y = (v: number) => H - 1 - (Math.max(0, v) / max) * (H - 4);
  return (
    <section className="perf-graph" data-testid={`perf-${id}`} aria-label={title}>
      <div className="perf-head">
        <h4>{title}</h4>
        <span className="perf-now" data-testid={`perf-${id}-now`}>
          {now}
        </span>
      </div>
      <svg viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img" aria-label={`${title} over the last ${Math.round(n / 60)} minutes`}>
        <rect x="0" y="0" width={W} height={H} className="perf-bg" />
        {[0.25, 0.5, 0.75].map((f) => (
          <line key={f} x1="0" x2={W} y1={H * f} y2={H * f} className="perf-grid" />
        ))}
        {series.map((s) =>
          s.values.length > 1 ? (
            <polyline
              key={s.name}
              data-series={s.name}
              data-points={s.values.length}
              points={s.values.map((v, i) => `${x(i, s.values.length).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}
              fill="none"
              stroke={s.color}
              strokeWidth="1.5"
              vectorEffect="non-scaling-stroke"
            />
          ) : null,
        )}
      </svg>
      {children}
    </section>
  );
}

export function PerformanceView({ uuid, running }: { uuid: string; running: boolean }) {
  const [points, setPoints] = useState<PerfPoint[]>([]);
  const [error, setError] = useState<string | undefined>();

  useEffect(() => {
    let alive = true;
    const c = getClient();
    const pending: PerfPoint[] = [];
    let loaded = false;
    const off = c.on('vm.stats', (e) => {
      if (e.uuid !== uuid || !e.point) return;
      const p = e.point;
      if (!loaded) pending.push(p);
      else setPoints((old) => [...old, p].slice(-PERF_HISTORY_POINTS));
    });
    c.call('vm.statsHistory', { uuid }).then(
      (r) => {
        if (!alive) return;
        loaded = true;
        const last = r.points.at(-1)?.t ?? 0;
        setPoints([...r.points, ...pending.filter((p) => p.t > last)].slice(-PERF_HISTORY_POINTS));
      },
      (e: Error) => {
        loaded = true;
        if (alive) setError(e.message);
      },
    );
    return () => {
      alive = false;
      off();
    };
  }, [uuid]);

  // A VM that stopped: its graphs go (the service dropped its history too).
  useEffect(() => {
    if (!running) setPoints([]);
  }, [running]);

  const last = points.at(-1);
  const col = <K extends keyof PerfPoint>(k: K) => points.map((p) => p[k] as number);
  return (
    <>
      <h3>Performance</h3>
      {!running && <div className="details-note">The VM is not running: the graphs start when it does.</div>}
      {running && !last && <div className="details-note">Waiting for the first sample (one a second)…</div>}
      {error && <div className="details-note pending">{error}</div>}
      <div className="perf-graphs">
        <Graph id="cpu" title="CPU usage" top={100} series={[{ name: 'cpu', values: col('cpuPercent'), color: '#2a6fdb' }]} now={last ? `${last.cpuPercent.toFixed(1)} %` : '—'} />
        <Graph id="memory" title="Memory (touched by the guest)" top={last?.ramMiB || undefined} series={[{ name: 'memory', values: col('memoryMiB'), color: '#7b3fb5' }]}
          now={last ? `${last.memoryMiB} MiB of ${last.ramMiB} MiB` : '—'} />
        <Graph id="disk" title="Disk I/O" series={[{ name: 'read', values: col('diskReadBps'), color: '#1d8a4b' }, { name: 'write', values: col('diskWriteBps'), color: '#c4581c' }]}
          now={last ? `read ${fmtRate(last.diskReadBps)} (${last.diskReadOps} req/s) · write ${fmtRate(last.diskWriteBps)} (${last.diskWriteOps} req/s)` : '—'}>
          {last && (
            <div className="perf-total" data-testid="perf-disk-total">
              {last.disks} disk{last.disks === 1 ? '' : 's'} · read <span data-testid="perf-disk-read-bytes" data-bytes={last.diskReadBytes}>{fmtTotal(last.diskReadBytes)}</span> · written{' '}
              <span data-testid="perf-disk-write-bytes" data-bytes={last.diskWriteBytes}>{fmtTotal(last.diskWriteBytes)}</span> since power-on
            </div>
          )}
        </Graph>
        <Graph id="net" title="Network I/O" series={[{ name: 'rx', values: col('netRxBps'), color: '#1d8a4b' }, { name: 'tx', values: col('netTxBps'), color: '#c4581c' }]}
          now={last ? (last.nics ? `in ${fmtRate(last.netRxBps)} · out ${fmtRate(last.netTxBps)}` : 'no network card') : '—'}>
          {last && last.nics > 0 && (
            <div className="perf-total">
              received {fmtTotal(last.netRxBytes)} · sent {fmtTotal(last.netTxBytes)} since power-on
            </div>
          )}
        </Graph>
      </div>
      {last && (
        <div
          className={`details-note ${last.inputDroppedKeys || last.inputMergedClicks ? 'pending' : ''}`}
          data-testid="perf-input"
          data-dropped-keys={last.inputDroppedKeys}
          data-merged-clicks={last.inputMergedClicks}
        >
          {last.inputDroppedKeys || last.inputMergedClicks
            ? `Input the guest did not take since power-on: ${last.inputDroppedKeys} key event${last.inputDroppedKeys === 1 ? '' : 's'} dropped (its keyboard queue was full), ${last.inputMergedClicks} tablet click${last.inputMergedClicks === 1 ? '' : 's'} merged. The guest is not reading its input devices.`
            : 'Input: every key and click reached the guest.'}
        </div>
      )}
    </>
  );
}

export function Sparkline({ values, max, label, unit }: { values: number[] | undefined; max: number; label: string; unit: string }) {
  const w = 90;
  const h = 22;
  const v = values ?? [];
  const top = Math.max(max, ...v, 1);
  const pts = v.map((x, i) => `${(i / Math.max(1, v.length - 1)) * w},${h - (x / top) * (h - 2) - 1}`).join(' ');
  const last = v.length ? v[v.length - 1]! : undefined;
  return (
    <span className="spark" title={`${label}: ${last === undefined ? '—' : `${last}${unit}`}`}>
      <svg width={w} height={h} role="img" aria-label={`${label} ${last === undefined ? 'not running' : `${last}${unit}`}`}>
        {v.length > 1 ? <polyline points={pts} fill="none" stroke="currentColor" strokeWidth="1.5" /> : <line x1="0" x2={w} y1={h - 1} y2={h - 1} stroke="currentColor" strokeOpacity="0.3" />}
      </svg>
      <span className="spark-val">{last === undefined ? '' : `${last}${unit}`}</span>
    </span>
  );
}

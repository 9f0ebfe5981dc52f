// Two small inline SVG charts: no chart library for a line and an area.

function scale(values, width, height, pad) {
  const max = Math.max(1, ...values);
  const n = values.length;
  const step = n > 1 ? (width - 2 * pad) / (n - 1) : 0;
  return values.map((v, i) => [pad + i * step, height - pad - (v / max) * (height - 2 * pad)]);
}

const path = (pts) => pts.map(([x, y], i) => `${i ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`).join('');

export function Sparkline({ values, width = 120, height = 28 }) {
  if (!values || values.length < 2) return <svg class="spark" width={width} height={height} />;
  const pts = scale(values, width, height, 2);
  return (
    <svg class="spark" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img">
      <path d={path(pts)} fill="none" stroke="currentColor" stroke-width="1.5" />
    </svg>
  );
}

// points: [{t: ns, v: number}]; axis labels from fmtTime/fmtValue.
export function AreaChart({ points, width = 640, height = 180, fmtTime, fmtValue, label }) {
  if (!points || points.length < 2) return null;
  const padL = 56;
  const padB = 20;
  const values = points.map((p) => p.v);
  const max = Math.max(1, ...values);
  const inner = scale(values, width - padL, height - padB, 4).map(([x, y]) => [x + padL, y]);
  const area = `${path(inner)}L${inner[inner.length - 1][0].toFixed(1)},${height - padB - 4}L${padL + 4},${height - padB - 4}Z`;
  return (
    <svg class="chart" viewBox={`0 0 ${width} ${height}`} role="img" aria-label={label}>
      <line x1={padL} y1={height - padB - 4} x2={width - 4} y2={height - padB - 4} class="axis" />
      <line x1={padL} y1={4} x2={padL} y2={height - padB - 4} class="axis" />
      <text x={padL - 4} y={12} text-anchor="end" class="tick">{fmtValue(max)}</text>
      <text x={padL - 4} y={height - padB - 4} text-anchor="end" class="tick">0</text>
      <text x={padL + 4} y={height - 4} class="tick">{fmtTime(points[0].t)}</text>
      <text x={width - 4} y={height - 4} text-anchor="end" class="tick">
        {fmtTime(points[points.length - 1].t)}
      </text>
      <path d={area} class="area" />
      <path d={path(inner)} class="line" fill="none" />
    </svg>
  );
}

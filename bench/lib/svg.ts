/** A horizontal bar chart as a hand-written SVG string (no dependencies). */

export interface Bar {
  label: string;
  value: number;
  /** Whisker: the spread over rounds. */
  min?: number;
  max?: number;
  /** Key into `series` for the colour and legend. */
  series: string;
  /** Text after the value, e.g. "0.42× openssl". */
  note?: string;
}

export interface BarChart {
  title: string;
  subtitle?: string;
  unit: string;
  bars: Bar[];
  series: Record<string, { colour: string; label: string }>;
  /** Vertical reference lines, e.g. a target. */
  markers?: { value: number; label: string; colour: string }[];
  /** Written right after each bar's value, e.g. "%" or " MB". Default: nothing. */
  valueSuffix?: string;
}

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** 1, 2 or 5 times a power of ten, at least `x`. */
function niceStep(x: number): number {
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

function num(x: number): string {
  return Math.round(x).toLocaleString('en-US');
}

/** Rough width of `text` at 13 px in a sans-serif face: enough to lay out columns without measuring fonts. */
function textWidth(text: string, px = 13): number {
  return text.length * px * 0.56;
}

export function barChartSvg(chart: BarChart): string {
  const rowH = 30;
  const barH = 18;
  const plotW = 400;
  const labelW = Math.ceil(Math.max(...chart.bars.map((b) => textWidth(b.label)))) + 28;
  const suffix = chart.valueSuffix ?? '';
  const valueW = Math.ceil(Math.max(...chart.bars.map((b) => textWidth(valueText(b, suffix))))) + 24;
  const width = Math.max(
    labelW + plotW + valueW,
    Math.ceil(textWidth(chart.title, 16)) + 40,
    Math.ceil(textWidth(chart.subtitle ?? '')) + 40,
  );
  const top = (chart.subtitle ? 56 : 36) + (chart.markers?.length ? 26 : 8);
  const plotH = chart.bars.length * rowH;
  // Legend: series, then the whisker key, wrapped to the width.
  const legend: { x: number; row: number; kind: 'series' | 'whisker'; colour: string; label: string }[] = [];
  {
    let x = 16;
    let row = 0;
    const whiskers = chart.bars.some((b) => b.min !== undefined && b.max !== undefined);
    const entries = [
      ...Object.values(chart.series).map((s) => ({ kind: 'series' as const, ...s })),
      ...(whiskers ? [{ kind: 'whisker' as const, colour: '#222', label: 'range over rounds' }] : []),
    ];
    for (const e of entries) {
      const w = 18 + textWidth(e.label) + 22 + (e.kind === 'whisker' ? 16 : 0);
      if (x + w > width - 8 && x > 16) {
        row++;
        x = 16;
      }
      legend.push({ x, row, kind: e.kind, colour: e.colour, label: e.label });
      x = Math.round(x + w);
    }
  }
  const legendY = top + plotH + 58;
  const legendRows = Math.max(...legend.map((e) => e.row)) + 1;
  const height = legendY + legendRows * 22;
  const x0 = labelW;
  const peak = Math.max(
    1,
    ...chart.bars.map((b) => b.max ?? b.value),
    ...(chart.markers ?? []).map((m) => m.value),
  );
  const step = niceStep(peak / 5);
  const axisMax = Math.ceil((peak * 1.02) / step) * step;
  const sx = (v: number) => x0 + (Math.max(0, v) / axisMax) * plotW;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-labelledby="chart-title" font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif" font-size="13">`,
    `<title id="chart-title">${esc(`${chart.title}. ${chart.bars.map((b) => `${b.label}: ${valueText(b, suffix)}`).join('; ')}`)}</title>`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="16" y="26" font-size="16" font-weight="600" fill="#111">${esc(chart.title)}</text>`,
  );
  if (chart.subtitle) out.push(`<text x="16" y="46" fill="#555">${esc(chart.subtitle)}</text>`);
  for (let v = 0; v <= axisMax + 1e-9; v += step) {
    const x = sx(v).toFixed(1);
    out.push(
      `<line x1="${x}" y1="${top - 6}" x2="${x}" y2="${top + plotH}" stroke="#e5e5e5"/>`,
      `<text x="${x}" y="${top + plotH + 16}" text-anchor="middle" fill="#666" font-size="11">${num(v)}</text>`,
    );
  }
  out.push(
    `<text x="${x0 + plotW / 2}" y="${top + plotH + 34}" text-anchor="middle" fill="#444" font-size="12">${esc(chart.unit)}</text>`,
  );
  chart.bars.forEach((bar, i) => {
    const y = top + i * rowH + (rowH - barH) / 2;
    const colour = chart.series[bar.series]?.colour ?? '#888';
    const cy = (y + barH / 2).toFixed(1);
    const ty = (y + barH / 2 + 4.5).toFixed(1);
    out.push(
      `<text x="${x0 - 10}" y="${ty}" text-anchor="end" fill="#222">${esc(bar.label)}</text>`,
      `<rect x="${x0}" y="${y.toFixed(1)}" width="${(sx(bar.value) - x0).toFixed(1)}" height="${barH}" fill="${colour}" rx="2"><title>${esc(`${bar.label}: ${num(bar.value)} ${chart.unit}`)}</title></rect>`,
    );
    if (bar.min !== undefined && bar.max !== undefined) {
      const a = sx(bar.min).toFixed(1);
      const b = sx(bar.max).toFixed(1);
      out.push(
        `<line x1="${a}" y1="${cy}" x2="${b}" y2="${cy}" stroke="#222" stroke-width="1.2"/>`,
        `<line x1="${a}" y1="${(y + 4).toFixed(1)}" x2="${a}" y2="${(y + barH - 4).toFixed(1)}" stroke="#222" stroke-width="1.2"/>`,
        `<line x1="${b}" y1="${(y + 4).toFixed(1)}" x2="${b}" y2="${(y + barH - 4).toFixed(1)}" stroke="#222" stroke-width="1.2"/>`,
      );
    }
    out.push(`<text x="${x0 + plotW + 12}" y="${ty}" fill="#222">${esc(valueText(bar, suffix))}</text>`);
  });
  (chart.markers ?? []).forEach((m, i) => {
    const x = sx(m.value).toFixed(1);
    out.push(
      `<line x1="${x}" y1="${top - 8}" x2="${x}" y2="${top + plotH}" stroke="${m.colour}" stroke-width="1.5" stroke-dasharray="5 3"/>`,
      `<text x="${x}" y="${top - 12 - i * 14}" text-anchor="middle" fill="${m.colour}" font-size="11">${esc(m.label)}</text>`,
    );
  });
  for (const e of legend) {
    const y = legendY + e.row * 22;
    if (e.kind === 'series')
      out.push(
        `<rect x="${e.x}" y="${y - 10}" width="12" height="12" fill="${e.colour}" rx="2"/>`,
        `<text x="${e.x + 18}" y="${y}" fill="#333">${esc(e.label)}</text>`,
      );
    else
      out.push(
        `<line x1="${e.x}" y1="${y - 4}" x2="${e.x + 24}" y2="${y - 4}" stroke="${e.colour}" stroke-width="1.2"/>`,
        `<line x1="${e.x}" y1="${y - 8}" x2="${e.x}" y2="${y}" stroke="${e.colour}" stroke-width="1.2"/>`,
        `<line x1="${e.x + 24}" y1="${y - 8}" x2="${e.x + 24}" y2="${y}" stroke="${e.colour}" stroke-width="1.2"/>`,
        `<text x="${e.x + 32}" y="${y}" fill="#333">${esc(e.label)}</text>`,
      );
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function valueText(bar: Bar, suffix = ''): string {
  return `${num(bar.value)}${suffix}${bar.note ? ` · ${bar.note}` : ''}`;
}

// Small SVG charts for the pages, drawn here rather than fetched: the ops centre's screens may
// have no internet, and two chart shapes (lines over time, bars per day) do not need a library.
// Each function fills a container element and returns nothing; a redraw replaces the chart.
"use strict";

const WanliCharts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#4aa3ff", "#ff8c1a", "#2fb36b", "#f5c400", "#c77dff", "#ff5c8a", "#5ee0d0", "#b0b8c4"];
  const FONT = 15;

  function node(tag, attrs = {}, text) {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  }

  // Round numbers for an axis from lo to hi, about ``count`` of them.
  function ticks(lo, hi, count = 5) {
    if (hi <= lo) hi = lo + 1;
    const raw = (hi - lo) / count;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toFixed(6)));
    return out;
  }

  function hhmm(ms) {
    return new Date(ms).toLocaleTimeString("zh-CN", { hour: "2-digit", minute: "2-digit", hour12: false });
  }

  // A time axis label fit for the span: hours and minutes within a day, month/day over longer ranges.
  function timeLabel(ms, span) {
    if (span <= 86_400_000) return hhmm(ms);
    const d = new Date(ms);
    const md = `${String(d.getMonth() + 1).padStart(2, "0")}/${String(d.getDate()).padStart(2, "0")}`;
    return span <= 3 * 86_400_000 ? `${md} ${hhmm(ms)}` : md;
  }

  function frame(container, height) {
    const width = Math.max(320, container.clientWidth || 600);
    const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: "chart-svg" });
    container.replaceChildren(svg);
    return { svg, width, height };
  }

  function empty(container, text) {
    const p = document.createElement("p");
    p.className = "chart-empty";
    p.textContent = text;
    container.replaceChildren(p);
  }

  // series: [{ label, points: [[ms, value], ...] }]; opts: { unit, min, max, threshold, thresholdLabel, emptyText }
  function lines(container, series, opts = {}) {
    const drawn = series.filter((s) => s.points.length);
    if (!drawn.length) { empty(container, opts.emptyText || "暂无数据"); return; }
    const { svg, width } = frame(container, opts.height || 300);
    const height = opts.height || 300;
    const left = 56, right = 16, top = 14, bottom = 34;
    const all = drawn.flatMap((s) => s.points);
    const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
    let lo = Math.min(...all.map((p) => p[1])), hi = Math.max(...all.map((p) => p[1]));
    if (opts.threshold !== undefined) { lo = Math.min(lo, opts.threshold); hi = Math.max(hi, opts.threshold); }
    if (opts.min !== undefined) lo = Math.min(lo, opts.min);
    if (opts.max !== undefined) hi = Math.max(hi, opts.max);
    const yt = ticks(lo, hi);
    lo = Math.min(lo, yt[0]); hi = Math.max(hi, yt[yt.length - 1]);
    const span = t1 - t0 || 60_000;
    const x = (t) => left + ((t - t0) / span) * (width - left - right);
    const y = (v) => top + (1 - (v - lo) / (hi - lo || 1)) * (height - top - bottom);

    for (const v of yt) {
      svg.append(node("line", { x1: left, x2: width - right, y1: y(v), y2: y(v), class: "grid" }));
      svg.append(node("text", { x: left - 8, y: y(v) + 5, "text-anchor": "end", "font-size": FONT, class: "axis" },
                      `${v}${opts.unit || ""}`));
    }
    const xt = 5;
    for (let i = 0; i <= xt; i++) {
      const t = t0 + (span * i) / xt;
      svg.append(node("text", { x: x(t), y: height - 10, "text-anchor": i === 0 ? "start" : i === xt ? "end" : "middle",
                                "font-size": FONT, class: "axis" }, timeLabel(t, span)));
    }
    if (opts.threshold !== undefined) {
      svg.append(node("line", { x1: left, x2: width - right, y1: y(opts.threshold), y2: y(opts.threshold), class: "threshold" }));
      const above = y(opts.threshold) - 6 > top + FONT;  // no room above the line: write it underneath
      svg.append(node("text", { x: width - right - 4, y: above ? y(opts.threshold) - 6 : y(opts.threshold) + FONT + 4,
                                "text-anchor": "end", "font-size": FONT,
                                class: "threshold-label" }, opts.thresholdLabel || ""));
    }
    drawn.forEach((s, i) => {
      const colour = PALETTE[i % PALETTE.length];
      const d = s.points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)} ${y(p[1]).toFixed(1)}`).join(" ");
      const path = node("path", { d, fill: "none", stroke: colour, "stroke-width": 2.5, class: "series",
                                  "data-label": s.label });
      path.append(node("title", {}, s.label));
      svg.append(path);
      if (s.points.length === 1) {
        svg.append(node("circle", { cx: x(s.points[0][0]), cy: y(s.points[0][1]), r: 4, fill: colour }));
      }
    });
    const legend = document.createElement("ul");
    legend.className = "chart-legend";
    drawn.forEach((s, i) => {
      const li = document.createElement("li");
      const swatch = document.createElement("i");
      swatch.style.background = PALETTE[i % PALETTE.length];
      const last = s.points[s.points.length - 1][1];
      li.append(swatch, `${s.label}  ${Math.round(last * 10) / 10}${opts.unit || ""}`);
      legend.append(li);
    });
    container.append(legend);
  }

  // days: [{ day: "2026-11-01", ...values }]; keys: [{ key, label, colour }] stacked bottom up.
  function bars(container, days, keys, opts = {}) {
    const height = opts.height || 200;
    const { svg, width } = frame(container, height);
    const left = 40, right = 12, top = 12, bottom = 30;
    const totals = days.map((d) => keys.reduce((n, k) => n + (d[k.key] || 0), 0));
    const yt = ticks(0, Math.max(1, ...totals), 4).filter((v) => Number.isInteger(v));
    const hi = Math.max(1, yt[yt.length - 1]);
    const slot = (width - left - right) / Math.max(1, days.length);
    const y = (v) => top + (1 - v / hi) * (height - top - bottom);
    for (const v of yt) {
      svg.append(node("line", { x1: left, x2: width - right, y1: y(v), y2: y(v), class: "grid" }));
      svg.append(node("text", { x: left - 6, y: y(v) + 5, "text-anchor": "end", "font-size": FONT, class: "axis" }, String(v)));
    }
    const every = Math.ceil(days.length / 8);
    days.forEach((d, i) => {
      let base = 0;
      for (const k of keys) {
        const v = d[k.key] || 0;
        if (v > 0) {
          const rect = node("rect", { x: left + i * slot + slot * 0.15, width: Math.max(1, slot * 0.7), y: y(base + v),
                                      height: y(base) - y(base + v), fill: k.colour, "data-day": d.day, "data-key": k.key });
          rect.append(node("title", {}, `${d.day} ${k.label} ${v}`));
          svg.append(rect);
        }
        base += v;
      }
      const last = i === days.length - 1 && (days.length - 1) % every >= every / 2;  // unless it would crowd the one before
      if (i % every === 0 || last) {
        svg.append(node("text", { x: left + i * slot + slot / 2, y: height - 8, "text-anchor": "middle", "font-size": FONT,
                                  class: "axis" }, d.day.slice(5).replace("-", "/")));
      }
    });
    const legend = document.createElement("ul");
    legend.className = "chart-legend";
    for (const k of keys) {
      const li = document.createElement("li");
      const swatch = document.createElement("i");
      swatch.style.background = k.colour;
      li.append(swatch, k.label);
      legend.append(li);
    }
    container.append(legend);
  }

  return { lines, bars, ticks };
})();

// A small SVG line chart: enough for telemetry and simulation curves, no chart library.

const NS = "http://www.w3.org/2000/svg";

export function lineChart(container, series, { title, unit = "", width = 320, height = 110 } = {}) {
  const wrap = document.createElement("div");
  const caption = document.createElement("div");
  caption.className = "chart-title";
  caption.textContent = title + (unit ? ` (${unit})` : "");
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.classList.add("chart");
  wrap.append(caption, svg);
  container.append(wrap);
  const chart = { series: series.map((s) => [...s]), svg, width, height, max: 2000 };
  chart.append = (index, points) => {
    const s = chart.series[index] || (chart.series[index] = []);
    s.push(...points);
    if (s.length > chart.max) s.splice(0, s.length - chart.max);
    draw(chart);
  };
  draw(chart);
  return chart;
}

function draw(chart) {
  const { svg, width, height } = chart;
  svg.replaceChildren();
  const all = chart.series.flat();
  if (!all.length) {
    svg.append(text(8, height / 2, "no data yet"));
    return;
  }
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const pad = 14;
  const sx = (x) => pad + ((x - x0) / (x1 - x0)) * (width - 2 * pad);
  const sy = (y) => height - pad - ((y - y0) / (y1 - y0)) * (height - 2 * pad);
  chart.series.forEach((points, i) => {
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" "));
    if (i) line.classList.add("second");
    svg.append(line);
  });
  svg.append(text(2, 10, fmt(y1)), text(2, height - 2, fmt(y0)));
}

function text(x, y, content) {
  const t = document.createElementNS(NS, "text");
  t.setAttribute("x", x);
  t.setAttribute("y", y);
  t.textContent = content;
  return t;
}

const fmt = (v) => (Math.abs(v) >= 1000 || Math.abs(v) < 0.01 ? v.toExponential(2) : v.toFixed(2));

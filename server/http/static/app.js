// edgebed dashboard: the fleet, the runs and one run, kept live by the
// server's event stream (/api/stream). Hand-written, no framework, nothing
// fetched but this server's own API. Every value from the server is put in
// the page as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let stream = null;
let selected = null;          // the run shown below the tables (from #run=ID)
let spans = [];               // that run's timeline spans, by sequence number
let lastSeq = 0;
let lastRuns = null;          // the latest runs event

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

// ------------------------------------------------------------ formatting
const num = (x, digits = 3) => (typeof x === "number" && isFinite(x)) ? Number(x.toPrecision(digits)).toString() : "–";
function rate(bps) {
  if (typeof bps !== "number" || !bps) return "–";
  return bps >= 1e9 ? `${num(bps / 1e9)} Gbit/s` : bps >= 1e6 ? `${num(bps / 1e6)} Mbit/s` : `${num(bps / 1e3)} kbit/s`;
}
function bytes(n) {
  if (!n) return "0";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${num(n)} ${units[i]}`;
}
function ago(seconds) {
  if (typeof seconds !== "number") return "never";
  if (seconds < 60) return `${seconds.toFixed(1)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}
const clock = (unix) => unix ? new Date(unix * 1000).toLocaleTimeString() : "–";
function took(s) {
  if (!s.started_unix_s) return "–";
  const end = s.ended_unix_s || Date.now() / 1000;
  return `${num(end - s.started_unix_s, 3)} s`;
}
const badge = (state) => el("span", {class: `badge state-${state}`, text: state});
const prov = (p) => el("span", {class: `prov-${String(p).split(":")[0]}`, text: p || "–"});
function compact(value, limit = 160) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  if (text === undefined) return "–";
  if (text.length <= limit) return text;
  return el("details", {}, el("summary", {text: text.slice(0, limit) + "…"}), el("code", {text}));
}

// ------------------------------------------------------------ fleet
function renderFleet(data) {
  const body = $("fleet").tBodies[0];
  const rows = data.devices.map((d) => {
    const p = d.profile;
    const labels = Object.entries(d.labels).filter(([k]) => k !== "name")
      .map(([k, v]) => el("span", {class: "chip", text: `${k}=${v}`}));
    const link = d.link
      ? [`↑ ${rate(d.link.up_capacity_bps)} ↓ ${rate(d.link.down_capacity_bps)}, RTT ${num(d.link.rtt_ms)} ms `,
         el("span", {class: "muted small"}, prov(d.link.provenance), ` ${ago(data.server_unix_s - d.link.measured_unix_s)}`)]
      : [el("span", {class: "muted", text: "not measured yet"})];
    if (d.emulated.uplink_bps || d.emulated.downlink_bps) {
      link.push(el("div", {class: "muted small", text: `paced (--link): ↑ ${rate(d.emulated.uplink_bps)} ↓ ${rate(d.emulated.downlink_bps)}`}));
    }
    const gone = d.state === "gone";
    const state = [badge(d.state)];
    if (d.run_id) state.push(" ", el("a", {href: `#run=${encodeURIComponent(d.run_id)}`, class: "small", text: d.run_id}));
    if (gone && d.disconnect_reason) state.push(el("div", {class: "muted small", text: d.disconnect_reason}));
    return el("tr", {"data-device": d.name, "data-state": d.state, class: gone ? "gone" : ""},
      el("td", {}, el("b", {text: d.name})),
      el("td", {}, state),
      el("td", {}, el("div", {text: p.cpu_model || "?"}),
        el("div", {class: "muted small", text: `${p.cpu_cores} cores${p.cpu_quota ? ` (quota ${p.cpu_quota})` : ""}, ` +
          `${num(p.matmul_gflops)} GFLOP/s matmul, ${p.accelerator}, ${bytes(p.ram_bytes)} RAM`})),
      el("td", {}, labels),
      el("td", {text: d.power_backend}),
      el("td", {}, link),
      el("td", {}, gone ? `gone; last ${ago(d.heartbeat_age_s)}` : ago(d.heartbeat_age_s)));
  });
  body.replaceChildren(...rows);
  const live = data.devices.filter((d) => d.state !== "gone").length;
  $("fleet-count").textContent = `${live} attached, ${data.devices.length - live} gone`;
  $("clock").textContent = `server time ${clock(data.server_unix_s)}`;
}

// ------------------------------------------------------------ runs
function progressCell(s) {
  const value = s.state === "done" ? 1 : s.progress;
  return el("td", {"data-progress": String(value)},
    el("progress", {max: "1", value: String(value)}), ` ${Math.round(100 * value)}% `,
    el("span", {class: "muted small", text: s.state === "queued" ? `queue #${s.queue_position}` : s.progress_text}));
}

function renderRuns(data) {
  const rows = data.runs.map((s) => el("tr", {"data-run": s.run_id, class: s.run_id === selected ? "selected" : ""},
    el("td", {}, el("a", {href: `#run=${encodeURIComponent(s.run_id)}`, text: s.run_id})),
    el("td", {text: s.suite}),
    el("td", {}, badge(s.state)),
    progressCell(s),
    el("td", {text: s.devices.join(", ")}),
    el("td", {text: clock(s.submitted_unix_s)}),
    el("td", {text: took(s)}),
    el("td", {class: "error", text: s.error})));
  $("runs").tBodies[0].replaceChildren(...rows);
  const running = data.runs.filter((s) => s.state === "running").length;
  const queued = data.runs.filter((s) => s.state === "queued").length;
  $("runs-count").textContent = `${running} running, ${queued} queued, ${data.total} in all` +
    (data.total > data.runs.length ? ` (the newest ${data.runs.length} shown)` : "");
}

// ------------------------------------------------------------ one run
const palette = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#65a30d", "#db2777", "#4b5563", "#ca8a04"];
const phaseColours = new Map();
function colour(phase) {
  if (!phaseColours.has(phase)) phaseColours.set(phase, palette[phaseColours.size % palette.length]);
  return phaseColours.get(phase);
}

function renderTimeline() {
  const box = $("timeline");
  const timed = spans.filter((s) => s.start_unix_s > 0);
  if (!timed.length) { box.replaceChildren(el("p", {class: "muted", text: "no spans yet"})); return; }
  const devices = [...new Set(timed.map((s) => s.device))].sort();
  const t0 = Math.min(...timed.map((s) => s.start_unix_s));
  const t1 = Math.max(...timed.map((s) => s.start_unix_s + s.duration_s));
  const width = 1000, left = 110, rowH = 22, top = 4, span = Math.max(t1 - t0, 1e-3);
  const height = top + rowH * devices.length + 18;
  const root = svg("svg", {viewBox: `0 0 ${width} ${height}`, "data-spans": String(timed.length)});
  const x = (t) => left + (width - left - 10) * (t - t0) / span;
  devices.forEach((d, i) => {
    const label = svg("text", {x: 4, y: top + rowH * i + 15, "font-size": 12});
    label.textContent = d;
    root.append(label);
  });
  for (const s of timed) {
    const rect = svg("rect", {x: x(s.start_unix_s).toFixed(1), y: top + rowH * devices.indexOf(s.device) + 3,
      width: Math.max(1, x(s.start_unix_s + s.duration_s) - x(s.start_unix_s)).toFixed(1), height: rowH - 6,
      fill: colour(s.phase), opacity: s.low_confidence ? 0.5 : 0.9});
    const tip = svg("title", {});
    tip.textContent = `${s.device} ${s.phase} round ${s.round}: ${num(s.duration_s)} s, ${num(s.energy_j)} J (${s.provenance}, ${s.power_backend}), ${bytes(s.bytes)}`;
    rect.append(tip);
    root.append(rect);
  }
  for (let k = 0; k <= 5; k++) {
    const anchor = k === 0 ? "start" : k === 5 ? "end" : "middle";
    const tick = svg("text", {x: x(t0 + span * k / 5), y: height - 4, "font-size": 11, fill: "#6b7280", "text-anchor": anchor});
    tick.textContent = `${num(span * k / 5, 3)} s`;
    root.append(tick);
  }
  box.replaceChildren(root);
  $("legend").replaceChildren(...[...phaseColours.keys()].map((p) =>
    el("span", {class: "chip"}, el("span", {class: "swatch", style: `background:${colour(p)}`}), p)));
}

function table(node, head, rows) {
  node.replaceChildren(el("thead", {}, el("tr", {}, head.map((h) => el("th", {text: h})))),
    el("tbody", {}, rows.length ? rows : [el("tr", {}, el("td", {colspan: String(head.length), class: "muted", text: "nothing yet"}))]));
}

function renderComparisons(rows) {
  const biggest = Math.max(1e-9, ...rows.flatMap((r) => [r.predicted_s || 0, r.measured_s || 0]));
  table($("comparisons"), ["quantity", "tag", "device", "step", "predicted (modeled)", "measured", "", "error"],
    rows.slice(-300).map((r) => el("tr", {},
      el("td", {text: r.quantity}), el("td", {text: r.tag}), el("td", {text: r.device || "all"}),
      el("td", {class: "num", text: String(r.step)}),
      el("td", {class: "num prov-modeled", text: `${num(r.predicted_s)} s`}),
      el("td", {class: "num prov-measured", text: `${num(r.measured_s)} s`}),
      el("td", {class: "bars"}, el("div", {class: "bar pred", style: `width:${100 * (r.predicted_s || 0) / biggest}%`}),
        el("div", {class: "bar meas", style: `width:${100 * (r.measured_s || 0) / biggest}%`})),
      el("td", {class: "num", text: typeof r.rel_error === "number" ? `${(100 * r.rel_error).toFixed(1)}%` : "–"}))));
}

function renderEnergy(rows) {
  table($("energy"), ["device", "phase", "spans", "seconds", "energy (J)", "bytes", "power backend", "provenance", "low-confidence"],
    rows.map((r) => el("tr", {"data-device": r.device, "data-phase": r.phase},
      el("td", {text: r.device}), el("td", {text: r.phase}), el("td", {class: "num", text: String(r.spans)}),
      el("td", {class: "num", text: num(r.seconds, 4)}), el("td", {class: "num", text: num(r.energy_j, 4)}),
      el("td", {class: "num", text: bytes(r.bytes)}), el("td", {text: r.power_backend}), el("td", {}, prov(r.provenance)),
      el("td", {class: "num", text: r.low_confidence ? String(r.low_confidence) : ""}))));
}

// A decision as written by its suite: tables for lists of records, key/value
// for records, so every workload's decision reads without special cases.
function valueNode(value) {
  if (Array.isArray(value) && value.length && value.every((v) => v && typeof v === "object" && !Array.isArray(v))) {
    const keys = [...new Set(value.flatMap((v) => Object.keys(v)))];
    const t = el("table", {});
    table(t, ["#", ...keys], value.map((v, i) => el("tr", {}, el("td", {text: String(i)}),
      keys.map((k) => el("td", {}, compact(typeof v[k] === "number" ? num(v[k], 4) : v[k], 60))))));
    return t;
  }
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const t = el("table", {});
    table(t, ["", "value"], Object.entries(value).map(([k, v]) => el("tr", {}, el("td", {text: k}), el("td", {}, valueNode(v)))));
    return t;
  }
  if (Array.isArray(value)) return compact(value.map((v) => typeof v === "number" ? Number(num(v, 4)) : v).join(", "));
  return compact(typeof value === "number" ? num(value, 5) : value);
}

function renderDecisions(decisions, applied, summary) {
  const cards = [];
  if (applied.length) {
    // What each device's latest span of a phase says it was told to do.
    const keys = [...new Set(applied.flatMap((a) => Object.keys(a)))].filter((k) => !["device", "phase", "round"].includes(k));
    const t = el("table", {id: "applied"});
    table(t, ["device", "phase", "round", ...keys], applied.map((a) => el("tr", {},
      el("td", {text: a.device}), el("td", {text: a.phase}), el("td", {class: "num", text: String(a.round)}),
      keys.map((k) => el("td", {class: "num"}, k in a ? (k.endsWith("_bps") ? rate(a[k]) : valueNode(a[k])) : "")))));
    cards.push(el("div", {class: "decision"}, el("b", {text: "as the devices apply them "}),
      el("span", {class: "muted small", text: "(their latest span of each phase)"}), t));
  }
  cards.push(...decisions.slice(-50).map((d) => {
    const {phase, run_id, tag, provenance, ...rest} = d;
    return el("div", {class: "decision"},
      el("b", {text: `${tag || "decision"} `}), prov(provenance || "modeled"),
      el("table", {}, el("tbody", {}, Object.entries(rest).map(([k, v]) => el("tr", {}, el("td", {text: k}), el("td", {}, valueNode(v)))))));
  }));
  // The summary's modeled keys are the solver's decisions and predictions
  // (who uploads, rates, batch sizes, split points, placements).
  const labels = (summary && summary.provenance) || {};
  const modeled = Object.keys(labels).filter((k) => String(labels[k]).startsWith("modeled"));
  if (modeled.length) {
    cards.push(el("div", {class: "decision"}, el("b", {text: "from the summary "}), prov("modeled"),
      el("table", {}, el("tbody", {}, modeled.map((k) => el("tr", {}, el("td", {text: k}), el("td", {}, valueNode(summary[k]))))))));
  }
  $("decisions").replaceChildren(...(cards.length ? cards : [el("p", {class: "muted", text: "no solver decision logged yet"})]));
}

function renderSummary(summary) {
  if (!summary) { table($("summary"), ["key", "value", "provenance"], []); return; }
  const labels = summary.provenance || {};
  table($("summary"), ["key", "value", "provenance"], Object.entries(summary).filter(([k]) => k !== "provenance")
    .map(([k, v]) => el("tr", {}, el("td", {text: k}), el("td", {}, compact(v, 200)), el("td", {}, prov(labels[k] || "")))));
}

function renderRun(view) {
  const s = view.status;
  $("run-title").textContent = `${s.run_id} (${s.suite})`;
  $("run-status").replaceChildren(el("table", {id: "run-line"}, el("tbody", {}, el("tr", {"data-run": s.run_id},
    el("td", {}, badge(s.state)), progressCell(s), el("td", {text: s.devices.join(", ")}),
    el("td", {text: `took ${took(s)}`}), el("td", {class: "error", text: s.error})))));
  renderComparisons(view.digest.comparisons);
  renderEnergy(view.digest.energy);
  renderDecisions(view.digest.decisions, view.digest.applied, view.summary);
  renderSummary(view.summary);
  $("log").textContent = view.log.join("\n");
}

function addSpans(batch) {
  for (const s of batch) if (s.seq > lastSeq) { spans.push(s); lastSeq = s.seq; }
  if (spans.length > 4000) spans = spans.slice(-4000);
  renderTimeline();
}

// ------------------------------------------------------------ live updates
async function showError(message) {
  const box = $("run-error");
  box.hidden = !message;
  box.textContent = message || "";
}

async function select() {
  const match = /run=([^&]+)/.exec(location.hash);
  selected = match ? decodeURIComponent(match[1]) : null;
  spans = []; lastSeq = 0; phaseColours.clear();
  $("run-section").hidden = !selected;
  showError(null);
  if (selected) {
    const reply = await fetch(`/api/runs/${encodeURIComponent(selected)}`, {credentials: "same-origin"});
    if (!reply.ok) {
      const body = await reply.json().catch(() => ({error: reply.statusText}));
      showError(`${reply.status}: ${body.error}`);
      $("run-title").textContent = selected;
      selected = null;
    } else {
      renderRun(await reply.json());
    }
  }
  connect();
}

function connect() {
  if (stream) stream.close();
  const url = selected ? `/api/stream?run=${encodeURIComponent(selected)}&after=${lastSeq}` : "/api/stream";
  stream = new EventSource(url);
  const conn = $("conn");
  stream.onopen = () => { conn.textContent = "live"; conn.className = "conn conn-live"; };
  stream.onerror = () => {
    conn.textContent = "reconnecting"; conn.className = "conn conn-wait";
    if (stream.readyState === EventSource.CLOSED) setTimeout(connect, 3000);
  };
  // Runs come only when they change; the fleet every tick, which also moves
  // the running runs' clocks on.
  stream.addEventListener("fleet", (e) => { renderFleet(JSON.parse(e.data)); if (lastRuns) renderRuns(lastRuns); });
  stream.addEventListener("runs", (e) => { lastRuns = JSON.parse(e.data); renderRuns(lastRuns); });
  stream.addEventListener("run", (e) => renderRun(JSON.parse(e.data)));
  stream.addEventListener("spans", (e) => addSpans(JSON.parse(e.data).spans));
}

window.addEventListener("hashchange", select);
select();

// lambdarec /ui: polls /ui/api/samples and renders it; the explorer calls
// /v1/recommendations?explain=true. Plain JS, no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
const keyInput = $("#apikey");
keyInput.value = sessionStorage.getItem("lambdarec.key") || "";
keyInput.addEventListener("change", () => { sessionStorage.setItem("lambdarec.key", keyInput.value); refresh(); });

function headers() {
  const k = keyInput.value.trim();
  return k ? { Authorization: "Bearer " + k } : {};
}

async function getJSON(url) {
  const r = await fetch(url, { headers: headers() });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    const e = body.error || {};
    throw new Error(url + ": " + r.status + " " + (e.code || "") + (e.message ? ": " + e.message : ""));
  }
  return body;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function fmtNum(v, digits) {
  if (v == null || v < 0) return "–";
  return Number(v).toLocaleString("en-US", { maximumFractionDigits: digits == null ? 1 : digits });
}

function fmtSecs(v) {
  if (v == null || v < 0) return "–";
  if (v < 120) return fmtNum(v) + " s";
  if (v < 7200) return fmtNum(v / 60) + " min";
  return fmtNum(v / 3600) + " h";
}

function fmtTime(t) {
  if (!t || t.startsWith("0001-")) return "–";
  return new Date(t).toLocaleTimeString();
}

function spark(values) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 100 20");
  svg.setAttribute("preserveAspectRatio", "none");
  const vs = values.map((v) => (v == null || v < 0 ? 0 : v));
  if (vs.length > 1) {
    const top = Math.max(...vs) || 1;
    const pts = vs.map((v, i) => (i * 100 / (vs.length - 1)).toFixed(1) + "," + (19 - v * 18 / top).toFixed(1));
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.append(line);
  }
  return svg;
}

function renderLayers(data) {
  const box = $("#layers");
  box.replaceChildren();
  const st = data.status;
  if (!st) return;
  for (const l of st.layers) {
    const hist = data.samples.map((s) => (s.layers[l.layer] || {}).lag_records);
    const card = el("div", { class: "layer", "data-layer": l.layer, "data-state": l.state },
      el("h3", {}, l.layer, el("span", { class: "state " + l.state }, l.state)),
      el("div", {}, "freshness: ", el("b", {}, fmtSecs(l.staleness_seconds)), l.last_update ? " (last update " + fmtTime(l.last_update) + ")" : ""),
      el("div", {}, "lag: ", el("b", { class: "lag" }, fmtNum(l.lag_records, 0)), " records, ", fmtSecs(l.lag_seconds), l.lag_upper_bound ? " (upper bound)" : ""),
      spark(hist));
    for (const r of l.reasons || []) card.append(el("div", { class: "reason" }, r.code + ": " + r.message));
    if (l.error) card.append(el("div", { class: "reason" }, l.error));
    box.append(card);
  }
  $("#overall").textContent = st.state;
  $("#overall").className = "state " + st.state;
}

function renderRates(data) {
  const box = $("#rates");
  box.replaceChildren();
  const names = new Set();
  for (const s of data.samples) for (const n of Object.keys(s.rates)) names.add(n);
  for (const n of [...names].sort()) {
    const vs = data.samples.map((s) => s.rates[n]);
    const last = vs.filter((v) => v != null).pop();
    box.append(el("div", { class: "rate", "data-rate": n }, el("h3", {}, n, el("span", {}, fmtNum(last) + "/s")), spark(vs)));
  }
  if (!names.size) box.append(el("p", {}, "no throughput counters in this process yet (two samples are needed)"));
  const n = data.samples.length;
  $("#window").textContent = fmtSecs(n * data.interval_seconds);
  $("#interval").textContent = data.interval_seconds;
}

function renderBatches(data) {
  const body = $("#batches tbody");
  body.replaceChildren();
  for (const b of data.batches) {
    body.append(el("tr", {}, el("td", {}, b.batch_id), el("td", {}, fmtTime(b.created_at)), el("td", {}, fmtTime(b.source_max_event_time)),
      el("td", { class: "num" }, fmtNum(b.events, 0)), el("td", { class: "num" }, b.duration_ms == null ? "–" : fmtNum(b.duration_ms / 1000, 2) + " s")));
  }
  if (!data.batches.length) body.append(el("tr", {}, el("td", { colspan: 5 }, "no batch published yet")));
}

function renderDead(data) {
  const body = $("#dead tbody");
  body.replaceChildren();
  const d = data.dead_letters;
  const rows = [];
  for (const [reason, n] of Object.entries(d.collector || {})) if (n > 0) rows.push(["collector (refused)", reason, n]);
  if (d.archive != null) rows.push(["archive (dead-letter topic)", "all reasons (see lambdarec dlq)", d.archive]);
  if (d.speed != null) rows.push(["speed (skipped invalid)", "invalid record", d.speed]);
  for (const [stage, reason, n] of rows) body.append(el("tr", {}, el("td", {}, stage), el("td", {}, reason), el("td", { class: "num" }, fmtNum(n, 0))));
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: 3 }, "none counted by this process")));
  // Zero counts are shown for the stages this process counts, so "0" means
  // counted and none, not unknown.
}

async function refresh() {
  try {
    const data = await getJSON("/ui/api/samples");
    renderLayers(data);
    renderRates(data);
    renderBatches(data);
    renderDead(data);
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
    $("#error").hidden = true;
  } catch (e) {
    $("#error").textContent = e.message;
    $("#error").hidden = false;
  }
}

function explanation(it) {
  const x = it.explanation;
  if (!x) return "";
  if (x.unavailable) return el("span", { class: "why" }, x.unavailable);
  if (x.popularity_count != null) return el("span", { class: "why" }, "popular: weighted event count " + fmtNum(x.popularity_count, 0));
  // Speed items come from the session's items, batch items from the user's
  // items at batch time (their counts are all the batch's).
  const t = el("table", {}, el("tr", {}, el("th", {}, it.source === "batch" ? "user item" : "session item"), el("th", {}, "rank"), el("th", {}, "weight"), el("th", {}, "batch"), el("th", {}, "speed"), el("th", {}, "top"), el("th", {}, "value")));
  for (const c of x.from || []) {
    t.append(el("tr", { class: "contribution" }, el("td", {}, c.item), el("td", {}, c.rank), el("td", {}, fmtNum(c.rank_weight, 4)),
      el("td", { class: "num" }, c.batch_count), el("td", { class: "num" }, c.speed_count), el("td", { class: "num" }, c.top_count), el("td", { class: "num" }, fmtNum(c.value, 4))));
  }
  return el("div", { class: "why" }, t, "sum " + fmtNum(x.score, 4));
}

$("#explorer").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = new URLSearchParams({ explain: "true", k: $("#k").value || "10" });
  if ($("#user").value.trim()) q.set("user_id", $("#user").value.trim());
  if ($("#session").value.trim()) q.set("session_id", $("#session").value.trim());
  const body = $("#items tbody");
  body.replaceChildren();
  try {
    const r = await getJSON("/v1/recommendations?" + q);
    const b = r.as_of.batch, s = r.as_of.speed;
    $("#asof").textContent = "batch " + (b ? b.batch_id + " (" + fmtSecs(b.staleness_seconds) + " old)" : "none") +
      "; speed " + (s ? "partition " + s.partition + " offset " + s.offset + " (" + fmtSecs(s.staleness_seconds) + " old, " +
        (s.scored === "read" ? "scored at read" : "stored view") + ")" : "not merged") +
      (r.user_id ? "; user " + r.user_id : "");
    r.items.forEach((it, i) => body.append(el("tr", { class: "rec-item", "data-source": it.source }, el("td", {}, i + 1), el("td", {}, it.item),
      el("td", {}, it.source), el("td", { class: "num" }, fmtNum(it.score, 4) + " " + it.scale), el("td", {}, explanation(it)))));
    if (!r.items.length) body.append(el("tr", {}, el("td", { colspan: 5 }, "no items (no batch yet?)")));
  } catch (e) {
    body.append(el("tr", {}, el("td", { colspan: 5, class: "error" }, e.message)));
  }
});

refresh();
setInterval(refresh, 2000);

// chromatica-watch web app: plain JS, no build step, same-origin only (the page runs under a strict CSP).
"use strict";

(() => {
  const MAX_COLORS = 8;
  const STATUS_EVERY_MS = 2000;
  const DEFAULT_COLORS = ["#1f8a70", "#f2a541"];
  const PLACEHOLDER = "/static/placeholder.svg";
  const EAGER_THUMBNAILS = 60; // about two screenfuls of the grid

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  };

  const state = {
    lastQuery: null,        // {kind: "colors"|"image"|"similar", ...}: what "Search again" repeats
    indexedAtQuery: null,   // the indexed count when the shown results were asked for
    lastIndexed: null,
    seq: 0,                 // answers to older requests are dropped
    detailItem: null,
    statusTimer: null,
    statusInFlight: false,
  };

  // ---------------------------------------------------------------- colours
  const probe = document.createElement("canvas").getContext("2d");

  /** '#rrggbb' for a CSS colour (hex, name, rgb()...), or null when it is not one. */
  function toHex(text) {
    const value = String(text || "").trim();
    if (!value) return null;
    if (/^#?[0-9a-f]{3}$/i.test(value) || /^#?[0-9a-f]{6}$/i.test(value)) {
      let hex = value.replace("#", "").toLowerCase();
      if (hex.length === 3) hex = hex.split("").map((c) => c + c).join("");
      return "#" + hex;
    }
    if (!window.CSS || !CSS.supports("color", value)) return null;
    probe.fillStyle = "#000000";
    probe.fillStyle = value;
    const out = probe.fillStyle;
    return /^#[0-9a-f]{6}$/i.test(out) ? out.toLowerCase() : null; // translucent colours come back as rgba()
  }

  function colorRows() {
    return Array.from($("colors").querySelectorAll(".color-row"));
  }

  function renumberRows() {
    const rows = colorRows();
    rows.forEach((row, i) => {
      const n = i + 1;
      row.dataset.index = String(i);
      row.querySelector(".color-picker").setAttribute("aria-label", `Colour ${n}`);
      row.querySelector(".color-text").setAttribute("aria-label", `Colour ${n} as hex or a CSS name`);
      row.querySelector(".color-weight").setAttribute("aria-label", `Colour ${n} weight`);
      row.querySelector(".color-remove").setAttribute("aria-label", `Remove colour ${n}`);
      row.querySelector(".color-remove").disabled = rows.length <= 1;
      row.querySelector(".color-weight").disabled = rows.length <= 1;
      row.classList.toggle("single", rows.length <= 1);
    });
    $("add-color").disabled = rows.length >= MAX_COLORS;
    $("colors-hint").textContent = rows.length >= MAX_COLORS ? "8 at most" : `${rows.length} of 8`;
  }

  function addColor(hex, weight) {
    if (colorRows().length >= MAX_COLORS) return null;
    const row = $("color-row-template").content.firstElementChild.cloneNode(true);
    const picker = row.querySelector(".color-picker");
    const text = row.querySelector(".color-text");
    const slider = row.querySelector(".color-weight");
    const out = row.querySelector(".color-weight-value");
    picker.value = toHex(hex) || "#808080";
    text.value = picker.value;
    slider.value = String(weight || 100);
    out.textContent = `${slider.value}%`;
    const sync = () => {
      text.value = picker.value;
      text.classList.remove("invalid");
      text.removeAttribute("aria-invalid");
    };
    picker.addEventListener("input", sync);
    picker.addEventListener("change", sync);
    text.addEventListener("input", () => {
      const parsed = toHex(text.value);
      text.classList.toggle("invalid", !parsed);
      if (parsed) {
        picker.value = parsed;
        text.removeAttribute("aria-invalid");
      } else {
        text.setAttribute("aria-invalid", "true");
      }
    });
    text.addEventListener("change", () => {
      const parsed = toHex(text.value);
      if (parsed && /^#?[0-9a-f]+$/i.test(text.value.trim())) text.value = parsed;
    });
    slider.addEventListener("input", () => { out.textContent = `${slider.value}%`; });
    row.querySelector(".color-remove").addEventListener("click", () => {
      const next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      renumberRows();
      if (next) next.querySelector(".color-picker").focus();
    });
    $("colors").appendChild(row);
    renumberRows();
    return row;
  }

  function setColors(list) {
    $("colors").replaceChildren();
    list.slice(0, MAX_COLORS).forEach(([hex, w]) => addColor(hex, w));
    if (!colorRows().length) addColor(DEFAULT_COLORS[0]);
  }

  /** The query's colour specs, '#rrggbb[:weight]', or throws a message for the user. */
  function colorSpecs() {
    const rows = colorRows();
    const specs = [];
    rows.forEach((row, i) => {
      const text = row.querySelector(".color-text");
      const hex = toHex(text.value);
      if (!hex) throw new Error(`Colour ${i + 1}: “${text.value}” is not a colour (a hex like #ff8800, or a CSS name like teal).`);
      row.querySelector(".color-picker").value = hex;
      const weight = Number(row.querySelector(".color-weight").value) / 100;
      specs.push(rows.length > 1 ? `${hex}:${weight}` : hex);
    });
    return specs;
  }

  function grouping() {
    return $("group-sidecars").checked ? "&group_sidecars=1" : "";
  }

  function kValue() {
    const k = Math.round(Number($("k").value));
    return Number.isFinite(k) && k >= 1 ? Math.min(k, 500) : 24;
  }

  // ---------------------------------------------------------------- requests
  async function api(url, options) {
    let response;
    try {
      response = await fetch(url, { credentials: "same-origin", cache: "no-store", ...options });
    } catch (err) {
      throw new Error("The daemon does not answer (is chromatica-watch running?).");
    }
    let body = null;
    const type = response.headers.get("content-type") || "";
    if (type.includes("json")) {
      try { body = await response.json(); } catch (err) { body = null; }
    }
    if (!response.ok) {
      let message = body && body.error ? body.error : `${response.status} ${response.statusText}`;
      if (response.status === 403) message = "Not allowed: open the app with its link (chromatica-watch open).";
      else if (response.status === 413 && !(body && body.error)) message = "That file is too large to search with.";
      const err = new Error(message);
      err.status = response.status;
      throw err;
    }
    return body;
  }

  // ---------------------------------------------------------------- searching
  async function runQuery(query, { remember = true } = {}) {
    const seq = ++state.seq;
    const k = kValue();
    let url;
    let options;
    let label;
    if (query.kind === "colors") {
      const params = new URLSearchParams();
      query.specs.forEach((s) => params.append("color", s));
      params.set("k", String(k));
      url = `/api/search?${params}${grouping()}`;
      label = query.specs.map((s) => s.split(":")[0]).join(" ");
    } else if (query.kind === "image") {
      url = `/api/search?k=${k}${grouping()}`;
      options = { method: "POST", body: query.file, headers: { "Content-Type": query.file.type || "application/octet-stream" } };
      label = `like ${query.file.name || "the dropped image"}`;
    } else {
      url = `/api/similar/${encodeURIComponent(query.id)}?k=${k}${grouping()}`;
      label = `more like ${query.name}`;
    }
    if (remember) {
      state.lastQuery = query;
      if (query.kind === "colors") history.replaceState(null, "", `#${new URLSearchParams([...query.specs.map((s) => ["color", s]), ["k", String(k)]])}`);
    }
    setBusy(true);
    hideError();
    const started = performance.now();
    try {
      const results = await api(url, options);
      if (seq !== state.seq) return;
      state.indexedAtQuery = state.lastIndexed;
      $("stale").hidden = true;
      renderResults(Array.isArray(results) ? results : [], label, performance.now() - started);
    } catch (err) {
      if (seq !== state.seq) return;
      showError(err.message);
    } finally {
      if (seq === state.seq) setBusy(false);
    }
  }

  function searchColors() {
    let specs;
    try {
      specs = colorSpecs();
    } catch (err) {
      showError(err.message);
      return;
    }
    runQuery({ kind: "colors", specs });
  }

  function searchFile(file) {
    if (!file) return;
    if (file.type && !file.type.startsWith("image/")) {
      showError(`“${file.name}” is not an image.`);
      return;
    }
    const preview = $("drop-preview");
    if (preview.dataset.url) URL.revokeObjectURL(preview.dataset.url);
    const objectUrl = URL.createObjectURL(file);
    preview.dataset.url = objectUrl;
    preview.src = objectUrl;
    preview.alt = `The example image, ${file.name}`;
    preview.hidden = false;
    runQuery({ kind: "image", file });
  }

  function setBusy(busy) {
    document.body.classList.toggle("busy", busy);
    $("search").disabled = busy;
    $("results").setAttribute("aria-busy", busy ? "true" : "false");
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = false;
  }

  function hideError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  // ---------------------------------------------------------------- results
  function paletteBar(colors, cls) {
    const bar = el("div", cls || "palette");
    bar.setAttribute("aria-hidden", "true");
    (colors || []).forEach((c) => {
      const swatch = el("span", "swatch");
      swatch.style.backgroundColor = c.hex;
      swatch.style.width = `${(c.share * 100).toFixed(2)}%`;
      swatch.title = `${c.hex} ${Math.round(c.share * 100)}%`;
      swatch.dataset.hex = c.hex;
      swatch.dataset.share = String(c.share);
      bar.appendChild(swatch);
    });
    return bar;
  }

  function paletteText(colors) {
    return (colors || []).map((c) => `${c.hex} ${Math.round(c.share * 100)}%`).join(", ");
  }

  function baseName(path) {
    const parts = String(path || "").split("/");
    return parts[parts.length - 1] || path;
  }

  function renderResults(results, label, ms) {
    const list = $("results");
    const items = results.map((r, i) => {
      const li = el("li", r.offline ? "result offline" : "result");
      li.dataset.id = String(r.id);
      li.dataset.rank = String(i + 1);
      li.dataset.path = r.path;
      li.dataset.score = String(r.score);
      li.dataset.testid = "result";
      const button = el("button", "result-open");
      button.type = "button";
      button.setAttribute("aria-label",
        `${i + 1}. ${r.relative_path || r.path}, distance ${r.score.toFixed(1)}${r.offline ? ", offline" : ""}. Open details`);
      const img = el("img", "thumb");
      // The first screenfuls load at once; lazy loading would wait for layout before fetching even the
      // thumbnails in view. Past them, a long list (k up to 1000) fetches only what is scrolled to.
      img.loading = i < EAGER_THUMBNAILS ? "eager" : "lazy";
      img.decoding = "async";
      img.width = 128;
      img.height = 128;
      img.alt = `${r.relative_path || r.path}: ${paletteText(r.dominant_colors)}`;
      img.addEventListener("error", () => { if (!img.src.endsWith(PLACEHOLDER)) img.src = PLACEHOLDER; }, { once: true });
      img.src = r.thumbnail;
      const frame = el("span", "thumb-frame");
      frame.appendChild(img);
      if (r.offline) frame.appendChild(el("span", "badge badge-offline", "offline"));
      button.appendChild(frame);
      const meta = el("span", "result-meta");
      meta.appendChild(el("span", "result-score", `ΔE ${r.score.toFixed(1)}`));
      meta.appendChild(el("span", "result-name", baseName(r.relative_path || r.path)));
      if (r.sidecars && r.sidecars.length) {
        meta.appendChild(el("span", "result-sidecars", `+ ${r.sidecars.map(baseName).join(", ")}`));
      }
      button.appendChild(meta);
      button.appendChild(paletteBar(r.dominant_colors));
      button.addEventListener("click", () => openDetail(r));
      li.appendChild(button);
      return li;
    });
    list.replaceChildren(...items);
    const seconds = (ms / 1000).toFixed(ms < 1000 ? 2 : 1);
    $("summary").textContent = results.length
      ? `${results.length} result${results.length === 1 ? "" : "s"} ${label ? "for " + label : ""} · ${seconds} s`
      : `Nothing found ${label ? "for " + label : ""} (is anything indexed yet?)`;
  }

  // ---------------------------------------------------------------- detail view
  async function openDetail(item) {
    state.detailItem = item;
    const dialog = $("detail");
    fillDetail(item);
    if (!dialog.open) dialog.showModal();
    $("more-like-this").focus();
    try {
      const full = await api(`/api/images/${encodeURIComponent(item.id)}`);
      if (state.detailItem !== item || !full) return;
      fillDetail({ ...item, ...full });
    } catch (err) {
      if (state.detailItem === item) $("detail-meta").textContent = err.message;
    }
  }

  function fillDetail(item) {
    const img = $("detail-image");
    const large = item.large || item.thumbnail;
    if (img.getAttribute("src") !== large) {
      img.src = item.thumbnail; // already cached: something shows at once
      const big = new Image();
      big.addEventListener("load", () => { if (state.detailItem && state.detailItem.id === item.id) img.src = large; });
      big.src = large;
    }
    img.alt = `${item.relative_path || item.path}: ${paletteText(item.dominant_colors)}`;
    $("detail-title").textContent = baseName(item.relative_path || item.path);
    $("detail-path").textContent = item.path;
    const meta = [];
    if (item.width && item.height) meta.push(`${item.width} × ${item.height}`);
    if (typeof item.score === "number") meta.push(`ΔE ${item.score.toFixed(1)} from the query`);
    if (item.root) meta.push(`in ${item.root}`);
    $("detail-meta").textContent = meta.join(" · ");
    $("detail-offline").hidden = !item.offline;
    $("detail-bar").replaceWith(Object.assign(paletteBar(item.dominant_colors, "palette palette-large"), { id: "detail-bar" }));
    const list = $("detail-palette");
    list.replaceChildren(...(item.dominant_colors || []).map((c) => {
      const li = el("li");
      const chip = el("span", "chip");
      chip.style.backgroundColor = c.hex;
      li.append(chip, el("code", null, c.hex), el("span", "share", `${(c.share * 100).toFixed(1)}%`));
      return li;
    }));
  }

  // ---------------------------------------------------------------- status panel
  function formatCount(n) {
    return typeof n === "number" ? n.toLocaleString("en") : "–";
  }

  function formatDuration(seconds) {
    if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "–";
    if (seconds < 60) return `${Math.ceil(seconds)} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
    return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
  }

  /** Text set only when it changed: an idle page does no layout work, and a selection survives. */
  function setText(node, value) {
    const next = String(value);
    if (node.textContent !== next) node.textContent = next;
  }

  /** A list rebuilt only when its data changed (it is polled every 2 s and mostly the same). */
  function renderList(list, data, build) {
    const key = JSON.stringify(data);
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    list.replaceChildren(...build());
  }

  function renderStatus(s) {
    const counts = s.counts || {};
    const stateName = s.state || "unknown";
    const badge = $("status-state");
    setText(badge, stateName);
    if (badge.className !== `badge state-${stateName}`) badge.className = `badge state-${stateName}`;
    setText($("status-indexed"), formatCount(counts.indexed));
    setText($("status-queued"), formatCount(counts.queued));
    setText($("status-failed"), formatCount(counts.failed));
    const busy = (counts.queued || 0) > 0 || stateName === "indexing";
    setText($("status-rate"), busy && s.throughput_per_s ? `${s.throughput_per_s.toFixed(1)}/s` : "–");
    setText($("status-eta"), busy ? formatDuration(s.eta_seconds) : "–");
    const progress = $("status-progress");
    progress.hidden = !busy;
    setText(progress, busy ? `${formatCount(counts.queued)} queued` : "");
    const degraded = $("status-degraded");
    degraded.hidden = !s.degraded_reason;
    setText(degraded, s.degraded_reason || "");

    const roots = s.roots || [];
    renderList($("status-roots"), roots.map((r) => [r.path, r.state, r.photos, r.failed, r.problem]), () => roots.map((r) => {
      const li = el("li", `root root-${r.state}`);
      li.dataset.state = r.state;
      li.append(el("span", `badge state-${r.state}`, r.state), el("span", "path", r.path),
        el("span", "hint", `${formatCount(r.photos)} photo${r.photos === 1 ? "" : "s"}${r.failed ? `, ${r.failed} failed` : ""}`));
      if (r.problem) li.appendChild(el("span", "warning", r.problem));
      return li;
    }));

    const alerts = (s.alerts || []).slice(-5).reverse();
    $("alerts-box").hidden = !alerts.length;
    renderList($("status-alerts"), alerts, () => alerts.map((a) => el("li", null, a.message)));

    // Failures: the persistent list when the server sends it, else the recent ones (both carry a reason).
    const failures = (s.failures && s.failures.length ? s.failures : s.recent_failures) || [];
    $("failures-box").hidden = !failures.length && !(counts.failed > 0);
    const shown = failures.slice(0, 20).map((f) => [f.path, f.reason]);
    renderList($("status-failures"), [shown, failures.length], () => {
      const items = shown.map(([path, reason]) => {
        const li = el("li", "failure");
        li.append(el("span", "path", path), el("span", "reason", reason));
        return li;
      });
      if (failures.length > 20) items.push(el("li", "hint", `and ${failures.length - 20} more`));
      return items;
    });
    setText($("status-version"), s.version ? `chromatica-watch ${s.version}` : "");

    setText($("status-line"), busy
      ? `${stateName}: ${formatCount(counts.indexed)} indexed, ${formatCount(counts.queued)} queued`
      : `${stateName}: ${formatCount(counts.indexed)} photos indexed`);
    const title = busy ? `(${formatCount(counts.queued)}) chromatica-watch` : "chromatica-watch";
    if (document.title !== title) document.title = title;

    state.lastIndexed = typeof counts.indexed === "number" ? counts.indexed : null;
    if (state.lastQuery && state.indexedAtQuery === null) state.indexedAtQuery = state.lastIndexed; // answered first
    if (state.lastQuery && state.indexedAtQuery !== null && state.lastIndexed !== null
        && state.lastIndexed !== state.indexedAtQuery) {
      const diff = state.lastIndexed - state.indexedAtQuery;
      $("stale-text").textContent = diff > 0
        ? `${diff} photo${diff === 1 ? "" : "s"} indexed since this search.`
        : "The index changed since this search.";
      $("stale").hidden = false;
    }
  }

  async function pollStatus() {
    clearTimeout(state.statusTimer);
    state.statusTimer = null;
    if (document.visibilityState === "hidden" || state.statusInFlight) return;
    state.statusInFlight = true;
    try {
      renderStatus(await api("/api/status"));
      $("status-panel").classList.remove("stale-status");
    } catch (err) {
      $("status-line").textContent = err.message;
      $("status-panel").classList.add("stale-status");
    } finally {
      state.statusInFlight = false;
      if (document.visibilityState !== "hidden") state.statusTimer = setTimeout(pollStatus, STATUS_EVERY_MS);
    }
  }

  async function retryFailed() {
    const button = $("retry-failed");
    button.disabled = true;
    try {
      const answer = await api("/api/retry-failed", { method: "POST" });
      const n = answer && typeof answer.requeued === "number" ? answer.requeued : 0;
      $("retry-result").textContent = `${n} file${n === 1 ? "" : "s"} queued again`;
      pollStatus();
    } catch (err) {
      $("retry-result").textContent = err.message;
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- wiring
  function restoreFromHash() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const specs = params.getAll("color");
    if (!specs.length) return false;
    const rows = specs.map((s) => {
      const [hex, w] = s.split(":");
      return [hex, w ? Math.max(1, Math.min(100, Math.round(Number(w) * 100))) : 100];
    }).filter(([hex]) => toHex(hex));
    if (!rows.length) return false;
    setColors(rows);
    if (params.get("k")) $("k").value = params.get("k");
    return true;
  }

  function init() {
    const restored = restoreFromHash();
    if (!restored) setColors(DEFAULT_COLORS.map((c) => [c, 100]));

    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      searchColors();
    });
    // Enter searches from any control of the form (range and colour inputs do not submit by themselves).
    $("search-form").addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.isComposing) return;
      const t = event.target;
      if (t instanceof HTMLButtonElement) return; // a button's own action
      event.preventDefault();
      searchColors();
    });
    $("add-color").addEventListener("click", () => {
      const last = colorRows().pop();
      const row = addColor(last ? last.querySelector(".color-picker").value : DEFAULT_COLORS[0]);
      if (row) row.querySelector(".color-picker").focus();
    });

    const drop = $("drop");
    const file = $("file");
    file.addEventListener("change", () => {
      if (file.files && file.files[0]) searchFile(file.files[0]);
    });
    drop.addEventListener("keydown", (event) => {
      if ((event.key === "Enter" || event.key === " ") && event.target === drop) {
        event.preventDefault();
        file.click();
      }
    });
    drop.addEventListener("click", (event) => {
      if (event.target === drop || event.target.id === "drop-help") file.click();
    });
    ["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (event) => {
      event.preventDefault();
      if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
      drop.classList.add("dragging");
    }));
    ["dragleave", "dragend"].forEach((type) => drop.addEventListener(type, () => drop.classList.remove("dragging")));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("dragging");
      const dropped = event.dataTransfer && event.dataTransfer.files && event.dataTransfer.files[0];
      if (dropped) searchFile(dropped);
    });
    // A file dropped anywhere on the page searches too (and never navigates away from the app).
    window.addEventListener("dragover", (event) => event.preventDefault());
    window.addEventListener("drop", (event) => {
      event.preventDefault();
      if (drop.contains(event.target)) return; // the zone's own handler has it
      const dropped = event.dataTransfer && event.dataTransfer.files && event.dataTransfer.files[0];
      if (dropped) searchFile(dropped);
    });

    $("more-like-this").addEventListener("click", () => {
      const item = state.detailItem;
      if (!item) return;
      $("detail").close();
      runQuery({ kind: "similar", id: item.id, name: baseName(item.relative_path || item.path) });
      $("results").focus({ preventScroll: true });
    });
    $("use-colors").addEventListener("click", () => {
      const item = state.detailItem;
      if (!item || !item.dominant_colors || !item.dominant_colors.length) return;
      setColors(item.dominant_colors.slice(0, MAX_COLORS).map((c) => [c.hex, Math.max(1, Math.round(c.share * 100))]));
      $("detail").close();
      searchColors();
    });
    $("copy-path").addEventListener("click", async () => {
      const item = state.detailItem;
      if (!item) return;
      try {
        await navigator.clipboard.writeText(item.path);
        $("copy-path").textContent = "Copied";
      } catch (err) {
        $("copy-path").textContent = "Copy failed";
      }
      setTimeout(() => { $("copy-path").textContent = "Copy path"; }, 1500);
    });
    $("detail").addEventListener("close", () => { state.detailItem = null; });
    $("detail").addEventListener("click", (event) => {
      if (event.target === $("detail")) $("detail").close(); // a click on the backdrop
    });
    $("stale-refresh").addEventListener("click", () => {
      if (state.lastQuery) runQuery(state.lastQuery);
    });
    $("retry-failed").addEventListener("click", retryFailed);

    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") pollStatus();
      else {
        clearTimeout(state.statusTimer);
        state.statusTimer = null;
      }
    });
    pollStatus();
    if (restored) searchColors();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();

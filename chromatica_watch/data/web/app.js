// chromatica-watch web app: plain JS, no build step, same-origin only (the page runs under a strict CSP).
"use strict";

(() => {
  const MAX_COLORS = 8;
  const STATUS_EVERY_MS = 2000;
  const DEFAULT_COLORS = ["#1f8a70", "#f2a541"];
  const PLACEHOLDER = "/static/placeholder.svg";
  const EAGER_THUMBNAILS = 60; // about two screenfuls of the grid
  const MODES = ["palette", "contains", "most"];
  const DEFAULT_SHARE = 25; // "contains at least 25%" when a colour's mode turns to it
  const MODE_HINTS = {
    palette: "Photos whose whole palette is these colours, in these proportions.",
    contains: "Photos holding at least about these shares of these colours; the rest of the photo is free.",
    most: "The photos holding the most of this colour.",
  };

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
    colorMode: "palette",   // every colour's: "palette" | "contains" | "most" (one colour alone)
  };

  // ---------------------------------------------------------------- colours
  const probe = document.createElement("canvas").getContext("2d");
  // The colour names the daemon reads ({names: name -> '#rrggbb', CSS first then the xkcd survey's; css: the
  // CSS ones}), asked for once (/api/colour-names), so that a name here is what it is in a search.
  let colourNames = { names: {}, css: {} };

  /** '#rrggbb' for a colour name as the daemon reads it: case aside, hyphens, underscores and spaces alike. */
  function namedHex(value) {
    const key = value.toLowerCase().replace(/[\s_-]+/g, " ").trim();
    const own = (table, name) => (Object.prototype.hasOwnProperty.call(table, name) ? table[name] : null);
    return own(colourNames.names, key) || (key.includes(" ") ? own(colourNames.css, key.replace(/ /g, "")) : null);
  }

  /** '#rrggbb' for a colour (hex, a name the daemon knows, or CSS such as rgb()), or null when it is not one. */
  function toHex(text) {
    const value = String(text || "").trim();
    if (!value) return null;
    if (/^#?[0-9a-f]{3}$/i.test(value) || /^#?[0-9a-f]{6}$/i.test(value)) {
      let hex = value.replace("#", "").toLowerCase();
      if (hex.length === 3) hex = hex.split("").map((c) => c + c).join("");
      return "#" + hex;
    }
    const named = namedHex(value);
    if (named) return named;
    if (!window.CSS || !CSS.supports("color", value)) return null;
    probe.fillStyle = "#000000";
    probe.fillStyle = value;
    const out = probe.fillStyle;
    return /^#[0-9a-f]{6}$/i.test(out) ? out.toLowerCase() : null; // translucent colours come back as rgba()
  }

  function colorRows() {
    return Array.from($("colors").querySelectorAll(".color-row"));
  }

  function avoidRows() {
    return Array.from($("avoid").querySelectorAll(".avoid-row"));
  }

  /** A picker and its text field kept in step: the text takes hex or a colour name, the picker shows it. */
  function bindColorInputs(picker, text) {
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
  }

  /** The slider of a row shows the value of the colours' mode: a weight of the palette, or a share to hold. */
  function showSlider(row) {
    const slider = row.querySelector(".color-weight");
    const out = row.querySelector(".color-weight-value");
    const contains = state.colorMode === "contains";
    slider.max = contains ? "99" : "100";
    slider.value = contains ? row.dataset.share : row.dataset.weight;
    out.textContent = contains ? `≥ ${slider.value}%` : `${slider.value}%`;
  }

  /** One mode for every colour (the daemon matches a whole palette or the shares photos hold, not both). */
  function setMode(mode) {
    state.colorMode = MODES.includes(mode) ? mode : "palette";
    renumberRows();
  }

  function renumberRows() {
    const rows = colorRows();
    if (state.colorMode === "most" && rows.length > 1) state.colorMode = "contains"; // "the most" is for one colour
    const mode = state.colorMode;
    rows.forEach((row, i) => {
      const n = i + 1;
      row.dataset.index = String(i);
      row.dataset.mode = mode;
      const select = row.querySelector(".color-mode");
      select.value = mode;
      select.querySelector('option[value="most"]').disabled = rows.length > 1;
      select.setAttribute("aria-label", `Colour ${n} mode`);
      row.querySelector(".color-picker").setAttribute("aria-label", `Colour ${n}`);
      row.querySelector(".color-text").setAttribute("aria-label", `Colour ${n} as hex or a CSS name`);
      row.querySelector(".color-weight").setAttribute("aria-label",
        mode === "contains" ? `Colour ${n}: at least this share of the photo, in %` : `Colour ${n} weight`);
      row.querySelector(".color-remove").setAttribute("aria-label", `Remove colour ${n}`);
      row.classList.toggle("single", mode === "most" || (mode === "palette" && rows.length <= 1));
      showSlider(row);
    });
    $("add-color").disabled = rows.length >= MAX_COLORS;
    $("colors-hint").textContent = !rows.length ? "any colour: the filters alone"
      : rows.length >= MAX_COLORS ? "8 at most" : `${rows.length} of 8`;
    $("mode-hint").textContent = !rows.length ? "" : MODE_HINTS[mode];
  }

  function addColor(hex, weight, share) {
    if (colorRows().length >= MAX_COLORS) return null;
    const row = $("color-row-template").content.firstElementChild.cloneNode(true);
    const picker = row.querySelector(".color-picker");
    const text = row.querySelector(".color-text");
    const slider = row.querySelector(".color-weight");
    picker.value = toHex(hex) || "#808080";
    text.value = picker.value;
    row.dataset.weight = String(weight || 100);
    row.dataset.share = String(share || DEFAULT_SHARE);
    bindColorInputs(picker, text);
    slider.addEventListener("input", () => {
      row.dataset[state.colorMode === "contains" ? "share" : "weight"] = slider.value;
      showSlider(row);
    });
    row.querySelector(".color-mode").addEventListener("change", (event) => setMode(event.target.value));
    row.querySelector(".color-remove").addEventListener("click", () => {
      const next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      renumberRows();
      if (next) next.querySelector(".color-picker").focus();
      else $("add-color").focus();
    });
    $("colors").appendChild(row);
    renumberRows();
    return row;
  }

  /** Rows of [hex, weight, share]; the mode is the colours' (palette by default). */
  function setColors(list, mode) {
    $("colors").replaceChildren();
    state.colorMode = MODES.includes(mode) ? mode : "palette";
    list.slice(0, MAX_COLORS).forEach(([hex, w, share]) => addColor(hex, w, share));
    if (!colorRows().length) addColor(DEFAULT_COLORS[0]);
  }

  function addAvoid(hex, maxShare) {
    const row = $("avoid-row-template").content.firstElementChild.cloneNode(true);
    const picker = row.querySelector(".avoid-picker");
    const text = row.querySelector(".avoid-text");
    picker.value = toHex(hex) || "#ff0000";
    text.value = picker.value;
    row.querySelector(".avoid-share").value = maxShare === undefined || maxShare === null ? "" : String(maxShare);
    bindColorInputs(picker, text);
    row.querySelector(".avoid-remove").addEventListener("click", () => {
      row.remove();
      renumberAvoid();
      $("add-avoid").focus();
    });
    $("avoid").appendChild(row);
    renumberAvoid();
    return row;
  }

  function renumberAvoid() {
    const rows = avoidRows();
    rows.forEach((row, i) => {
      const n = i + 1;
      row.querySelector(".avoid-picker").setAttribute("aria-label", `Colour to avoid ${n}`);
      row.querySelector(".avoid-text").setAttribute("aria-label", `Colour to avoid ${n} as hex or a CSS name`);
      row.querySelector(".avoid-share").setAttribute("aria-label",
        `Colour to avoid ${n}: the most of it a photo may hold, in % (5 if blank)`);
      row.querySelector(".avoid-remove").setAttribute("aria-label", `Remove colour to avoid ${n}`);
    });
    $("add-avoid").disabled = rows.length >= MAX_COLORS;
  }

  /** The query's colours, or throws a message for the user: {specs: ['#rrggbb[:weight]'], scoring, label}.
   *  A whole palette sends whole-number weights (relative: never read as shares); shares to hold are
   *  fractions summing below 1; "the most" is a lone colour without a weight. */
  function colorSpecs() {
    const rows = colorRows();
    const mode = state.colorMode;
    const picked = rows.map((row, i) => {
      const text = row.querySelector(".color-text");
      const hex = toHex(text.value);
      if (!hex) throw new Error(`Colour ${i + 1}: “${text.value}” is not a colour (a hex like #ff8800, or a name like teal or dusty rose).`);
      row.querySelector(".color-picker").value = hex;
      return { hex, weight: Number(row.dataset.weight), share: Number(row.dataset.share) };
    });
    if (!picked.length) return { specs: [], scoring: "browse", label: "" };
    if (mode === "most") return { specs: [picked[0].hex], scoring: "contains", label: `the most ${picked[0].hex}` };
    if (mode === "contains") {
      const total = picked.reduce((sum, p) => sum + p.share, 0);
      if (total >= 100) {
        throw new Error(`The shares add up to ${total}%: together they must stay below 100% (the rest of the photo is free).`);
      }
      return {
        specs: picked.map((p) => `${p.hex}:${(p.share / 100).toFixed(2)}`),
        scoring: "contains",
        label: picked.map((p) => `${p.hex} ≥ ${p.share}%`).join(", "),
      };
    }
    return {
      specs: picked.map((p) => `${p.hex}:${picked.length > 1 ? p.weight : 1}`),
      scoring: "palette",
      label: picked.map((p) => p.hex).join(" "),
    };
  }

  /** ['#rrggbb' or '#rrggbb:0.2'] for the colours to avoid, or throws a message for the user. */
  function avoidSpecs() {
    return avoidRows().map((row, i) => {
      const text = row.querySelector(".avoid-text");
      const hex = toHex(text.value);
      if (!hex) throw new Error(`Colour to avoid ${i + 1}: “${text.value}” is not a colour.`);
      row.querySelector(".avoid-picker").value = hex;
      const raw = row.querySelector(".avoid-share").value.trim();
      if (!raw) return hex;
      const most = Number(raw);
      if (!Number.isFinite(most) || most < 0 || most >= 100) {
        throw new Error(`Colour to avoid ${i + 1}: the most a photo may hold is a share from 0 to 99%.`);
      }
      return `${hex}:${Number((most / 100).toFixed(4))}`;
    });
  }

  /** 'YYYY-MM-DD' a number of days from a date input's value. */
  function shiftDay(value, days) {
    const [y, m, d] = value.split("-").map(Number);
    return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
  }

  /** The filters as [name, value] pairs of /api/search, with their words for the summary; throws a message. */
  function filterParams() {
    const params = [];
    const words = [];
    const folder = $("folder").value.trim();
    if (folder) {
      if (!/^[/~*?[]/.test(folder)) {
        throw new Error(`Folder: “${folder}” is not a full path (like /home/me/Pictures/2024) or a glob on folders (like */2024*).`);
      }
      params.push(["in", folder]);
      words.push(`in ${folder}`);
    }
    const from = $("taken-from").value;
    const until = $("taken-until").value;
    if (from && until && from > until) throw new Error(`Taken from ${from} until ${until}: the first date is after the last.`);
    if (from) params.push(["taken_after", from]);
    if (until) params.push(["taken_before", shiftDay(until, 1)]); // the last day is included: before the next one
    if (from || until) words.push(`taken ${from ? "from " + from : ""}${from && until ? " " : ""}${until ? "until " + until : ""}`);
    const camera = $("camera").value.trim();
    if (camera) {
      params.push(["camera", camera]);
      words.push(`camera “${camera}”`);
    }
    const orientation = $("orientation").value;
    if (orientation) {
      params.push(["orientation", orientation]);
      words.push(orientation);
    }
    const tone = $("tone").value;
    if (tone) {
      params.push(["tone", tone]);
      words.push(tone === "monochrome" ? "black and white" : "colorful");
    }
    return { params, words };
  }

  function clearFilters() {
    $("avoid").replaceChildren();
    renumberAvoid();
    ["folder", "taken-from", "taken-until", "camera", "orientation", "tone"].forEach((id) => { $(id).value = ""; });
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
    return (await request(url, options)).body;
  }

  /** {body, headers} of a request, or throws the server's one-line error. */
  async function request(url, options) {
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
    return { body, headers: response.headers };
  }

  // ---------------------------------------------------------------- searching
  async function runQuery(query, { remember = true } = {}) {
    const seq = ++state.seq;
    const k = kValue();
    let url;
    let options;
    let label;
    if (query.kind === "colors") {
      const params = new URLSearchParams(query.params);
      params.set("k", String(k));
      url = `/api/search?${params}${grouping()}`;
      label = query.label;
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
      if (query.kind === "colors") history.replaceState(null, "", `#${new URLSearchParams([...query.params, ["k", String(k)]])}`);
    }
    setBusy(true);
    hideError();
    const started = performance.now();
    try {
      const { body, headers } = await request(url, options);
      if (seq !== state.seq) return;
      state.indexedAtQuery = state.lastIndexed;
      $("stale").hidden = true;
      renderResults(Array.isArray(body) ? body : [], label, performance.now() - started, query);
      showPending(Number(headers.get("x-chromatica-pending") || 0));
    } catch (err) {
      if (seq !== state.seq) return;
      showError(err.message);
    } finally {
      if (seq === state.seq) setBusy(false);
    }
  }

  function searchColors() {
    let query;
    try {
      const colors = colorSpecs();
      const avoid = avoidSpecs();
      const filters = filterParams();
      const params = [...colors.specs.map((s) => ["color", s]), ...avoid.map((s) => ["not", s]), ...filters.params];
      if (!params.length) throw new Error("Nothing to search for: add a colour, a colour to avoid or a filter.");
      const words = [colors.label, ...avoid.map((s) => `not ${s.split(":")[0]}`), ...filters.words].filter(Boolean);
      query = {
        kind: "colors", params, label: words.join(" · "),
        scoring: colors.scoring, // what a result's score means: ΔE, a containment score, or none
        contained: colors.scoring === "contains" ? colors.specs.length : 0, // shares[] holds these first
      };
    } catch (err) {
      showError(err.message);
      return;
    }
    runQuery(query);
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

  /** Photos in the search's scope that the filters could not judge yet (their details are still being read). */
  function showPending(n) {
    const note = $("pending");
    note.hidden = !(n > 0);
    note.textContent = n > 0
      ? `${formatCount(n)} photo${n === 1 ? "" : "s"} not judged by the filters yet (still being read): search again soon.`
      : "";
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

  function percent(share) {
    const p = share * 100;
    return p > 0 && p < 1 ? "<1%" : `${Math.round(p)}%`;
  }

  /** How much of each asked colour a photo holds: swatch and share, the colours to avoid marked so. */
  function sharesLine(shares, contained) {
    const line = el("span", "result-shares");
    shares.forEach((s, i) => {
      const avoided = i >= contained;
      const item = el("span", avoided ? "share share-avoid" : "share");
      const chip = el("span", "chip");
      chip.style.backgroundColor = s.hex;
      item.append(chip, el("span", "share-value", percent(s.share)));
      item.dataset.hex = s.hex;
      item.dataset.share = String(s.share);
      item.title = `${percent(s.share)} of the photo is ${s.hex}${avoided ? " (a colour to avoid)" : ""}`;
      line.appendChild(item);
    });
    return line;
  }

  function sharesText(shares, contained) {
    return (shares || []).map((s, i) => `${percent(s.share)} ${s.hex}${i >= contained ? " (avoided)" : ""}`).join(", ");
  }

  /** '2024-07-15' of a result's date taken, and whether it is only the file's date. */
  function takenOf(r) {
    if (!r.taken) return null;
    return { day: String(r.taken).slice(0, 10), when: String(r.taken).replace("T", " "), fileDate: r.taken_source === "mtime" };
  }

  function renderResults(results, label, ms, query) {
    const list = $("results");
    const scoring = query && query.kind === "colors" ? query.scoring : "palette";
    const contained = query && query.kind === "colors" ? query.contained : 0;
    const items = results.map((r, i) => {
      const li = el("li", r.offline ? "result offline" : "result");
      li.dataset.id = String(r.id);
      li.dataset.rank = String(i + 1);
      li.dataset.path = r.path;
      li.dataset.score = String(r.score);
      li.dataset.testid = "result";
      const button = el("button", "result-open");
      button.type = "button";
      const taken = takenOf(r);
      const said = [`${i + 1}. ${r.relative_path || r.path}`];
      if (scoring === "palette") said.push(`distance ${r.score.toFixed(1)}`);
      if (r.shares && r.shares.length) said.push(`holds ${sharesText(r.shares, contained)}`);
      if (taken) said.push(`${taken.fileDate ? "file date" : "taken"} ${taken.day}`);
      if (r.offline) said.push("offline");
      button.setAttribute("aria-label", `${said.join(", ")}. Open details`);
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
      if (scoring === "palette") meta.appendChild(el("span", "result-score", `ΔE ${r.score.toFixed(1)}`));
      meta.appendChild(el("span", "result-name", baseName(r.relative_path || r.path)));
      if (r.sidecars && r.sidecars.length) {
        meta.appendChild(el("span", "result-sidecars", `+ ${r.sidecars.map(baseName).join(", ")}`));
      }
      button.appendChild(meta);
      if ((r.shares && r.shares.length) || taken) {
        const facts = el("span", "result-facts");
        if (r.shares && r.shares.length) facts.appendChild(sharesLine(r.shares, contained));
        if (taken) {
          const when = el("span", taken.fileDate ? "result-taken file-date" : "result-taken",
            taken.fileDate ? `${taken.day} · file date` : taken.day);
          when.dataset.taken = r.taken;
          when.dataset.source = r.taken_source || "";
          when.title = taken.fileDate
            ? `No date taken in the photo: ${taken.when} is when the file was last changed`
            : `Taken ${taken.when} (${r.taken_source || "metadata"})`;
          facts.appendChild(when);
        }
        button.appendChild(facts);
      }
      button.appendChild(paletteBar(r.dominant_colors));
      button.addEventListener("click", () => openDetail({ ...r, scoring }));
      li.appendChild(button);
      return li;
    });
    list.replaceChildren(...items);
    const seconds = (ms / 1000).toFixed(ms < 1000 ? 2 : 1);
    const filtered = query && query.kind === "colors" && query.params.some(([name]) => name !== "color");
    $("summary").textContent = results.length
      ? `${results.length} result${results.length === 1 ? "" : "s"} ${label ? "for " + label : ""} · ${seconds} s`
      : `Nothing found ${label ? "for " + label : ""}${filtered ? "" : " (is anything indexed yet?)"}`;
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
    if (typeof item.score === "number" && (item.scoring || "palette") === "palette") {
      meta.push(`ΔE ${item.score.toFixed(1)} from the query`);
    }
    const taken = takenOf(item);
    if (taken) meta.push(taken.fileDate ? `file date ${taken.when} (no date taken in the photo)` : `taken ${taken.when}`);
    if (item.camera) meta.push(item.camera);
    if (item.orientation) meta.push(item.orientation);
    if (item.monochrome) meta.push("black and white");
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

    // The folder filter suggests the watched folders.
    renderList($("folder-suggestions"), roots.map((r) => r.path), () => roots.map((r) => {
      const option = el("option");
      option.value = r.path;
      return option;
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
  /** The colours' mode from the specs, as the daemon reads them: a lone colour without a weight is "the
   *  most", weights summing below 1 are shares to hold, anything else a whole palette. */
  function readSpecs(specs) {
    const parsed = specs.map((s) => {
      const [hex, w] = s.split(":");
      return { hex: toHex(hex), w: w === undefined || w === "" ? null : Number(w) };
    }).filter((p) => p.hex && (p.w === null || (Number.isFinite(p.w) && p.w >= 0)));
    if (!parsed.length) return null;
    const total = parsed.reduce((sum, p) => sum + (p.w || 0), 0);
    if (parsed.length === 1 && parsed[0].w === null) return { mode: "most", rows: [[parsed[0].hex]] };
    if (parsed.every((p) => p.w !== null && p.w > 0) && total < 1 - 1e-9) {
      return { mode: "contains", rows: parsed.map((p) => [p.hex, 100, Math.max(1, Math.min(99, Math.round(p.w * 100)))]) };
    }
    const largest = Math.max(...parsed.map((p) => (p.w === null ? 1 : p.w)), 1e-9);
    return {
      mode: "palette",
      rows: parsed.map((p) => [p.hex, p.w === null ? 100 : Math.max(1, Math.min(100, Math.round((p.w / largest) * 100)))]),
    };
  }

  function restoreFromHash() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const names = ["color", "not", "in", "taken_after", "taken_before", "camera", "orientation", "tone"];
    if (!names.some((name) => params.get(name))) return false;
    const colors = readSpecs(params.getAll("color"));
    if (colors) setColors(colors.rows, colors.mode);
    else {
      $("colors").replaceChildren(); // the filters alone
      setMode("palette");
    }
    params.getAll("not").forEach((spec) => {
      const [hex, most] = spec.split(":");
      if (toHex(hex)) addAvoid(hex, most ? Math.round(Number(most) * 10000) / 100 : null);
    });
    $("folder").value = params.get("in") || "";
    const day = /^\d{4}-\d{2}-\d{2}$/;
    const after = params.get("taken_after") || "";
    const before = params.get("taken_before") || "";
    $("taken-from").value = day.test(after) ? after : "";
    $("taken-until").value = day.test(before) ? shiftDay(before, -1) : "";
    $("camera").value = params.get("camera") || "";
    $("orientation").value = params.get("orientation") || "";
    $("tone").value = params.get("tone") || "";
    if (params.get("k")) $("k").value = params.get("k");
    return true;
  }

  /** The names the daemon reads, once; the fields typed before they came are judged again. */
  async function loadColourNames() {
    try {
      colourNames = await api("/api/colour-names");
    } catch (err) {
      return; // hex and CSS still work; a search names what it cannot read
    }
    document.querySelectorAll(".color-text, .avoid-text").forEach((text) => {
      if (text.value) text.dispatchEvent(new Event("input"));
    });
  }

  function init() {
    loadColourNames();
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

    $("add-avoid").addEventListener("click", () => {
      const row = addAvoid("#ff0000");
      if (row) row.querySelector(".avoid-picker").focus();
    });
    $("clear-filters").addEventListener("click", clearFilters);

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
      setColors(item.dominant_colors.slice(0, MAX_COLORS).map((c) => [c.hex, Math.max(1, Math.round(c.share * 100))]),
        "palette");
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
    // What the colour wall (wall.js) uses of this page: the detail view, a search for the most of one colour,
    // the filters in force, the results shown.
    window.chromatica = {
      openDetail,
      paletteBar,
      paletteText,
      api,
      filterParams,
      searchMost(hex) {
        setColors([[hex, 100]], "most");
        searchColors();
      },
      resultIds: () => [...$("results").querySelectorAll("li[data-id]")].map((li) => li.dataset.id),
    };
    document.dispatchEvent(new Event("chromatica-ready"));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();

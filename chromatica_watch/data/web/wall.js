// chromatica-watch web app: the colour wall and the library's palette (the page's second view).
// The server keeps the photos in the wall's order (round the hue wheel, light to dark, black and white last),
// so a page is a slice: the wall asks for the next page as its end scrolls into view.
"use strict";

(() => {
  const PAGE = 120;
  const $ = (id) => document.getElementById(id);
  const page = () => window.chromatica; // app.js: the detail view, searching, the filters
  const wall = { seq: 0, next: 0, loading: false, shown: 0 };

  function show(view) {
    const onWall = view === "wall";
    $("wall-view").hidden = !onWall;
    $("results-view").hidden = onWall;
    $("view-wall").setAttribute("aria-pressed", String(onWall));
    $("view-results").setAttribute("aria-pressed", String(!onWall));
    if (onWall) reload();
  }

  function scopeParams() {
    const filters = page().filterParams(); // throws the filters' own one-line error
    return new URLSearchParams(filters.params);
  }

  function fail(message) {
    $("wall-error").textContent = message;
    $("wall-error").hidden = false;
  }

  async function reload() {
    const seq = ++wall.seq;
    $("wall-error").hidden = true;
    $("wall").replaceChildren();
    $("palette").replaceChildren();
    wall.next = 0;
    wall.shown = 0;
    wall.loading = false;
    let params;
    try {
      params = scopeParams();
    } catch (err) {
      fail(err.message);
      return;
    }
    loadPalette(seq, params);
    if ($("wall-scope").value === "results") {
      const ids = page().resultIds();
      wall.next = null;
      if (!ids.length) {
        $("wall-summary").textContent = "No results to lay out: search first, or show the library.";
        return;
      }
      await loadPage(seq, `/api/wall?ids=${ids.join(",")}`);
    } else {
      await loadMore(seq, params);
    }
  }

  async function loadPalette(seq, params) {
    try {
      const found = await page().api(`/api/palette?${params}`);
      if (seq !== wall.seq) return;
      const most = Math.max(1, ...found.swatches.map((s) => s.photos));
      $("palette").replaceChildren(...found.swatches.map((s) => {
        const li = document.createElement("li");
        li.style.flexGrow = String(Math.max(s.photos / most, 0.02));
        const button = document.createElement("button");
        button.type = "button";
        button.className = "palette-swatch";
        button.style.backgroundColor = s.hex;
        button.dataset.hex = s.hex;
        button.dataset.photos = String(s.photos);
        button.dataset.testid = "swatch";
        const held = `${s.hex}: held by ${s.photos.toLocaleString("en")} photo${s.photos === 1 ? "" : "s"}`;
        button.title = `${held} (${(s.share * 100).toFixed(1)}%)`;
        button.setAttribute("aria-label", `${held}; show the photos holding the most of it`);
        button.addEventListener("click", () => {
          show("results");
          page().searchMost(s.hex);
        });
        li.appendChild(button);
        return li;
      }));
    } catch (err) {
      if (seq === wall.seq) fail(err.message);
    }
  }

  async function loadMore(seq, params) {
    if (wall.loading || wall.next === null || seq !== wall.seq) return;
    const query = new URLSearchParams(params || scopeParams());
    query.set("start", String(wall.next));
    query.set("limit", String(PAGE));
    await loadPage(seq, `/api/wall?${query}`);
  }

  async function loadPage(seq, url) {
    wall.loading = true;
    try {
      const found = await page().api(url);
      if (seq !== wall.seq) return;
      $("wall").append(...found.tiles.map(tile));
      wall.shown += found.tiles.length;
      wall.next = found.next;
      const pending = found.pending ? ` · ${found.pending.toLocaleString("en")} not read yet` : "";
      $("wall-summary").textContent = `${wall.shown.toLocaleString("en")} of ${found.total.toLocaleString("en")} ` +
        `photo${found.total === 1 ? "" : "s"} by colour${pending}`;
    } catch (err) {
      if (seq === wall.seq) fail(err.message);
    } finally {
      if (seq === wall.seq) wall.loading = false;
    }
    if (seq === wall.seq && wall.next !== null && sentinelInView()) loadMore(seq); // a tall screen: fill it
  }

  function tile(t) {
    const li = document.createElement("li");
    li.dataset.id = String(t.id);
    li.dataset.path = t.path;
    li.dataset.testid = "tile";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "wall-tile";
    const colours = page().paletteText(t.dominant_colors);
    const name = t.path.split("/").pop() || `photo ${t.id}`;
    button.title = `${name}: ${colours}`;
    button.setAttribute("aria-label", `${name}: ${colours}. Open details`);
    const img = document.createElement("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.alt = "";
    img.src = t.thumbnail;
    button.append(img, page().paletteBar(t.dominant_colors));
    button.addEventListener("click", () => page().openDetail({ ...t, relative_path: name }));
    li.appendChild(button);
    return li;
  }

  function sentinelInView() {
    const box = $("wall-more").getBoundingClientRect();
    return box.top < window.innerHeight + 600;
  }

  function init() {
    $("view-wall").addEventListener("click", () => show("wall"));
    $("view-results").addEventListener("click", () => show("results"));
    $("wall-scope").addEventListener("change", reload);
    // "More like this" and "Search its colours" in the detail view answer in the results.
    ["more-like-this", "use-colors"].forEach((id) => $(id).addEventListener("click", () => show("results")));
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && !$("wall-view").hidden) loadMore(wall.seq);
    }, { rootMargin: "600px" }).observe($("wall-more"));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();

// movierec demo page. Plain JS, no build step. Everything shown is inserted with textContent,
// never innerHTML, so catalogue and user text can never become markup.
"use strict";

(function () {
  const app = document.getElementById("app");
  const maxK = Number(app.dataset.maxK) || 100;
  const defaultK = Number(app.dataset.defaultK) || 10;
  const maxSeq = Number(app.dataset.maxSeq) || 200;

  /** The request being built: movies in order, each {movie_id, title, year}. */
  const state = { sequence: [], avoided: [] };
  let searchTimer = null;
  let searchSerial = 0;
  let submitSerial = 0;

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };
  const button = (label, onClick, cls) => {
    const b = el("button", cls || "small", label);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  };
  const label = (m) => m.title;
  const meta = (m) => [m.year, (m.genres || []).join(", ")].filter(Boolean).join(" · ");

  // ---- errors in words a person understands ------------------------------------------------
  function describeError(status, body) {
    const field = body && body.field;
    const type = body && body.error_type;
    if (status === 0) return "The server cannot be reached. Is movierec running?";
    if (status === 401) return "You are not signed in, or your sign-in has expired: reload the page to sign in again.";
    if (status === 413) return "The request is too large. Remove some movies and try again.";
    if (status === 429) return "The server is busy right now. Please try again in a moment.";
    if (status === 503) return "The recommendation service is unavailable right now. Please try again shortly.";
    if (status === 422 || status === 400) {
      if (field === "k") return `K must be a whole number from 1 to ${maxK}.`;
      if (field === "sequence") return (body && body.error) || "The watched list is not valid.";
      if (field === "avoided") return (body && body.error) || "The avoided list is not valid.";
      return (body && body.error) || "The request is not valid.";
    }
    if (status === 404) return (body && body.error) || "Not found.";
    return (body && body.error) || `Something went wrong (HTTP ${status}${type ? ", " + type : ""}).`;
  }

  function showError(message) {
    const box = $("form-error");
    box.textContent = message;
    box.hidden = !message;
  }

  async function api(path, options) {
    let response;
    try {
      response = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
    } catch (_) {
      return { status: 0, body: null };
    }
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    return { status: response.status, body };
  }

  // ---- search --------------------------------------------------------------------------------
  async function runSearch() {
    const q = $("search-q").value.trim();
    const serial = ++searchSerial;
    const list = $("search-results");
    if (!q) { list.replaceChildren(); $("search-status").textContent = ""; return; }
    $("search-status").textContent = "Searching…";
    const { status, body } = await api(`/movies/search?q=${encodeURIComponent(q)}&limit=10`);
    if (serial !== searchSerial) return; // a newer search is under way
    if (status !== 200) { $("search-status").textContent = describeError(status, body); return; }
    const movies = body.movies || [];
    $("search-status").textContent = movies.length ? `${movies.length} result(s)` : "No movie matches.";
    list.replaceChildren(...movies.map((m) => {
      const li = el("li");
      li.dataset.movieId = m.movie_id;
      const info = el("div", "info");
      info.append(el("div", "title", label(m)), el("div", "meta", meta(m)));
      const btns = el("div", "btns");
      btns.append(
        button("Add to sequence", () => addMovie("sequence", m), "small add-seq"),
        button("Add to avoided", () => addMovie("avoided", m), "small add-avoid"));
      li.append(info, btns);
      return li;
    }));
  }

  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); clearTimeout(searchTimer); runSearch(); });
  $("search-q").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(runSearch, 250); });

  // ---- sequence and avoided chips -----------------------------------------------------------
  function addMovie(list, m) {
    showError("");
    const entry = { movie_id: m.movie_id, title: m.title, year: m.year };
    if (list === "sequence") {
      if (state.sequence.length >= maxSeq) { showError(`The watched list holds at most ${maxSeq} movies.`); return; }
      state.sequence.push(entry);
    } else if (!state.avoided.some((x) => x.movie_id === m.movie_id)) {
      state.avoided.push(entry);
    }
    renderChips();
  }

  function renderChips() {
    for (const list of ["sequence", "avoided"]) {
      const ul = $(`${list}-chips`);
      ul.replaceChildren(...state[list].map((m, i) => {
        const li = el("li");
        li.dataset.movieId = m.movie_id;
        li.append(el("span", null, m.title || `#${m.movie_id}`));
        const x = button("×", () => { state[list].splice(i, 1); renderChips(); }, "remove");
        x.setAttribute("aria-label", `Remove ${m.title || m.movie_id}`);
        li.append(x);
        return li;
      }));
    }
  }

  async function addIds(list) {
    const input = $(`${list}-ids`);
    const parts = input.value.split(/[\s,;]+/).filter(Boolean);
    const bad = parts.filter((p) => !/^\d+$/.test(p) || Number(p) < 1);
    if (bad.length) { showError(`Movie ids are positive whole numbers; "${bad[0]}" is not one.`); return; }
    showError("");
    const unknown = [];
    for (const p of parts) {
      const { status, body } = await api(`/movies/${p}`);
      if (status === 200 && body) addMovie(list, body);
      else if (status === 404) unknown.push(p);
      else { showError(describeError(status, body)); return; }
    }
    input.value = unknown.join(", ");
    if (unknown.length) showError(`Unknown movie id(s): ${unknown.join(", ")}.`);
  }
  $("sequence-ids-add").addEventListener("click", () => addIds("sequence"));
  $("avoided-ids-add").addEventListener("click", () => addIds("avoided"));
  for (const list of ["sequence", "avoided"]) {
    $(`${list}-ids`).addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); addIds(list); } });
  }

  // ---- recommendations ----------------------------------------------------------------------
  function renderResults(result) {
    const ol = $("results");
    const items = result.items || [];
    const notes = [];
    if (result.fallback) notes.push("Your list had no movie the model knows, so these are the most popular movies.");
    if ((result.unknown_ids || []).length) notes.push(`Skipped unknown ids: ${result.unknown_ids.join(", ")}.`);
    if (result.model) notes.push(`Answered by ${result.model.architecture || "the model"}.`);
    $("res-note").textContent = notes.join(" ") || `${items.length} recommendation(s).`;
    ol.replaceChildren(...items.map((m) => {
      const li = el("li");
      li.dataset.movieId = m.movie_id;
      const info = el("div", "info");
      info.append(el("div", "title", label(m)), el("div", "meta", meta(m)),
        el("div", "meta score", `score ${Number(m.score).toFixed(3)}`));
      const links = el("div", "links");
      if (m.tmdb_id) {
        const a = el("a", null, "TMDB");
        a.href = `https://www.themoviedb.org/movie/${encodeURIComponent(m.tmdb_id)}`;
        a.rel = "noopener noreferrer"; a.target = "_blank";
        links.append(a);
      }
      if (m.imdb_id) {
        const a = el("a", null, "IMDb");
        a.href = `https://www.imdb.com/title/tt${encodeURIComponent(m.imdb_id)}/`;
        a.rel = "noopener noreferrer"; a.target = "_blank";
        links.append(a);
      }
      if (links.childElementCount) info.append(links);
      li.append(info, button("Add to sequence", () => addMovie("sequence", m), "small add-seq"));
      return li;
    }));
  }

  function readK() {
    const raw = $("k").value.trim();
    if (!/^\d+$/.test(raw)) return null;
    const k = Number(raw);
    return k >= 1 && k <= maxK ? k : null;
  }

  async function submit() {
    const k = readK();
    if (k === null) { showError(`K must be a whole number from 1 to ${maxK}.`); $("k").focus(); return; }
    showError("");
    const serial = ++submitSerial;
    $("rec-status").textContent = "Running…";
    $("submit").disabled = true;
    const payload = {
      sequence: state.sequence.map((m) => m.movie_id),
      avoided: state.avoided.map((m) => m.movie_id),
      k,
    };
    try {
      let { status, body } = await api("/recommend?wait_ms=5000", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(payload),
      });
      // Not finished within wait_ms: poll the job, backing off, for at most a minute.
      let delay = 100;
      const deadline = Date.now() + 60000;
      while (status === 202 && body && body.status_url && serial === submitSerial && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 2000);
        const next = await api(body.status_url);
        if (next.status === 200 && next.body && (next.body.status === "queued" || next.body.status === "running")) continue;
        ({ status, body } = next);
      }
      if (serial !== submitSerial) return; // cleared or resubmitted meanwhile
      if (status === 200 && body && body.status === "done" && body.result) {
        $("rec-status").textContent = "Done.";
        renderResults(body.result);
      } else if (status === 200 && body && body.status === "failed") {
        $("rec-status").textContent = "";
        showError(`The recommendation failed: ${body.error || "unknown error"}.`);
      } else if (status === 202) {
        $("rec-status").textContent = "";
        showError("The recommendation is taking too long. Please try again.");
      } else {
        $("rec-status").textContent = "";
        showError(describeError(status, body));
      }
    } finally {
      if (serial === submitSerial) $("submit").disabled = false;
    }
  }

  $("rec-form").addEventListener("submit", (e) => { e.preventDefault(); submit(); });

  $("clear").addEventListener("click", () => {
    submitSerial++; // forget any request in flight
    searchSerial++;
    clearTimeout(searchTimer);
    state.sequence = [];
    state.avoided = [];
    renderChips();
    for (const id of ["search-q", "sequence-ids", "avoided-ids"]) $(id).value = "";
    $("k").value = String(defaultK);
    $("search-results").replaceChildren();
    $("results").replaceChildren();
    $("search-status").textContent = "";
    $("rec-status").textContent = "";
    $("res-note").textContent = "Add movies you watched and press Recommend.";
    $("submit").disabled = false;
    showError("");
  });
})();

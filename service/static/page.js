// The page at /: the key's datasets, jobs and models from the JSON API, refreshed by polling; a finished
// job's report shown in a frame; a dataset uploaded or deleted, a job started or cancelled through the same
// API. Plain DOM, no framework. The key never leaves this tab except as the Authorization header of calls to
// this server (service/page.py says why).
//
// What the page shows is also written into data- attributes (body[data-state], body[data-refreshes],
// body[data-location], tr[data-job-id][data-state], #viewer[data-images][data-decoded], a form's
// .form-message[data-outcome]), so a headless browser can check it (tests/service/test_page_browser.py).
"use strict";

(() => {
  const KEY_STORE = "unilabel.key";
  const BUSY_POLL_MS = 2000; // while a job is queued or running
  const IDLE_POLL_MS = 15000;
  const REFRESH_TIMEOUT_MS = 15000;
  const LIVE = new Set(["queued", "running"]);
  const ERROR_SHOWN = 160; // characters of a failed job's error shown before "…"
  const PAGE_MOST = 1000; // the most items one list request may ask for (?limit=)
  const MENU_PAGES = 10; // the job form's dataset menu reads at most this many such pages

  const $ = (id) => document.getElementById(id);
  const state = {
    key: null,
    wanted: null,
    jobState: "", // the state the jobs list shows, "" for every state
    shown: null,
    reportUrl: null,
    timer: null,
    busy: false,
    stale: false, // asked for again while a refresh ran
    pickDataset: null, // the dataset the job form selects at the next refresh (one just uploaded)
    confirming: null, // the API path of the dataset, model or job whose delete or cancel asks "sure?"
    keyId: null, // the key's own id (GET /v1/usage): an admin key's list holds other keys' datasets too
    usage: null, // GET /v1/usage at the last refresh: each quota's limit, for a refusal's words
    focusNext: null, // {action, id, owner} of the button to focus after the next refresh
    downloading: new Set(), // the API paths of the files being fetched
    submitting: new Set(), // the buttons of the forms whose request is under way
    ownDatasets: null, // how many datasets the job form offers (the key's own)
    menu: null, // {mark, items}: every dataset, read for the job form when the list is cut
    cut: { jobs: "", datasets: "", models: "" }, // what each list says of the items it leaves out
    offline: false, // the last refresh failed: the lists may be out of date, the buttons that send are off
    lastGood: null, // the time of the last refresh that worked, as shown
    openErrors: new Set(), // the jobs whose whole error is shown
    seenStates: null, // job id -> its state at the last refresh (null before the first)
  };

  // Elements are built, never parsed from strings: every value from the API lands as text.
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (name === "dataset") Object.assign(node.dataset, value);
      else if (name in node && name !== "list") node[name] = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  const short = (id) => (id ? String(id).slice(0, 10) : "");

  // A list's id: the whole of it in the page, its start shown (page.css: code.id), so that selecting or
  // copying it gives the id that unilabel-remote and the API take (they refuse a shortened one).
  const idCell = (id, ...more) => el("td", { title: id }, el("code", { className: "id" }, id), ...more);
  const pct = (x) => `${Math.round((x || 0) * 100)}%`;

  function ago(iso) {
    if (!iso) return "";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return `${Math.round(s)} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return new Date(iso).toLocaleDateString();
  }

  function sizeText(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let size = n;
    let unit = 0;
    while (size >= 1024 && unit < units.length - 1) {
      size /= 1024;
      unit += 1;
    }
    return unit ? `${size.toFixed(1)} ${units[unit]}` : `${n} B`;
  }

  // GET /v1/usage as a line: each quota's use of its limit, a quota at its limit marked (its 429 or 413 comes
  // next).
  function showUsage(usage) {
    const part = (name, text, what) => {
      const { used, limit } = usage[name];
      const full = limit !== null && used >= limit;
      const words = limit === null ? `${text(used)} ${what}` : `${text(used)} of ${text(limit)} ${what}`;
      const props = { id: `usage-${name}`, className: full ? "full" : "", dataset: { full: String(full) } };
      return el("span", props, words);
    };
    const count = (n) => n.toLocaleString();
    const parts = [
      part("stored_bytes", sizeText, "stored"),
      part("queued_jobs", count, "jobs queued"),
      part("concurrent_jobs", count, "queued or running"),
      part("uploads_per_minute", count, "uploads this minute"),
      part("predictions_per_minute", count, "predictions this minute"),
    ];
    const line = [`Key ${usage.name}: `];
    parts.forEach((p, i) => {
      if (i) line.push(" · ");
      line.push(p);
    });
    $("usage").replaceChildren(...line);
    $("usage").hidden = false;
  }

  function setStatus(text, pageState) {
    $("status").textContent = text;
    if (pageState) document.body.dataset.state = pageState;
  }

  // What went wrong with something the user did (a delete, a cancel, a download): kept across refreshes until
  // dismissed or the next action, as the row acted on may be far from the top of the page.
  function notify(text) {
    $("notice-text").textContent = text || "";
    $("notice").hidden = !text;
  }

  // The key: from the fragment (#key=...), else this tab's storage. The key is removed from the fragment at
  // once, so it is not left in the address bar, the history or a bookmark; #job=ID (the report to show) and
  // #state=S (the jobs shown) stay.
  function readKey() {
    const params = new URLSearchParams(location.hash.slice(1));
    state.wanted = params.get("job");
    state.jobState = params.get("state") || "";
    $("job-state").value = state.jobState;
    const given = params.get("key");
    if (given) sessionStorage.setItem(KEY_STORE, given.trim());
    writeFragment();
    state.key = sessionStorage.getItem(KEY_STORE);
  }

  function writeFragment() {
    const keep = new URLSearchParams();
    const report = state.shown || state.wanted;
    if (report) keep.set("job", report);
    if (state.jobState) keep.set("state", state.jobState);
    const rest = keep.toString() ? `#${keep}` : "";
    history.replaceState(null, "", location.pathname + location.search + rest);
    document.body.dataset.location = location.href;
  }

  class ApiError extends Error {
    constructor(status, error, retryAfter = null) {
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.error = error;
      this.retryAfter = retryAfter; // seconds, a 429's Retry-After
    }
  }

  // GET unless a method is given; { json } posts it as JSON, { body } as it is (a FormData: multipart).
  // `timeoutMs`: give up on an answer that has not come by then (the lists' refresh: a request that hangs
  // would otherwise keep every later refresh waiting behind it, and the page would stop changing).
  async function api(path, { method, json, body, timeoutMs } = {}) {
    const headers = { Authorization: `Bearer ${state.key}` };
    if (json !== undefined) headers["Content-Type"] = "application/json";
    const post = json !== undefined || body !== undefined;
    const response = await fetch(path, {
      method: method || (post ? "POST" : "GET"),
      headers,
      body: json !== undefined ? JSON.stringify(json) : body,
      cache: "no-store",
      credentials: "omit",
      signal: timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined,
    });
    if (!response.ok) {
      const text = await response.text().catch(() => "");
      throw answerError(response.status, response.statusText, text, response.headers.get("Retry-After"));
    }
    return response;
  }

  // A refused request's ApiError: the API's error object from the answer's JSON, else (a proxy's page, or no
  // body) the status.
  function answerError(status, statusText, text, retryAfter) {
    let error = null;
    try {
      error = JSON.parse(text).error;
    } catch (_) {
      // not the API's error shape: the status says it
    }
    return new ApiError(status, error || { code: `http_${status}`, message: statusText }, retryAfter);
  }

  // POST `body` as api() would, saying how much of it is sent: fetch() cannot tell, and an upload of a few GB
  // is minutes of sending. The answer as api()'s: its status and JSON, or an ApiError.
  function sendWithProgress(path, body, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", path);
      xhr.setRequestHeader("Authorization", `Bearer ${state.key}`);
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable) onProgress(event.loaded, event.total);
      };
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          try {
            resolve({ status: xhr.status, json: JSON.parse(xhr.responseText) });
          } catch (err) {
            reject(err); // not the API's JSON (a proxy's page): the form says so, not a promise left hanging
          }
        } else {
          const retryAfter = xhr.getResponseHeader("Retry-After");
          reject(answerError(xhr.status, xhr.statusText, xhr.responseText, retryAfter));
        }
      };
      // as fetch() fails: the connection ended without an answer
      xhr.onerror = () => reject(new TypeError("the connection ended without an answer"));
      xhr.send(body);
    });
  }

  function describe(err) {
    if (err instanceof ApiError) {
      const field = err.error.field ? ` [${err.error.field}]` : "";
      return `HTTP ${err.status} ${err.error.code}${field}: ${err.error.message}`;
    }
    return `the server cannot be reached (${err.message})`;
  }

  // An API error with its details ("utterances.csv.label: ..." for each bad field of an upload), the first few.
  function explain(err) {
    if (!(err instanceof ApiError) && !(err instanceof TypeError)) return err.message; // the form's own check
    const details = (err instanceof ApiError && err.error.details) || [];
    if (details.length < 2) return describe(err);
    // the message lists the problems too, the first on its first line: each is said once, from the details
    const head = describe(err).split("\n")[0].replace(details[0].problem, "").replace(/:\s*$/, "");
    // a problem that names its file already ("utterances.csv: column 'label': ...") is not prefixed again
    const said = (d) => (d.field.startsWith(d.problem.split(":")[0]) ? d.problem : `${d.field}: ${d.problem}`);
    const listed = details.slice(0, 5).map(said);
    const more = details.length > 5 ? ` (and ${details.length - 5} more)` : "";
    return `${head} — ${listed.join("; ")}${more}`;
  }

  // A quota's refusal (413 or 429 naming quota.NAME) in a page user's words: which limit, and when to try
  // again or what to do. The API's message names the server's QUOTA_ setting and unilabel-remote's commands,
  // meant for the command line; it stays a click away (refusal()).
  const many = (n, what) => `${n.toLocaleString()} ${what}${n === 1 ? "" : "s"}`;
  const QUOTA_WORDS = {
    stored_bytes: (n) => `storage limit of ${sizeText(n)}`,
    uploads_per_minute: (n) => `limit of ${many(n, "upload")} a minute`,
    queued_jobs: (n) => `limit of ${many(n, "queued job")}`,
    concurrent_jobs: (n) => `limit of ${many(n, "job")} queued or running at once`,
    predictions_per_minute: (n) => `limit of ${many(n, "prediction")} a minute`,
  };

  function quotaText(err) {
    if (!(err instanceof ApiError) || ![413, 429].includes(err.status)) return null;
    const field = err.error.field || "";
    const name = field.startsWith("quota.") ? field.slice("quota.".length) : null;
    const use = name && state.usage && state.usage[name];
    if (!use || !use.limit || !QUOTA_WORDS[name]) return null;
    const limit = `this key's ${QUOTA_WORDS[name](use.limit)}`;
    if (err.status === 429) {
      const seconds = Number(err.retryAfter);
      const at = new Date(Date.now() + seconds * 1000).toLocaleTimeString();
      const when = seconds > 0 ? `try again in ${seconds} s (at ${at})` : "try again later";
      const or = name.endsWith("_jobs") ? ", or cancel a queued job" : "";
      return `Refused: ${limit} is reached; ${when}${or}.`;
    }
    if (name !== "stored_bytes") return null; // a request larger than a per-minute quota: the page sends none
    return `Refused: the upload does not fit under ${limit} (${sizeText(use.used)} stored at the last ` +
      "refresh); delete datasets or models below to make room.";
  }

  // What a form says of its refused request: a quota's refusal in short, the API's whole message in a
  // <details>; else that message (explain()).
  function refusal(err) {
    const said = quotaText(err);
    if (!said) return [explain(err)];
    const whole = el("details", { className: "api-message" }, el("summary", {}, "the service's message"),
      el("div", {}, explain(err)));
    return [said, " ", whole];
  }

  function askForKey(message, refused = false) {
    state.key = null;
    sessionStorage.removeItem(KEY_STORE);
    clearTimeout(state.timer);
    $("main").hidden = true;
    $("key-section").hidden = false;
    $("forget").hidden = true;
    $("refresh").hidden = true;
    $("usage").hidden = true;
    $("updated").textContent = "";
    $("changes").textContent = "";
    state.seenStates = null;
    state.menu = null;
    setOffline(false);
    state.lastGood = null;
    notify(null);
    setStatus(message, "no-key");
    $("status").classList.toggle("failed", refused);
    $("key-input").focus();
  }

  // A listed job whose state changed since the last refresh is said in words, with the time, in a live
  // region: a screen reader hears it (a row's new colour says nothing to one), and a sighted user sees it
  // without finding the row, which may be far down the list.
  function announceChanges(jobs) {
    const before = state.seenStates;
    state.seenStates = new Map(jobs.map((job) => [job.id, job.state]));
    if (!before) return;
    const changed = jobs.filter((job) => before.has(job.id) && before.get(job.id) !== job.state);
    if (!changed.length) return;
    const said = changed.map((job) => {
      const what = `Job ${short(job.id)} (${job.strategy}, seed ${job.seed}) ${job.state}`;
      if (job.state === "succeeded") return `${what}: its report and labels are ready`;
      if (job.state === "failed" && job.error) return `${what}: ${job.error.slice(0, ERROR_SHOWN)}`;
      return what;
    });
    $("changes").textContent = `${new Date().toLocaleTimeString()}: ${said.join(". ")}.`;
  }

  // --- the lists -------------------------------------------------------------------------------------
  function fill(table, rows, emptyId) {
    table.tBodies[0].replaceChildren(...rows);
    table.hidden = rows.length === 0;
    $(emptyId).hidden = rows.length !== 0;
  }

  // The rows are built anew at each refresh: the focused button (or the one an action asked for) is found
  // again by what it does and to what, so that a keyboard user keeps their place.
  function focusedButton() {
    const active = document.activeElement;
    if (!active || !active.dataset || !active.dataset.action) return null;
    const { action, id, owner } = active.dataset;
    const table = active.closest("table"); // a job's report button is in the jobs' and the models' lists
    return { action, id, owner, table: table ? table.id : null };
  }

  function focusAgain(target) {
    if (!target) return;
    const owner = target.owner ? `[data-owner="${CSS.escape(target.owner)}"]` : "";
    const found = $(target.table || "main").querySelector(
      `[data-action="${CSS.escape(target.action)}"][data-id="${CSS.escape(target.id)}"]${owner}`,
    );
    if (found) found.focus();
  }

  // A row's button: `label` is what a screen reader says ("delete dataset 3fe4084b06"), the text alone
  // repeats on every row.
  function button(text, action, id, onClick, label, owner) {
    const props = { type: "button", className: "link", dataset: { action, id }, onclick: onClick };
    if (owner) props.dataset.owner = owner;
    if (label) props["aria-label"] = label;
    return el("button", props, text);
  }

  // A finished job's report and labels, in the jobs' and the models' lists (a model's files too).
  function actionsCell(jobId, ...more) {
    return el(
      "td",
      { className: "actions" },
      button("report", "report", jobId, () => showReport(jobId), `report of job ${short(jobId)}`),
      downloadButton("labels CSV", "labels", jobId, `/v1/jobs/${encodeURIComponent(jobId)}/labels?format=csv`,
        `labels-${jobId}.csv`, `labels CSV of job ${short(jobId)}`),
      ...more,
    );
  }

  // Progress, "done" or the error, then the job's notes: settings its strategy does not read.
  function progressCell(job) {
    const notes = (job.notes || []).map((note) => el("div", { className: "note" }, `note: ${note}`));
    if (job.state === "succeeded") {
      const deleted = job.model_deleted_at ? ` · model deleted ${ago(job.model_deleted_at)}` : "";
      return el("td", {}, `done${deleted}`, ...notes);
    }
    if (!LIVE.has(job.state)) return el("td", { className: "muted" }, job.error ? jobError(job) : "", ...notes);
    // the stage's count: batches while the transcripts are encoded, else epochs (MUG's stage 2 counts each
    // modality's meta epochs one after another)
    const unit = job.stage === "encode" ? "batch" : "epoch";
    const count = job.epochs ? ` ${unit} ${job.epoch || 0}/${job.epochs}` : "";
    const where = job.stage ? `${job.stage}${count} · ` : "";
    return el(
      "td",
      {},
      el("progress", { max: 1, value: job.progress || 0, "aria-label": `progress of job ${short(job.id)}` }),
      el("span", { className: "progress-text" }, ` ${where}${pct(job.progress)}`),
      ...notes,
    );
  }

  // A failed job's error, said to be one (not only by the state's colour). A long one (the worker keeps up
  // to 2000 characters) would make its row a page long: its start, the whole in a <details>, whose being open
  // outlives the refreshes that build the row anew.
  function jobError(job) {
    const text = `error: ${job.error}`;
    if (text.length <= ERROR_SHOWN) return el("div", { className: "job-error" }, text);
    const summary = el("summary", { dataset: { action: "error", id: job.id } });
    const details = el("details", { className: "job-error" }, summary, el("div", {}, job.error));
    const said = () => {
      summary.textContent = details.open ? "error:" : `${text.slice(0, ERROR_SHOWN)}…`;
    };
    details.open = state.openErrors.has(job.id);
    said();
    details.addEventListener("toggle", () => {
      if (details.open) state.openErrors.add(job.id);
      else state.openErrors.delete(job.id);
      said();
    });
    return details;
  }

  function jobRow(job) {
    return el(
      "tr",
      { dataset: { jobId: job.id, state: job.state } },
      idCell(job.id),
      el("td", {}, job.strategy),
      el("td", {}, String(job.seed)),
      idCell(job.dataset_id),
      el("td", {}, el("span", { className: `state state-${job.state}` }, job.state)),
      progressCell(job),
      el("td", { title: job.updated_at }, ago(job.updated_at)),
      job.links && job.links.report ? actionsCell(job.id) : cancelCell(job),
    );
  }

  // A queued or running job's cancel (its links.cancel; null once it cannot be cancelled) asks once more in its
  // row, as a delete does: a running job's training so far is lost. A running job stops between epochs: until
  // then its row says so.
  function cancelCell(job) {
    const link = job.links && job.links.cancel;
    if (!link) return el("td");
    if (job.cancel_requested) return el("td", { className: "actions muted" }, "cancelling…");
    return confirmCell(link, "cancel", job.id, `job ${short(job.id)}`, async () => {
      await api(link, { method: "POST" });
    });
  }

  function datasetRow(ds) {
    const splits = Object.entries(ds.splits || {}).map(([s, n]) => `${s} ${n}`).join(" · ");
    const modalities = Object.entries(ds.modalities || {})
      .map(([m, spec]) => `${m} ${spec.sequence ? `[T, ${spec.dim}]` : `[${spec.dim}]`}`)
      .join(" · ");
    // an admin key's list: whose it is (two keys' uploads of the same files share an id)
    const whose = ds.owner === state.keyId ? "this key" : `key ${ds.owner}`;
    const owner = ds.owner ? el("div", { className: "owner" }, whose) : null;
    return el(
      "tr",
      { dataset: { datasetId: ds.id, owner: ds.owner || "" } },
      idCell(ds.id, owner),
      el("td", {}, String(ds.n)),
      el("td", {}, splits),
      el("td", {}, modalities),
      el("td", { title: ds.created_at }, ago(ds.created_at)),
      deleteCell("dataset", ds.id, ds.owner),
    );
  }

  // A dataset's or a model's delete asks once more in its row; the service refuses (409) to delete a dataset
  // while a job uses it. An admin key names whose dataset it deletes.
  function deleteCell(kind, id, owner) {
    const query = owner ? `?owner=${encodeURIComponent(owner)}` : "";
    const path = `/v1/${kind}s/${encodeURIComponent(id)}${query}`;
    return confirmCell(path, "delete", id, `${kind} ${short(id)}`, async () => {
      await api(path, { method: "DELETE" });
      if (kind === "model" && state.shown === id) closeReport(); // a model's id is its job's
    }, owner);
  }

  // "delete" (or "cancel") that asks "delete? yes no" in its row; `confirming` (the API path of the one that
  // asks) outlives refreshes. What the service refuses stays in the notice until the next action.
  function confirmCell(path, verb, id, what, work, owner) {
    if (state.confirming !== path) {
      return el(
        "td",
        { className: "actions" },
        button(verb, verb, id, () => {
          notify(null);
          state.confirming = path;
          state.focusNext = { action: `${verb}-yes`, id, owner };
          refresh();
        }, `${verb} ${what}`, owner),
      );
    }
    return el(
      "td",
      { className: "actions" },
      `${verb}? `,
      button("yes", `${verb}-yes`, id, async (event) => {
        event.target.disabled = true;
        state.confirming = null;
        try {
          await work();
        } catch (err) {
          notify(`${verb[0].toUpperCase()}${verb.slice(1)} of ${what}: ${describe(err)}`);
          state.focusNext = { action: verb, id, owner };
        }
        refresh();
      }, `yes, ${verb} ${what}`, owner),
      button("no", `${verb}-no`, id, () => {
        state.confirming = null;
        state.focusNext = { action: verb, id, owner };
        refresh();
      }, `no, keep ${what}`, owner),
    );
  }

  function modelRow(card) {
    const valid = (card.metrics || {}).valid || {};
    const shown = ["mae", "corr"].filter((m) => typeof valid[m] === "number");
    return el(
      "tr",
      { dataset: { modelId: card.id } },
      idCell(card.id),
      el("td", {}, card.strategy),
      el("td", {}, String(card.seed)),
      idCell(card.dataset_id),
      el("td", {}, shown.map((m) => `${m} ${valid[m].toFixed(3)}`).join(" · ")),
      el("td", { title: card.created_at }, ago(card.created_at)),
      actionsCell(
        card.job_id,
        // the model's run directory, zipped: `unilabel predict DIR DATA` once unzipped
        downloadButton("model zip", "model", card.id, `/v1/models/${encodeURIComponent(card.id)}/archive`,
          `${card.id}.zip`, `model zip of ${short(card.id)}`),
      ),
      deleteCell("model", card.id),
    );
  }

  const ownDataset = (ds) => !ds.owner || ds.owner === state.keyId;

  // A list answers its first page (the API's default, 100) and its total: a list cut short says so above it,
  // as a user who looks for an older item would otherwise think it gone.
  function cutText(list, noun, more = "") {
    if (list.total <= list.items.length) return "";
    return `The latest ${list.items.length} of ${list.total} ${noun} are shown${more}.`;
  }

  function noteLists() {
    const stale = state.offline && state.lastGood
      ? `Possibly out of date: as of ${state.lastGood}, the last refresh that worked. `
      : "";
    for (const [kind, cut] of Object.entries(state.cut)) {
      const note = $(`${kind}-note`);
      note.textContent = `${stale}${cut}`.trim();
      note.hidden = !note.textContent;
      note.classList.toggle("stale", Boolean(stale));
    }
  }

  // The buttons that send a request: every row's (a row's confirm only shows once a refresh answers), the
  // forms' and the report's data.
  const SENDING = "#main button[data-action], #upload-submit, #job-submit, #viewer-json";

  // While refreshes fail the lists stay as they were, said to be possibly out of date, and the buttons that
  // send a request are off: a click would fail with a less clear error than the status line's. The refresh
  // that works again builds the rows anew (their buttons on) and turns the others back on.
  function setOffline(offline) {
    if (offline && !state.offline) state.focusNext = state.focusNext || focusedButton(); // found again after
    state.offline = offline;
    document.body.dataset.offline = String(offline);
    if (offline) {
      for (const node of document.querySelectorAll(SENDING)) node.disabled = true;
    } else {
      $("upload-submit").disabled = state.submitting.has("upload-submit");
      $("job-submit").disabled = state.submitting.has("job-submit") || state.ownDatasets === 0;
      $("viewer-json").disabled = false;
    }
    noteLists();
  }

  // The job form offers every dataset of the key's own, not only the listed page's: a list cut short is read
  // whole for it, in pages of the most the API gives, again only when the list's total or newest item changed
  // (an upload or a delete, here or elsewhere), and at most MENU_PAGES of them.
  async function datasetMenu(listed) {
    if (listed.total <= listed.items.length) {
      state.menu = null;
      return listed.items;
    }
    const newest = listed.items[0] || {};
    const mark = `${listed.total} ${newest.id} ${newest.owner}`;
    if (state.menu && state.menu.mark === mark) return state.menu.items;
    const items = [];
    for (let page = 0; page < MENU_PAGES && items.length < listed.total; page += 1) {
      const path = `/v1/datasets?limit=${PAGE_MOST}&offset=${page * PAGE_MOST}`;
      const answer = await (await api(path, { timeoutMs: REFRESH_TIMEOUT_MS })).json();
      items.push(...answer.items);
      if (answer.items.length < PAGE_MOST) break;
    }
    state.menu = { mark, items };
    return items;
  }

  // The job form's dataset list: the key's own datasets (a job trains on one of them; an admin key's list
  // has every key's), newest first, the one just uploaded (or chosen) kept. None: nothing to start.
  function fillDatasetChoice(datasets) {
    const select = $("job-dataset");
    const own = datasets.filter(ownDataset);
    const keep = state.pickDataset || select.value;
    state.pickDataset = null;
    select.replaceChildren(
      ...own.map((ds) => el("option", { value: ds.id }, `${short(ds.id)} · ${ds.n} utterances`)),
    );
    if (own.some((ds) => ds.id === keep)) select.value = keep;
    state.ownDatasets = own.length;
    select.disabled = own.length === 0;
    $("job-submit").disabled = own.length === 0 || state.submitting.has("job-submit"); // not twice at once
    $("job-none").hidden = own.length !== 0;
  }

  async function refresh() {
    clearTimeout(state.timer);
    if (!state.key) return;
    if (state.busy) {
      state.stale = true;
      return;
    }
    state.busy = true;
    state.stale = false;
    try {
      const jobsPath = state.jobState ? `/v1/jobs?state=${encodeURIComponent(state.jobState)}` : "/v1/jobs";
      const [jobs, datasets, models, usage] = await Promise.all(
        [jobsPath, "/v1/datasets", "/v1/models", "/v1/usage"].map((path) =>
          api(path, { timeoutMs: REFRESH_TIMEOUT_MS }).then((r) => r.json()),
        ),
      );
      state.keyId = usage.key_id;
      state.usage = usage;
      const menu = await datasetMenu(datasets);
      state.lastGood = new Date().toLocaleTimeString();
      setOffline(false);
      showUsage(usage);
      const focus = state.focusNext || focusedButton();
      state.focusNext = null;
      // no job and no dataset of its own: a new key, told where to start (the upload is further down)
      const first = !state.jobState && jobs.total === 0 && !menu.some(ownDataset);
      const emptyId = state.jobState ? "jobs-none" : first ? "jobs-first" : "jobs-empty";
      fill($("jobs"), jobs.items.map(jobRow), emptyId);
      announceChanges(jobs.items);
      for (const id of ["jobs-none", "jobs-first", "jobs-empty"]) if (id !== emptyId) $(id).hidden = true;
      fill($("datasets"), datasets.items.map(datasetRow), "datasets-empty");
      fillDatasetChoice(menu);
      fill($("models"), models.items.map(modelRow), "models-empty");
      const which = state.jobState ? `${state.jobState} ` : "";
      const offered =
        menu.length < datasets.total ? `this key's among the latest ${menu.length}` : "all of this key's";
      state.cut = {
        jobs: cutText(jobs, `${which}jobs`),
        datasets: cutText(datasets, "datasets", `; the job form offers ${offered}`),
        models: cutText(models, "models"),
      };
      noteLists();
      focusAgain(focus);
      $("key-section").hidden = true;
      $("main").hidden = false;
      $("forget").hidden = false;
      $("refresh").hidden = false;
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
      // queued or running: those listed (an admin key's list holds every key's) or, when the list shows
      // another state, the key's own (its quota counts them)
      const live = Math.max(jobs.items.filter((j) => LIVE.has(j.state)).length, usage.concurrent_jobs.used);
      const more = (list) =>
        list.total > list.items.length ? ` (the latest ${list.items.length} shown)` : "";
      const liveText = state.jobState ? "" : `, ${live} queued or running`;
      const summary =
        `${jobs.total} ${which}job${jobs.total === 1 ? "" : "s"}${more(jobs)}${liveText} · ` +
        `${datasets.total} dataset${datasets.total === 1 ? "" : "s"}${more(datasets)} · ` +
        `${models.total} model${models.total === 1 ? "" : "s"}${more(models)}`;
      // the time of the refresh is outside the status's live region: a screen reader hears what changed
      if ($("status").textContent !== summary || document.body.dataset.state !== "ready") {
        setStatus(summary, "ready");
        $("status").classList.remove("failed");
      }
      $("updated").textContent = ` · updated ${state.lastGood}`;
      const wanted = state.wanted && jobs.items.find((j) => j.id === state.wanted);
      if (wanted && state.shown !== wanted.id && !LIVE.has(wanted.state)) {
        state.wanted = null; // once: closing the report keeps it closed
        if (wanted.links && wanted.links.report) {
          showReport(wanted.id, false); // the page opens at its top: the lists, then the report below
        } else {
          const why = wanted.model_deleted_at ? "its model was deleted" : `it is ${wanted.state}`;
          notify(`Job ${short(wanted.id)} has no report: ${why}.`);
          writeFragment();
        }
      }
      // a report whose model went meanwhile (deleted from another tab or the client) is closed
      const shown = state.shown && jobs.items.find((j) => j.id === state.shown);
      if (shown && !(shown.links && shown.links.report)) closeReport();
      schedule(live ? BUSY_POLL_MS : IDLE_POLL_MS);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        askForKey(`The key was not accepted: ${describe(err)}`, true);
      } else {
        setStatus(`Cannot refresh: ${describe(err)}; trying again`, "error");
        setOffline(true);
        if (state.lastGood) {
          const since = ` · the lists are as of ${state.lastGood}; their buttons are off meanwhile`;
          $("updated").textContent = since;
        }
        schedule(BUSY_POLL_MS * 2);
      }
    } finally {
      state.busy = false;
      if (state.stale) refresh();
    }
  }

  function schedule(ms) {
    clearTimeout(state.timer);
    state.timer = setTimeout(() => {
      if (document.hidden) schedule(ms); // a background tab does not poll; it refreshes when shown
      else refresh();
    }, ms);
  }

  // --- uploads and new jobs --------------------------------------------------------------------------
  // A setting as `unilabel train --set NAME=VALUE` reads it (models/config.py, parse_override): true or
  // false, null or none, a number as Python's int() or float() reads one (not JavaScript's Number(), which
  // takes 0x10 and 0b1), else the text itself.
  const INTEGER = /^[+-]?\d(_?\d)*$/;
  const DECIMAL = /^[+-]?(\d(_?\d)*(\.(\d(_?\d)*)?)?|\.\d(_?\d)*)([eE][+-]?\d(_?\d)*)?$/;
  function settingValue(raw) {
    const text = raw.trim();
    const lowered = text.toLowerCase();
    if (lowered === "true" || lowered === "false") return lowered === "true";
    if (lowered === "null" || lowered === "none") return null;
    return INTEGER.test(text) || DECIMAL.test(text) ? Number(text.replaceAll("_", "")) : text;
  }

  function parseSettings(text) {
    const settings = {};
    for (const pair of text.split(/\s+/).filter(Boolean)) {
      const at = pair.indexOf("=");
      if (at < 1) throw new Error(`settings: expected name=value, got "${pair}"`);
      settings[pair.slice(0, at)] = settingValue(pair.slice(at + 1));
    }
    return settings;
  }

  // Runs a form's request with its button disabled, and says in the form how it went.
  async function submitForm(event, buttonId, messageId, work) {
    event.preventDefault();
    const button = $(buttonId);
    const message = $(messageId);
    button.disabled = true;
    state.submitting.add(buttonId); // a refresh meanwhile keeps it disabled
    message.className = "form-message";
    message.dataset.outcome = "";
    try {
      message.textContent = await work((text) => (message.textContent = text));
      message.dataset.outcome = "done";
      refresh();
    } catch (err) {
      message.replaceChildren(...refusal(err));
      message.className = "form-message failed";
      message.dataset.outcome = "failed";
    } finally {
      state.submitting.delete(buttonId);
      button.disabled = state.offline || (buttonId === "job-submit" && state.ownDatasets === 0);
    }
  }

  // The multipart field a chosen file goes in, by its extension, so that any names do: the API reads the
  // .csv as utterances.csv and the .npz as features.npz (two of a kind are refused, naming the field).
  function uploadRole(name) {
    const lowered = name.toLowerCase();
    if (lowered.endsWith(".csv")) return "utterances";
    if (lowered.endsWith(".npz")) return "features";
    return "archive";
  }

  function uploadDataset(event) {
    return submitForm(event, "upload-submit", "upload-message", async (say) => {
      const files = Array.from($("upload-files").files);
      const form = new FormData();
      for (const file of files) form.append(uploadRole(file.name), file, file.name);
      const names = files.map((f) => f.name).join(" and ");
      say(`Uploading ${names}…`);
      const response = await sendWithProgress("/v1/datasets", form, (sent, total) => {
        // all sent: the service checks the files before it answers (seconds for a large dataset)
        say(sent < total ? `Uploading ${names}: ${Math.floor((100 * sent) / total)}% of ${sizeText(total)}…`
          : `Uploaded ${sizeText(total)}; the service checks the dataset…`);
      });
      const dataset = response.json;
      state.pickDataset = dataset.id;
      $("upload-form").reset();
      const before = response.status === 200 ? " (uploaded before)" : "";
      return `Dataset ${short(dataset.id)}: ${dataset.n} utterances${before}; start a job on it above.`;
    });
  }

  function startJob(event) {
    return submitForm(event, "job-submit", "job-message", async () => {
      const body = {
        dataset_id: $("job-dataset").value,
        strategy: $("job-strategy").value,
        seed: Number($("job-seed").value),
        hyperparameters: parseSettings($("job-settings").value),
      };
      if ($("job-preset").value) body.preset = $("job-preset").value;
      // the API answers a run already queued or running with that job (202, as for a new one): the jobs
      // listed before the request tell the two apart
      const listed = new Set([...document.querySelectorAll("tr[data-job-id]")].map((row) => row.dataset.jobId));
      const response = await api("/v1/jobs", { json: body });
      const job = await response.json();
      if (response.status === 200) return `Job ${short(job.id)} ${job.state}: this run had succeeded before.`;
      if (listed.has(job.id)) {
        return `Job ${short(job.id)} is this run (same dataset, strategy, seed and settings), ${job.state} ` +
          "already: nothing new was queued.";
      }
      return `Job ${short(job.id)} ${job.state}.`;
    });
  }

  // --- downloads and the report ----------------------------------------------------------------------
  function saveBlob(blob, name) {
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  // A file fetched with the key and saved under `name`; while it comes its button says so and waits (also
  // when a refresh builds the row anew), as a model's zip can take seconds.
  function downloadButton(text, action, id, path, name, what) {
    const busy = state.downloading.has(path);
    const node = button(busy ? `${text}…` : text, action, id, async () => {
      notify(null);
      state.downloading.add(path);
      Object.assign(node, { textContent: `${text}…`, disabled: true });
      try {
        const response = await api(path);
        saveBlob(await response.blob(), name);
      } catch (err) {
        notify(`The ${what}: ${describe(err)}`);
      } finally {
        state.downloading.delete(path);
        const rebuilt = `button[data-action="${action}"][data-id="${CSS.escape(id)}"]`;
        for (const same of document.querySelectorAll(rebuilt)) {
          Object.assign(same, { textContent: text, disabled: state.offline });
        }
      }
    }, what);
    node.disabled = busy;
    return node;
  }

  async function downloadReportData(jobId) {
    try {
      const response = await api(`/v1/jobs/${encodeURIComponent(jobId)}/report?format=json`);
      saveBlob(await response.blob(), `report-${jobId}.json`);
    } catch (err) {
      $("viewer-status").textContent = `Report data: ${describe(err)}`;
    }
  }

  // The report is fetched with the key and shown from a blob: URL in a frame without scripts
  // (sandbox="allow-same-origin" lets this page count the frame's decoded images).
  async function showReport(jobId, scroll = true) {
    const viewer = $("viewer");
    const frame = $("viewer-frame");
    state.shown = jobId;
    writeFragment(); // the address opens this report again
    viewer.hidden = false;
    Object.assign(viewer.dataset, { jobId, state: "loading", images: "", decoded: "" });
    $("viewer-title").textContent = `of job ${short(jobId)}`;
    $("viewer-status").textContent = "Building or fetching the report…";
    if (scroll) viewer.scrollIntoView({ block: "start" });
    try {
      const response = await api(`/v1/jobs/${encodeURIComponent(jobId)}/report`);
      const blob = new Blob([await response.arrayBuffer()], { type: "text/html" });
      if (state.shown !== jobId) return; // another report was asked for meanwhile
      if (state.reportUrl) URL.revokeObjectURL(state.reportUrl);
      state.reportUrl = URL.createObjectURL(blob);
      $("viewer-open").href = state.reportUrl;
      $("viewer-download").href = state.reportUrl;
      $("viewer-download").download = `report-${jobId}.html`;
      $("viewer-json").onclick = () => downloadReportData(jobId);
      frame.onload = () => inspectFrame(jobId);
      frame.src = state.reportUrl;
    } catch (err) {
      viewer.dataset.state = "error";
      $("viewer-status").textContent = `Report of ${short(jobId)}: ${describe(err)}`;
    }
  }

  function inspectFrame(jobId) {
    const viewer = $("viewer");
    const frame = $("viewer-frame");
    if (state.shown !== jobId) return;
    const doc = frame.contentDocument;
    const images = doc ? Array.from(doc.images) : [];
    const decoded = images.filter((img) => img.complete && img.naturalWidth > 0).length;
    Object.assign(viewer.dataset, { state: "shown", images: String(images.length), decoded: String(decoded) });
    $("viewer-status").textContent =
      decoded === images.length ? "" : `${images.length - decoded} of ${images.length} figures did not load`;
    if (doc) frame.style.height = `${doc.documentElement.scrollHeight + 24}px`;
  }

  function closeReport() {
    state.shown = null;
    state.wanted = null;
    writeFragment();
    $("viewer").hidden = true;
    $("viewer-frame").removeAttribute("src");
    if (state.reportUrl) URL.revokeObjectURL(state.reportUrl);
    state.reportUrl = null;
  }

  // --- start -----------------------------------------------------------------------------------------
  function start() {
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("key-input").value.trim();
      $("key-input").value = "";
      if (!key) return;
      sessionStorage.setItem(KEY_STORE, key);
      state.key = key;
      setStatus("Loading…", "loading");
      refresh();
    });
    $("forget").addEventListener("click", () => {
      closeReport();
      askForKey("The key is forgotten in this tab.");
    });
    $("refresh").addEventListener("click", () => refresh());
    $("notice-dismiss").addEventListener("click", () => notify(null));
    $("job-state").addEventListener("change", () => {
      state.jobState = $("job-state").value;
      writeFragment();
      refresh();
    });
    $("viewer-close").addEventListener("click", closeReport);
    $("to-upload").addEventListener("click", () => {
      $("upload-form").scrollIntoView({ block: "center" });
      $("upload-files").focus();
    });
    $("upload-form").addEventListener("submit", uploadDataset);
    $("job-form").addEventListener("submit", startJob);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && state.key) refresh();
    });
    readKey();
    if (state.key) refresh();
    else askForKey("Give an API key to see its datasets, jobs and models.");
  }

  start();
})();

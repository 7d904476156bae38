// The key's jobs, datasets and models: read from the API and refreshed by polling, each item a row with its
// buttons; what each list says of itself (cut short, out of date); the job form's dataset menu; the
// quotas' line; a job's change of state said in words. No key (none yet, or one refused): askForKey().

import { $, ago, button, el, idCell, pct, short, sizeText } from "./dom.js";
import { KEY_STORE, notify, setStatus, state, writeFragment } from "./state.js";
import { ApiError, api, describe } from "./api.js";
import { closeReport, downloadButton, showReport } from "./report.js";

const BUSY_POLL_MS = 2000; // while a job is queued or running
const IDLE_POLL_MS = 15000;
const REFRESH_TIMEOUT_MS = 15000;
const LIVE = new Set(["queued", "running"]);
const ERROR_SHOWN = 160; // characters of a failed job's error shown before "…"
const PAGE_MOST = 1000; // the most items one list request may ask for (?limit=)
const PAGE_SIZE = 100; // the items a list shows at once (its ?limit=, the API's default)
const LISTS = ["jobs", "datasets", "models"];
const MENU_PAGES = 10; // the job form's dataset menu reads at most this many such pages
const FOLLOWED_MOST = 25; // the most live jobs off the page shown asked for at each refresh (followed())

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

export function askForKey(message, refused = false) {
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
  state.jobsSeen.clear();
  state.menu = null;
  for (const kind of LISTS) { // another key: each list from its newest
    state.offsets[kind] = 0;
    state.anchors[kind] = null;
  }
  setOffline(false);
  state.lastGood = null;
  notify(null);
  setStatus(message, "no-key");
  $("status").classList.toggle("failed", refused);
  $("key-input").focus();
}

// A listed job whose state changed since the last refresh is said in words, with the time, in a live
// region: a screen reader hears it (a row's new colour says nothing to one), and a sighted user sees it
// without finding the row, which may be far down the list. `jobs`: the page's and those followed().
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

// The jobs seen queued or running (or started here) that the page shown does not hold (another page or
// another state is shown): each asked for on its own until it ends, so that its start and end are said too;
// at most FOLLOWED_MOST (an admin key's newest page may hold 100 of every key's). One the service no longer
// shows (404) is let go.
async function followed(listed) {
  const shown = new Set(listed.map((job) => job.id));
  const ids = [...(state.seenStates || [])].filter(([id, was]) => LIVE.has(was) && !shown.has(id))
    .slice(0, FOLLOWED_MOST);
  const jobs = await Promise.all(ids.map(([id]) =>
    api(`/v1/jobs/${encodeURIComponent(id)}`, { timeoutMs: REFRESH_TIMEOUT_MS })
      .then((r) => r.json())
      .catch((err) => {
        if (err instanceof ApiError && err.status === 404) return null;
        throw err;
      })));
  return jobs.filter(Boolean);
}

// The job the address names (#job=ID: a link, a bookmark, a reload): the listed one, else asked for on its
// own, as it may be on an older page or of a state other than the one shown. One the key cannot see (unknown,
// another key's, mistyped: 404) comes back as {id, unknown}, to be said.
async function wantedJob(listed) {
  const id = state.wanted;
  if (!id) return null;
  const found = listed.find((job) => job.id === id);
  if (found) return found;
  try {
    const response = await api(`/v1/jobs/${encodeURIComponent(id)}`, { timeoutMs: REFRESH_TIMEOUT_MS });
    return await response.json();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return { id, unknown: true };
    throw err;
  }
}

// The wanted job's report opened once it has ended (closing it keeps it closed), or why it has none said.
function openWanted(wanted) {
  // another report opened or this one closed while it was asked for: no longer wanted; yet to end: asked
  // again at the next refresh
  if (!wanted || wanted.id !== state.wanted || LIVE.has(wanted.state)) return;
  state.wanted = null;
  if (wanted.links && wanted.links.report) {
    showReport(wanted.id, false); // the page opens at its top: the lists, then the report below
    return;
  }
  if (wanted.unknown) {
    const which = `The address names job ${short(wanted.id)}`;
    notify(`${which}, which this key cannot see: there is no such job, or it is another key's.`);
  } else {
    const why = wanted.model_deleted_at ? "its model was deleted" : `it is ${wanted.state}`;
    notify(`Job ${short(wanted.id)} has no report: ${why}.`);
  }
  writeFragment();
}

function fill(table, rows, emptyId) {
  table.tBodies[0].replaceChildren(...rows);
  table.hidden = rows.length === 0;
  $(emptyId).hidden = rows.length !== 0;
}

// The rows are built anew at each refresh: the focused button (or the one an action asked for) is found
// again by what it does and to what, so that a keyboard user keeps their place. A list's "newer" or "older"
// stays, found by its id (it may have been off meanwhile: see setOffline).
function focusedButton() {
  const active = document.activeElement;
  if (active && active.parentElement && active.parentElement.classList.contains("pager")) {
    return { pager: active.id };
  }
  if (!active || !active.dataset || !active.dataset.action) return null;
  const { action, id, owner } = active.dataset;
  const table = active.closest("table"); // a job's report button is in the jobs' and the models' lists
  return { action, id, owner, table: table ? table.id : null };
}

function focusAgain(target) {
  if (!target) return;
  if (target.pager) {
    $(target.pager).focus(); // never disabled (pagerOff()): focusable at the first or last page too
    return;
  }
  const owner = target.owner ? `[data-owner="${CSS.escape(target.owner)}"]` : "";
  const found = $(target.table || "main").querySelector(
    `[data-action="${CSS.escape(target.action)}"][data-id="${CSS.escape(target.id)}"]${owner}`,
  );
  if (found) found.focus();
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

// "101–200" ("101–101" for one item: "101 of 101" would read as every item shown): the items of a list's
// page, counted from its newest
const shownText = (list, offset) => `${offset + 1}–${offset + list.items.length}`;

const rangeText = (list, offset) => `${shownText(list, offset)} of ${list.total}`;

// A list answers one page (PAGE_SIZE items from ?offset=) and its total: a list cut short says so above it,
// as a user who looks for an older item would otherwise think it gone, and pages to the rest (pager()).
function cutText(list, offset, noun, more = "") {
  if (offset > 0) return `${rangeText(list, offset)} ${noun} are shown${more}.`;
  if (list.total <= list.items.length) return "";
  return `The latest ${list.items.length} of ${list.total} ${noun} are shown${more}.`;
}

// An item as a list tells it from the others (two keys' uploads of the same files share a dataset's id).
const itemKey = (kind, item) => (kind === "datasets" ? `${item.id} ${item.owner || ""}` : item.id);

// The lists' "newer" and "older" go off with aria-disabled, not disabled: a disabled button drops the
// keyboard's focus, and Enter pressed again on "older" at the last page would land on "newer" and go back.
// One marked off keeps the focus, is said to be unavailable by a screen reader, and a press does nothing
// (turnPage()).
const pagerOff = (node, off) => node.setAttribute("aria-disabled", String(off));
const isOff = (node) => node.getAttribute("aria-disabled") === "true";

// "newer" and "older" of a list cut short, with the range it shows between them. They are above the list,
// so that the page they ask for starts under them, and stay in place, the focus on the one pressed (off at
// the first or last page, it keeps it). The status line (a live region) says the range shown. A page after
// the first keeps its items (newerCame()): its first is noted.
function pager(kind, list, offset) {
  state.listed[kind] = offset;
  const first = list.items[0];
  state.anchors[kind] = offset > 0 && first ? { offset, key: itemKey(kind, first) } : null;
  $(`${kind}-pager`).hidden = offset === 0 && list.total <= list.items.length;
  $(`${kind}-range`).textContent = rangeText(list, offset);
  const newer = $(`${kind}-newer`);
  const older = $(`${kind}-older`);
  pagerOff(newer, offset === 0);
  pagerOff(older, offset + list.items.length >= list.total);
}

// The next page from the one shown (not the one asked for: a second click before it comes asks it again).
export function turnPage(kind, step) {
  const shown = state.listed[kind];
  if (shown === null || isOff($(`${kind}-${step < 0 ? "newer" : "older"}`))) return;
  state.offsets[kind] = Math.max(0, shown + step * PAGE_SIZE);
  refresh();
}

// A list that ends before the page it shows (items deleted meanwhile): its last page.
const lastPage = (total) => Math.max(0, Math.floor((total - 1) / PAGE_SIZE) * PAGE_SIZE);

// How many newer items came above a page after the first since it was shown (a job started, a dataset
// uploaded): its first item is that many further down. The page asked for again from there keeps the rows
// shown in place (and the keyboard's focus on one of them), its range moved ("102–201 of 251"), rather than
// pushing them down, the last out of sight.
function newerCame(kind, offset, list) {
  const anchor = state.anchors[kind];
  if (!offset || !anchor || anchor.offset !== offset) return 0;
  return Math.max(0, list.items.findIndex((item) => itemKey(kind, item) === anchor.key));
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
// forms', the report's data; and the lists' pages, marked off instead (pagerOff()).
const SENDING = "#main button[data-action], #upload-submit, #job-submit, #viewer-json";
const PAGERS = ".pager button";

// While refreshes fail the lists stay as they were, said to be possibly out of date, and the buttons that
// send a request are off: a click would fail with a less clear error than the status line's. The refresh
// that works again builds the rows anew (their buttons on) and turns the others back on (pager(): the
// lists' pages).
function setOffline(offline) {
  if (offline && !state.offline) state.focusNext = state.focusNext || focusedButton(); // found again after
  state.offline = offline;
  document.body.dataset.offline = String(offline);
  if (offline) {
    for (const node of document.querySelectorAll(SENDING)) node.disabled = true;
    for (const node of document.querySelectorAll(PAGERS)) pagerOff(node, true);
  } else {
    $("upload-submit").disabled = state.submitting.has("upload-submit");
    $("job-submit").disabled = state.submitting.has("job-submit") || state.ownDatasets === 0;
    $("viewer-json").disabled = false;
  }
  noteLists();
}

// The job form offers every dataset of the key's own, not only the listed page's: a list cut short is read
// whole for it, in pages of the most the API gives, again only when the list's total or its newest item
// changed (an upload or a delete, here or elsewhere; not another page), and at most MENU_PAGES of them.
// `newest`: the list's first page, of one item when a later one is shown.
async function datasetMenu(listed, offset, newest) {
  if (offset === 0 && listed.total <= listed.items.length) {
    state.menu = null;
    return listed.items;
  }
  const first = newest.items[0] || {};
  const mark = `${newest.total} ${first.id} ${first.owner}`;
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

export async function refresh() {
  clearTimeout(state.timer);
  if (!state.key) return;
  if (state.busy) {
    state.stale = true;
    return;
  }
  state.busy = true;
  state.stale = false;
  try {
    const offsets = { ...state.offsets }; // the pages asked for (a click meanwhile asks for another)
    const page = (kind) => `limit=${PAGE_SIZE}&offset=${offsets[kind]}`;
    const which = state.jobState ? `state=${encodeURIComponent(state.jobState)}&` : "";
    const paths = [`/v1/jobs?${which}${page("jobs")}`, `/v1/datasets?${page("datasets")}`,
      `/v1/models?${page("models")}`, "/v1/usage"];
    // a later page of datasets: the newest one too, which marks the job form's menu (datasetMenu())
    if (offsets.datasets > 0) paths.push("/v1/datasets?limit=1&offset=0");
    const [jobs, datasets, models, usage, newestDataset] = await Promise.all(
      paths.map((path) => api(path, { timeoutMs: REFRESH_TIMEOUT_MS }).then((r) => r.json())),
    );
    const answers = { jobs, datasets, models };
    // a page the list no longer reaches gives way to its last; one that newer items pushed down follows its
    // items: each asked for again at once (finally), the lists left as they were meanwhile
    const moved = {};
    for (const kind of LISTS) {
      const list = answers[kind];
      const came = newerCame(kind, offsets[kind], list);
      if (offsets[kind] > 0 && offsets[kind] >= list.total) moved[kind] = lastPage(list.total);
      else if (came) moved[kind] = offsets[kind] + came;
    }
    if (Object.keys(moved).length) {
      for (const [kind, offset] of Object.entries(moved)) {
        if (state.offsets[kind] === offsets[kind]) state.offsets[kind] = offset; // not another page asked for
      }
      state.stale = true;
      return;
    }
    state.keyId = usage.key_id;
    state.usage = usage;
    const menu = await datasetMenu(datasets, offsets.datasets, newestDataset || datasets);
    const [elsewhere, wanted] = await Promise.all([followed(jobs.items), wantedJob(jobs.items)]);
    state.lastGood = new Date().toLocaleTimeString();
    setOffline(false);
    showUsage(usage);
    const focus = state.focusNext || focusedButton();
    state.focusNext = null;
    // no job and no dataset of its own: a new key, told where to start (the upload is further down)
    const first = !state.jobState && jobs.total === 0 && !menu.some(ownDataset);
    const emptyId = state.jobState ? "jobs-none" : first ? "jobs-first" : "jobs-empty";
    fill($("jobs"), jobs.items.map(jobRow), emptyId);
    announceChanges([...jobs.items, ...elsewhere]);
    for (const job of jobs.items) state.jobsSeen.add(job.id);
    for (const id of ["jobs-none", "jobs-first", "jobs-empty"]) if (id !== emptyId) $(id).hidden = true;
    fill($("datasets"), datasets.items.map(datasetRow), "datasets-empty");
    fillDatasetChoice(menu);
    fill($("models"), models.items.map(modelRow), "models-empty");
    const jobsOf = state.jobState ? `${state.jobState} ` : "";
    const offered =
      menu.length < datasets.total ? `this key's among the latest ${menu.length}` : "all of this key's";
    state.cut = {
      jobs: cutText(jobs, offsets.jobs, `${jobsOf}jobs`),
      datasets: cutText(datasets, offsets.datasets, "datasets", `; the job form offers ${offered}`),
      models: cutText(models, offsets.models, "models"),
    };
    noteLists();
    for (const kind of LISTS) pager(kind, answers[kind], offsets[kind]);
    focusAgain(focus);
    $("key-section").hidden = true;
    $("main").hidden = false;
    $("forget").hidden = false;
    $("refresh").hidden = false;
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    // queued or running: those listed (an admin key's list holds every key's) or, when the list shows
    // another state, the key's own (its quota counts them)
    const followedLive = elsewhere.filter((j) => LIVE.has(j.state)).length;
    const live = Math.max(jobs.items.filter((j) => LIVE.has(j.state)).length + followedLive,
      usage.concurrent_jobs.used);
    const more = (kind) => {
      const list = answers[kind];
      if (offsets[kind] > 0) return ` (${shownText(list, offsets[kind])} shown)`;
      return list.total > list.items.length ? ` (the latest ${list.items.length} shown)` : "";
    };
    const liveText = state.jobState ? "" : `, ${live} queued or running`;
    const summary =
      `${jobs.total} ${jobsOf}job${jobs.total === 1 ? "" : "s"}${more("jobs")}${liveText} · ` +
      `${datasets.total} dataset${datasets.total === 1 ? "" : "s"}${more("datasets")} · ` +
      `${models.total} model${models.total === 1 ? "" : "s"}${more("models")}`;
    // the time of the refresh is outside the status's live region: a screen reader hears what changed
    if ($("status").textContent !== summary || document.body.dataset.state !== "ready") {
      setStatus(summary, "ready");
      $("status").classList.remove("failed");
    }
    $("updated").textContent = ` · updated ${state.lastGood}`;
    openWanted(wanted);
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

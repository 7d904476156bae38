// What the page's modules share: the key and what the page shows or waits for (`state`), and the places
// that say where the page is, outside the lists: the address's fragment, the status line, the notice.

import { $ } from "./dom.js";

export const KEY_STORE = "unilabel.key";

export const state = {
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
  offsets: { jobs: 0, datasets: 0, models: 0 }, // the page each list asks for: its first item's ?offset=
  listed: { jobs: null, datasets: null, models: null }, // the offset of the page each list shows
  anchors: { jobs: null, datasets: null, models: null }, // {offset, key}: a later page's first item
  offline: false, // the last refresh failed: the lists may be out of date, the buttons that send are off
  lastGood: null, // the time of the last refresh that worked, as shown
  openErrors: new Set(), // the jobs whose whole error is shown
  seenStates: null, // job id -> its state at the last refresh (null before the first)
  jobsSeen: new Set(), // the id of every job listed or started by this page (for the key shown)
};

export function setStatus(text, pageState) {
  $("status").textContent = text;
  if (pageState) document.body.dataset.state = pageState;
}

// What went wrong with something the user did (a delete, a cancel, a download): kept across refreshes until
// dismissed or the next action, as the row acted on may be far from the top of the page.
export function notify(text) {
  $("notice-text").textContent = text || "";
  $("notice").hidden = !text;
}

// The key: from the fragment (#key=...), else this tab's storage. The key is removed from the fragment at
// once, so it is not left in the address bar, the history or a bookmark; #job=ID (the report to show) and
// #state=S (the jobs shown) stay.
export function readKey() {
  const params = new URLSearchParams(location.hash.slice(1));
  state.wanted = params.get("job");
  state.jobState = params.get("state") || "";
  $("job-state").value = state.jobState;
  const given = params.get("key");
  if (given) sessionStorage.setItem(KEY_STORE, given.trim());
  writeFragment();
  state.key = sessionStorage.getItem(KEY_STORE);
}

export function writeFragment() {
  const keep = new URLSearchParams();
  const report = state.shown || state.wanted;
  if (report) keep.set("job", report);
  if (state.jobState) keep.set("state", state.jobState);
  const rest = keep.toString() ? `#${keep}` : "";
  history.replaceState(null, "", location.pathname + location.search + rest);
  document.body.dataset.location = location.href;
}

// The page at /: the key's datasets, jobs and models from the JSON API, refreshed by polling; a finished
// job's report shown in a frame; a dataset uploaded or deleted, a job started or cancelled through the same
// API. Plain DOM, no framework. The key never leaves this tab except as the Authorization header of calls to
// this server (service/page.py says why).
//
// What the page shows is also written into data- attributes (body[data-state], body[data-refreshes],
// body[data-location], tr[data-job-id][data-state], #viewer[data-images][data-decoded], a form's
// .form-message[data-outcome]), so a headless browser can check it (tests/service/test_page_browser.py).
//
// This module starts the page: it wires the controls that are not in a row and reads the key. The others,
// ES modules that it imports: dom.js (elements, words for numbers), state.js (what the modules share),
// api.js (calls and their errors), lists.js (the lists and their refresh), forms.js (upload, new job),
// report.js (downloads and the report).

import { $ } from "./dom.js";
import { KEY_STORE, notify, readKey, setStatus, state, writeFragment } from "./state.js";
import { askForKey, refresh, turnPage } from "./lists.js";
import { startJob, uploadDataset } from "./forms.js";
import { closeReport } from "./report.js";

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
    state.offsets.jobs = 0; // another list: from its newest
    state.anchors.jobs = null;
    writeFragment();
    refresh();
  });
  for (const kind of ["jobs", "datasets", "models"]) {
    $(`${kind}-newer`).addEventListener("click", () => turnPage(kind, -1));
    $(`${kind}-older`).addEventListener("click", () => turnPage(kind, 1));
  }
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

// mailroom admin UI: small progressive enhancements; every page works without this file.
"use strict";

const mailroom = (() => {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? "";
  const base = meta("base-path");

  // JSON API call with the session's CSRF token (cookie-authenticated calls need it).
  async function api(path, options = {}) {
    const headers = { "Accept": "application/json", "X-CSRF-Token": meta("csrf-token"), ...(options.headers || {}) };
    if (options.body && typeof options.body !== "string") {
      headers["Content-Type"] = "application/json";
      options = { ...options, body: JSON.stringify(options.body) };
    }
    const response = await fetch(base + "/api/v1" + path, { credentials: "same-origin", ...options, headers });
    const data = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
    if (!response.ok) {
      const error = new Error(data?.message || response.statusText);
      error.code = data?.code;
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // Forms and buttons with data-confirm ask first.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    const question = event.submitter?.dataset.confirm || form.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // <input type="checkbox" data-select-all="name"> toggles every checkbox named `name`.
  document.addEventListener("change", (event) => {
    const target = event.target;
    if (target.dataset?.selectAll) {
      document.querySelectorAll(`input[type=checkbox][name="${target.dataset.selectAll}"]`)
        .forEach((box) => { box.checked = target.checked; });
    }
  });

  return { api, base };
})();
window.mailroom = mailroom;

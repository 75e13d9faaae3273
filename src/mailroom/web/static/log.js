// Mail pages (overview, test, log, mail detail): small enhancements; every page works without this file.
"use strict";

(() => {
  const parseHtml = (text) => new DOMParser().parseFromString(text, "text/html");

  // Filter selects apply at once instead of waiting for the search button.
  document.addEventListener("change", (event) => {
    const target = event.target;
    if (target.matches?.("select[data-autosubmit]")) target.form.requestSubmit();
  });

  // Log: "3 selected" next to the bulk buttons.
  const selectedCount = () => document.querySelectorAll('input[type=checkbox][name="ids"]:checked').length;
  function countSelection() {
    const counter = document.querySelector("[data-selection-count]");
    if (!counter) return;
    const count = selectedCount();
    counter.textContent = count ? counter.dataset.template.replace("{count}", count) : "";
    if (count) document.querySelectorAll("[data-nothing-selected]").forEach((note) => { note.hidden = true; });
  }

  // Log: a bulk button with nothing selected says so at once, instead of first asking "Delete the selected
  // mails?" about none. Capturing, so this runs before app.js's confirmation.
  document.addEventListener("submit", (event) => {
    const button = event.submitter;
    const note = event.target.querySelector?.("[data-nothing-selected]");
    if (!note || button?.name !== "action" || button.hasAttribute("formaction") || selectedCount()) return;
    event.preventDefault();
    event.stopPropagation();
    note.hidden = false;
  }, true);
  document.addEventListener("change", (event) => {
    if (event.target.matches?.('input[type=checkbox][name="ids"], input[data-select-all]')) countSelection();
  });

  // Test page: the template list shows the chosen set's templates, and the model follows the chosen
  // template's sample values as long as nobody edited it.
  function setUpTemplateForm(form) {
    const setSelect = form.querySelector("[data-template-set]");
    const nameSelect = form.querySelector("[data-template-name]");
    const model = form.querySelector("[data-model]");
    if (!setSelect || !nameSelect || !model) return;
    let sample = nameSelect.selectedOptions[0]?.dataset.sampleModel;
    const showSet = () => {
      for (const group of nameSelect.querySelectorAll("optgroup")) {
        const chosen = group.dataset.set === setSelect.value;
        group.hidden = !chosen;
        group.disabled = !chosen;
      }
      if (nameSelect.selectedOptions[0]?.dataset.set !== setSelect.value) {
        const first = [...nameSelect.options].find((option) => option.dataset.set === setSelect.value);
        if (first) first.selected = true;
      }
    };
    const followSample = () => {
      const next = nameSelect.selectedOptions[0]?.dataset.sampleModel;
      if (next === undefined) return;
      if (model.value.trim() === "" || model.value.trim() === (sample ?? "").trim()) model.value = next;
      sample = next;
    };
    setSelect.addEventListener("change", () => { showSet(); followSample(); });
    nameSelect.addEventListener("change", followSample);
    showSet();
  }

  // Test page: Preview posts in the background and swaps in the card and the preview from the answer,
  // the same HTML the page shows without JavaScript.
  async function preview(form) {
    const body = new FormData(form);
    body.set("action", "preview");
    // getAttribute: the buttons named "action" shadow the form's `action` property.
    const target = new URL(form.getAttribute("action"), location.href);
    form.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(target, { method: "POST", body, credentials: "same-origin" });
      const fresh = parseHtml(await response.text());
      const card = fresh.getElementById("template-card");
      if (!card) throw new Error(`unexpected answer ${response.status}`);
      document.getElementById("template-card").replaceWith(card);
      const area = fresh.getElementById("preview-area");
      if (area) document.getElementById("preview-area")?.replaceWith(area);
      const newForm = document.getElementById("template-form");
      if (newForm) setUpTemplateForm(newForm);
      document.getElementById("preview-area")?.scrollIntoView({ behavior: "smooth", block: "nearest" });
    } catch (error) {
      // The background request failed: post the ordinary way, which shows the preview (or the error).
      form.removeAttribute("aria-busy");
      const action = document.createElement("input");
      Object.assign(action, { type: "hidden", name: "action", value: "preview" });
      form.append(action);
      HTMLFormElement.prototype.submit.call(form);
    }
  }
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.id === "template-form" && event.submitter?.matches("[data-preview]") && !event.defaultPrevented) {
      event.preventDefault();
      preview(form);
    }
  });

  // Overview: the counts and the chart refresh while the page is open and visible.
  const REFRESH_MS = 15000;
  async function refreshLiveSections() {
    if (document.hidden) return;
    try {
      const response = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (!response.ok) return;
      const fresh = parseHtml(await response.text());
      for (const section of document.querySelectorAll("[data-live-section]")) {
        const replacement = fresh.querySelector(`[data-live-section="${section.dataset.liveSection}"]`);
        if (replacement) section.replaceWith(replacement);
      }
    } catch (error) {
      // Offline for a moment: the next round tries again.
    }
  }

  // Badges of mails on their way (data-mail-status="<id>") follow their mails. One request asks for every
  // mail on the page, at most every 2 s: a page of 200 queued mails polled one by one, every second, loaded
  // the server as much as a busy client does. Hidden tabs do not ask, and once every mail on the page is
  // final nothing can change, so asking stops.
  const POLL_MS = 2000;
  const FINAL = new Set(["sent", "failed", "partially_failed", "cancelled"]);
  const followed = () => [...document.querySelectorAll("[data-mail-status]")];
  let pollTimer = null;
  let polling = false;

  function showStatus(badge, status) {
    badge.textContent = badge.getAttribute(`data-label-${status}`) || status;
    badge.className = `badge status-${status}`;
    badge.dataset.status = status;
  }

  async function pollStatuses() {
    pollTimer = null;
    const badges = followed();
    if (!badges.length || document.hidden) return;
    const ids = [...new Set(badges.map((badge) => badge.dataset.mailStatus))];
    polling = true;
    try {
      const query = ids.map((id) => `id=${encodeURIComponent(id)}`).join("&");
      const { statuses } = await mailroom.api(`/mails/statuses?${query}`);
      for (const badge of badges) {
        const status = statuses[badge.dataset.mailStatus];
        if (status) showStatus(badge, status);
        // A deleted mail cannot change any more either.
        if (!status || FINAL.has(status)) delete badge.dataset.mailStatus;
      }
    } catch (error) {
      // Logged out, or not allowed to read mails: asking again cannot help. Anything else may pass.
      if (error.status === 401 || error.status === 403) badges.forEach((badge) => delete badge.dataset.mailStatus);
    } finally {
      polling = false;
    }
    schedulePoll();
  }

  function schedulePoll() {
    if (pollTimer === null && !polling && !document.hidden && followed().length) {
      pollTimer = setTimeout(pollStatuses, POLL_MS);
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(pollTimer);
      pollTimer = null;
    } else {
      schedulePoll();
    }
  });

  const start = () => {
    document.querySelectorAll("#template-form").forEach(setUpTemplateForm);
    countSelection();
    schedulePoll();
    if (document.querySelector("[data-live-section]")) setInterval(refreshLiveSections, REFRESH_MS);
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

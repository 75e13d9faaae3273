// mailroom admin pages: extras for the template editor. Every page works without this file.
"use strict";

(() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";

  function show(element, text) {
    if (!element) return;
    element.textContent = text;
    element.hidden = !text;
  }

  // Put the cursor on the line an error points at (a template syntax error names its field and line).
  function pointAt(part, line) {
    const field = part && document.querySelector(`#template-form [name="${part}"]`);
    if (!field) return;
    if (field.dataset.editor) {  // hidden behind the code editor (editor.js), which marks the line itself
      field.dispatchEvent(new CustomEvent("mailroom:point-at", { detail: { line } }));
      return;
    }
    field.focus();
    if (line > 0 && typeof field.setSelectionRange === "function") {
      const lines = field.value.split("\n");
      const start = lines.slice(0, line - 1).reduce((sum, text) => sum + text.length + 1, 0);
      field.setSelectionRange(start, start + (lines[line - 1] ?? "").length);
    }
  }

  // Preview: the form posts itself into the sandboxed frame, which shows the HTML without any script.
  // The rendered subject and text are fetched here, to show beside the frame.
  document.addEventListener("submit", async (event) => {
    const form = event.target;
    const button = event.submitter;
    if (event.defaultPrevented || !form.dataset?.previewParts || !button || !("preview" in button.dataset)) return;
    const panel = document.querySelector(".card.preview");
    const error = panel?.querySelector("[data-preview-error]");
    try {
      const response = await fetch(form.dataset.previewParts, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { "Accept": "application/json", "X-CSRF-Token": csrf() },
      });
      const data = response.headers.get("content-type")?.includes("json") ? await response.json() : {};
      if (!response.ok) {
        show(error, data.error || response.statusText);
        pointAt(data.part, Number(data.line));
        return;
      }
      show(error, "");
      document.querySelectorAll("#template-form [data-editor]")
        .forEach((field) => field.dispatchEvent(new CustomEvent("mailroom:clear-error")));
      panel.querySelector("[data-preview-subject]").textContent = data.subject;
      panel.querySelector("[data-preview-text]").textContent = data.text;
    } catch (failure) {
      show(error, failure.message);
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    const error = document.querySelector("[data-error-part]");
    if (error?.dataset.errorPart) pointAt(error.dataset.errorPart, Number(error.dataset.errorLine));
  });
})();

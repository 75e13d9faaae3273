// The template editor's code editor: each <textarea class="code"> of #template-form gets a CodeMirror view.
// The textarea stays in the form (hidden) and always holds the editor's text, so saving and the preview post
// the same fields as without JavaScript; without this bundle the textareas are the editor.
import { EditorView } from "codemirror";
import { defaultKeymap, history, historyKeymap } from "@codemirror/commands";
import { json } from "@codemirror/lang-json";
import { jinja } from "@codemirror/lang-jinja";
import {
  HighlightStyle, LanguageSupport, StreamLanguage, bracketMatching, indentOnInput, syntaxHighlighting,
} from "@codemirror/language";
import { EditorState, RangeSet, StateEffect, StateField } from "@codemirror/state";
import {
  Decoration, GutterMarker, drawSelection, highlightActiveLine, highlightActiveLineGutter,
  highlightSpecialChars, keymap, lineNumberMarkers, lineNumbers,
} from "@codemirror/view";
import { tags } from "@lezer/highlight";

// Read now: document.currentScript is only set while this script runs. The page's CSP allows CodeMirror's
// <style> elements by this per-response nonce, never by 'unsafe-inline'.
const nonce = document.currentScript?.nonce ?? "";

// A text body is Jinja over plain text: a language that marks nothing, for Jinja to overlay.
const plainText = new LanguageSupport(StreamLanguage.define({
  name: "text",
  token(stream) { stream.skipToEnd(); return null; },
}));

const languages = {
  html: () => jinja(),
  text: () => jinja({ base: plainText }),
  variables: () => json(),
};

// Colours that keep a contrast of at least 4.5:1 on the editor's white and on the active line's tint.
const highlighting = HighlightStyle.define([
  { tag: [tags.keyword, tags.controlKeyword, tags.operatorKeyword, tags.definitionKeyword], color: "#7c1fa3" },
  { tag: [tags.tagName, tags.angleBracket], color: "#0b6e35" },
  { tag: tags.attributeName, color: "#8a4b00" },
  { tag: [tags.string, tags.attributeValue], color: "#a3122a" },
  { tag: [tags.number, tags.bool, tags.null, tags.atom], color: "#1746a2" },
  { tag: [tags.variableName, tags.propertyName], color: "#1d4ed8" },
  { tag: [tags.brace, tags.meta, tags.processingInstruction, tags.special(tags.brace)], color: "#9a3412",
    fontWeight: "600" },
  { tag: tags.comment, color: "#52606d", fontStyle: "italic" },
  { tag: tags.invalid, color: "#b91c1c", textDecoration: "underline wavy" },
]);

const theme = EditorView.theme({
  "&": { backgroundColor: "#fff", color: "#1f2933", border: "1px solid #cbd2d9", borderRadius: "6px",
         fontSize: ".875rem", fontWeight: "normal" },
  "&.cm-focused": { outline: "2px solid #2563eb", outlineOffset: "-1px" },
  ".cm-scroller": { fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace", lineHeight: "1.5" },
  ".cm-content": { padding: ".45rem 0" },
  ".cm-gutters": { backgroundColor: "#f4f5f7", color: "#52606d", borderRight: "1px solid #e4e7eb",
                   borderRadius: "6px 0 0 6px" },
  ".cm-activeLine": { backgroundColor: "#eef4ff" },
  ".cm-activeLineGutter": { backgroundColor: "#dbe6fb", color: "#1f2933" },
  ".cm-error-line": { backgroundColor: "#fee2e2", boxShadow: "inset 3px 0 0 #b91c1c" },
  ".cm-gutterElement.cm-error-line-number": { backgroundColor: "#b91c1c", color: "#fff", fontWeight: "700" },
  "&.cm-readonly .cm-content": { caretColor: "transparent" },
}, { dark: false });

// --- the error: the field is invalid (aria-invalid) and the line it names is marked, on the line and on its
// number, until another error or a clean preview ---------------------------------------------------------

const setError = StateEffect.define();  // value: {invalid: boolean, line: Line | null}

const errorLineNumber = new class extends GutterMarker {
  elementClass = "cm-error-line-number";
}();

const errorState = StateField.define({
  create: () => ({ invalid: false, marks: Decoration.none }),
  update(value, transaction) {
    let { invalid, marks } = value;
    marks = marks.map(transaction.changes);
    for (const effect of transaction.effects) {
      if (effect.is(setError)) {
        invalid = effect.value.invalid;
        const line = effect.value.line;
        marks = line ? Decoration.set([Decoration.line({ class: "cm-error-line" }).range(line.from)])
          : Decoration.none;
      }
    }
    return { invalid, marks };
  },
  provide: (field) => [
    EditorView.decorations.from(field, (value) => value.marks),
    lineNumberMarkers.from(field, (value) => {
      const starts = [];
      value.marks.between(0, Number.MAX_SAFE_INTEGER, (from) => { starts.push(errorLineNumber.range(from)); });
      return RangeSet.of(starts);
    }),
    EditorView.contentAttributes.from(field, (value) => (value.invalid ? { "aria-invalid": "true" } : {})),
  ],
});

function showError(view, number, { invalid, focus }) {
  const doc = view.state.doc;
  const line = number >= 1 ? doc.line(Math.min(number, doc.lines)) : null;
  view.dispatch({
    effects: [setError.of({ invalid, line }),
              ...(line ? [EditorView.scrollIntoView(line.from, { y: "center" })] : [])],
    selection: focus && line ? { anchor: line.from, head: line.to } : undefined,
  });
  if (focus) view.focus();
}

// --- one editor per textarea -----------------------------------------------------------------------

const views = new Map();  // part ("html", "text", "variables") -> EditorView

// CodeMirror's own words (a control character's title, what a screen reader hears on deleting a selection)
// in the page's language: the page renders them from its gettext catalogs.
function phrases(form) {
  try {
    return JSON.parse(form.dataset.editorPhrases || "{}");
  } catch {
    return {};
  }
}

function ids(textarea) {
  const label = textarea.closest("label");
  return {
    labelledby: label?.querySelector("[data-label-text]")?.id,
    describedby: [...(label?.querySelectorAll("[data-label-hint]") ?? [])].map((hint) => hint.id).join(" "),
  };
}

function attach(textarea, translated) {
  const part = textarea.dataset.part;
  const readOnly = textarea.readOnly;
  const { labelledby, describedby } = ids(textarea);
  // tabindex: a contenteditable is focusable anyway, but checkers (axe's scrollable-region-focusable) only
  // count a scrolling box's keyboard access by an explicit tabindex inside it.
  const contentAttributes = { tabindex: "0" };
  if (labelledby) contentAttributes["aria-labelledby"] = labelledby;
  if (describedby) contentAttributes["aria-describedby"] = describedby;
  if (readOnly) contentAttributes["aria-readonly"] = "true";

  const view = new EditorView({
    state: EditorState.create({
      doc: textarea.value,
      extensions: [
        EditorView.cspNonce.of(nonce),
        EditorState.phrases.of(translated),
        lineNumbers(),
        highlightActiveLineGutter(),
        highlightSpecialChars(),
        history(),
        drawSelection(),
        indentOnInput(),
        bracketMatching(),
        highlightActiveLine(),
        syntaxHighlighting(highlighting),
        keymap.of([...defaultKeymap, ...historyKeymap]),
        (languages[part] ?? languages.text)(),
        EditorState.readOnly.of(readOnly),
        EditorView.contentAttributes.of(contentAttributes),
        EditorView.editorAttributes.of({ class: `mailroom-code${readOnly ? " cm-readonly" : ""}`,
                                         "data-editor-for": part ?? "" }),
        errorState.init(() => ({ invalid: textarea.getAttribute("aria-invalid") === "true",
                                 marks: Decoration.none })),
        theme,
        EditorView.updateListener.of((update) => {
          if (update.docChanged) textarea.value = update.state.doc.toString();
        }),
      ],
    }),
  });
  // After the label, not in it: a click in the editor would otherwise also "activate" the label.
  textarea.closest("label").after(view.dom);
  textarea.hidden = true;
  textarea.dataset.editor = "codemirror";
  textarea.closest("label").addEventListener("click", (event) => {
    if (event.target === event.currentTarget || event.target.closest("[data-label-text]")) view.focus();
  });
  // admin.js points at the line an error names (after a save, or a preview that failed).
  textarea.addEventListener("mailroom:point-at", (event) => {
    for (const other of views.values()) if (other !== view) showError(other, 0, { invalid: false, focus: false });
    showError(view, Number(event.detail?.line), { invalid: true, focus: true });
  });
  textarea.addEventListener("mailroom:clear-error", () => showError(view, 0, { invalid: false, focus: false }));
  views.set(part, view);
}

const form = document.getElementById("template-form");
if (form) {
  const translated = phrases(form);
  form.querySelectorAll("textarea.code").forEach((textarea) => attach(textarea, translated));
  // The update listener keeps each textarea current; this also covers any change it could have missed.
  form.addEventListener("submit", () => {
    for (const view of views.values()) {
      const textarea = form.querySelector(`textarea[data-part="${view.dom.dataset.editorFor}"]`);
      if (textarea) textarea.value = view.state.doc.toString();
    }
  }, true);
  // The error shown with the page: mark its line even before admin.js moves the focus there.
  const error = document.querySelector("[data-error-part]");
  const view = error && views.get(error.dataset.errorPart);
  if (view) showError(view, Number(error.dataset.errorLine), { invalid: true, focus: false });
}

/* Ctrl+Up / Ctrl+Down in a prompt box: attention editing as in A1111 (webui/js/attention.js).
   The selection, else the (word:weight) group around the caret, else the word under the caret, gets its
   weight stepped by STEP: `word` -> `(word:1.1)` -> `(word:1.2)`; back at 1.0 the brackets go.
   atelier.editAttention(text, start, end, delta) is the pure edit ({text, start, end} of the new
   selection, or null when there is nothing to weigh); the key handler applies it as typing would. */
(() => {
  const STEP = 0.1;
  const DELIMITERS = " \t\n\r,.;:!?()[]{}<>|\\/\"'=`~^%*";
  const WEIGHTED = /^:\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)/;

  const format = (weight) => {
    const rounded = Math.round(weight * 100) / 100;
    return Number.isInteger(rounded) ? rounded.toFixed(1) : String(rounded);
  };

  /* [start, end) of the text inside a "(text:weight)" group around pos, or null. */
  const groupAround = (text, pos) => {
    let depth = 0;
    for (let i = pos - 1; i >= 0; i--) {
      const c = text[i];
      if (c === ")" && text[i - 1] !== "\\") depth++;
      else if (c === "(" && text[i - 1] !== "\\") {
        if (depth === 0) {
          const close = text.indexOf(")", pos);
          if (close < 0) return null;
          const colon = text.lastIndexOf(":", close);
          if (colon <= i || !WEIGHTED.test(text.slice(colon, close + 1))) return null;
          return [i + 1, colon];
        }
        depth--;
      }
    }
    return null;
  };

  const wordAround = (text, pos) => {
    let start = pos, end = pos;
    while (start > 0 && !DELIMITERS.includes(text[start - 1])) start--;
    while (end < text.length && !DELIMITERS.includes(text[end])) end++;
    return start < end ? [start, end] : null;
  };

  window.atelier.editAttention = (text, start, end, delta) => {
    let range = start !== end ? [start, end] : (groupAround(text, start) || wordAround(text, start));
    if (!range) return null;
    let [s, e] = range;
    while (s < e && /\s/.test(text[s])) s++;
    while (e > s && /\s/.test(text[e - 1])) e--;
    if (s === e) return null;
    const inner = text.slice(s, e);
    const after = WEIGHTED.exec(text.slice(e));
    if (text[s - 1] === "(" && after) {  // already (inner:w): step w, unwrap at 1.0
      const weight = Math.round((parseFloat(after[1]) + delta) * 100) / 100;
      const tail = text.slice(e + after[0].length);
      if (weight === 1) {
        return {text: text.slice(0, s - 1) + inner + tail, start: s - 1, end: e - 1};
      }
      return {text: text.slice(0, s) + inner + `:${format(weight)})` + tail, start: s, end: e};
    }
    const weight = Math.round((1 + delta) * 100) / 100;
    return {text: text.slice(0, s) + `(${inner}:${format(weight)})` + text.slice(e), start: s + 1, end: e + 1};
  };

  document.addEventListener("keydown", (event) => {
    if (!(event.ctrlKey || event.metaKey) || (event.key !== "ArrowUp" && event.key !== "ArrowDown")) return;
    const input = event.target;
    if (!(input instanceof HTMLTextAreaElement)) return;
    const block = input.closest("[id$='prompt']");
    if (!block || !window.atelier.tabOf(block.id)) return;
    const edit = window.atelier.editAttention(input.value, input.selectionStart, input.selectionEnd,
                                              event.key === "ArrowUp" ? STEP : -STEP);
    if (!edit) return;
    event.preventDefault();
    window.atelier.setValue(input, edit.text);
    input.setSelectionRange(edit.start, edit.end);
  });
})();

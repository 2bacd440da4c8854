/* Token counter and bracket check on every prompt box (webui/js/token_counter.js).
   Beside each prompt box (txt2img/img2img prompt and negative prompt, the hires prompts) a counter
   "N/75" (N/150, ... for CLIP; N/512 for FLUX's T5) counted by the server with the loaded model's
   tokenizer (webui/page_channel.py -> modules/generation/prompts/token_count.py). One question is sent
   when typing pauses (DEBOUNCE_MS), never one per key stroke; a value the server set (Paste, Clear,
   styles) and a change of the tab's chosen styles (counted with the prompt, as in A1111) are noticed
   by the 1 s check. Unbalanced (), [] or {} are flagged beside the count, counted
   here in the page. Needs atelier.js. */
(() => {
  const BOXES = ["txt2img_prompt", "txt2img_neg_prompt", "txt2img_hr_prompt", "txt2img_hr_neg_prompt",
                 "img2img_prompt", "img2img_neg_prompt"];
  const DEBOUNCE_MS = 450;
  const PAIRS = {")": "(", "]": "[", "}": "{"};
  const atelier = window.atelier;
  const boxes = {};  // id -> {input, counter, brackets, counted, timer}

  /* The first bracket problem of a prompt ("" when balanced); a backslash escapes the next character. */
  atelier.bracketProblem = (text) => {
    const open = [];
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (c === "\\") { i++; continue; }
      if (c === "(" || c === "[" || c === "{") open.push(c);
      else if (PAIRS[c]) {
        if (open.length === 0) return `unbalanced brackets: '${c}' without '${PAIRS[c]}'`;
        const top = open.pop();
        if (top !== PAIRS[c]) return `unbalanced brackets: '${top}' closed by '${c}'`;
      }
    }
    return open.length ? `unbalanced brackets: '${open[open.length - 1]}' not closed` : "";
  };

  const steps = (id) => {
    const box = document.querySelector(`#${atelier.tabOf(id)}_steps input[type=number]`);
    return box ? Number(box.value) || 20 : 20;
  };

  /* The tab's chosen styles (counted with the prompt, as A1111 does; not for the hires prompts). */
  const styles = (id) => id.includes("_hr_") ? []
    : [...document.querySelectorAll(`#${atelier.tabOf(id)}_styles .token span`)].map((s) => s.innerText.trim());
  const key = (id) => boxes[id].input.value + "\u0000" + styles(id).join("\u0000");

  const count = (id) => {
    const box = boxes[id];
    const text = box.input.value;
    box.timer = null;  // a pending debounce keeps the 1 s check away (see attach)
    box.counted = key(id);
    const problem = atelier.bracketProblem(text);
    box.brackets.textContent = problem ? "⚠ " + problem : "";
    box.brackets.title = problem;
    const asked = box.counted;
    const question = {text, steps: steps(id), styles: styles(id), negative: id.includes("neg_prompt")};
    atelier.ask("token_count", question).then((answer) => {
      if (box.counted !== asked) return;  // typed on meanwhile: a newer count follows
      box.count.textContent = answer.text;
      box.counter.dataset.over = String(!!answer.over);
      box.counter.title = answer.encoder === "t5"
        ? `T5 tokens: text past ${answer.limit} is cut off` : "CLIP tokens: every 75 tokens start a new chunk";
    }).catch((error) => {
      box.count.textContent = "?";
      box.counter.title = `token count unavailable: ${error.message}`;
    });
  };

  const schedule = (id) => {
    clearTimeout(boxes[id].timer);
    boxes[id].timer = setTimeout(() => count(id), DEBOUNCE_MS);
  };

  const attach = () => {
    for (const id of BOXES) {
      const input = document.querySelector(`#${id} textarea`);
      if (!input || (boxes[id] && boxes[id].input === input)) continue;
      const block = document.getElementById(id);
      block.style.position = block.style.position || "relative";
      const counter = document.createElement("div");
      counter.className = "atelier-token-counter";
      counter.id = `${id}_token_counter`;
      const countText = document.createElement("span");
      countText.className = "atelier-token-count";
      const brackets = document.createElement("span");
      brackets.className = "atelier-brackets";
      brackets.id = `${id}_brackets`;
      counter.append(countText, brackets);
      block.appendChild(counter);
      boxes[id] = {input, counter, count: countText, brackets, counted: null, timer: null};
      input.addEventListener("input", () => schedule(id));
      count(id);
    }
    for (const id of Object.keys(boxes)) {  // values set by the server (Paste, Clear, styles...)
      const box = boxes[id];
      if (key(id) !== box.counted && box.timer === null) count(id);
    }
  };

  atelier.everySecond(attach);
})();

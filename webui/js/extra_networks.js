/* Atelier: the extra networks browser's clicks (webui/extra_networks.py renders the cards).
   - A LoRA or embedding card puts its text (data-prompt) into the prompt box of its tab that had the focus
     last (the positive prompt until the negative one is focused); a second click takes it out again, as
     A1111 does; a LoRA's negative text (data-negative) goes into the negative prompt with it. Gradio
     learns the new values from "input" events.
   - The pencil on a card, a checkpoint card and a VAE card ask the server: a JSON action goes into the
     tab's hidden box #<tab>_en_action and the hidden button #<tab>_en_action_go sends it. When a checkpoint
     card's model is loaded, the checkpoint picker at the top is refreshed. */
(() => {
  const lastPrompt = {};  // tab -> "prompt" | "neg_prompt"
  const PROMPT_ID = /^(txt2img|img2img)_(prompt|neg_prompt)$/;

  document.addEventListener("focusin", (event) => {
    const target = event.target;
    if (!(target instanceof HTMLTextAreaElement)) return;
    const box = target.closest("[id]");
    const match = box && PROMPT_ID.exec(box.id);
    if (match) lastPrompt[match[1]] = match[2];
  });

  const textarea = (id) => document.querySelector(`#${id} textarea, #${id} input[type=text]`);

  const setValue = (element, value) => {
    element.value = value;
    element.dispatchEvent(new Event("input", {bubbles: true}));
  };

  const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

  // the prompt with `text` added at its end, or taken out when it is there (a LoRA's tag at any weight)
  const toggled = (prompt, text, card) => {
    let pattern = null;
    if (card.dataset.kind === "lora") {
      const tag = `<lora:${escapeRegExp(card.dataset.name)}:[^>]*>`;
      const rest = text.replace(/^<lora:[^>]*>/, "");
      pattern = new RegExp(`\\s*${tag}${rest ? `(?:${escapeRegExp(rest)})?` : ""}`);
    } else {
      pattern = new RegExp(`(^|[\\s,])${escapeRegExp(text)}(?=$|[\\s,])`);
    }
    if (pattern.test(prompt)) {
      return prompt.replace(pattern, card.dataset.kind === "lora" ? "" : "$1").replace(/\s{2,}/g, " ").trim();
    }
    return appended(prompt, text);
  };

  const appended = (prompt, text) => {
    if (!prompt.trim()) return text;
    return /\s$/.test(prompt) ? prompt + text : `${prompt} ${text}`;
  };

  // a LoRA's negative text follows its tag: added with it, taken out with it
  const withNegative = (prompt, text, add) => {
    const has = prompt.includes(text);
    if (add) return has ? prompt : appended(prompt, text);
    return has ? prompt.replace(text, "").replace(/\s{2,}/g, " ").replace(/^[\s,]+|[\s,]+$/g, "") : prompt;
  };

  // once a checkpoint card's model is loaded, the checkpoint picker at the top is refreshed to show it
  const refreshPickerWhenLoaded = (tab) => {
    const status = document.getElementById(`${tab}_en_status`);
    if (!status) return;
    const before = status.textContent;
    const observer = new MutationObserver(() => {
      const line = status.querySelector(".atelier-status");
      if (!line || status.textContent === before) return;
      observer.disconnect();
      const refresh = document.getElementById("refresh_sd_model_checkpoint");
      if (line.dataset.kind === "ok" && refresh) refresh.click();
    });
    observer.observe(status, {childList: true, subtree: true, characterData: true});
    setTimeout(() => observer.disconnect(), 15 * 60 * 1000);
  };

  const send = (tab, payload) => {
    const box = textarea(`${tab}_en_action`);
    const button = document.getElementById(`${tab}_en_action_go`);
    if (!box || !button) return;
    if (payload.do === "checkpoint") refreshPickerWhenLoaded(tab);
    setValue(box, JSON.stringify({...payload, at: Date.now()}));
    setTimeout(() => button.click(), 0);
  };

  const activate = (card, onEdit) => {
    const holder = card.closest("[data-atelier-en-tab]");
    if (!holder) return;
    const tab = holder.dataset.atelierEnTab;
    const payload = {kind: card.dataset.kind, id: card.dataset.id};
    if (onEdit) {
      send(tab, {...payload, do: "edit"});
      return;
    }
    if (card.dataset.action === "insert") {
      const which = lastPrompt[tab] || "prompt";
      const box = textarea(`${tab}_${which}`);
      if (!box) return;
      const before = box.value;
      const after = toggled(before, card.dataset.prompt || "", card);
      setValue(box, after);
      const negative = card.dataset.negative || "";
      const negativeBox = textarea(`${tab}_neg_prompt`);
      if (negative && which === "prompt" && negativeBox) {
        setValue(negativeBox, withNegative(negativeBox.value, negative, after.length > before.length));
      }
    } else {
      send(tab, {...payload, do: card.dataset.action});
    }
  };

  // the panel's icon-only refresh button gets a tooltip and an accessible name
  const label = () => {
    for (const button of document.querySelectorAll("[id$='_en_refresh']:not([title])")) {
      button.title = "Rescan the model folders";
      button.setAttribute("aria-label", button.title);
    }
  };
  new MutationObserver(label).observe(document.documentElement, {childList: true, subtree: true});

  document.addEventListener("click", (event) => {
    const card = event.target instanceof Element ? event.target.closest(".atelier-en-card") : null;
    if (!card) return;
    event.preventDefault();
    activate(card, !!event.target.closest(".atelier-en-edit"));
  });
  document.addEventListener("keydown", (event) => {
    const card = event.target instanceof Element ? event.target : null;
    if (!card || !card.classList.contains("atelier-en-card") || (event.key !== "Enter" && event.key !== " ")) return;
    event.preventDefault();
    activate(card, false);
  });
})();

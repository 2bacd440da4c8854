/* Atelier page scripts: shared helpers (webui/js/atelier.js; every webui/js/*.js is loaded in name order
   by webui/look.py page_scripts, so this file runs before the others).
   window.atelier holds:
   - ask(op, data): a question to the server through the hidden Gradio event of webui/page_channel.py
     (one at a time; resolves with the JSON answer, rejects on {"error"} or after 20 s);
   - setValue(field, text): change a Gradio textbox's value as typing would (Gradio hears an input event);
   - tabOf(id), activeTab(), visible(el): which generation tab ("txt2img"/"img2img") is in front;
   - jobState(tab): the state of the tab's progress line ("queued", "running", "done", "failed",
     "interrupted", "cancelled", or "" before any job) and its percent (webui/progress.py bar_html);
   - onJobState(callback): callback({tab, state, percent, job, previous}) whenever a tab's progress line
     changes (job: the line's data-job, where the line names its job);
   - everySecond(callback): one shared 1 s timer (new prompt boxes, values set by the server). */
(() => {
  const TABS = ["txt2img", "img2img"];
  const atelier = window.atelier = window.atelier || {};
  let asking = Promise.resolve();
  let nextId = 1;

  const field = (id) => document.querySelector(`#${id} textarea, #${id} input`);

  atelier.setValue = (input, text) => {
    input.value = text;
    input.dispatchEvent(new Event("input", {bubbles: true}));
  };

  const askNow = (op, data) => new Promise((resolve, reject) => {
    const question = field("atelier_page_call");
    const button = document.querySelector("#atelier_page_call_button");
    const answer = field("atelier_page_answer");
    if (!question || !button || !answer) { reject(new Error("the page is still loading")); return; }
    const id = nextId++;
    atelier.setValue(question, JSON.stringify({...data, op, id}));
    button.click();
    const started = Date.now();
    const poll = () => {
      let reply = null;
      try { reply = JSON.parse(answer.value || "null"); } catch (e) { reply = null; }
      if (reply && reply.id === id) {
        if (reply.error) reject(new Error(reply.error)); else resolve(reply);
      } else if (Date.now() - started > 20000) {
        reject(new Error("no answer from the server"));
      } else {
        setTimeout(poll, 40);
      }
    };
    poll();
  });

  atelier.ask = (op, data = {}) => {
    const turn = asking.then(() => askNow(op, data));
    asking = turn.catch(() => null);
    return turn;
  };

  atelier.tabOf = (id) => TABS.find((tab) => id === tab || id.startsWith(tab + "_")) || null;
  atelier.visible = (el) => !!el && el.offsetParent !== null;
  atelier.activeTab = () => TABS.find((tab) => atelier.visible(document.querySelector(`#${tab}_generate`))) || null;

  atelier.jobState = (tab) => {
    const bar = document.querySelector(`#${tab}_status .atelier-progress`);
    return bar ? {state: bar.dataset.state || "", percent: Number(bar.dataset.percent || 0), text: bar.innerText,
                  job: bar.dataset.job || ""}
               : {state: "", percent: 0, text: "", job: ""};
  };

  const listeners = [];
  atelier.onJobState = (callback) => listeners.push(callback);
  const watched = new WeakSet();
  const last = {};
  const watch = () => {
    for (const tab of TABS) {
      const status = document.querySelector(`#${tab}_status`);
      if (!status || watched.has(status)) continue;
      watched.add(status);
      last[tab] = atelier.jobState(tab);
      new MutationObserver(() => {
        const now = atelier.jobState(tab);
        const before = last[tab] || {state: "", percent: 0, text: ""};
        if (now.state === before.state && now.percent === before.percent && now.text === before.text
            && now.job === before.job) return;
        last[tab] = now;
        for (const callback of listeners) {
          try { callback({tab, state: now.state, percent: now.percent, job: now.job, previous: before.state}); }
          catch (e) { console.error(e); }
        }
      }).observe(status, {childList: true, subtree: true, characterData: true, attributes: true});
    }
  };

  const tickers = [watch];
  atelier.everySecond = (callback) => tickers.push(callback);
  setInterval(() => tickers.forEach((tick) => { try { tick(); } catch (e) { console.error(e); } }), 1000);
  const style = document.createElement("style");
  style.textContent = `
    .atelier-token-counter { position: absolute; top: 6px; right: 10px; z-index: 5; font-size: 12px;
      padding: 0 6px; border-radius: 4px; background: var(--block-background-fill, #fff);
      color: var(--body-text-color-subdued, #6b7280); pointer-events: none; }
    .atelier-token-counter[data-over="true"] { color: #b91c1c; font-weight: 600; }
    .atelier-brackets { color: #b45309; font-weight: 600; margin-left: 6px; }
    .atelier-forever-toggle { display: flex; gap: 6px; align-items: center; font-size: 13px; margin-top: 4px; }
    .atelier-menu { position: fixed; z-index: 1000; background: var(--background-fill-primary, #fff);
      border: 1px solid var(--border-color-primary, #d1d5db); border-radius: 6px; padding: 4px 0;
      box-shadow: 0 4px 12px rgba(0,0,0,.15); font-size: 14px; }
    .atelier-menu div { padding: 6px 14px; cursor: pointer; }
    .atelier-menu div:hover { background: var(--background-fill-secondary, #f3f4f6); }`;
  document.head.appendChild(style);
})();

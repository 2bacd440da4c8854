/* Generate forever (webui/js/generate_forever.js), as A1111's right-click menu on Generate, plus a
   visible toggle under the button (#<tab>_generate_forever). While it is on, each job starts when the
   previous one has ended well; it stops by the menu ("Cancel generate forever"), by the toggle, by
   Interrupt (or Esc), and by a job that failed, was cancelled or was interrupted (the page keeps the
   error; the toggle says why it stopped). Needs atelier.js. */
(() => {
  const atelier = window.atelier;
  const TABS = ["txt2img", "img2img"];
  const forever = {};  // tab -> {on, sawJob}
  let menu = null;

  const toggleOf = (tab) => document.querySelector(`#${tab}_generate_forever`);
  const noteOf = (tab) => document.querySelector(`#${tab}_generate_forever_note`);

  const generate = (tab) => {
    const state = forever[tab];
    state.sawJob = false;
    state.before = atelier.jobState(tab).job;  // a line naming another job is the new one's
    document.querySelector(`#${tab}_generate`)?.click();
  };

  const start = (tab) => {
    forever[tab] = {on: true, sawJob: false};
    if (toggleOf(tab)) toggleOf(tab).checked = true;
    if (noteOf(tab)) noteOf(tab).textContent = "";
    const {state} = atelier.jobState(tab);
    if (state === "queued" || state === "running") forever[tab].sawJob = true;  // the next starts after it
    else generate(tab);
  };

  const stop = (tab, why) => {
    forever[tab] = {on: false, sawJob: false};
    if (toggleOf(tab)) toggleOf(tab).checked = false;
    if (noteOf(tab)) noteOf(tab).textContent = why ? `stopped: ${why}` : "";
  };
  atelier.generateForever = {start, stop, isOn: (tab) => !!(forever[tab] && forever[tab].on)};

  atelier.onJobState(({tab, state, job}) => {
    const loop = forever[tab];
    if (!loop || !loop.on) return;
    if (job && job !== loop.before) loop.sawJob = true;
    if (state === "queued" || state === "running") { loop.sawJob = true; return; }
    if (state === "failed") { stop(tab, "the job failed"); return; }
    if (!loop.sawJob) return;  // the line of the job before the click
    if (state === "done") setTimeout(() => { if (forever[tab].on) generate(tab); }, 300);
    else if (state === "interrupted" || state === "cancelled") stop(tab, `the job was ${state}`);
  });

  const closeMenu = () => { if (menu) { menu.remove(); menu = null; } };
  const openMenu = (tab, x, y) => {
    closeMenu();
    menu = document.createElement("div");
    menu.className = "atelier-menu";
    menu.id = `${tab}_generate_menu`;
    const on = atelier.generateForever.isOn(tab);
    const item = document.createElement("div");
    item.textContent = on ? "Cancel generate forever" : "Generate forever";
    item.addEventListener("click", () => { closeMenu(); if (on) stop(tab, ""); else start(tab); });
    menu.appendChild(item);
    menu.style.left = `${x}px`;
    menu.style.top = `${y}px`;
    document.body.appendChild(menu);
  };
  // a user's click elsewhere closes the menu (not the loop's own clicks on Generate)
  document.addEventListener("click", (event) => {
    if (menu && event.isTrusted && !menu.contains(event.target)) closeMenu();
  });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") closeMenu(); });

  const attach = () => {
    for (const tab of TABS) {
      const button = document.querySelector(`#${tab}_generate`);
      if (!button || button.dataset.atelierForever) continue;
      button.dataset.atelierForever = "1";
      button.addEventListener("contextmenu", (event) => {
        event.preventDefault();
        openMenu(tab, event.clientX, event.clientY);
      });
      document.querySelector(`#${tab}_interrupt`)?.addEventListener("click", () => {
        if (atelier.generateForever.isOn(tab)) stop(tab, "interrupted");
      });
      const label = document.createElement("label");
      label.className = "atelier-forever-toggle";
      label.title = "Start the next job each time one ends (also: right-click Generate)";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.id = `${tab}_generate_forever`;
      box.addEventListener("change", () => { if (box.checked) start(tab); else stop(tab, ""); });
      const note = document.createElement("span");
      note.id = `${tab}_generate_forever_note`;
      note.style.color = "#b45309";
      label.append(box, document.createTextNode("Generate forever"), note);
      button.insertAdjacentElement("afterend", label);
    }
  };
  atelier.everySecond(attach);
})();

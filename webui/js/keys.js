/* Keyboard shortcuts of the generation tabs, as in A1111 (webui/js/keys.js):
   Ctrl+Enter (Cmd+Enter on a Mac) generates in the tab in front, Alt+Enter skips the current batch,
   Esc interrupts the tab's job while one is queued or running (else Esc is left to the page: closing a
   dropdown or the image viewer). Each presses the tab's own button (#<tab>_generate, _skip, _interrupt),
   so the shortcut does exactly what the button does. Needs atelier.js. */
(() => {
  const atelier = window.atelier;

  const press = (tab, name) => {
    const button = document.querySelector(`#${tab}_${name}`);
    if (!atelier.visible(button)) return false;
    button.click();
    return true;
  };

  document.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" && event.key !== "Escape") return;
    const tab = atelier.activeTab();
    if (!tab) return;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.altKey) {
      if (press(tab, "generate")) event.preventDefault();
    } else if (event.key === "Enter" && event.altKey && !event.ctrlKey && !event.metaKey) {
      if (press(tab, "skip")) event.preventDefault();
    } else if (event.key === "Escape" && !event.defaultPrevented) {
      const {state} = atelier.jobState(tab);
      if ((state === "queued" || state === "running") && press(tab, "interrupt")) event.preventDefault();
    }
  });
})();

/* The Settings tab's search box (webui/js/settings_search.js; the tab is webui/settings_tab.py).
   Filters in the page as the user types, no server round trip: a setting stays when every word of the
   query is in its key, its label or its section's title (case-insensitive), the rule of
   modules/settings_layout.py matches(); a section with no setting left is hidden. A section is an
   element with the class atelier-settings-section (its title: .atelier-settings-title), a setting a block
   in it whose id is setting_<key> or settings_<key>. */
(() => {
  const SECTION = ".atelier-settings-section";

  const outerSections = () => [...document.querySelectorAll(SECTION)]
    .filter((el) => !el.parentElement || !el.parentElement.closest(SECTION));

  const settingsIn = (section) => [...section.querySelectorAll("[id^='setting_'], [id^='settings_']")]
    .filter((el) => !el.id.startsWith("settings_section_") && !el.parentElement.closest("[id^='setting_'], " +
      "[id^='settings_']:not([id^='settings_section_'])"));

  const filter = (query) => {
    const words = query.toLowerCase().split(/\s+/).filter(Boolean);
    for (const section of outerSections()) {
      const title = (section.querySelector(".atelier-settings-title") || {}).innerText || "";
      let shown = 0;
      for (const block of settingsIn(section)) {
        const key = block.id.replace(/^settings?_/, "");
        const text = `${key} ${block.innerText} ${title}`.toLowerCase();
        const match = words.every((word) => text.includes(word));
        block.style.display = match ? "" : "none";
        if (match) shown += 1;
      }
      section.style.display = shown ? "" : "none";
    }
  };

  document.addEventListener("input", (event) => {
    const box = event.target;
    if (box instanceof HTMLElement && box.closest("#settings_search")) filter(box.value || "");
  }, true);
})();

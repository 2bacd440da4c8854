/* Drop an image onto a prompt box to read its generation parameters into the tab, as in A1111
   (webui/js/png_drop.js). The dropped file is handed to the tab's own PNG upload button
   (#<tab>_load_png): it travels as an ordinary upload (the server reads only what this page uploaded:
   webui/input_files.py) and the existing PNG path fills the fields and says what it filled
   (webui/tools.py load_png -> webui/params.py paste_updates). Text dropped on a box stays text. */
(() => {
  const atelier = window.atelier;

  const promptTab = (target) => {
    const block = target && target.closest ? target.closest("[id$='prompt']") : null;
    return block ? atelier.tabOf(block.id) : null;
  };
  const imageOf = (event) => [...(event.dataTransfer?.files || [])].find((f) => f.type.startsWith("image/"));
  const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");

  document.addEventListener("dragover", (event) => {
    if (promptTab(event.target) && hasFiles(event)) {
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
    }
  }, true);

  document.addEventListener("drop", (event) => {
    const tab = promptTab(event.target);
    const file = tab ? imageOf(event) : null;
    if (!file) return;
    event.preventDefault();
    event.stopPropagation();
    // Gradio puts an UploadButton's file input beside the button, not inside it
    const button = document.querySelector(`#${tab}_load_png`);
    const input = button && (button.querySelector("input[type=file]")
                             || button.parentElement.querySelector("input[type=file]"));
    if (!input) return;
    const files = new DataTransfer();
    files.items.add(file);
    input.files = files.files;
    input.dispatchEvent(new Event("change", {bubbles: true}));
  }, true);
})();

/* Progress that survives a reload (webui/js/reattach.js; the server side is webui/results.py
   wire_reattach and modules/jobs/reattach.py). While a generation tab's progress line shows a job that
   is queued or running (its data-job), the browser keeps that job's id (localStorage
   "atelier_<tab>_job"); once the line shows the job finished, the id is dropped. At the next page load the
   server is handed the id: a job that finished while the page was away is shown, one still running is
   followed. */
(() => {
  const TABS = ["txt2img", "img2img"];
  const WAITING = new Set(["queued", "running", "stopping"]);
  const FINISHED = new Set(["done", "failed", "cancelled", "interrupted"]);

  const check = () => {
    for (const tab of TABS) {
      const line = document.querySelector(`#${tab}_status .atelier-progress[data-job]`);
      if (!line) continue;
      const key = `atelier_${tab}_job`;
      const {state, job} = line.dataset;
      try {
        if (WAITING.has(state)) localStorage.setItem(key, job);
        else if (FINISHED.has(state) && localStorage.getItem(key) === job) localStorage.removeItem(key);
      } catch (e) { /* no storage (private mode): the page still re-attaches to running jobs */ }
    }
  };
  new MutationObserver(check).observe(document.documentElement, {childList: true, subtree: true,
                                                                 attributes: true, attributeFilter: ["data-state"]});
})();

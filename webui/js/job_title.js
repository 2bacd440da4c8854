/* A job's progress in the browser tab's title ("[42%] Atelier", "[queued] Atelier") and, when the
   settings ask for it (notification_audio, notification_browser: off by default), a sound and a browser
   notification when a generation ends (webui/js/job_title.js). The notification shows only while the
   page is not in front; the browser asks for its permission at a Generate click (a user's gesture).
   The settings are read from the server (webui/page_channel.py "options") at load and after each job.
   Needs atelier.js. */
(() => {
  const atelier = window.atelier;
  const TABS = ["txt2img", "img2img"];
  const PREFIX = /^\[[^\]]*\]\s*/;
  let options = {notification_audio: false, notification_browser: false};
  const refresh = () => atelier.ask("options").then((answer) => { options = answer; }).catch(() => null);

  const showTitle = () => {
    const base = document.title.replace(PREFIX, "") || "Atelier";
    const front = atelier.activeTab();
    const order = front ? [front, ...TABS.filter((t) => t !== front)] : TABS;
    let mark = "";
    for (const tab of order) {
      const {state, percent} = atelier.jobState(tab);
      if (state === "running") { mark = `[${percent}%] `; break; }
      if (state === "queued" && !mark) mark = "[queued] ";
    }
    if (document.title !== mark + base) document.title = mark + base;
  };

  const beep = () => {
    try {
      const audio = new (window.AudioContext || window.webkitAudioContext)();
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.frequency.value = 880;
      gain.gain.setValueAtTime(0.15, audio.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.4);
      tone.connect(gain).connect(audio.destination);
      tone.start();
      tone.stop(audio.currentTime + 0.4);
      tone.onended = () => audio.close();
    } catch (e) { console.warn("no sound:", e); }
  };

  const notify = (tab, state) => {
    if (options.notification_audio) beep();
    if (options.notification_browser && "Notification" in window && Notification.permission === "granted"
        && (document.hidden || !document.hasFocus())) {
      const text = atelier.jobState(tab).text;
      new Notification(`Atelier: ${tab} ${state}`, {body: text.slice(0, 200)});
    }
  };

  atelier.onJobState(({tab, state, previous}) => {
    showTitle();
    const ended = ["done", "interrupted", "failed"].includes(state);
    if (ended && ["queued", "running", "stopping"].includes(previous)) {
      refresh().then(() => notify(tab, state));
    }
  });

  document.addEventListener("click", (event) => {  // a user's gesture: the only time a browser asks
    if (!event.target.closest || !event.target.closest("#txt2img_generate, #img2img_generate")) return;
    if (options.notification_browser && "Notification" in window && Notification.permission === "default") {
      Notification.requestPermission();
    }
  }, true);

  let loaded = false;
  atelier.everySecond(() => {
    showTitle();
    if (!loaded && document.querySelector("#atelier_page_call_button")) { loaded = true; refresh(); }
  });
})();

// The live session page: status and money from server-sent events, a ticking timer, and GPU
// charts from the provider's readings. The chat with the session's model is chat.js.
(function () {
  "use strict";
  const live = document.getElementById("live");
  if (!live) return;
  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const initialStatus = live.dataset.status;
  const LIVE = ["pending", "provisioning", "ready", "active", "paused", "stopping"];

  // --- timer and figures ------------------------------------------------------------------
  let activeSeconds = parseFloat(live.dataset.activeSeconds) || 0;
  let syncedAt = performance.now();
  let status = initialStatus;

  function duration(total) {
    total = Math.floor(total);
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    const pad = (n) => String(n).padStart(2, "0");
    if (h) return `${h} h ${pad(m)} min`;
    if (m) return `${m} min ${pad(s)} s`;
    return `${s} s`;
  }
  function setText(id, text) { const el = $(id); if (el) el.textContent = text; }

  // --- money: the server's figures now and once the next minute is charged ------------------
  // Every word and amount comes from the server (domain/charges.py); the page only picks which
  // of the two to show: a started minute is charged in advance, so as soon as the timer passes
  // a minute the page shows it charged, without waiting for the next metering pass.
  const moneyData = $("money-data");
  let money = moneyData ? JSON.parse(moneyData.textContent) : null;
  function showMoney(seconds) {
    if (!money) return;
    const started = Math.ceil(Math.round(seconds * 1000) / 60000);
    const m = status === "active" && money.next && started > money.now.charged_minutes ? money.next : money.now;
    setText("minutes", m.charged_minutes);
    setText("paid-with", m.paid_with);
    setText("charged", m.charged);
    setText("charges-text", m.text);
    setText("credit", m.credit_left);
    setText("free-left", m.free_left);
    setText("lab-left", m.lab_left);
    const lab = $("lab-left"); if (lab) lab.hidden = !m.lab_left;
    setText("minutes-left", m.minutes_left);
    const low = $("low-credit");
    if (low) low.hidden = !(m.low && (status === "ready" || status === "active"));
  }

  // --- idle auto-stop: the last two minutes count down, with "Keep it running" ----------------
  // The server sends the seconds left by its own clock; the page counts down from there.
  const WARN_SECONDS = 120;
  const idleData = live.dataset.idleSecondsLeft;
  let idleLeft = idleData === "" || idleData === undefined ? null : parseFloat(idleData);
  function showIdle(elapsed) {
    const box = $("idle-warning");
    if (!box) return;
    const left = idleLeft === null ? null : Math.max(idleLeft - elapsed, 0);
    box.hidden = !(status === "active" && left !== null && left <= WARN_SECONDS);
    if (!box.hidden) setText("idle-countdown", left > 0 ? duration(Math.ceil(left)) : "a moment");
  }
  const keepAlive = $("keep-alive-form");
  if (keepAlive) {
    keepAlive.addEventListener("submit", async (event) => {
      event.preventDefault();  // no reload: an answer being written goes on
      const button = keepAlive.querySelector("button");
      button.disabled = true;
      try {
        const response = await fetch(live.dataset.keepAliveUrl, {
          method: "POST", credentials: "same-origin",
          headers: { "X-CSRF-Token": csrf, "Accept": "application/json" },
        });
        const body = await response.json().catch(() => null);
        if (response.ok && body) {
          idleLeft = body.idle_seconds_left; activeSeconds = body.active_seconds;
          syncedAt = performance.now(); tick();
        } else if (body && body.error) {
          $("idle-warning").querySelector("p").textContent = body.error.message;
        }
      } catch (_) { /* the countdown stays; the button can be pressed again */ }
      button.disabled = false;
    });
  }

  function tick() {
    const elapsed = (performance.now() - syncedAt) / 1000;
    const running = status === "active" ? elapsed : 0;
    setText("timer", duration(activeSeconds + running));
    showMoney(activeSeconds + running);
    showIdle(elapsed);
  }
  setInterval(tick, 1000);
  tick();

  if (LIVE.includes(initialStatus) && window.EventSource) {
    const events = new EventSource(live.dataset.eventsUrl);
    events.addEventListener("session", (message) => {
      const data = JSON.parse(message.data);
      const s = data.session;
      if (s.status !== initialStatus) { events.close(); window.location.reload(); return; }
      status = s.status;
      money = data.money;
      activeSeconds = s.active_seconds; idleLeft = s.idle_seconds_left;
      syncedAt = performance.now(); tick();
      if (s.progress) {
        const pct = s.progress.percent;
        setText("progress-phase", s.progress.phase.charAt(0).toUpperCase() + s.progress.phase.slice(1) + (pct === null ? "" : ` · ${pct}%`));
        const bar = $("progress-bar");
        if (bar && pct !== null) {
          bar.style.width = `${pct}%`;
          bar.parentElement.classList.remove("indeterminate");
          bar.parentElement.setAttribute("aria-valuenow", pct);
        }
      }
    });
  }

  // --- GPU charts -------------------------------------------------------------------------
  const series = { util: [], mem: [], temp: [], power: [] };
  const KEEP = 120;
  function draw(canvas, values, max) {
    if (!canvas) return;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = canvas.clientWidth * ratio; canvas.height = canvas.clientHeight * ratio;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!values.length) return;
    if (values.length === 1) values = [values[0], values[0]];  // one reading: a level line
    const top = max || Math.max(...values, 1) * 1.25;
    ctx.strokeStyle = "#c2410c"; ctx.lineWidth = 2 * ratio; ctx.beginPath();
    values.forEach((v, i) => {
      const x = (i / (values.length - 1)) * canvas.width;
      const y = canvas.height - (v / top) * (canvas.height - 4 * ratio) - 2 * ratio;
      i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
    });
    ctx.stroke();
  }
  function push(name, value) {
    if (value === null || value === undefined) return;
    series[name].push(value);
    if (series[name].length > KEEP) series[name].shift();
  }
  async function readMetrics() {
    if (!$("gpu")) return;
    try {
      const response = await fetch(live.dataset.metricsUrl, { credentials: "same-origin" });
      if (!response.ok) return;
      const body = await response.json();
      const gpus = body.gpu && Array.isArray(body.gpu.gpus) ? body.gpu.gpus : null;
      if (!gpus || !gpus.length) {
        setText("gpu-none", body.gpu && body.gpu.error ? `The GPU could not be read: ${body.gpu.error}` :
          "This GPU's provider does not report live readings, so there is nothing to chart.");
        return;
      }
      $("gpu-none").hidden = true; $("gpu-charts").hidden = false;
      const g = gpus[0];
      push("util", g.utilization_gpu_percent);
      if (g.memory_used_bytes !== null && g.memory_total_bytes) push("mem", 100 * g.memory_used_bytes / g.memory_total_bytes);
      push("temp", g.temperature_c); push("power", g.power_watts);
      const last = (name, unit) => series[name].length ? `${Math.round(series[name][series[name].length - 1])}${unit}` : "n/a";
      setText("gpu-util-now", last("util", " %")); setText("gpu-mem-now", last("mem", " %"));
      setText("gpu-temp-now", last("temp", " °C")); setText("gpu-power-now", last("power", " W"));
      draw($("chart-util"), series.util, 100); draw($("chart-mem"), series.mem, 100);
      draw($("chart-temp"), series.temp, 100); draw($("chart-power"), series.power, 0);
    } catch (_) { /* the next reading will try again */ }
  }
  if ($("gpu")) { readMetrics(); setInterval(readMetrics, 5000); }

  // --- connect over SSH (shown only where the machine has one of the user's keys) ----------
  async function readSsh() {
    const box = $("connect");
    if (!box) return;
    let retry = true;
    try {
      const response = await fetch(box.dataset.sshUrl, { credentials: "same-origin" });
      const body = await response.json().catch(() => null);
      if (response.ok && body) {
        $("ssh-command").value = body.command;
        $("vscode-link").href = body.vscode_uri;
        setText("ssh-key-names", body.keys.map((k) => k.name ? `“${k.name}” (${k.fingerprint})` : k.fingerprint).join(", "));
        $("connect-wait").hidden = true; $("connect-ready").hidden = false;
        return;
      }
      const error = body && body.error ? body.error : null;
      retry = !error || error.code === "ssh_not_ready";
      setText("connect-wait", error ? error.message : `The address could not be read (HTTP ${response.status}).`);
    } catch (_) { /* the next try will tell */ }
    if (retry) setTimeout(readSsh, 5000);
  }
  readSsh();

  // The chat with the session's model is chat.js.
})();

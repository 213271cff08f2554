// Rapport workbench: small progressive enhancements; every page works without them.
"use strict";

// Forms marked data-confirm ask before a destructive change.
document.addEventListener("submit", (event) => {
  const message = event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) event.preventDefault();
});

// "Select all" boxes tick every message of their inbox group.
document.addEventListener("change", (event) => {
  const box = event.target;
  if (!box.matches("input[data-select-group]")) return;
  document.querySelectorAll(`input[name=message_id][data-group="${box.dataset.selectGroup}"]`)
    .forEach((item) => { item.checked = box.checked; });
});

// The training page follows a running job without reloading.
function followTraining() {
  const panel = document.getElementById("job");
  if (!panel || panel.dataset.state !== "running") return;
  const bar = panel.querySelector("progress");
  const step = panel.querySelector("[data-step]");
  const log = panel.querySelector("pre.log");
  const poll = async () => {
    try {
      const answer = await fetch("/training/status.json", { credentials: "same-origin" });
      if (!answer.ok) return;
      const status = await answer.json();
      if (bar) { bar.max = status.total || 1; bar.value = status.done || 0; }
      if (step) step.textContent = status.message || status.step || "";
      if (log && status.log_tail) log.textContent = status.log_tail.join("\n");
      if (status.state !== "running") { window.location.reload(); return; }
    } catch (error) { /* the next poll tries again */ }
    window.setTimeout(poll, 2000);
  };
  window.setTimeout(poll, 2000);
}
document.addEventListener("DOMContentLoaded", followTraining);

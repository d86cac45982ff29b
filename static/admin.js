// ds2proxy dashboard: progressive enhancement only. Every form works without
// this file; with it, the overview updates live and account tests show their
// progress in place.
"use strict";

const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

async function adminApi(path, options = {}) {
  const headers = { "X-CSRF-Token": csrfToken(), ...(options.headers || {}) };
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  return fetch(path, { credentials: "same-origin", ...options, headers });
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// An identifier as text that may wrap after its "@" and before each ".",
// like the server's "breakable" filter.
function breakable(text) {
  const parts = [];
  String(text).split(/(?<=@)|(?=\.)/).forEach((part, i) => {
    if (i) parts.push(el("wbr"));
    parts.push(part);
  });
  return parts;
}

function badge(kind, text) {
  return el("span", { class: `badge ${kind}` }, text);
}

// ---- confirmations -----------------------------------------------------------------

function wireConfirmations() {
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
}

// ---- stale failures -------------------------------------------------------------------

// A failure message describes the last thing that went wrong. Once a later
// action on the page succeeds, it is history: an error banner rendered with
// the page (from an earlier form post) or a failed "test all" run would
// otherwise keep reporting a problem that is gone.
function clearStaleFailures() {
  document.querySelectorAll(".flash-error").forEach((node) => node.remove());
  document.querySelectorAll('.progress[data-state="failed"]').forEach((node) => {
    node.classList.remove("active");
    delete node.dataset.state;
  });
}

// ---- overview: live status --------------------------------------------------------------

function formatDuration(seconds) {
  let s = Math.floor(seconds);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${h}h`;
  return h ? `${h}h ${m}m` : `${m}m ${s}s`;
}

// The server's "clock" filter: UTC, named so, whatever zone the browser is in.
function formatClock(ts) {
  const date = new Date(ts * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())} ` +
    `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} UTC`;
}

const STATE_BADGES = { healthy: "ok", cooling_down: "warn", login_failing: "bad" };

function renderOverview(root, data) {
  const values = {
    "monitor.inflight": data.monitor.inflight,
    "monitor.requests_total": data.monitor.requests_total,
    "monitor.errors_total": data.monitor.errors_total,
    "monitor.uptime": formatDuration(data.monitor.uptime_seconds),
  };
  values["accounts.shown"] = data.accounts.length;
  values["accounts.total"] = data.accounts_total;
  const shownNote = root.querySelector("#overview-accounts-shown");
  if (shownNote) shownNote.hidden = data.accounts.length >= data.accounts_total;
  for (const [name, value] of Object.entries(data.queue)) values[`queue.${name}`] = value;
  for (const [name, value] of Object.entries(data.queue.by_state || {})) {
    values[`queue.by_state.${name}`] = value;
  }
  root.querySelectorAll("[data-stat]").forEach((node) => {
    const value = values[node.dataset.stat];
    if (value !== undefined && !Array.isArray(value)) node.textContent = value;
  });
  const capacity = Math.max(1, data.queue.global_max_inflight);
  const meter = root.querySelector('[data-meter="queue"]');
  if (meter) meter.style.width = `${Math.min(100, (100 * data.queue.in_use) / capacity)}%`;

  const accounts = root.querySelector("#overview-accounts");
  if (accounts) {
    const rows = data.accounts.map((a) => el("tr", {},
      el("td", { class: "wrap" }, ...breakable(a.identifier),
        el("div", { class: "small" }, badge(STATE_BADGES[a.state] || "", a.state.replace("_", " "))),
        a.reason || a.last_error
          ? el("div", { class: "small muted" }, a.reason || a.last_error) : null),
      el("td", { class: "num" }, String(a.inflight)),
      el("td", {}, a.has_token ? badge("ok", "ready") : badge("", "login on use"))));
    if (!rows.length) {
      rows.push(el("tr", {}, el("td", { colspan: "3", class: "empty" }, "No accounts yet.")));
    }
    accounts.replaceChildren(...rows);
  }
  const errors = root.querySelector("#overview-errors");
  if (errors) {
    const items = data.monitor.recent_errors.slice(0, 12).map((e) => el("li", {},
      el("span", { class: "small muted" }, formatClock(e.time)),
      el("span", { class: "wrap" },
        e.status ? el("span", { class: "badge bad plain" }, String(e.status)) : null,
        e.status ? " " : null, e.message,
        e.path ? el("span", { class: "muted small" }, ` ${e.path}`) : null)));
    if (!items.length) items.push(el("li", { class: "empty" }, "No errors since start."));
    errors.replaceChildren(...items);
  }
}

function wireOverview() {
  const root = document.querySelector('[data-live="overview"]');
  if (!root) return;
  const live = document.getElementById("live-badge");
  const tick = async () => {
    try {
      const response = await adminApi("/admin/overview");
      if (response.ok) {
        renderOverview(root, await response.json());
        if (live) live.hidden = false;
      } else if (live) {
        live.hidden = true;
      }
    } catch (err) {
      if (live) live.hidden = true;
    }
  };
  tick();
  setInterval(tick, 2000);
}

// ---- accounts: tests in place ------------------------------------------------------------

function showResult(result) {
  const row = [...document.querySelectorAll("tr[data-account]")]
    .find((r) => r.dataset.account === result.account);
  const cell = row?.querySelector(".test-result");
  if (!cell) return;
  const token = row.querySelector(".token-state");
  if (token && result.token_preview) {
    const fresh = badge("ok token-state", `token ${result.token_preview}`);
    fresh.title = `token ${result.token_preview}`;
    token.replaceWith(fresh);
  }
  if (result.success) {
    clearStaleFailures();
    cell.replaceChildren(badge("ok", `OK · ${result.response_time} ms`));
  } else {
    cell.replaceChildren(badge("bad", "failed"), " ", el("span", { class: "muted" }, result.message));
  }
}

function wireTestOne() {
  document.querySelectorAll('form[data-js="test-one"]').forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector("button");
      const identifier = form.querySelector('[name="identifier"]').value;
      const message = document.getElementById("test-message")?.value || "";
      const cell = form.closest("tr")?.querySelector(".test-result");
      button.disabled = true;
      if (cell) cell.replaceChildren(badge("info", "testing…"));
      try {
        const response = await adminApi("/admin/accounts/test", { method: "POST", json: { identifier, message } });
        if (response.ok) showResult(await response.json());
        else if (cell) cell.replaceChildren(badge("bad", "error"), " ", await failureText(response));
      } catch (err) {
        if (cell) cell.replaceChildren(badge("bad", "error"), " ", String(err));
      } finally {
        button.disabled = false;
      }
    });
  });
}

// What a refused request says: the admin API's JSON detail, else the status.
// A lapsed session is said in the dashboard's terms, not the API's.
async function failureText(response) {
  if (response.status === 401) return "Your session has ended: log in again to continue.";
  try {
    const data = await response.json();
    return data.detail || data.error?.message || `HTTP ${response.status}`;
  } catch (err) {
    return `HTTP ${response.status} ${response.statusText}`.trim();
  }
}

async function* ndjson(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, cut).trim();
      buffer = buffer.slice(cut + 1);
      if (line) yield JSON.parse(line);
    }
  }
}

function wireTestAll() {
  const form = document.querySelector('form[data-js="test-all"]');
  if (!form) return;
  const progress = document.getElementById("test-all-progress");
  const bar = progress.querySelector(".meter > span");
  const caption = progress.querySelector(".caption");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector('button[type="submit"]');
    const message = form.querySelector('[name="message"]').value;
    button.disabled = true;
    delete progress.dataset.state;
    progress.classList.add("active");
    bar.style.width = "0%";
    caption.textContent = "Starting…";
    let total = 0;
    let done = 0;
    let ok = 0;
    try {
      const response = await adminApi("/admin/accounts/test-all", { method: "POST", json: { stream: true, message } });
      if (!response.ok) {
        progress.dataset.state = "failed";
        caption.textContent = await failureText(response);
        return;
      }
      for await (const item of ndjson(response)) {
        if (item.event === "start") total = item.total;
        if (item.event === "result") {
          done += 1;
          if (item.result.success) ok += 1;
          showResult(item.result);
        }
        if (item.event === "done") ({ success: ok, total } = item);
        bar.style.width = `${total ? (100 * done) / total : 100}%`;
        caption.textContent = `${done} of ${total} tested · ${ok} passed`;
      }
      bar.style.width = "100%";
      caption.textContent = `Done: ${ok} of ${total} accounts passed.`;
    } catch (err) {
      progress.dataset.state = "failed";
      caption.textContent = `Test stopped: ${err}`;
    } finally {
      button.disabled = false;
    }
  });
}

// ---- messages -------------------------------------------------------------------------

// A message belongs to the action that caused it: the next action on the page
// (a form sent, or a test run in place) removes it, so it is never shown stale.
function wireFlash() {
  const dismiss = () => document.getElementById("flash")?.remove();
  document.addEventListener("submit", dismiss, true);
  document.getElementById("flash")?.addEventListener("click", dismiss);
}

document.addEventListener("DOMContentLoaded", () => {
  wireFlash();
  wireConfirmations();
  wireOverview();
  wireTestOne();
  wireTestAll();
});

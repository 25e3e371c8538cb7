// The console's behaviour: the CSRF header on every htmx write, local times, and live
// service-level countdowns. Plain script, no build step.
(function () {
  "use strict";

  function cookie(name) {
    const prefix = name + "=";
    for (const part of document.cookie.split("; ")) {
      if (part.startsWith(prefix)) return decodeURIComponent(part.slice(prefix.length));
    }
    return null;
  }

  // The API checks writes made with the session cookie against this token.
  document.addEventListener("htmx:configRequest", function (event) {
    const token = cookie("vigil_csrf");
    if (token) event.detail.headers["X-CSRF-Token"] = token;
  });

  const dateTime = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });

  function span(ms) {
    const minutes = Math.round(Math.abs(ms) / 60000);
    if (minutes < 1) return "under a minute";
    if (minutes < 60) return minutes + " min";
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return hours + " h " + (minutes % 60) + " min";
    return Math.floor(hours / 24) + " d " + (hours % 24) + " h";
  }

  // Transcript entries follow each other within seconds: they show them.
  const clock = new Intl.DateTimeFormat(undefined, {
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });

  function formatTimes(root) {
    root.querySelectorAll("time[data-clock]").forEach(function (el) {
      const when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) el.textContent = clock.format(when);
    });
    root.querySelectorAll("time[data-local]").forEach(function (el) {
      const when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) el.textContent = dateTime.format(when);
    });
    root.querySelectorAll("time[data-relative]").forEach(function (el) {
      const when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      el.title = dateTime.format(when);
      const ago = Date.now() - when.getTime();
      el.textContent = ago < 60000 ? "just now" : span(ago) + " ago";
    });
  }

  // Colour by the share of the milestone's time still left: the text says the same.
  function level(left, total) {
    if (left <= 0) return "breached";
    const share = total > 0 ? left / total : 1;
    if (share < 0.2) return "close";
    if (share < 0.5) return "soon";
    return "ok";
  }

  function tick() {
    const now = Date.now();
    document.querySelectorAll(".countdown[data-due]").forEach(function (el) {
      const due = Date.parse(el.dataset.due);
      const start = Date.parse(el.dataset.start);
      if (isNaN(due)) return;
      const left = due - now;
      const state = level(left, due - start);
      let out = el.querySelector(".left");
      if (!out) {
        out = document.createElement("span");
        out.className = "left";
        el.appendChild(out);
      }
      const text = left > 0 ? "in " + span(left) : "breached " + span(left) + " ago";
      if (out.textContent !== text) out.textContent = text;
      el.dataset.level = state;
    });
  }

  function init(root) {
    formatTimes(root);
    tick();
  }

  document.addEventListener("DOMContentLoaded", function () {
    init(document);
    setInterval(tick, 1000);
  });
  document.addEventListener("htmx:afterSettle", function (event) { init(event.target); });
  // Content swapped out of band (transcript entries) is not inside the request's target.
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    init(event.detail.target || event.target);
  });
  // A periodic refresh waits while the keyboard focus is inside what it would replace,
  // so someone tabbing through the queue does not lose their place.
  document.addEventListener("htmx:beforeRequest", function (event) {
    const elt = event.detail.elt;
    if (elt.hasAttribute("hx-trigger") && elt.getAttribute("hx-trigger").startsWith("every ")
        && elt.contains(document.activeElement)) {
      event.preventDefault();
    }
  });
  // A refused write answers 4xx with a message to show; anything else is a real failure.
  document.addEventListener("htmx:responseError", function () {
    const live = document.getElementById("live");
    if (live) live.textContent = "The request failed. Try again.";
  });
})();

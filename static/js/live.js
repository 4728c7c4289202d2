// Live updates pause while the tab is hidden, and catch up the moment it is shown again.
// (An operation's progress region, polled on its own timer, pauses too and resumes at its next tick.)
// The page's poll element (#poll) asks on an htmx `every` timer; a request it would send while the tab is
// hidden is cancelled here, and on return the element is told to ask at once (its `live-resume` trigger).
// No inline script, no eval: the CSP allows this same-origin file only.
(function () {
  "use strict";

  // The page's poll, and any other region that asks for itself on a timer (an operation's progress).
  function isPoll(element) {
    if (!element || !element.getAttribute) {
      return false;
    }
    var trigger = element.getAttribute("hx-trigger") || "";
    return element.classList.contains("poll") || /^\s*every\s/.test(trigger);
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    if (document.visibilityState === "hidden" && isPoll(event.detail.elt)) {
      event.preventDefault();
    }
  });

  document.addEventListener("visibilitychange", function () {
    var hidden = document.visibilityState === "hidden";
    document.documentElement.classList.toggle("tab-hidden", hidden);
    var poll = document.getElementById("poll");
    if (!hidden && poll && window.htmx) {
      window.htmx.trigger(poll, "live-resume");
    }
  });
})();

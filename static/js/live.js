// Live updates pause while the tab is hidden, and catch up the moment it is shown again.
// The page's poll element (#poll) asks on an htmx `every` timer; a request it would send while the tab is
// hidden is cancelled here, and on return the element is told to ask at once (its `live-resume` trigger).
// No inline script, no eval: the CSP allows this same-origin file only.
(function () {
  "use strict";

  function isPoll(element) {
    return element && element.classList && element.classList.contains("poll");
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

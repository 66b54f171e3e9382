// Heavy panels arrive after the first paint: each <section data-src> fetches its HTML fragment from the
// server (same origin, the session's cookie) and puts it in its body. Without script, the panel's link
// opens the fragment on its own.
(function () {
  "use strict";
  function load(section) {
    var body = section.querySelector(".panel-body");
    fetch(section.getAttribute("data-src"), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.status === 403) {
          // The session has ended (or access was withdrawn): say so instead of showing nothing.
          var signIn = document.createElement("a");
          signIn.href = "/accounts/login/?next=" + encodeURIComponent(location.pathname + location.search);
          signIn.textContent = "Sign in again";
          body.textContent = "This panel needs you to be signed in. ";
          body.appendChild(signIn);
          body.removeAttribute("aria-busy");
          section.setAttribute("data-loaded", "error");
          return null;
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        if (html === null) { return; }
        body.innerHTML = html;
        body.removeAttribute("aria-busy");
        section.setAttribute("data-loaded", "true");
      })
      .catch(function () {
        body.removeAttribute("aria-busy");
        body.textContent = "This panel could not be loaded. Reload the page to try again.";
        section.setAttribute("data-loaded", "error");
      });
  }
  document.querySelectorAll("section[data-src]").forEach(load);
})();

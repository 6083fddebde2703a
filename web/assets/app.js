// ProxPanel: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";

  // Copy buttons: <button data-copy="ELEMENT-ID">.
  document.querySelectorAll("[data-copy]").forEach(function (btn) {
    btn.hidden = false;
    btn.addEventListener("click", function () {
      var el = document.getElementById(btn.getAttribute("data-copy"));
      if (!el) return;
      var text = el.textContent;
      var done = function () { btn.textContent = "Copied"; setTimeout(function () { btn.textContent = "Copy"; }, 2000); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { selectText(el); });
      } else {
        selectText(el);
      }
    });
  });
  function selectText(el) {
    var r = document.createRange();
    r.selectNodeContents(el);
    var s = window.getSelection();
    s.removeAllRanges();
    s.addRange(r);
  }

  // Live slug availability on the signup form: <input data-check-url="/api/v1/signup/check">.
  var slug = document.querySelector("input[data-check-url]");
  if (slug) {
    var status = document.getElementById(slug.getAttribute("aria-describedby").split(" ")[0]);
    var timer = null;
    var check = function () {
      var v = slug.value.trim().toLowerCase();
      if (!v) { status.textContent = ""; return; }
      fetch(slug.getAttribute("data-check-url") + "?slug=" + encodeURIComponent(v), { headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (a) {
          if (slug.value.trim().toLowerCase() !== v) return;
          status.textContent = a.available ? v + " is available" : (a.reason || "not available");
          status.className = a.available ? "hint ok-text" : "error";
          slug.setAttribute("aria-invalid", a.available ? "false" : "true");
        })
        .catch(function () { status.textContent = ""; });
    };
    slug.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(check, 250); });
  }

  // Router onboarding checklist: <ol data-checklist-url> polled every 3 s until complete.
  var list = document.querySelector("[data-checklist-url]");
  if (list && window.fetch) {
    var poll = function () {
      fetch(list.getAttribute("data-checklist-url"), { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (s) {
          if (!s) return;
          var all = true;
          ["handshake", "radius", "accept"].forEach(function (k) {
            var li = list.querySelector('[data-step="' + k + '"]');
            if (!li) return;
            li.classList.toggle("done", !!s[k]);
            li.querySelector(".mark").textContent = s[k] ? "\u2713" : "\u2026";
            all = all && !!s[k];
          });
          if (!all) setTimeout(poll, 3000);
        })
        .catch(function () { setTimeout(poll, 10000); });
    };
    setTimeout(poll, 3000);
  }
})();

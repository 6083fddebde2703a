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
})();

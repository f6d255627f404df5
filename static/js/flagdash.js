/* flagdash: small progressive enhancements. Every page works without this file. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function toast(text, level) {
    var box = document.getElementById("messages");
    if (!box) return;
    var el = document.createElement("div");
    el.className = "toast toast-" + (level || "info");
    if (level === "error") el.setAttribute("role", "alert");
    var span = document.createElement("span");
    span.textContent = text;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("data-dismiss", "");
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    el.appendChild(span);
    el.appendChild(close);
    box.appendChild(el);
  }

  function autoDismiss(root) {
    (root || document).querySelectorAll(".toast-success, .toast-info").forEach(function (el) {
      if (el.dataset.timer) return;
      el.dataset.timer = "1";
      setTimeout(function () { el.remove(); }, 6000);
    });
  }

  function openDialogs(root) {
    (root || document).querySelectorAll("dialog[data-modal]").forEach(function (dialog) {
      if (!dialog.open) {
        dialog.showModal();
        var focus = dialog.querySelector("[autofocus]") || dialog.querySelector("button, input, select, textarea");
        if (focus) focus.focus();
      }
      dialog.addEventListener("close", function () { dialog.remove(); }, { once: true });
    });
  }

  // "Copy" buttons (hidden without JavaScript): data-copy names the input or element to copy.
  function copyText(button) {
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = "value" in source ? source.value : source.textContent;
    var done = function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {
        toast("Could not copy: select the text and copy it by hand.", "error");
      });
    } else if (typeof source.select === "function") {
      source.select();  // plain-HTTP origins have no clipboard API: select it for Ctrl-C
      toast("Selected: press Ctrl-C (⌘-C) to copy.", "info");
    } else {
      toast("Select the text and copy it by hand.", "info");
    }
  }

  function revealJsOnly(root) {
    (root || document).querySelectorAll(".js-only[hidden]").forEach(function (el) {
      el.hidden = false;
    });
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element)) return;
    var dismiss = target.closest("[data-dismiss]");
    if (dismiss) { dismiss.closest(".toast").remove(); return; }
    var copy = target.closest("[data-copy]");
    if (copy) { copyText(copy); return; }
    var close = target.closest("[data-close]");
    if (close) {
      var dialog = close.closest("dialog");
      if (dialog) { event.preventDefault(); dialog.close(); }
    }
  });

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target instanceof HTMLSelectElement && target.hasAttribute("data-autosubmit")) {
      target.form.requestSubmit();
    }
  });

  // The rule builder's split total, live while typing (the server shows it after each round trip).
  document.addEventListener("input", function (event) {
    var target = event.target;
    if (!(target instanceof HTMLInputElement) || !target.hasAttribute("data-split-weight")) return;
    var box = target.closest("[data-split]");
    var out = box && box.querySelector("[data-split-total]");
    if (!out) return;
    var total = 0;
    box.querySelectorAll("[data-split-weight]").forEach(function (input) {
      var value = Number(input.value.trim());
      if (input.value.trim() !== "" && isFinite(value)) total += value;
    });
    out.textContent = String(Math.round(total * 1e6) / 1e6);
  });

  document.addEventListener("DOMContentLoaded", function () { autoDismiss(); openDialogs(); revealJsOnly(); });
  document.addEventListener("htmx:afterSettle", function (event) {
    autoDismiss();
    openDialogs();
    revealJsOnly();
  });
  // A server error or a lost connection: say so; the page still shows what the server has.
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr ? event.detail.xhr.status : "";
    toast("The server could not complete this (" + status + "). Nothing was changed; reload to see the current state.", "error");
  });
  document.addEventListener("htmx:sendError", function () {
    toast("Could not reach flagdash. Check your connection and try again.", "error");
  });
})();

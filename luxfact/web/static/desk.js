// The desk's keyboard shortcuts, and nothing else: pages work without it.
// "/" search, "n" the page's "new" action, "g h" home, "?" the list of shortcuts.
(function () {
  "use strict";
  var pending = null;
  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
    var key = event.key;
    if (pending === "g") {
      pending = null;
      if (key === "h") { window.location.href = "/desk"; event.preventDefault(); }
      return;
    }
    if (key === "g") { pending = "g"; return; }
    var target = document.querySelector('[data-shortcut="' + key + '"]');
    if (key === "/" && !target) { target = document.querySelector('[data-shortcut="search"]'); }
    if (key === "?") {
      var dialog = document.getElementById("shortcuts");
      if (dialog && dialog.showModal) { dialog.showModal(); event.preventDefault(); }
      return;
    }
    if (target) {
      event.preventDefault();
      if (target.tagName === "INPUT") { target.focus(); target.select(); } else { target.click(); }
    }
  });
})();

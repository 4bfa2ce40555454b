/* QA review keys: a accept, r reject (focus the reason; Enter submits), 1–9 relabel, j/k next and
 * previous item. The panel is swapped by htmx, so elements are looked up on every key press. */
(() => {
  "use strict";
  const click = (sel) => {
    const el = document.querySelector(sel);
    if (el && !el.disabled) el.click();
    return Boolean(el);
  };
  function move(step) {
    const links = [...document.querySelectorAll("#queue-list a[data-item]")];
    if (!links.length) return;
    const at = links.findIndex((a) => a.getAttribute("aria-current") === "true");
    const next = links[Math.min(Math.max(at + step, 0), links.length - 1)];
    if (next) {
      next.click();
      next.focus();
    }
  }
  // After a decision the panel is replaced; htmx would put focus back into the new reason field
  // (same id), where the next shortcut would be typed as text. Focus the item instead.
  document.body.addEventListener("htmx:afterSettle", () => {
    const active = document.activeElement;
    if (!active || active === document.body || active.id === "qa-reason") {
      const panel = document.getElementById("qa-item");
      if (panel) panel.focus({ preventScroll: true });
    }
  });
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing || e.repeat) return;
    const t = e.target;
    if (t && t.id === "qa-reason") {
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        if (t.value.trim()) t.form.requestSubmit();
        else t.reportValidity();
      } else if (e.key === "Escape") {
        t.blur();
      }
      return;
    }
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    const key = e.key;
    let handled = true;
    if (key === "a") handled = click("#qa-accept");
    else if (key === "r") {
      const reason = document.getElementById("qa-reason");
      if (reason) reason.focus();
      else handled = false;
    } else if (key === "j") move(1);
    else if (key === "k") move(-1);
    else if (/^[0-9]$/.test(key)) handled = click(`[data-relabel-key="${key}"]`);
    else handled = false;
    if (handled) e.preventDefault();
  });
})();

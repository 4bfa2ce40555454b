/* RFStudio labeling page: keyboard-first, prefetching, optimistic.
 *
 * The page holds leases on up to two items: `queue[0]` is on screen, `queue[1]` is prefetched
 * (its images already decoded), so a label key swaps the next image in without a network round
 * trip. Submits and skips go into an ordered outbox that is sent in the background with a
 * per-label idempotency key and retried on network/5xx failures; a 409 (the lease was lost) or
 * 400 is shown to the annotator as a toast. Undo first drains the outbox so the server undoes the
 * label the annotator actually saw last. See docs/ui.md.
 */
(() => {
  "use strict";
  const cfgEl = document.getElementById("label-config");
  if (!cfgEl) return;
  const cfg = JSON.parse(cfgEl.textContent);
  const $ = (sel) => document.querySelector(sel);
  const ui = {
    stage: $("#stage"),
    image: $("#stage-image"),
    msg: $("#stage-msg"),
    meta: $("#stage-meta"),
    product: $("#product-image"),
    sku: $("#product-sku"),
    title: $("#product-title"),
    prompt: $("#creative-prompt"),
    status: $("#status-line"),
    toasts: $("#toasts"),
    help: $("#help-dialog"),
    buttons: document.querySelectorAll("[data-label]"),
    skip: $("#btn-skip"),
    undo: $("#btn-undo"),
    zoom: $("#btn-zoom"),
    helpBtn: $("#btn-help"),
  };
  const hotkeys = new Map(cfg.labels.filter((l) => l.hotkey).map((l) => [l.hotkey, l.slug]));
  const labelNames = new Map(cfg.labels.map((l) => [l.slug, l.name]));

  const PREFETCH = 2; // current + next
  const queue = []; // item payloads we hold a lease on; queue[0] is shown
  const outbox = []; // {kind: "submit"|"skip", item, body}
  let claiming = false;
  let exhaustedUntil = 0; // the server had no work for us; ask again after this time
  let sending = false;
  let undoing = false;
  let shownAt = performance.now();
  let shownId = null;
  let drainWaiters = [];

  // ---- helpers -------------------------------------------------------------------------------
  function uuid() {
    // crypto.randomUUID needs a secure context; getRandomValues does not.
    if (window.crypto && crypto.randomUUID && window.isSecureContext) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  // Backoff sleeps end early when the browser comes back online.
  const sleepers = new Set();
  const sleep = (ms) =>
    new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      sleepers.add(done);
    });
  window.addEventListener("online", () => [...sleepers].forEach((wake) => wake()));

  async function post(url, body) {
    const resp = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "X-CSRFToken": cfg.csrf_token,
        Accept: "application/json",
      },
      body: JSON.stringify(body || {}),
    });
    let data = null;
    try {
      data = await resp.json();
    } catch (e) {
      data = null;
    }
    return { status: resp.status, ok: resp.ok, data };
  }
  const itemUrl = (template, id) => template.replace("/items/0/", `/items/${id}/`);

  function toast(text, kind = "info", ms = 8000) {
    const el = document.createElement("div");
    el.className = `toast ${kind}`;
    el.setAttribute("role", kind === "error" ? "alert" : "status");
    el.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "btn-plain";
    close.textContent = "Dismiss";
    close.addEventListener("click", () => el.remove());
    el.appendChild(close);
    ui.toasts.appendChild(el);
    if (ms) setTimeout(() => el.remove(), ms);
  }

  function setStatus() {
    const pending = outbox.length + (sending ? 0 : 0);
    ui.status.classList.toggle("saving", pending > 0);
    ui.status.textContent = pending ? `Saving ${pending}…` : "All labels saved";
    document.body.dataset.pending = String(pending);
  }

  function preload(item) {
    // Decode both images now so that showing the item later is instant.
    const decode = (url) => {
      const img = new Image();
      img.src = url;
      return img.decode ? img.decode().catch(() => {}) : Promise.resolve();
    };
    item._ready = Promise.all([decode(item.image_url), decode(item.product.image_url)]);
    return item;
  }

  // ---- rendering -----------------------------------------------------------------------------
  function render() {
    const item = queue[0];
    const has = Boolean(item);
    ui.buttons.forEach((b) => (b.disabled = !has));
    ui.skip.disabled = !has;
    ui.zoom.disabled = !has;
    document.body.dataset.itemId = has ? String(item.item_id) : "";
    document.body.dataset.queued = queue.map((i) => i.item_id).join(",");
    if (!has) {
      ui.image.hidden = true;
      ui.meta.hidden = true;
      ui.msg.hidden = false;
      ui.msg.textContent =
        claiming || outbox.length
          ? "Loading the next item…"
          : "No items are waiting for you in this project. New work is checked every 30 s.";
      ui.product.removeAttribute("src");
      ui.sku.textContent = "";
      ui.title.textContent = "";
      ui.prompt.textContent = "";
      shownId = null;
      return;
    }
    if (shownId !== item.item_id) {
      shownId = item.item_id;
      shownAt = performance.now();
    }
    ui.msg.hidden = true;
    ui.image.hidden = false;
    ui.meta.hidden = false;
    ui.image.src = item.image_url;
    ui.image.alt = `Generated image for ${item.product.title || item.product.sku}`;
    ui.meta.textContent = `Item #${item.item_id} · ${item.width}×${item.height}`;
    ui.product.src = item.product.image_url;
    ui.product.alt = `Product cut-out ${item.product.sku}`;
    ui.sku.textContent = item.product.sku;
    ui.title.textContent = item.product.title || "(no title)";
    ui.prompt.textContent = item.prompt || "(no prompt recorded)";
  }

  function flash(slug) {
    const b = document.querySelector(`[data-label="${slug}"]`);
    if (!b) return;
    b.classList.add("flash");
    setTimeout(() => b.classList.remove("flash"), 150);
  }

  // ---- claiming / prefetch -------------------------------------------------------------------
  async function fill() {
    if (claiming || Date.now() < exhaustedUntil) return;
    claiming = true;
    try {
      let delay = 1000;
      while (queue.length < PREFETCH && Date.now() >= exhaustedUntil) {
        // Exclude what we hold and what is still in flight: the server would otherwise hand
        // back our own live lease on those items. (Skipped items are never served again.)
        const exclude = [...queue.map((i) => i.item_id), ...outbox.map((e) => e.item.item_id)];
        let r;
        try {
          r = await post(cfg.urls.claim, { exclude });
        } catch (e) {
          ui.status.textContent = "Offline — retrying…";
          await sleep(delay);
          delay = Math.min(delay * 2, 15000);
          continue;
        }
        if (r.status >= 500) {
          await sleep(delay);
          delay = Math.min(delay * 2, 15000);
          continue;
        }
        if (!r.ok) {
          toast((r.data && r.data.error) || `Could not load work (HTTP ${r.status}).`, "error", 0);
          exhaustedUntil = Date.now() + 30000;
          break;
        }
        const item = r.data && r.data.item;
        if (!item) {
          exhaustedUntil = Date.now() + 30000;
          setTimeout(fill, 30500);
          break;
        }
        if (queue.some((i) => i.item_id === item.item_id)) break;
        queue.push(preload(item));
        if (queue.length === 1) render();
      }
    } finally {
      claiming = false;
      if (!queue.length) render();
    }
  }

  // ---- outbox (background submits) ------------------------------------------------------------
  async function pump() {
    if (sending) return;
    sending = true;
    let delay = 1000;
    try {
      while (outbox.length) {
        const entry = outbox[0];
        const url =
          entry.kind === "submit"
            ? itemUrl(cfg.urls.submit, entry.item.item_id)
            : itemUrl(cfg.urls.skip, entry.item.item_id);
        let r;
        try {
          r = await post(url, entry.body);
        } catch (e) {
          // Network failure: the same idempotency key makes the retry safe.
          ui.status.textContent = `Offline — retrying ${outbox.length}…`;
          await sleep(delay);
          delay = Math.min(delay * 2, 15000);
          continue;
        }
        if (r.status >= 500 || r.status === 429) {
          await sleep(delay);
          delay = Math.min(delay * 2, 15000);
          continue;
        }
        delay = 1000;
        outbox.shift();
        if (r.ok) {
          if (entry.kind === "submit") document.body.dispatchEvent(new CustomEvent("rfs:progress"));
        } else {
          const why = (r.data && r.data.error) || `HTTP ${r.status}`;
          const what =
            entry.kind === "submit"
              ? `Label “${labelNames.get(entry.body.label) || entry.body.label}” on item #${entry.item.item_id} was NOT saved`
              : `Skip of item #${entry.item.item_id} failed`;
          toast(`${what}: ${why}`, "error", r.status === 409 ? 15000 : 0);
        }
        setStatus();
      }
    } finally {
      sending = false;
      setStatus();
      const waiters = drainWaiters;
      drainWaiters = [];
      waiters.forEach((w) => w());
    }
  }
  const drained = () =>
    outbox.length || sending ? new Promise((r) => drainWaiters.push(r)) : Promise.resolve();

  // ---- actions -------------------------------------------------------------------------------
  function label(slug) {
    const item = queue[0];
    if (!item || undoing) return;
    queue.shift();
    flash(slug);
    outbox.push({
      kind: "submit",
      item,
      body: {
        label: slug,
        idempotency_key: uuid(),
        duration_ms: Math.round(performance.now() - shownAt),
      },
    });
    render();
    setStatus();
    pump();
    fill();
  }

  function skip() {
    const item = queue[0];
    if (!item || undoing) return;
    queue.shift();
    outbox.push({ kind: "skip", item, body: {} });
    render();
    setStatus();
    pump();
    fill();
  }

  async function undo() {
    if (undoing) return;
    undoing = true;
    ui.undo.disabled = true;
    try {
      await drained();
      let r;
      try {
        r = await post(cfg.urls.undo, {});
      } catch (e) {
        toast("Undo failed: the server cannot be reached. Try again.", "error");
        return;
      }
      if (!r.ok) {
        toast(`Undo failed: ${(r.data && r.data.error) || `HTTP ${r.status}`}`, "error");
        return;
      }
      const item = r.data && r.data.item;
      if (!item) {
        toast(
          (r.data && r.data.message) || "Nothing to undo (already reviewed or none yet).",
          "warn",
          5000,
        );
        return;
      }
      // The server released the leases we held (the undone item replaces them): show the
      // undone item and prefetch a fresh next one.
      queue.length = 0;
      queue.push(preload(item));
      await item._ready;
      render();
      fill();
      document.body.dispatchEvent(new CustomEvent("rfs:progress"));
      toast(`Undid your label on item #${item.item_id}. Label it again.`, "info", 4000);
    } finally {
      undoing = false;
      ui.undo.disabled = false;
    }
  }

  function toggleZoom(force) {
    if (!queue[0] && force !== false) return;
    const on = force === undefined ? !ui.stage.classList.contains("zoomed") : force;
    ui.stage.classList.toggle("zoomed", on);
    ui.zoom.setAttribute("aria-pressed", String(on));
  }

  function toggleHelp() {
    if (ui.help.open) ui.help.close();
    else ui.help.showModal();
  }

  // ---- leases --------------------------------------------------------------------------------
  async function heartbeat() {
    const ids = queue.map((i) => i.item_id);
    if (!ids.length) return;
    let r;
    try {
      r = await post(cfg.urls.heartbeat, { item_ids: ids });
    } catch (e) {
      return; // next beat retries
    }
    if (!r.ok || !r.data) return;
    const lost = new Set(r.data.lost || []);
    if (!lost.size) return;
    const wasShown = queue[0] && lost.has(queue[0].item_id);
    for (let i = queue.length - 1; i >= 0; i--) if (lost.has(queue[i].item_id)) queue.splice(i, 1);
    if (wasShown) {
      toast("Your lease on the shown item expired and it went to someone else; moved on.", "warn");
    }
    render();
    fill();
  }
  const beatMs = Math.max(5, Math.floor(cfg.lease_seconds / 3)) * 1000;
  setInterval(heartbeat, beatMs);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") heartbeat();
  });

  // ---- input ---------------------------------------------------------------------------------
  ui.buttons.forEach((b) => b.addEventListener("click", () => label(b.dataset.label)));
  ui.skip.addEventListener("click", skip);
  ui.undo.addEventListener("click", undo);
  ui.zoom.addEventListener("click", () => toggleZoom());
  ui.helpBtn.addEventListener("click", toggleHelp);
  ui.stage.addEventListener("click", () => {
    if (ui.stage.classList.contains("zoomed")) toggleZoom(false);
  });

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    const t = e.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    if (ui.help.open) {
      if (e.key === "?") {
        e.preventDefault();
        toggleHelp();
      }
      return; // Esc closes the dialog natively
    }
    if (e.repeat) return; // a held key must not label a run of items
    const key = e.key;
    if (hotkeys.has(key)) {
      e.preventDefault();
      label(hotkeys.get(key));
    } else if (key === "u" || key === "U") {
      e.preventDefault();
      undo();
    } else if (key === "s" || key === "S") {
      e.preventDefault();
      skip();
    } else if (key === "z" || key === "Z") {
      e.preventDefault();
      toggleZoom();
    } else if (key === "Escape") {
      toggleZoom(false);
    } else if (key === "?") {
      e.preventDefault();
      toggleHelp();
    }
  });

  window.addEventListener("beforeunload", (e) => {
    if (outbox.length) {
      e.preventDefault();
      e.returnValue = "";
    }
  });

  // Test and debugging hook: read-only view of the client state.
  window.rfsLabel = {
    state: () => ({
      queue: queue.map((i) => i.item_id),
      outbox: outbox.length,
      sending,
      claiming,
    }),
  };

  setStatus();
  render();
  fill();
})();

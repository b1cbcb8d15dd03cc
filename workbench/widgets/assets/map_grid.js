export function render({ model, el }) {
  const detail = model.mode === "detail";
  const root = document.createElement("div");
  root.className = "wb-attr " + (detail ? "wb-attr-detail" : "wb-attr-grid");
  root.dataset.mode = model.mode;
  const readout = document.createElement("div");
  readout.className = "wb-readout wb-idle";
  readout.setAttribute("aria-live", "polite");
  const body = document.createElement("div");
  body.className = "wb-rows";
  const tip = document.createElement("div");
  tip.className = "wb-tip";
  tip.hidden = true;
  root.append(readout, body, tip);
  el.appendChild(root);
  const HINT = "Hover a map to read its value";

  function decode(b64) {
    const bin = atob(b64);
    const view = new DataView(new ArrayBuffer(bin.length));
    for (let i = 0; i < bin.length; i++) { view.setUint8(i, bin.charCodeAt(i)); }
    const out = new Float32Array(bin.length >> 2);
    for (let i = 0; i < out.length; i++) { out[i] = view.getFloat32(4 * i, true); }
    return out;
  }

  function fmt(v) {
    if (!Number.isFinite(v)) { return String(v); }
    if (v === 0) { return "0"; }
    const a = Math.abs(v);
    if (a >= 1e-3 && a < 1e4) { return String(Number(v.toPrecision(3))); }
    return v.toExponential(2).replace("e-", "e−");
  }

  function lut(name) {
    return model.luts[name] || Object.values(model.luts)[0] || [];
  }

  function gradient(name) {
    const t = lut(name);
    const stops = [];
    for (let k = 0; k <= 16; k++) {
      const i = Math.min(255, Math.round(k * 255 / 16));
      stops.push(`rgb(${t[3 * i]}, ${t[3 * i + 1]}, ${t[3 * i + 2]}) ${(k * 100 / 16).toFixed(2)}%`);
    }
    return `linear-gradient(to right, ${stops.join(", ")})`;
  }

  function paint(canvas, cell, values, cmap) {
    const t = lut(cmap);
    canvas.width = cell.w;
    canvas.height = cell.h;
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(cell.w, cell.h);
    const span = (cell.vmax - cell.vmin) || 1;
    const centred = cell.vmin < 0 && cell.vmax > 0, half = Math.max(-cell.vmin, cell.vmax);
    for (let p = 0; p < values.length; p++) {
      const v = values[p];
      let k = Math.round((v - cell.vmin) / span * 255);
      k = k < 0 ? 0 : (k > 255 ? 255 : k);
      img.data[4 * p] = t[3 * k];
      img.data[4 * p + 1] = t[3 * k + 1];
      img.data[4 * p + 2] = t[3 * k + 2];
      let a = 1;
      if (model.fade) { a = centred ? Math.abs(v) / half : (v - cell.vmin) / span; }
      img.data[4 * p + 3] = Math.round(255 * (a < 0 ? 0 : (a > 1 ? 1 : a)));
    }
    ctx.putImageData(img, 0, 0);
  }

  function div(cls, text) {
    const d = document.createElement("div");
    d.className = cls;
    if (text !== undefined) { d.textContent = text; }
    return d;
  }

  // A method title that wraps only between words: a break opportunity (<wbr>) after each "_", "-",
  // "/" or "." (method keys such as "integrated_gradients"), never inside a word (see map_grid.css).
  function titled(cls, text) {
    const d = div(cls);
    String(text).split(/(?<=[_\-\/.])/).forEach((part, k) => {
      if (k) { d.appendChild(document.createElement("wbr")); }
      d.appendChild(document.createTextNode(part));
    });
    return d;
  }

  function colorbar(col, ticks) {
    const wrap = div("wb-scale");
    const bar = div("wb-cbar");
    bar.style.background = gradient(col.cmap);
    wrap.title = model.scale_note;
    const tk = div("wb-ticks");
    for (const t of ticks) { tk.appendChild(div("wb-tick", t)); }
    wrap.append(bar, tk);
    return wrap;
  }

  function idle() {
    readout.className = "wb-readout wb-idle";
    readout.textContent = HINT + (detail ? "" : " · click a row to inspect it");
  }

  function hover(ev, stack, row, col, cell, values) {
    const r = stack.getBoundingClientRect();
    const fx = Math.min(Math.max((ev.clientX - r.left) / r.width, 0), 0.999999);
    const fy = Math.min(Math.max((ev.clientY - r.top) / r.height, 0), 0.999999);
    const [H, W] = model.image_shape;
    const pr = Math.floor(fy * H), pc = Math.floor(fx * W);
    const mr = Math.floor(fy * cell.h), mc = Math.floor(fx * cell.w);
    const v = values[mr * cell.w + mc];
    let where = "";
    if (cell.kind === "grid") { where = ` · cell (${mr}, ${mc}) of ${cell.h}×${cell.w}`; }
    if (cell.kind === "block") { where = ` · mean of a ${cell.block} px block`; }
    readout.className = "wb-readout wb-live";
    readout.replaceChildren(
      document.createTextNode(`${col.title} · image ${row.id ?? row.index} · (${pr}, ${pc}) = `),
      Object.assign(document.createElement("b"), { className: "wb-value", textContent: fmt(v) }),
      document.createTextNode(where),
    );
    readout.dataset.method = col.key;
    readout.dataset.index = String(row.index);
    readout.dataset.value = String(v);
    const rr = root.getBoundingClientRect();
    tip.textContent = fmt(v);
    tip.hidden = false;
    const x = ev.clientX - rr.left + 12, y = ev.clientY - rr.top + 14;
    tip.style.left = Math.min(x, rr.width - tip.offsetWidth - 2) + "px";
    tip.style.top = y + "px";
  }

  function mark() {
    for (const r of body.querySelectorAll(".wb-item")) {
      const on = Number(r.dataset.index) === model.selected;
      r.classList.toggle("wb-selected", on);
      r.setAttribute("aria-pressed", on ? "true" : "false");
    }
  }

  function pick(title, col) {  // a method title: click it to select the method in the metrics panel
    title.dataset.method = col.key;
    if (!model.pickable) { return title; }
    title.classList.add("wb-pick");
    title.addEventListener("click", (ev) => { ev.stopPropagation(); model.send_msg({ method: col.key }); });
    return title;
  }

  function focus() {
    for (const t of body.querySelectorAll(".wb-col-title[data-method]")) {
      t.classList.toggle("wb-focus", t.dataset.method === model.focus);
    }
    root.dataset.focus = model.focus;
  }

  function style() {
    for (const c of body.querySelectorAll("canvas.wb-map")) {
      c.style.opacity = String(model.opacity);
      c.classList.toggle("wb-nearest", !model.smooth);
    }
    root.dataset.opacity = String(model.opacity);
  }

  function build() {
    const [H, W] = model.image_shape;
    const cw = model.cell_size, ch = Math.max(1, Math.round(cw * H / W));
    // A column cell cw wide (of image row ``index`` when given), the stack of layers of a picture in
    // it, and a layer (the image, or the contour of its mask; the map is a canvas).
    function column(cls, index) {
      const c = div(cls);
      c.style.width = cw + "px";
      if (index !== undefined) { c.dataset.index = String(index); }
      return c;
    }
    function stack() {
      const st = div("wb-stack");
      st.style.width = cw + "px";
      st.style.height = ch + "px";
      return st;
    }
    function layer(cls, src, alt) {
      const im = document.createElement("img");
      im.className = cls;
      im.src = src;
      im.alt = alt;
      if (cls === "wb-base") { im.draggable = false; }  // dragging it would move the picture, not hover the map
      return im;
    }
    body.replaceChildren();
    idle();
    tip.hidden = true;
    const row0 = model.rows.length ? model.rows[0] : null;
    root.dataset.index = detail && row0 ? String(row0.index) : "";
    root.dataset.methods = model.columns.map((c) => c.key).join(",");
    root.dataset.fade = String(model.fade);
    if (!model.rows.length) { body.appendChild(div("wb-empty", "No images.")); return; }
    if (!detail) {  // header: column titles and the colour scale of each method
      const head = div("wb-row wb-head");
      const first = column("wb-cell wb-image-cell");
      first.appendChild(div("wb-col-title", "image"));
      head.appendChild(first);
      for (const col of model.columns) {
        const c = column("wb-cell wb-map-cell");
        const title = pick(titled("wb-col-title", col.title), col);
        title.title = col.title + (model.pickable ? " · click to show its metrics" : "");
        c.append(title, colorbar(col, col.signed ? ["−s", "0", "+s"] : ["0", "s"]));
        head.appendChild(c);
      }
      body.appendChild(head);
    }
    for (const row of model.rows) {
      const r = div("wb-row wb-item");
      r.dataset.index = String(row.index);
      if (!detail) {
        r.setAttribute("role", "button");
        r.tabIndex = 0;
        r.setAttribute("aria-label", row.alt);
        r.addEventListener("click", () => { model.selected = row.index; });
        r.addEventListener("keydown", (ev) => {
          if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); model.selected = row.index; return; }
          const step = { ArrowUp: -1, ArrowDown: 1 }[ev.key];
          if (step === undefined) { return; }
          const items = Array.from(body.querySelectorAll(".wb-item"));
          const next = items[items.indexOf(r) + step];
          if (next) { ev.preventDefault(); next.focus(); model.selected = Number(next.dataset.index); }
        });
      }
      // the image itself
      const ic = column("wb-cell wb-image-cell", row.index);
      if (detail) { ic.appendChild(div("wb-col-title", "image")); }
      const is = stack();
      is.appendChild(layer("wb-base", row.src, row.alt));
      if (row.contour) { is.appendChild(layer("wb-contour", row.contour, "")); }
      ic.appendChild(is);
      ic.appendChild(div("wb-caption", row.caption));
      if (row.sub) { ic.appendChild(div("wb-caption" + (row.status ? " wb-" + row.status : ""), row.sub)); }
      r.appendChild(ic);
      // one map per method
      for (const col of model.columns) {
        const cell = row.cells[col.key];
        if (cell === undefined) { continue; }  // rows and columns of one update arrive one by one
        const c = column("wb-cell wb-map-cell", row.index);
        c.dataset.method = col.key;
        if (detail) { c.appendChild(pick(titled("wb-col-title", col.title), col)); }
        const st = stack();
        const base = layer("wb-base", row.src, "");
        const canvas = document.createElement("canvas");
        canvas.className = "wb-map";
        canvas.setAttribute("role", "img");
        canvas.setAttribute("aria-label", `${col.title} map of image ${row.index}`);
        const values = decode(cell.data);
        paint(canvas, cell, values, col.cmap);
        st.append(base, canvas);
        if (row.contour) { st.appendChild(layer("wb-contour", row.contour, "")); }
        st.addEventListener("mousemove", (ev) => hover(ev, st, row, col, cell, values));
        st.addEventListener("mouseleave", () => { tip.hidden = true; readout.classList.add("wb-stale"); });
        c.appendChild(st);
        if (detail) {
          c.appendChild(colorbar(col, col.signed ? [fmt(cell.vmin), "0", fmt(cell.vmax)] : ["0", fmt(cell.vmax)]));
        } else {
          const cap = div("wb-caption", col.signed ? `±${fmt(cell.vmax)}` : `0–${fmt(cell.vmax)}`);
          cap.title = `colour range of this map: [${fmt(cell.vmin)}, ${fmt(cell.vmax)}]. ${model.scale_note}`;
          c.appendChild(cap);
        }
        r.appendChild(c);
      }
      body.appendChild(r);
    }
    mark();
    style();
    focus();
  }

  // Parameters changed together arrive as separate events: draw once, after the last of them.
  let pending = false;
  function schedule() {
    if (pending) { return; }
    pending = true;
    queueMicrotask(() => { pending = false; build(); });
  }

  build();
  model.on(["rows", "columns", "luts", "cell_size", "image_shape", "fade", "pickable"], schedule);
  model.on("focus", focus);
  model.on("selected", mark);
  model.on(["opacity", "smooth"], style);
}

export function render({ model, el }) {
  const grid = document.createElement("div");
  grid.className = "wb-grid";
  grid.setAttribute("role", "group");
  grid.setAttribute("aria-label", "Thumbnails");

  function line(text, cls) {
    const span = document.createElement("span");
    span.className = "wb-caption " + cls;
    span.textContent = text;
    return span;
  }

  function mark() {
    for (const b of grid.querySelectorAll(".wb-thumb")) {
      const on = Number(b.dataset.index) === model.selected;
      b.classList.toggle("wb-selected", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    }
  }

  function build() {
    grid.style.gridTemplateColumns = `repeat(${model.columns}, ${model.thumb_size + 10}px)`;
    grid.replaceChildren();
    if (!model.items.length) {
      const empty = document.createElement("div");
      empty.className = "wb-empty";
      empty.textContent = "No images match the current filter.";
      grid.appendChild(empty);
    }
    for (const item of model.items) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "wb-thumb" + (item.wrong ? " wb-wrong" : "");
      b.id = "wb-thumb-" + item.index;
      b.dataset.index = String(item.index);
      b.title = item.alt;
      b.setAttribute("aria-label", item.alt);
      const img = document.createElement("img");
      img.src = item.src;
      img.alt = "";
      img.width = model.thumb_size;
      img.height = model.thumb_size;
      img.draggable = false;
      b.appendChild(img);
      b.appendChild(line(item.label, "wb-label"));
      if (item.pred) {
        b.appendChild(line(item.pred, "wb-pred" + (item.status ? " wb-" + item.status : "")));
      }
      b.addEventListener("click", () => { model.selected = item.index; });
      grid.appendChild(b);
    }
    mark();
  }

  // Arrow keys move the selection within the page (Up/Down by one row).
  grid.addEventListener("keydown", (ev) => {
    const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -model.columns, ArrowDown: model.columns }[ev.key];
    const current = ev.target.closest ? ev.target.closest(".wb-thumb") : null;
    if (step === undefined || current === null) { return; }
    const buttons = Array.from(grid.querySelectorAll(".wb-thumb"));
    const next = buttons[buttons.indexOf(current) + step];
    if (next) { ev.preventDefault(); next.focus(); next.click(); }
  });

  build();
  model.on(["items", "columns", "thumb_size"], build);
  model.on("selected", mark);
  el.appendChild(grid);
}

export function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "wb-live-html wb-action-html";
  const draw = () => { root.innerHTML = model.object; };
  function send(ev) {
    const t = ev.target.closest("[data-action]");
    if (t && root.contains(t)) {
      model.send_msg({ action: t.dataset.action, value: t.dataset.value ?? "" });
      return true;
    }
    const tr = ev.target.closest("tr[data-method]");
    if (tr && root.contains(tr)) { model.send_msg({ action: "method", value: tr.dataset.method }); return true; }
    return false;
  }
  root.addEventListener("click", send);
  root.addEventListener("keydown", (ev) => {
    if ((ev.key === "Enter" || ev.key === " ") && ev.target.closest("[data-action]") && send(ev)) {
      ev.preventDefault();
    }
  });
  draw();
  model.on("object", draw);
  el.appendChild(root);
}

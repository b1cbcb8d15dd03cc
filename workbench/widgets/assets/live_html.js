export function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "wb-live-html";
  const draw = () => { root.innerHTML = model.object; };
  draw();
  model.on("object", draw);
  el.appendChild(root);
}

(function () {
  var id = "/*slot:id*/";
  var data = JSON.parse(document.getElementById(id + "-data").textContent);
  function el(name) { return document.getElementById(id + "-" + name); }
  var method = el("method"), target = el("target"), opacity = el("opacity"), scale = el("scale");
  data.methods.forEach(function (m, i) { method.add(new Option(m.name, i)); });
  data.targets.forEach(function (t, i) { target.add(new Option(t, i)); });
  el("bar").src = data.colourbar;
  function fmt(v) { return v === 0 ? "0" : Number(v.toPrecision(2)).toString(); }
  function heads(m, t) {
    var box = el("heads");
    box.textContent = "";
    if (!m.heads) { return; }
    var h = m.heads[t], table = document.createElement("table");
    table.className = "cg-heads";
    var heading = document.createElement("h2");
    heading.id = id + "-headstitle";
    heading.textContent = m.name + " head weights for " + data.targets[t] + " (layers down, heads across; each layer sums to 1)";
    table.setAttribute("aria-labelledby", heading.id);
    box.appendChild(heading);
    var head = table.createTHead().insertRow();
    var corner = document.createElement("th"); corner.textContent = "layer \\ head"; head.appendChild(corner);
    h.values[0].forEach(function (_, j) { var th = document.createElement("th"); th.scope = "col"; th.textContent = j; head.appendChild(th); });
    var body = table.createTBody();
    h.values.forEach(function (row, l) {
      var tr = body.insertRow(), th = document.createElement("th");
      th.scope = "row"; th.textContent = l; tr.appendChild(th);
      row.forEach(function (v, j) {
        var td = tr.insertCell();
        td.textContent = v.toFixed(2);
        td.style.background = h.colours[l][j];
        td.style.color = v / h.max > 0.6 ? "#000" : "#fff";
      });
    });
    box.appendChild(table);
  }
  function show() {
    var m = data.methods[method.value], t = Number(target.value), shown = m.maps[t][scale.value];
    var overlay = el("map");
    overlay.src = shown.src;
    overlay.style.opacity = opacity.value / 100;
    overlay.alt = m.name + " map of " + data.targets[t] + ", opacity " + opacity.value + "%";
    el("mapcaption").textContent = m.name + ": " + data.targets[t];
    el("max").textContent = shown.scale > 0 ? fmt(shown.scale) : "0 (all zero)";
    heads(m, t);
  }
  [method, target, scale].forEach(function (c) { c.addEventListener("change", show); });
  opacity.addEventListener("input", show);
  show();
})();

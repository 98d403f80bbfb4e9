(function () {
  var id = "/*slot:id*/";
  var root = document.getElementById(id);
  var data = JSON.parse(document.getElementById(id + "-data").textContent);
  function el(name) { return document.getElementById(id + "-" + name); }
  // the summary: a click on a header sorts the rows by that column (numbers as numbers, empty cells last)
  var table = root.querySelector("table.cg-summary");  // none on a gallery alone
  Array.prototype.forEach.call(table ? table.tHead.rows[0].cells : [], function (th, column) {
    th.querySelector("button").addEventListener("click", function () {
      var direction = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", direction === 1 ? "ascending" : "descending");
      var rows = Array.prototype.slice.call(table.tBodies[0].rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].getAttribute("data-value"), y = b.cells[column].getAttribute("data-value");
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var p = parseFloat(x), q = parseFloat(y);
        return direction * (isNaN(p) || isNaN(q) ? x.localeCompare(y) : p - q);
      });
      rows.forEach(function (row) { table.tBodies[0].appendChild(row); });
    });
  });
  // the gallery
  var sort = el("sort"), order = el("order"), filter = el("class");
  sort.add(new Option("item (as explained)", ""));
  data.methods.forEach(function (m) { data.metrics.forEach(function (k) { sort.add(new Option(m + ": " + k, JSON.stringify([m, k]))); }); });
  filter.add(new Option("all", ""));
  data.gallery.map(function (g) { return g["class"]; }).filter(function (c, i, all) { return all.indexOf(c) === i; }).sort()
    .forEach(function (c) { filter.add(new Option(c, c)); });
  var cards = data.gallery.map(function (g, i) {
    var card = document.createElement("div");
    card.className = "cg-card";
    var heading = document.createElement("div");
    heading.textContent = g.title;
    card.appendChild(heading);
    var thumbs = document.createElement("div");
    thumbs.className = "cg-thumbs";
    function add(src, caption, alt) {
      var figure = document.createElement("figure"), img = document.createElement("img"), text = document.createElement("figcaption");
      img.src = src; img.alt = alt; text.textContent = caption;
      figure.appendChild(img); figure.appendChild(text); thumbs.appendChild(figure);
      return text;
    }
    add(g.image, "image", g.title);
    var values = data.methods.map(function (m) { return add(g.maps[m], m, m + " map of " + g.title); });
    card.appendChild(thumbs);
    return { card: card, item: g, index: i, values: values };
  });
  function value(c, key) { var v = (c.item.metrics[key[0]] || {})[key[1]]; return v === undefined ? null : v; }
  function show() {
    var key = sort.value ? JSON.parse(sort.value) : null, direction = Number(order.value), box = el("gallery");
    var shown = cards.filter(function (c) { return !filter.value || c.item["class"] === filter.value; });
    shown.sort(function (a, b) {
      if (!key) { return direction * (a.index - b.index); }
      var x = value(a, key), y = value(b, key);
      if (x === null || y === null) { return (x === null) - (y === null); }
      return direction * (x - y);
    });
    box.textContent = "";
    shown.forEach(function (c) {
      data.methods.forEach(function (m, j) {
        var v = key ? (c.item.metrics[m] || {})[key[1]] : undefined;
        c.values[j].textContent = m + (v === undefined ? "" : ": " + Number(v.toPrecision(3)));
      });
      box.appendChild(c.card);
    });
    el("count").textContent = shown.length + " of " + cards.length + " items shown";
  }
  [sort, order, filter].forEach(function (c) { c.addEventListener("change", show); });
  show();
})();

(function () {
  var id = "/*slot:id*/";
  var root = document.getElementById(id);
  function el(name) { return document.getElementById(id + "-" + name); }
  var status = el("status");
  var D = window.EXPLORE_INDEX;
  if (!D) {
    status.textContent = "explore-data/index.js did not load: keep explore.html beside its explore-data folder.";
    status.className = "cg-status cg-error";
    return;
  }
  var N = D.rows, PAGE = 40, CARD = 64, DENSE = 20000;  // beyond DENSE points the scatter is drawn by density
  // the rows of a class (fields) and a method's places for them, loaded from their files when shown: typed arrays
  function decode(text, Type) {
    if (text === null || text === undefined) { return null; }
    var raw = atob(text), bytes = new Uint8Array(raw.length);
    for (var k = 0; k < raw.length; k++) { bytes[k] = raw.charCodeAt(k); }
    return new Type(bytes.buffer);
  }
  var classData = {}, groupData = {}, pending = {};
  function load(src, key, done) {
    if (pending[key]) { pending[key].push(done); return; }
    pending[key] = [done];
    var script = document.createElement("script");
    script.src = "explore-data/" + src;
    script.onerror = function () { status.textContent = "explore-data/" + src + " did not load."; status.className = "cg-status cg-error"; };
    document.head.appendChild(script);
  }
  function finish(key) { var waiting = pending[key] || []; delete pending[key]; waiting.forEach(function (f) { f(); }); }
  window.EXPLORE_CLASS = function (number, c) {
    classData[number] = {
      rows: decode(c.rows, Int32Array), label: decode(c.label, Int32Array), predicted: decode(c.predicted, Int32Array),
      score: decode(c.score, Float32Array), margin: decode(c.margin, Float32Array), disagreement: decode(c.disagreement, Float32Array),
      odd: decode(c.odd, Int8Array)
    };
    finish("class" + number);
  };
  window.EXPLORE_GROUP = function (method, number, g) {
    groupData[method + ":" + number] = { cluster: decode(g.cluster, Int32Array), rank: decode(g.rank, Int32Array), x: decode(g.x, Float32Array), y: decode(g.y, Float32Array) };
    finish("group" + method + ":" + number);
  };
  function classNumber(target) { for (var k = 0; k < D.classes.length; k++) { if (String(D.classes[k].target) === String(target)) { return k; } } return -1; }
  function pad(number) { var name = String(number); while (name.length < 5) { name = "0" + name; } return name; }
  function methodIndex(m) { return D.methods.indexOf(m); }
  function withClass(number, done) { if (classData[number]) { done(); return; } load("class-" + pad(number) + ".js", "class" + number, done); }
  function withGroup(m, number, done) {
    var key = methodIndex(m) + ":" + number, mm = String(methodIndex(m));
    if (groupData[key]) { done(); return; }
    load("group-" + (mm.length < 2 ? "0" + mm : mm) + "-" + pad(number) + ".js", "group" + key, done);
  }
  function value(x) { return x === undefined || x === null || x !== x ? null : x; }  // NaN: none
  // the loaded classes' columns by row number (for tests and the console): EXPLORE_FIELD("score"), EXPLORE_FIELD("rank", "gae")
  window.EXPLORE_FIELD = function (name, method) {
    var out = new Array(N).fill(null);
    Object.keys(classData).forEach(function (number) {
      var c = classData[number], source = method ? groupData[methodIndex(method) + ":" + number] : c;
      if (!source) { return; }
      for (var j = 0; j < c.rows.length; j++) {
        out[c.rows[j]] = name === "target" ? D.classes[number].target : name === "item" ? c.rows[j] : value(source[name][j]);
      }
    });
    return out;
  };
  var PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f"];
  function rankColour(rank) { return rank > 0 ? PALETTE[(rank - 1) % PALETTE.length] : "#bbbbbb"; }
  function className(index) { return index < 0 ? "none" : (D.class_names[index] !== undefined ? D.class_names[index] : String(index)); }
  function percent(x) { return x === null || x === undefined || x !== x ? "–" : Math.round(100 * x) + "%"; }
  function number(x) { return x === null || x === undefined || x !== x ? "–" : (Math.abs(x) >= 100 ? x.toFixed(0) : x.toPrecision(3)); }
  function signed(x) { return x === null || x === undefined || x !== x ? "–" : (x >= 0 ? "+" : "") + x.toFixed(3); }
  // the model and images explore was given, in the commands the page suggests (else placeholders to fill)
  var MODEL = (D.given && D.given.model) || D.model || "MODEL", IMAGES = (D.given && D.given.images) || "IMAGES", OUT = (D.given && D.given.out) || "EXP";
  // the bundled classifiers, trained on Fashion-MNIST scenes: repair's --data can be exported for them
  var BUNDLED = ["vit-tiny", "dinov2-small"];
  function option(select, value, text) { select.add(new Option(text, value)); }
  function ordinal(k) { var tens = k % 100, last = k % 10; return k + (tens > 10 && tens < 14 ? "th" : last === 1 ? "st" : last === 2 ? "nd" : last === 3 ? "rd" : "th"); }
  function span(word, values) {
    var low = Math.min.apply(null, values), high = Math.max.apply(null, values);
    return low === high ? word + " " + low : word + "s " + low + "–" + high;
  }
  // as captum_gmar.heads.cluster.region_words says it: "2 patches in rows 0–2, column 0"
  function regionText(c) {
    var count = c.region.length + (c.region.length === 1 ? " patch" : " patches");
    return c.region.length ? count + " in " + span("row", c.region.map(function (cell) { return cell[0]; })) + ", " +
      span("column", c.region.map(function (cell) { return cell[1]; })) : count;
  }
  var SCALE = D.disagreement_scale;
  function disagreementText(x) {
    return x === null || x === undefined || x !== x ? "–" : number(x) + (x >= SCALE.unusual ? " (unusual)" : "");
  }
  // every clustered group, those with a confirmed cluster first, then a flagged one, then by their most suspicious cluster (strategies.json's "overview")
  var ranked = D.overview.map(function (i) { return D.groups[i]; });

  // the controls' choices
  var select = {
    method: el("method"), "class": el("class"), label: el("label"), predicted: el("predicted"),
    correct: el("correct"), sort: el("sort"), order: el("order")
  };
  D.methods.forEach(function (m) { option(select.method, m, m); });
  function distinct(values) { return values.filter(function (v, i, all) { return all.indexOf(v) === i; }).sort(function (a, b) { return a - b; }); }
  var targets = distinct(D.targets);
  targets.forEach(function (t) { option(select["class"], String(t), t + ": " + className(t)); });
  ["label", "predicted"].forEach(function (name) {
    option(select[name], "", "all");
    option(select[name], "-1", "none");
    Object.keys(D.class_names).map(Number).sort(function (a, b) { return a - b; }).forEach(function (v) { option(select[name], String(v), v + ": " + className(v)); });
  });
  var SORTS = [["score", "score of the explained class"], ["margin", "margin over the other classes"], ["cluster", "cluster (most suspicious first)"], ["item", "position in the data"]];
  if (D.disagreement_scale) { SORTS.splice(1, 0, ["disagreement", "disagreement between methods (robust deviations from the typical image)"]); }
  SORTS.forEach(function (s) { option(select.sort, s[0], s[1]); });

  // the view, kept in the URL's hash so that a link restores it
  // it opens on the first group of the overview, its most suspicious cluster chosen where flagged
  var opening = ranked[0];
  var state = {
    m: opening ? opening.method : D.methods[0], c: String(opening ? opening.target : targets[0]), label: "", predicted: "", correct: "",
    sort: D.disagreement_scale ? "disagreement" : "score", order: "-1", sel: opening && opening.flagged ? "cluster:" + opening.clusters[0].cluster : "", page: 0
  };
  function firstClustered() { return opening ? opening.target : targets[0]; }
  function readHash() {
    var params = new URLSearchParams(location.hash.slice(1));
    Object.keys(state).forEach(function (key) { if (params.has(key)) { state[key] = key === "page" ? Math.max(0, parseInt(params.get(key), 10) || 0) : params.get(key); } });
    if (D.methods.indexOf(state.m) < 0) { state.m = D.methods[0]; }
    if (targets.indexOf(Number(state.c)) < 0) { state.c = String(firstClustered()); }
    ["label", "predicted", "correct", "sort", "order"].forEach(function (key) {
      var s = select[key];
      if (!Array.prototype.some.call(s.options, function (o) { return o.value === state[key]; })) { state[key] = s.options[0].value; }
    });
  }
  var written = null;
  function writeHash() {
    var params = new URLSearchParams();
    Object.keys(state).forEach(function (key) { params.set(key, String(state[key])); });
    written = "#" + params.toString();
    if (location.hash !== written) { history.replaceState(null, "", written); }
  }
  function showControls() {
    select.method.value = state.m; select["class"].value = state.c;
    ["label", "predicted", "correct", "sort", "order"].forEach(function (key) { select[key].value = state[key]; });
  }

  function group() {
    for (var g = 0; g < D.groups.length; g++) {
      if (D.groups[g].method === state.m && String(D.groups[g].target) === state.c) { return D.groups[g]; }
    }
    return null;
  }
  function selection() {
    if (!state.sel) { return null; }
    var parts = state.sel.split(":");
    if (parts[0] === "cluster") { return { cluster: Number(parts[1]) }; }
    var box = parts[1].split(",").map(Number);
    return box.length === 4 && box.every(isFinite) ? { box: box } : null;
  }

  // the rows the filters keep (the scatter's points), and those the selection keeps too (the cards): local
  // indices into the current class's arrays (C), the method's places (P)
  var filtered = [], shown = [], left = [], C = null, P = null;
  function compute() {
    var sel = selection();
    var label = state.label === "" ? null : Number(state.label), predicted = state.predicted === "" ? null : Number(state.predicted);
    filtered = []; shown = []; left = [];
    var n = C.rows.length;
    for (var j = 0; j < n; j++) {
      if ((label !== null && C.label[j] !== label) || (predicted !== null && C.predicted[j] !== predicted) ||
          (state.correct && (C.label[j] < 0 || (C.label[j] === C.predicted[j]) !== (state.correct === "correct")))) { left.push(j); continue; }
      filtered.push(j);
      if (sel && sel.cluster !== undefined && P.cluster[j] !== sel.cluster) { continue; }
      if (sel && sel.box && !(P.x[j] === P.x[j] && P.x[j] >= sel.box[0] && P.x[j] <= sel.box[2] && P.y[j] >= sel.box[1] && P.y[j] <= sel.box[3])) { continue; }
      shown.push(j);
    }
    var key = state.sort, order = Number(state.order), keys;
    if (key === "cluster") { keys = function (j) { return P.rank[j] > 0 ? -P.rank[j] : null; }; }  // rank 1 first when descending
    else if (key === "item") { keys = function (j) { return C.rows[j]; }; }
    else { keys = function (j) { return value(C[key][j]); }; }
    // only the pages up to the one shown are put in order: a partial selection, not a sort of every row
    shown = ordered(shown, keys, order, (state.page + 1) * PAGE);
  }
  function ordered(list, keys, order, needed) {
    var values = new Float64Array(list.length), missing = [], present = [];
    list.forEach(function (j, k) { var v = keys(j); if (v === null) { missing.push(j); } else { values[k] = v; present.push(k); } });
    function before(a, b) { return order * (values[a] - values[b]) || list[a] - list[b]; }
    var top;
    if (needed < present.length / 8) {  // a bounded heap of the first `needed`
      var heap = [];
      function up(i) { while (i > 0) { var p = (i - 1) >> 1; if (before(heap[p], heap[i]) < 0) { var t = heap[p]; heap[p] = heap[i]; heap[i] = t; i = p; } else { break; } } }
      function down(i) {
        for (;;) {
          var l = 2 * i + 1, r = l + 1, m = i;
          if (l < heap.length && before(heap[l], heap[m]) > 0) { m = l; }
          if (r < heap.length && before(heap[r], heap[m]) > 0) { m = r; }
          if (m === i) { break; }
          var t = heap[m]; heap[m] = heap[i]; heap[i] = t; i = m;
        }
      }
      present.forEach(function (k) {
        if (heap.length < needed) { heap.push(k); up(heap.length - 1); }
        else if (before(k, heap[0]) < 0) { heap[0] = k; down(0); }
      });
      top = heap.sort(before);
      var chosen = {};
      top.forEach(function (k) { chosen[k] = 1; });
      present.forEach(function (k) { if (!chosen[k]) { top.push(k); } });  // the rest after, unordered: never shown before a later page asks
    } else {
      top = present.sort(before);
    }
    return top.map(function (k) { return list[k]; }).concat(missing.sort(function (a, b) { return C.rows[a] - C.rows[b]; }));
  }

  // the scatter
  var scatter = el("scatter"), context = scatter.getContext("2d"), frame = null, dragging = null;
  function bounds() {
    var b = [Infinity, Infinity, -Infinity, -Infinity];
    for (var j = 0; j < P.x.length; j++) {
      var x = P.x[j], y = P.y[j];
      if (x !== x) { continue; }
      if (x < b[0]) { b[0] = x; } if (y < b[1]) { b[1] = y; } if (x > b[2]) { b[2] = x; } if (y > b[3]) { b[3] = y; }
    }
    if (!isFinite(b[0])) { return null; }
    var padX = (b[2] - b[0]) * 0.05 || 1, padY = (b[3] - b[1]) * 0.05 || 1;
    return [b[0] - padX, b[1] - padY, b[2] + padX, b[3] + padY];
  }
  function toPixel(x, y) { return [(x - frame[0]) / (frame[2] - frame[0]) * scatter.width, (1 - (y - frame[1]) / (frame[3] - frame[1])) * scatter.height]; }
  function toData(px, py) { return [frame[0] + px / scatter.width * (frame[2] - frame[0]), frame[1] + (1 - py / scatter.height) * (frame[3] - frame[1])]; }
  function hex(colour) { return [parseInt(colour.slice(1, 3), 16), parseInt(colour.slice(3, 5), 16), parseInt(colour.slice(5, 7), 16)]; }
  function drawScatter() {
    var sel = selection();
    context.clearRect(0, 0, scatter.width, scatter.height);
    context.fillStyle = "#fafafa"; context.fillRect(0, 0, scatter.width, scatter.height);
    frame = bounds();
    if (!frame) {
      context.fillStyle = "#555"; context.font = "14px sans-serif";
      context.fillText("These maps were not clustered (see the note on the right).", 12, 24);
      root.setAttribute("data-drawn", "0");
      return;
    }
    var chosen = new Uint8Array(P.x.length);
    shown.forEach(function (j) { chosen[j] = 1; });
    var layers = [[left, function () { return [240, 240, 240]; }], [filtered.filter(function (j) { return sel && !chosen[j]; }), function () { return [221, 221, 221]; }],
      [filtered.filter(function (j) { return !sel || chosen[j]; }), function (j) { return hex(rankColour(P.rank[j])); }]];
    var drawn = 0, dense = P.x.length > DENSE;
    if (dense) {  // by density: each pixel the colour of its last map, darker where more maps lie
      var w = scatter.width, h = scatter.height, image = context.getImageData(0, 0, w, h), counts = new Uint32Array(w * h), colours = new Uint8Array(3 * w * h);
      layers.forEach(function (layer) {
        layer[0].forEach(function (j) {
          if (P.x[j] !== P.x[j]) { return; }
          var p = toPixel(P.x[j], P.y[j]), at = Math.min(h - 1, Math.max(0, p[1] | 0)) * w + Math.min(w - 1, Math.max(0, p[0] | 0)), c = layer[1](j);
          counts[at]++; colours[3 * at] = c[0]; colours[3 * at + 1] = c[1]; colours[3 * at + 2] = c[2];
          if (layer === layers[2]) { drawn++; }
        });
      });
      for (var at = 0; at < w * h; at++) {
        if (!counts[at]) { continue; }
        var shade = Math.max(0.35, 1 - Math.log(counts[at]) / 6);
        image.data[4 * at] = colours[3 * at] * shade; image.data[4 * at + 1] = colours[3 * at + 1] * shade; image.data[4 * at + 2] = colours[3 * at + 2] * shade; image.data[4 * at + 3] = 255;
      }
      context.putImageData(image, 0, 0);
    } else {
      var dot = filtered.length > 5000 ? 3 : 5;  // small dots where there are many
      layers.forEach(function (layer) {
        layer[0].forEach(function (j) {
          if (P.x[j] !== P.x[j]) { return; }
          var p = toPixel(P.x[j], P.y[j]), c = layer[1](j);
          context.fillStyle = "rgb(" + c.join(",") + ")";
          context.fillRect(p[0] - dot / 2, p[1] - dot / 2, dot, dot);
          if (layer === layers[2]) { drawn++; }
        });
      });
    }
    if (sel && sel.box) { drawBox(toPixel(sel.box[0], sel.box[3]), toPixel(sel.box[2], sel.box[1])); }
    root.setAttribute("data-drawn", String(drawn));
  }
  function drawBox(a, b) {
    context.strokeStyle = "#000"; context.setLineDash([4, 3]);
    context.strokeRect(Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.abs(b[0] - a[0]), Math.abs(b[1] - a[1]));
    context.setLineDash([]);
  }
  function where(event) {
    var r = scatter.getBoundingClientRect();
    return [(event.clientX - r.left) * scatter.width / r.width, (event.clientY - r.top) * scatter.height / r.height];
  }
  scatter.addEventListener("mousedown", function (event) { if (frame) { dragging = { from: where(event), to: where(event) }; } });
  scatter.addEventListener("mousemove", function (event) {
    if (!dragging) { return; }
    dragging.to = where(event);
    drawScatter(); drawBox(dragging.from, dragging.to);
  });
  window.addEventListener("mouseup", function () {
    if (!dragging) { return; }
    var a = dragging.from, b = dragging.to;
    dragging = null;
    if (Math.abs(a[0] - b[0]) + Math.abs(a[1] - b[1]) < 4) { clickPoint(a); return; }
    var p = toData(Math.min(a[0], b[0]), Math.max(a[1], b[1])), q = toData(Math.max(a[0], b[0]), Math.min(a[1], b[1]));
    change({ sel: "box:" + [p[0], p[1], q[0], q[1]].map(function (v) { return v.toPrecision(4); }).join(","), page: 0 });
  });
  function clickPoint(at) {  // a click on a point selects its cluster
    var best = -1, distance = 64;
    filtered.forEach(function (j) {
      if (P.x[j] !== P.x[j] || P.cluster[j] < 0) { return; }
      var p = toPixel(P.x[j], P.y[j]), d = (p[0] - at[0]) * (p[0] - at[0]) + (p[1] - at[1]) * (p[1] - at[1]);
      if (d < distance) { distance = d; best = j; }
    });
    change({ sel: best >= 0 ? "cluster:" + P.cluster[best] : "", page: 0 });
  }

  // a map drawn from its bytes: a canvas of the grid's size, scaled by the style
  function drawMap(canvas, bytes, offset, grid) {
    canvas.width = grid[1]; canvas.height = grid[0];
    var image = canvas.getContext("2d").createImageData(grid[1], grid[0]);
    for (var k = 0; k < grid[0] * grid[1]; k++) {
      var colour = D.colours[bytes[offset + k]];
      image.data[4 * k] = colour[0]; image.data[4 * k + 1] = colour[1]; image.data[4 * k + 2] = colour[2]; image.data[4 * k + 3] = 255;
    }
    canvas.getContext("2d").putImageData(image, 0, 0);
  }
  function mapCanvas(grid, title) {
    var canvas = document.createElement("canvas");
    canvas.className = "cg-map";
    canvas.style.width = CARD + "px"; canvas.style.height = Math.round(CARD * grid[0] / grid[1]) + "px";
    canvas.title = title;
    return canvas;
  }
  function thumb(row) {
    var box = document.createElement("div");
    box.className = "cg-thumb";
    if (!D.thumbs) { box.textContent = "no thumbnail"; box.title = "explore --images FOLDER shows the images"; return box; }
    var per = Math.round(Math.sqrt(D.thumbs.sheet)), at = row % D.thumbs.sheet, sheet = Math.floor(row / D.thumbs.sheet);
    var name = String(sheet); while (name.length < 5) { name = "0" + name; }
    box.style.backgroundImage = "url(thumbs/" + name + ".jpg)";
    box.style.backgroundPosition = (-(at % per) * D.thumbs.side) + "px " + (-Math.floor(at / per) * D.thumbs.side) + "px";
    return box;
  }

  // the sidecar files of maps, loaded by script elements when a card needs them
  var chunks = {}, waiting = {};
  window.EXPLORE_CHUNK = function (number, data) {
    var decoded = { names: data.names };
    D.methods.forEach(function (m) {
      var text = atob(data[m]), bytes = new Uint8Array(text.length);
      for (var k = 0; k < text.length; k++) { bytes[k] = text.charCodeAt(k); }
      decoded[m] = bytes;
    });
    chunks[number] = decoded;
    (waiting[number] || []).forEach(function (draw) { draw(decoded); });
    delete waiting[number];
  };
  function withChunk(number, draw) {
    if (chunks[number]) { draw(chunks[number]); return; }
    if (!waiting[number]) {
      waiting[number] = [];
      var script = document.createElement("script"), name = String(number);
      while (name.length < 5) { name = "0" + name; }
      script.src = "explore-data/maps-" + name + ".js";
      script.onerror = function () { status.textContent = "explore-data/maps-" + name + ".js did not load."; status.className = "cg-status cg-error"; };
      document.head.appendChild(script);
    }
    waiting[number].push(draw);
  }

  function card(j) {
    var row = C.rows[j], which = classNumber(state.c);
    var box = document.createElement("div");
    box.className = "cg-card";
    box.setAttribute("data-row", String(row));
    var strip = document.createElement("div");
    strip.className = "cg-strip";
    var figure = document.createElement("figure");
    figure.appendChild(thumb(row));
    var caption = document.createElement("figcaption"); caption.textContent = "image"; figure.appendChild(caption);
    strip.appendChild(figure);
    var odd = C.odd && C.odd[j] >= 0 ? D.methods[C.odd[j]] : null;
    var canvases = D.methods.map(function (m) {
      var f = document.createElement("figure"), canvas = mapCanvas(D.grids[m], m), text = document.createElement("figcaption");
      text.textContent = m;
      if (odd === m) { text.className = "cg-odd"; text.title = m + " disagrees with the other methods on this image more than any other method does, by at least " + SCALE.odd_margin + " deviation"; }
      withGroup(m, which, function () {  // each method's frame: the colour of its cluster, once that method's places are loaded
        var rank = groupData[methodIndex(m) + ":" + which].rank[j];
        if (rank > 0) { canvas.style.outline = "3px solid " + rankColour(rank); }
      });
      f.appendChild(canvas); f.appendChild(text); strip.appendChild(f);
      return canvas;
    });
    box.appendChild(strip);
    var name = document.createElement("div"); name.className = "cg-name"; box.appendChild(name);
    [
      "label " + className(C.label[j]) + ", predicted " + className(C.predicted[j]) + (C.label[j] >= 0 ? (C.label[j] === C.predicted[j] ? " (correct)" : " (wrong)") : ""),
      "score " + number(C.score[j]) + ", margin " + number(value(C.margin[j])) + (C.disagreement ? ", disagreement " + disagreementText(C.disagreement[j]) : "") +
        ", " + state.m + " cluster " + (P.rank[j] > 0 ? "#" + P.rank[j] : P.cluster[j] === -1 ? "flat" : "–")
    ].forEach(function (text) { var line = document.createElement("div"); line.textContent = text; box.appendChild(line); });
    withChunk(Math.floor(row / D.chunk), function (data) {
      var at = row % D.chunk;
      name.textContent = data.names[at]; name.title = data.names[at];
      D.methods.forEach(function (m, k) { var g = D.grids[m]; drawMap(canvases[k], data[m], at * g[0] * g[1], g); });
    });
    return box;
  }
  function drawCards() {
    var pages = Math.max(1, Math.ceil(shown.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    var cards = el("cards");
    cards.textContent = "";
    shown.slice(state.page * PAGE, (state.page + 1) * PAGE).forEach(function (row) { cards.appendChild(card(row)); });
    el("count").textContent = "(" + shown.length.toLocaleString() + " of the " + filtered.length.toLocaleString() + " the filters keep)";
    el("page").textContent = shown.length ? "cards " + (state.page * PAGE + 1) + "–" + Math.min(shown.length, (state.page + 1) * PAGE) + ", page " + (state.page + 1) + " of " + pages : "no card";
    el("prev").disabled = state.page === 0; el("next").disabled = state.page >= pages - 1;
  }

  // the chosen group's clusters and spectrum
  var eigen = el("eigen");
  function drawClusters() {
    var g = group(), list = el("clusters"), sel = selection();
    list.textContent = "";
    el("eigen-note").textContent = "";
    eigen.style.display = "none";  // drawn where the group was clustered
    if (!g) { list.textContent = "No maps of this method explain this class."; return; }
    if (!g.clusters) {
      list.textContent = "Not clustered: " + g.note + ".";
      el("eigen-note").textContent = "No spectrum: these maps were not clustered.";
      return;
    }
    g.clusters.forEach(function (c) {
      var box = document.createElement("div");
      box.className = "cg-cluster" + (c.flagged ? " cg-flagged" : "") + (sel && sel.cluster === c.cluster ? " cg-chosen" : "");
      box.setAttribute("data-cluster", String(c.cluster));
      box.tabIndex = 0;
      var head = document.createElement("div"), swatch = document.createElement("span");
      swatch.className = "cg-swatch"; swatch.style.background = rankColour(c.rank);
      head.appendChild(swatch);
      head.appendChild(document.createTextNode("#" + c.rank + ": " + c.size.toLocaleString() + " maps (" + percent(c.size / g.maps) + "), suspicion " + number(c.suspicion)));
      if (c.flagged) { var flag = document.createElement("span"); flag.className = "cg-flag"; flag.textContent = " — flagged" + (c.flagged_by === "transplant" ? " by the transplant" : c.confirmed ? ", confirmed by the transplant" : ""); head.appendChild(flag); }
      else if (c.suspected && c.flagged_by === "transplant") { head.appendChild(document.createTextNode(" — suspicious maps, not confirmed by the transplant")); }
      head.className = "cg-cluster-head";
      box.appendChild(head);
      var body = document.createElement("div"); body.className = "cg-cluster-body";
      var mean = mapCanvas(g.grid, "mean map of cluster #" + c.rank), flat = [].concat.apply([], c.mean_map);
      var top = Math.max.apply(null, flat) || 1;
      drawMap(mean, flat.map(function (v) { return Math.round(255 * Math.max(0, v) / top); }), 0, g.grid);
      var meanFigure = document.createElement("figure"), meanCaption = document.createElement("figcaption");
      meanCaption.textContent = "mean map"; meanFigure.appendChild(mean); meanFigure.appendChild(meanCaption);
      body.appendChild(meanFigure);
      var text = document.createElement("div");
      text.className = "cg-cluster-text";
      function purity(p) { return p ? percent(p.purity) + " " + className(p.majority) : "–"; }
      [c.reason, "labels: " + purity(c.labels) + "; predictions: " + purity(c.predictions) + "; correct " + percent(c.correct)].forEach(function (t) {
        var line = document.createElement("div"); line.textContent = t; text.appendChild(line);
      });
      var typical = document.createElement("div"); typical.className = "cg-typical";
      c.typical.slice(0, 6).forEach(function (t) {
        var row = t.row;
        if (row === null || row === undefined) { return; }
        var small = thumb(row); small.title = t.image; typical.appendChild(small);
      });
      if (D.thumbs) { text.appendChild(typical); }
      if (c.flagged || c.suspected || c.causal) { text.appendChild(nextSteps(g, c)); }
      body.appendChild(text);
      box.appendChild(body);
      function choose() { change({ sel: sel && sel.cluster === c.cluster ? "" : "cluster:" + c.cluster, page: 0 }); }
      box.addEventListener("click", choose);
      box.addEventListener("keydown", function (event) { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); choose(); } });
      list.appendChild(box);
    });
    drawEigen(g);
  }
  // for a flagged cluster: what to look at next, and where its rows are
  function nextSteps(g, c) {
    var box = document.createElement("div");
    box.className = "cg-next";
    function line(parts) {
      var div = document.createElement("div");
      parts.forEach(function (part) {
        if (typeof part === "string") { div.appendChild(document.createTextNode(part)); return; }
        var node = document.createElement(part.href ? "a" : "code");
        node.textContent = part.text;
        if (part.href) { node.href = part.href; }
        div.appendChild(node);
      });
      box.appendChild(div);
    }
    line(["What next: its " + c.size.toLocaleString() + " images are the cards below (click the cluster to select them)."]);
    if (IMAGES === "IMAGES") { line(["IMAGES below: the image folder the maps folder's job read (explore --images fills it in)."]); }
    if (c.causal) {
      var k = c.causal;
      line(["Causal check: masking its region (" + regionText(c) + ") on " + k.members + " of its images moves their score from " + number(k.score) + " to " +
        number(k.region) + "; as many random patches, to " + number(k.random) + (k.others ? "; on " + k.others + " of the class's other images, from " +
        number(k.others_score) + " to " + number(k.others_region) : "") + "."]);
    } else {
      line(["Causal check: ", { text: "captum-gmar explore " + D.maps + " --out " + OUT + " --images " + IMAGES + " --model " + MODEL }, " masks its region on its images."]);
    }
    if (c.transplant_rise !== null && c.transplant_rise !== undefined) {
      line(["Transplant: its region pasted on " + c.transplant.pasted + " images of other classes raises the class's score by " + signed(c.transplant_rise) +
        "; the same place cut from the class's other images, by " + (c.transplant_control === null ? "– (none to cut from)" : signed(c.transplant_control)) +
        "; the class's other clusters' images, each moved so that the most of its own map lies there, by " + (c.transplant_null === null || c.transplant_null === undefined ? "– (no other cluster)" : signed(c.transplant_null)) +
        ". A rise " + number(c.transplant.needed === null || c.transplant.needed === undefined ? D.confirms_by : c.transplant.needed) +
        " above both (" + D.confirms_by + ", or more where the null spreads at the cluster's size) confirms that the region carries the class by something the class's own object there does not: a rise the moved images match is the object itself."]);
    } else if (c.transplant && c.transplant.note) {
      line(["Transplant: none (" + c.transplant.note + ")."]);
    }
    var run = g.method + "-" + g.target + "-" + c.rank;
    line(["Which heads carry it, and the model without them: ", { text: "captum-gmar heads " + D.maps + " --model " + MODEL + " --cluster " + g.method + ":" + g.target + ":" + c.rank +
      " --images " + IMAGES + " --out " + OUT + "/heads/" + run }, " (run into this folder, its grid shows here)."]);
    if (c.confirmed) {
      line(["The shortcut removed, measured on labelled images of every class: ", { text: "captum-gmar repair " + D.maps +
        " --model " + MODEL + " --cluster " + g.method + ":" + g.target + ":" + c.rank + " --images " + IMAGES + " --data TRAIN --out repaired" }, "."]);
      line(BUNDLED.indexOf(D.model) >= 0
        ? ["TRAIN: labelled images of every class, one folder per class; for " + D.model + ": ", { text: "captum-gmar export-scenes TRAIN --split train --n 1000 --items 1" }, "."]
        : ["TRAIN: labelled images of every class, one folder per class (usually the training images), as explain FOLDER reads them."]);
    } else {
      line(["Repair: offered once the transplant confirms the cluster (" + (c.transplant_rise === null || c.transplant_rise === undefined
        ? "explore with --model runs it" : "its rise does not stand " + D.confirms_by + " above its control and its null") + "): a region that is not confirmed may be the class's own object."]);
    }
    if ((window.EXPLORE_HEADS || []).indexOf(run) >= 0) {  // a heads run in this folder (explore-data/heads.js lists them): its figure
      var grid = document.createElement("img");
      grid.className = "cg-heads"; grid.alt = "the heads of this cluster: the ablation effect beside each head score"; grid.src = "heads/" + run + "/heads.png";
      box.appendChild(grid);
    }
    line(["Its rows: ", { text: "clusters.csv", href: "clusters.csv" }, ", read with pandas: ",
      { text: "pandas.read_csv(\"clusters.csv\").query(\"method == '" + g.method + "' and target == " + g.target + " and rank == " + c.rank + "\")" }]);
    line(["Its figures: ", { text: "strategies.json", href: "strategies.json" }, " (this group's clusters), ", { text: "disagreement.csv", href: "disagreement.csv" }, "."]);
    return box;
  }
  function drawEigen(g) {
    eigen.style.display = "block";
    var ctx = eigen.getContext("2d"), values = g.eigenvalues, w = eigen.width, h = eigen.height, pad = 18;
    var top = Math.max.apply(null, values) || 1, step = (w - 2 * pad) / Math.max(1, values.length - 1);
    ctx.fillStyle = "#fafafa"; ctx.fillRect(0, 0, w, h);
    function at(k) { return [pad + k * step, h - pad - (h - 2 * pad) * values[k] / top]; }
    var k = g.clusters_found, a = at(k - 1), b = at(k);
    ctx.fillStyle = "rgba(214, 39, 40, 0.15)"; ctx.fillRect(a[0], b[1], b[0] - a[0], a[1] - b[1]);
    ctx.strokeStyle = "#333"; ctx.beginPath();
    values.forEach(function (v, j) { var p = at(j); if (j) { ctx.lineTo(p[0], p[1]); } else { ctx.moveTo(p[0], p[1]); } });
    ctx.stroke();
    ctx.fillStyle = "#333"; ctx.font = "10px sans-serif";
    values.forEach(function (v, j) { var p = at(j); ctx.fillRect(p[0] - 2, p[1] - 2, 4, 4); ctx.fillText(String(j + 1), p[0] - 3, h - 4); });
    el("eigen-note").textContent = "The smallest eigenvalues of the maps' graph Laplacian. The search starts at 2 clusters, so the gap after the 1st does not count, " +
      "however large; the largest gap after the 2nd or a later one is after the " + ordinal(g.clusters_found) + " (shaded) and gives " +
      g.clusters_found + " clusters" + (g.clusters_found !== g.n_clusters ? ", " + g.n_clusters + " once the clusters of one strategy at different strengths are merged." : ".");
  }

  // the overview of every group, and the verdict
  var showAll = false, OVERVIEW = 20;
  function drawOverview() {
    var flagged = ranked.filter(function (g) { return g.flagged > 0; }).length;
    var confirmed = ranked.filter(function (g) { return g.confirmed > 0; }).length;
    var F = D.features, noFeatures = !F ? 0 : F.groups.reduce(function (n, g) { return n + (g.flagged || 0); }, 0);
    var noPlace = F
      ? " A shortcut with no place (a tint, a texture or a blur over the whole image) shows in no region; each class's images were also clustered by the model's own features (layer " + F.layer + "), and " +
        (noFeatures ? noFeatures + (noFeatures === 1 ? " cluster there is" : " clusters there are") + " flagged as such a shortcut: see “In the model's features” below."
          : "none there is flagged as such a shortcut (below: what was tested). A shortcut that layer " + F.layer + "'s pooled patches do not separate could still be missed (explore --feature-layer reads another).")
      : " A shortcut with no place (a tint, a texture or a blur over the whole image) shows in no region: these checks cannot find it; explore --model clusters the model's features too.";
    el("verdict").textContent = D.flag_by_transplant
      ? (flagged
        ? flagged + " of the " + ranked.length + " method-and-class groups " + (flagged === 1 ? "has" : "have") + " a cluster flagged by the model itself: " + D.flag_by_transplant + ". Listed first; start with the first row."
        : "Nothing stands out: every cluster of the " + ranked.length + " method-and-class groups was pasted on other classes' images, and none rose " + D.confirms_by +
          " beyond both the same place cut from the class's other images and the class's other clusters moved there.") +
        " The suspicion of the maps orders the clusters; with the model it no longer flags them." + noPlace
      : (flagged
        ? flagged + " of the " + ranked.length + " method-and-class groups " + (flagged === 1 ? "has" : "have") + " a flagged cluster: its difference from the rest of its class lies on one region, of any size, nearly all of it there, and its maps keep the rest of the class's content, as a shortcut's do (" + D.flag_rule + "). " +
          (confirmed ? confirmed + " of them " + (confirmed === 1 ? "is" : "are") + " confirmed, listed first: the flagged cluster's region, pasted on other classes' images, raises the class's score by at least " + D.confirms_by + " more than the same place cut from the class's other images does. " : "") +
          "Start with the first row."
        : "Nothing stands out: no cluster of the " + ranked.length + " method-and-class groups reaches the flag (" + D.flag_rule + "). explore --model lets the model decide: it pastes every cluster's region.") +
        " " + D.calibration + " (docs/results.md, “Shortcuts of any shape”)." + noPlace;
    var body = el("overview").tBodies[0];
    body.textContent = "";
    ranked.slice(0, showAll ? ranked.length : OVERVIEW).forEach(function (g, k) {
      var c = g.clusters[0], tr = body.insertRow();
      if (g.method === state.m && String(g.target) === state.c) { tr.className = "cg-current"; }
      var causal = (c.causal ? number(c.causal.score) + ", " + number(c.causal.region) + ", " + number(c.causal.random) : "–") +
        (c.transplant_rise !== null && c.transplant_rise !== undefined ? "; " + signed(c.transplant_rise) + " (" + signed(c.transplant_control) +
          (c.transplant_null === null || c.transplant_null === undefined ? "" : ", " + signed(c.transplant_null)) + ")" : "");
      [String(k + 1), g.method, g.target + ": " + className(g.target), g.maps.toLocaleString(), String(g.n_clusters), String(g.flagged) + (g.confirmed ? ", " + g.confirmed + " confirmed" : ""), number(c.suspicion),
        c.size.toLocaleString() + " (" + percent(c.size / g.maps) + ")", regionText(c), c.confidence === null ? "–" : number(c.confidence), causal].forEach(function (text, column) {
        var td = tr.insertCell(); td.textContent = text;
        if ((column === 5 || column === 6) && g.flagged) { td.className = "cg-flag"; }
      });
      tr.addEventListener("click", function () { change({ m: g.method, c: String(g.target), sel: "cluster:" + c.cluster, page: 0 }); });
    });
    var more = el("more");
    more.style.display = ranked.length > OVERVIEW ? "" : "none";
    more.textContent = showAll ? "show the first " + OVERVIEW : "show all " + ranked.length + " groups";
  }
  el("more").addEventListener("click", function () { showAll = !showAll; drawOverview(); });

  // the strategies in the model's features (explore --model): one row per feature cluster, flagged first
  function drawFeatures() {
    var F = D.features;
    if (!F) { return; }
    el("features-box").hidden = false;
    el("features-note").textContent = "Each explained class's images, clustered by the mean of the patch tokens that layer " + F.layer +
      " (from 0) puts out, with the maps' clustering. A cluster is flagged where " + F.rule + ". A cluster that a map cluster isolates has a place: the maps' checks above judge it." +
      " Clusters of a class whose directions agree with a flagged one's are one shortcut the clustering split: they are joined, and their parts' sizes shown.";
    var body = el("features").tBodies[0];
    body.textContent = "";
    F.groups.forEach(function (g) {
      if (!g.clusters) {
        var tr = body.insertRow(), td = tr.insertCell();
        td.colSpan = 8; td.textContent = g.target + ": " + className(g.target) + ": not clustered (" + g.note + ")";
        return;
      }
      g.clusters.forEach(function (c) {
        var tr = body.insertRow(), d = c.direction;
        var pixels = ["tone curve", "filter"].filter(function (name) { return c[name]; }).map(function (name) {
          var p = c[name];
          return name + " " + signed(p.rise) + (p.screened ? " (below " + D.confirms_by + ": null not drawn)" : " (random images of the class: " + signed(p.random) + " ± " + p.random_spread.toFixed(3) + "; " + p.needed.toFixed(2) + " needed beyond)");
        });
        var by = c.confirmed_by.map(function (b) { return "its " + b; }).join(" and ");
        [g.target + ": " + className(g.target), String(c.cluster) + " (" + ordinal(c.rank) + ")", c.size.toLocaleString() + " of " + g.images.toLocaleString() + (c.parts && c.parts.length ? " (joined: " + c.parts.join(" + ") + ")" : ""),
          c.matched ? c.matched.method + "'s cluster " + c.matched.cluster + " (" + c.matched.f1.toFixed(2) + ")" + (c.no_place ? ": no place" : "") : "no maps",
          d ? signed(d.rise) + (d.screened ? " (below " + D.confirms_by + ": random directions not drawn)" : " (" + signed(d.random) + " ± " + d.random_spread.toFixed(3) + "; " + d.needed.toFixed(2) + " needed beyond)") : "– (no other class)",
          pixels.length ? pixels.join("; ") : "–",
          c.flagged ? "flagged: a shortcut with no place" + (by ? " (confirmed by " + by + ")" : "") : (by ? by + " carries the class, but a map cluster places it" : "not flagged")].forEach(function (text, column) {
          var td = tr.insertCell(); td.textContent = text;
          if (column === 6 && c.flagged) { td.className = "cg-flag"; }
        });
        var shown = document.createElement("div");
        shown.className = "cg-thumb-row";
        c.typical.slice(0, 4).forEach(function (t) { shown.appendChild(thumb(t.row)); });
        tr.insertCell().appendChild(shown);
        tr.title = c.reason;
      });
    });
    // a repair for each shortcut with no place: put on in pixels (a tone curve, a filter, a difference, else a texture) by the heads, a projection or a fine-tune
    var next = el("features-next");
    next.textContent = "";
    F.groups.forEach(function (g) {
      (g.clusters || []).filter(function (c) { return c.flagged; }).forEach(function (c) {
        var div = document.createElement("div"), code = document.createElement("code");
        code.textContent = "captum-gmar repair " + D.maps + " --model " + MODEL + " --cluster features:" + g.target + ":" + c.rank +
          " --feature-layer " + F.layer + " --images " + IMAGES + " --data TRAIN --out repaired";
        div.appendChild(document.createTextNode("The shortcut of " + className(g.target) + "'s feature cluster " + c.cluster + " removed (put on through its images' pixels, " +
          "by their tone curve, their filter or their mean difference from the rest of the class, one drawn per image of those the model follows, else by a texture drawn afresh; by the heads, a projection out of the classifier or a counterfactual fine-tune, the first that removes nine tenths of it within the budget, against the texture the one that leaves least of it), measured on labelled images of every class (TRAIN: one folder per class" +
          (BUNDLED.indexOf(D.model) >= 0 ? "; for " + D.model + ": captum-gmar export-scenes TRAIN --split train --n 1000 --items 1" : "") + "): "));
        div.appendChild(code);
        next.appendChild(div);
      });
    });
    next.hidden = !next.childNodes.length;
  }
  drawFeatures();

  function render() {
    var number = classNumber(state.c);
    if (number < 0) { return; }
    if (!classData[number] || !groupData[methodIndex(state.m) + ":" + number]) {  // its files first, then the view
      status.textContent = "Loading the rows of class " + className(Number(state.c)) + "…";
      root.removeAttribute("data-view");
      withClass(number, function () { withGroup(state.m, number, render); });
      return;
    }
    C = classData[number];
    P = groupData[methodIndex(state.m) + ":" + number];
    showControls();
    drawOverview();
    compute();
    drawScatter();
    drawClusters();
    drawCards();
    writeHash();
    var g = group();
    el("cards-caption").textContent = "Each card: the image, then each method's map (inferno: dark is none of its mass, bright its most), framed in the colour of its cluster among that method's maps" +
      (D.disagreement_scale ? "; in red the method that disagrees with the others more than any other does, by at least " + SCALE.odd_margin + " deviation" : "") +
      "; the image's label, prediction, score and margin" + (D.disagreement_scale ? ", and how far its methods disagree, in robust deviations from the typical image (" + SCALE.unusual + " or more: unusual)" : "") + ".";
    status.textContent = state.m + ", explained class " + className(Number(state.c)) + ": " + filtered.length.toLocaleString() + (filtered.length === 1 ? " map" : " maps") + " kept by the filters" +
      (g && g.clusters ? ", " + g.n_clusters + " clusters" : "") + (state.sel ? "; selection: " + describe(selection(), g) : "") + ".";
    status.className = "cg-status";
    if (!root.hasAttribute("data-ready-ms")) { root.setAttribute("data-ready-ms", performance.now().toFixed(0)); }
    root.setAttribute("data-view", state.m + ":" + state.c);  // the view drawn (a class's files load first)
  }
  function describe(sel, g) {
    if (!sel) { return "none"; }
    if (sel.box) { return "a box of " + shown.length.toLocaleString() + " maps"; }
    var found = g && g.clusters ? g.clusters.filter(function (c) { return c.cluster === sel.cluster; })[0] : null;
    return found ? "cluster #" + found.rank : "cluster " + sel.cluster;
  }
  function change(values) {
    Object.keys(values).forEach(function (key) { state[key] = values[key]; });
    render();
  }
  select.method.addEventListener("change", function () { change({ m: select.method.value, sel: "", page: 0 }); });
  select["class"].addEventListener("change", function () { change({ c: select["class"].value, sel: "", page: 0 }); });
  ["label", "predicted", "correct", "sort", "order"].forEach(function (key) {
    select[key].addEventListener("change", function () { var v = {}; v[key] = select[key].value; v.page = 0; change(v); });
  });
  el("clear").addEventListener("click", function () { change({ sel: "", page: 0 }); });
  el("prev").addEventListener("click", function () { change({ page: state.page - 1 }); });
  el("next").addEventListener("click", function () { change({ page: state.page + 1 }); });
  window.addEventListener("hashchange", function () { if (location.hash !== written) { readHash(); render(); } });
  readHash();
  render();
})();

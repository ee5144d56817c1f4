(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  function $(id) { return document.getElementById(id); }
  function each(list, fn) { Array.prototype.forEach.call(list, fn); }
  function key(td) { var v = td.getAttribute("data-v"); return v === null ? td.textContent.trim() : v; }
  // sortable tables: a click on a header sorts by that column (again: reverses); missing values last
  function sortBy(th) {
    var row = th.parentNode, idx = Array.prototype.indexOf.call(row.children, th), body = th.closest("table").tBodies[0];
    var asc = th.getAttribute("aria-sort") !== "ascending";
    each(row.children, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[idx]), y = key(b.cells[idx]);
      if (x === "" || y === "") { return (x === "") - (y === ""); }
      var nx = Number(x), ny = Number(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  each(document.querySelectorAll("table.sortable thead th"), function (th) {
    th.addEventListener("click", function () { sortBy(th); });
  });
  // text filters over a table's first column
  each(document.querySelectorAll("input[data-filter]"), function (input) {
    input.addEventListener("input", function () {
      var q = input.value.toLowerCase();
      each($(input.getAttribute("data-filter")).tBodies[0].rows, function (r) {
        r.style.display = r.cells[0].textContent.toLowerCase().indexOf(q) >= 0 ? "" : "none";
      });
    });
  });
  each(document.querySelectorAll("input[data-toggle-sub]"), function (box) {
    box.addEventListener("change", function () { $(box.getAttribute("data-toggle-sub")).classList.toggle("hide-sub", !box.checked); });
  });
  var classFilter = $("class-filter");
  if (classFilter) {
    classFilter.addEventListener("change", function () {
      each($("map-grid").tBodies[0].rows, function (r) {
        r.style.display = (!classFilter.value || r.getAttribute("data-class") === classFilter.value) ? "" : "none";
      });
    });
  }
  function figure(src, caption) {
    var f = document.createElement("figure"), img = document.createElement("img"), c = document.createElement("figcaption");
    img.src = src; img.alt = caption; c.textContent = caption; f.appendChild(img); f.appendChild(c); return f;
  }
  // worst images of the chosen explainer and metric
  var we = $("worst-explainer"), wm = $("worst-metric");
  function showWorst() {
    var strip = $("worst-strip"), rows = ((data.worst[we.value] || {})[wm.value]) || [];
    strip.textContent = "";
    rows.forEach(function (rv) {
      var src = data.uris[we.value + "|" + rv[0]] || data.images[rv[0]];
      strip.appendChild(figure(src, data.ids[rv[0]] + ": " + rv[1]));
    });
    if (!rows.length) { strip.textContent = "no scored images with a saved map"; }
  }
  if (we && wm) { we.addEventListener("change", showWorst); wm.addEventListener("change", showWorst); showWorst(); }
  // per-image curves of the chosen image, one polyline per explainer
  var ci = $("curve-image"), ck = $("curve-kind"), NS = "http://www.w3.org/2000/svg";
  var palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  function showCurves() {
    var svg = $("curve-plot"), legend = $("curve-legend"), per = data.curves[ck.value] || {}, W = 400, H = 200;
    svg.textContent = ""; legend.textContent = "";
    var names = Object.keys(per).filter(function (e) { return per[e][ci.value]; });
    var lo = 0, hi = 1;
    names.forEach(function (e) { per[e][ci.value].forEach(function (v) { lo = Math.min(lo, v); hi = Math.max(hi, v); }); });
    names.forEach(function (e, i) {
      var c = per[e][ci.value], line = document.createElementNS(NS, "polyline");
      line.setAttribute("points", c.map(function (v, t) {
        return (t / (c.length - 1) * W).toFixed(1) + "," + (H - (v - lo) / (hi - lo) * H).toFixed(1);
      }).join(" "));
      line.setAttribute("fill", "none"); line.setAttribute("stroke", palette[i % 10]);
      line.setAttribute("stroke-dasharray", ["", "5,3", "2,2"][Math.floor(i / 10) % 3]);
      svg.appendChild(line);
      var item = document.createElement("span");
      item.style.color = palette[i % 10]; item.textContent = e + "  ";
      legend.appendChild(item);
    });
  }
  if (ci && ck) { ci.addEventListener("change", showCurves); ck.addEventListener("change", showCurves); showCurves(); }
}());

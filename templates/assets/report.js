// Click a screenshot to see it large. Without JavaScript the link opens the image itself.
document.addEventListener("click", function (event) {
  var link = event.target.closest("a.frame");
  var viewer = document.getElementById("viewer");
  if (!link || !viewer || typeof viewer.showModal !== "function") return;
  event.preventDefault();
  viewer.querySelector("img").src = link.getAttribute("href");
  var img = link.querySelector("img");
  viewer.querySelector("img").alt = img ? img.alt : "";
  viewer.querySelector("p").textContent = img ? img.alt : "";
  viewer.showModal();
});

// The grid and the boot table sort by a column when its header is clicked (again: the other way).
document.querySelectorAll("table.grid thead th").forEach(function (th) {
  var column = th.cellIndex;
  th.style.cursor = "pointer";
  th.title = "sort by this column";
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0], rows = Array.from(body.rows);
    var down = th.getAttribute("aria-sort") !== "ascending";
    th.closest("tr").querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", down ? "ascending" : "descending");
    var key = function (row) { return (row.cells[column] || {}).textContent || ""; };
    rows.sort(function (a, b) { return key(a).localeCompare(key(b), undefined, { numeric: true }) * (down ? 1 : -1); });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});

// A failed cell's console opens at its first broken line, not at line 1.
document.querySelectorAll(".console[data-first-hit]").forEach(function (box) {
  var line = document.getElementById(box.getAttribute("data-first-hit"));
  if (!line) return;
  var below = line.getBoundingClientRect().top - box.getBoundingClientRect().top;
  if (below > box.clientHeight / 2) box.scrollTop += below - box.clientHeight / 3;
});

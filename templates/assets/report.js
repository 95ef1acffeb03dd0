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

// A failed cell's console opens at its first broken line, not at line 1.
document.querySelectorAll(".console[data-first-hit]").forEach(function (box) {
  var line = document.getElementById(box.getAttribute("data-first-hit"));
  if (!line) return;
  var below = line.getBoundingClientRect().top - box.getBoundingClientRect().top;
  if (below > box.clientHeight / 2) box.scrollTop += below - box.clientHeight / 3;
});

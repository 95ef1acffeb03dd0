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
  if (line) box.scrollTop = Math.max(0, line.offsetTop - box.clientHeight / 3);
});

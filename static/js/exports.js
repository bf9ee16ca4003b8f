// The exports page's progress bars: each export still queued or running asks its progress
// endpoint once a second and shows the rows written, then the download link when done.
"use strict";

(function () {
  if (!window.fetch) {
    return;
  }
  var INTERVAL_MS = 1000;

  function show(row, progress) {
    var bar = row.querySelector("progress");
    var status = row.querySelector("[data-export-status]");
    var file = row.querySelector("[data-export-file]");
    bar.value = progress.percent;
    bar.textContent = progress.percent + "%";
    status.textContent = progress.status_label + " · " + progress.rows_written + " / " + progress.rows_total + " rows" +
      (progress.error ? " · " + progress.error : "");
    if (progress.download_url) {
      var link = document.createElement("a");
      link.href = progress.download_url;
      link.setAttribute("download", "");
      link.textContent = progress.file_name;
      file.replaceChildren(link);
    }
  }

  function poll(row) {
    fetch(row.getAttribute("data-progress-url"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error(String(response.status));
        }
        return response.json();
      })
      .then(function (progress) {
        show(row, progress);
        if (progress.status === "queued" || progress.status === "running") {
          window.setTimeout(function () { poll(row); }, INTERVAL_MS);
        }
      })
      .catch(function () { /* the session ended or the server is away: the page reload says which */ });
  }

  document.querySelectorAll("tr[data-progress-url]").forEach(poll);
})();

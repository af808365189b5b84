// jobfleet console: live updates from the server's event stream (/ui/live). No framework,
// nothing from another host; every value is set as text, never as HTML.
(function () {
  "use strict";
  var body = document.body;
  var kind = body.dataset.live;
  if (!kind || !window.EventSource) { return; }
  var prefix = body.dataset.prefix || "/ui";
  var TERMINAL = { succeeded: 1, cancelled: 1, dead: 1 };

  function el(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    for (var name in attrs || {}) { node.setAttribute(name, attrs[name]); }
    return node;
  }

  function percent(fraction) { return Math.round(100 * (fraction || 0)) + " %"; }

  function setProgress(cell, progress) {
    if (!cell) { return; }
    var bar = cell.querySelector("progress");
    var text = cell.querySelector("[data-field=progress-text]");
    if (!progress) { return; }
    if (bar) { bar.hidden = false; bar.value = progress.fraction || 0; bar.textContent = percent(progress.fraction); }
    if (text) { text.textContent = percent(progress.fraction) + (progress.message ? " " + progress.message : ""); }
  }

  function updateCounts(snap) {
    document.querySelectorAll("[data-count]").forEach(function (cell) {
      var n = snap.counts[cell.dataset.count];
      if (n !== undefined) { cell.textContent = n; }
    });
    document.querySelectorAll("[data-queue-count]").forEach(function (cell) {
      var parts = cell.dataset.queueCount.split("/");
      var queue = snap.queues[parts[0]];
      if (queue) { cell.textContent = queue[parts[1]]; }
    });
  }

  function updateJobs(snap) {
    var byId = {};
    snap.jobs.forEach(function (job) { byId[job.id] = job; });
    document.querySelectorAll("[data-job]").forEach(function (row) {
      var job = byId[row.dataset.job];
      if (!job) { return; }
      var state = row.querySelector("[data-field=state]");
      if (state) { state.textContent = job.state; }
      setProgress(row.querySelector("[data-field=progress]"), job.progress);
      if (kind === "job" && row.dataset.state !== job.state &&
          Date.parse(snap.at) > Date.parse(row.dataset.rendered)) {
        // A new state (read after this page was) brings new buttons, attempts and a result:
        // show the page anew.
        window.location.reload();
      }
    });
    return byId;
  }

  function matches(job) {
    var f = body.dataset;
    return (!f.filterState || job.state === f.filterState) && (!f.filterType || job.type === f.filterType) &&
      (!f.filterQueue || job.queue === f.filterQueue) && (!f.filterNode || job.node === f.filterNode);
  }

  function addNewJobs(snap) {
    var rows = document.getElementById("job-rows");
    if (!rows || !body.dataset.first) { return; }
    var first = rows.querySelector("[data-job]");
    var top = first ? Number(first.dataset.job) : 0;
    snap.jobs.filter(function (j) { return j.id > top && matches(j); })
      .sort(function (a, b) { return a.id - b.id; })
      .forEach(function (job) {
        var tr = el("tr", null, { "data-job": job.id });
        var link = el("a", job.id, { href: prefix + "/jobs/" + job.id });
        var idCell = el("td"); idCell.appendChild(link); tr.appendChild(idCell);
        tr.appendChild(el("td", job.type));
        tr.appendChild(el("td", job.queue));
        tr.appendChild(el("td", job.state, { "data-field": "state" }));
        tr.appendChild(el("td", job.attempt + " / " + job.max_attempts));
        var progress = el("td", null, { "data-field": "progress" });
        var bar = el("progress", null, { max: "1", value: "0" }); bar.hidden = true;
        progress.appendChild(bar); progress.appendChild(document.createTextNode(" "));
        progress.appendChild(el("span", "", { "data-field": "progress-text" }));
        tr.appendChild(progress);
        setProgress(progress, job.progress);
        tr.appendChild(el("td", job.node || ""));
        tr.appendChild(el("td", (job.created_at || "").slice(0, 19).replace("T", " ")));
        rows.insertBefore(tr, rows.firstChild);
        var none = document.getElementById("no-jobs");
        if (none) { none.remove(); }
      });
  }

  function updateNodes(snap) {
    var rows = document.getElementById("node-rows");
    if (!rows) { return; }
    rows.textContent = "";
    if (!snap.nodes.length) {
      var empty = el("tr"); empty.appendChild(el("td", "No live node.", { colspan: "4" })); rows.appendChild(empty);
    }
    snap.nodes.forEach(function (node) {
      var tr = el("tr");
      tr.appendChild(el("th", node.name, { scope: "row" }));
      tr.appendChild(el("td", node.busy + " / " + node.workers));
      var jobs = el("td");
      node.jobs.forEach(function (id) {
        jobs.appendChild(el("a", id, { href: prefix + "/jobs/" + id }));
        jobs.appendChild(document.createTextNode(" "));
      });
      tr.appendChild(jobs);
      tr.appendChild(el("td", node.heartbeat_age + " s ago"));
      rows.appendChild(tr);
    });
  }

  function updateThroughput(snap) {
    var list = document.getElementById("throughput-list");
    if (!list) { return; }
    var max = Math.max.apply(null, [1].concat(snap.throughput.map(function (n) { return n || 0; })));
    list.textContent = "";
    snap.throughput.forEach(function (n) {
      var li = el("li");
      li.appendChild(el("meter", null, { min: "0", max: String(max), value: String(n || 0) }));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("span", n === null ? "–" : n));
      list.appendChild(li);
    });
  }

  var url = prefix + "/live" + (body.dataset.watch ? "?watch=" + encodeURIComponent(body.dataset.watch) : "");
  var source = new EventSource(url);
  source.addEventListener("snapshot", function (event) {
    var snap = JSON.parse(event.data);
    updateCounts(snap);
    updateJobs(snap);
    addNewJobs(snap);
    updateNodes(snap);
    updateThroughput(snap);
    body.dataset.updated = snap.at;
  });
})();

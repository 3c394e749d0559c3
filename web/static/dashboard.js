// The dashboard's charts (Apache ECharts, served from node_modules). The figures come embedded in the
// page as JSON (#dashboard-data); every chart also has its numbers in a table on the page.
(function () {
  "use strict";

  var source = document.getElementById("dashboard-data");
  if (!source || typeof echarts === "undefined") { return; }
  var data = JSON.parse(source.textContent);
  var charts = [];
  var FONT = getComputedStyle(document.body).fontFamily;
  var COLOURS = ["#1f5fbf", "#1a7f37", "#c8161d", "#b7791f", "#7b4fb5", "#0f8a8a"];
  var narrow = window.matchMedia("(max-width: 600px)");

  function chart(id, option) {
    var node = document.getElementById(id);
    if (!node) { return; }
    var c = echarts.init(node, null, { renderer: "canvas" });
    c.setOption(Object.assign({ color: COLOURS, textStyle: { fontFamily: FONT }, animation: false }, option));
    charts.push(c);
  }

  // ECharts draws a tooltip formatter's string as HTML: every text a user typed goes through this.
  var esc = echarts.format.encodeHTML;

  function pct(v) { return v === null || v === undefined ? null : Math.round(v * 1000) / 10; }
  function short(text, n) { return text.length > n ? text.slice(0, n) + "…" : text; }

  function draw() {
  charts.forEach(function (c) { c.dispose(); });
  charts = [];

  // Enquiries per day, stacked by kind, with the instant answers as a line.
  var daily = data.daily;
  var kinds = Object.keys(daily.kinds);
  chart("chart-daily", {
    tooltip: { trigger: "axis" },
    legend: { top: 0, type: "scroll" },
    grid: { left: 36, right: 12, top: 36, bottom: 28, containLabel: true },
    xAxis: { type: "category", data: daily.days.map(function (d) { return d.slice(5); }) },
    yAxis: { type: "value", minInterval: 1 },
    series: kinds.map(function (k) {
      return { name: daily.kind_labels[k], type: "bar", stack: "kind", data: daily.kinds[k], barMaxWidth: 22 };
    }).concat([{ name: "即时答复", type: "line", data: daily.instant, symbolSize: 5, color: "#0f8a8a" }])
  });

  // On-time and satisfaction rates by department (horizontal bars read well on phones).
  var depts = data.departments.slice().reverse();
  chart("chart-departments", {
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, valueFormatter: function (v) { return v === null ? "—" : v + "%"; } },
    legend: { top: 0 },
    grid: { left: 8, right: 24, top: 30, bottom: 8, containLabel: true },
    xAxis: { type: "value", max: 100, axisLabel: { formatter: "{value}%" } },
    yAxis: { type: "category", data: depts.map(function (d) { return short(d.name, narrow.matches ? 6 : 12); }) },
    series: [
      { name: "按时办结率", type: "bar", data: depts.map(function (d) { return pct(d.on_time_rate); }), color: "#1f5fbf" },
      { name: "满意率", type: "bar", data: depts.map(function (d) { return pct(d.satisfaction_rate); }), color: "#1a7f37" }
    ]
  });

  // Hot topics by size (the chart grows with the number of topics).
  var topics = data.topics.slice().reverse();
  var topicNode = document.getElementById("chart-topics");
  if (topicNode) { topicNode.style.height = Math.max(140, 50 + 34 * topics.length) + "px"; }
  chart("chart-topics", {
    tooltip: { trigger: "item", formatter: function (p) { return esc(topics[p.dataIndex].title) + "<br>" + esc(String(p.value)) + " 件"; } },
    grid: { left: 8, right: 24, top: 8, bottom: 8, containLabel: true },
    xAxis: { type: "value", minInterval: 1 },
    yAxis: { type: "category", data: topics.map(function (t) { return short(t.title, narrow.matches ? 8 : 14); }) },
    series: [{ name: "件数", type: "bar", data: topics.map(function (t) { return t.count; }), color: "#c8161d", barMaxWidth: 18 }]
  });

  // The push funnel of one policy, in distinct firms: one bar per stage, top to bottom, with its count.
  if (data.push && data.push.funnel) {
    var stages = data.push.funnel.stages;
    chart("chart-funnel", {
      tooltip: { trigger: "item", formatter: function (p) {
        var s = stages[p.dataIndex];
        return esc(s.label) + "：" + s.enterprises + " 家" + (s.rate === null ? "" : "（推送企业的 " + pct(s.rate) + "%）");
      } },
      grid: { left: 8, right: 48, top: 8, bottom: 8, containLabel: true },
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", inverse: true, data: stages.map(function (s) { return s.label; }) },
      series: [{
        name: "企业数", type: "bar", barMaxWidth: 26, label: { show: true, position: "right", formatter: "{c} 家" },
        data: stages.map(function (s, i) { return { value: s.enterprises, itemStyle: { color: COLOURS[i % COLOURS.length] } }; })
      }]
    });
  }

  // Policy coverage: eligible and likely firms per policy.
  if (data.coverage && data.coverage.policies.length) {
    var rows = data.coverage.policies.slice().reverse();
    chart("chart-coverage", {
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      legend: { top: 0 },
      grid: { left: 8, right: 24, top: 30, bottom: 8, containLabel: true },
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", data: rows.map(function (r) { return short(r.title, narrow.matches ? 8 : 18); }) },
      series: [
        { name: "符合", type: "bar", stack: "firms", data: rows.map(function (r) { return r.eligible; }), color: "#1a7f37" },
        { name: "可能符合", type: "bar", stack: "firms", data: rows.map(function (r) { return r.likely; }), color: "#b7791f" }
      ]
    });
  }

  // Applications and payouts: per department, the funnel from recommendation to payout, amounts per policy.
  if (data.applications) {
    var ap = data.applications;
    var adepts = ap.departments.slice(0, 12).reverse();
    chart("chart-app-departments", {
      tooltip: { trigger: "item", formatter: function (p) {
        var d = adepts[p.dataIndex];
        return esc(d.department_name) + "<br>申报 " + d.applications + " 件 · 兑现 " + d.paid + " 笔<br>兑现金额 " +
          esc(String(d.amount_paid)) + " 万元" + (d.approval_rate === null ? "" : "<br>通过率 " + pct(d.approval_rate) + "%");
      } },
      legend: { top: 0 },
      grid: { left: 8, right: 24, top: 30, bottom: 8, containLabel: true },
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", data: adepts.map(function (d) { return short(d.department_name, narrow.matches ? 6 : 12); }) },
      series: [
        { name: "申报", type: "bar", data: adepts.map(function (d) { return d.applications; }), color: "#1f5fbf" },
        { name: "兑现", type: "bar", data: adepts.map(function (d) { return d.paid; }), color: "#1a7f37" }
      ]
    });
    var steps = ap.funnel;
    chart("chart-app-funnel", {
      tooltip: { trigger: "item", formatter: function (p) {
        var s = steps[p.dataIndex];
        return esc(s.label) + "：" + s.count + (s.rate === null ? "" : "（推荐的 " + pct(s.rate) + "%）");
      } },
      grid: { left: 8, right: 56, top: 8, bottom: 8, containLabel: true },
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", inverse: true, data: steps.map(function (s) { return s.label; }) },
      series: [{
        name: "数量", type: "bar", barMaxWidth: 26, label: { show: true, position: "right" },
        data: steps.map(function (s, i) { return { value: s.count, itemStyle: { color: COLOURS[i % COLOURS.length] } }; })
      }]
    });
    var paidPolicies = ap.policies.filter(function (p) { return p.amount_paid > 0; }).slice(0, 15).reverse();
    chart("chart-app-policies", {
      tooltip: { trigger: "item", formatter: function (p) {
        var r = paidPolicies[p.dataIndex];
        return esc(r.title) + "<br>兑现 " + r.paid + " 笔，" + esc(String(r.amount_paid)) + " 万元" +
          (r.median_days_to_payout === null ? "" : "<br>发布至兑现中位 " + r.median_days_to_payout + " 天");
      } },
      grid: { left: 8, right: 24, top: 8, bottom: 8, containLabel: true },
      xAxis: { type: "value", axisLabel: { formatter: "{value} 万" } },
      yAxis: { type: "category", data: paidPolicies.map(function (r) { return short(r.title, narrow.matches ? 8 : 18); }) },
      series: [{ name: "兑现金额", type: "bar", data: paidPolicies.map(function (r) { return r.amount_paid; }), color: "#1a7f37", barMaxWidth: 18 }]
    });
  }

  }

  draw();
  // Labels are shortened on phones: redraw when the width crosses the breakpoint (e.g. rotating).
  if (narrow.addEventListener) { narrow.addEventListener("change", draw); }
  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(function () { charts.forEach(function (c) { c.resize(); }); }, 100);
  });
  document.documentElement.dataset.charts = String(charts.length);
})();

#include "chart_page.hpp"

namespace analytics {

namespace {

// The page: headline figures as text (ids events-total, events-hour, sessions-active, dau-today,
// session-length), and three charts drawn by Chart.js on category axes (there is no date
// adapter in Debian's package). It refreshes every 5 seconds.
constexpr const char* kPage = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>nkhost analytics</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
  .figures { display: flex; flex-wrap: wrap; gap: 2em; margin: 1em 0; }
  .figure b { display: block; font-size: 1.8em; }
  .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 2em; }
  #status { color: #666; }
</style>
</head>
<body>
<h1>nkhost analytics</h1>
<p id="status">Loading…</p>
<div class="figures">
  <div class="figure">Events, total<b id="events-total">–</b></div>
  <div class="figure">Events, last hour<b id="events-hour">–</b></div>
  <div class="figure">Sessions active<b id="sessions-active">–</b></div>
  <div class="figure">Daily active users, today<b id="dau-today">–</b></div>
  <div class="figure">Session length p50 / p95 / max<b id="session-length">–</b></div>
</div>
<div class="charts">
  <div><h2>Events per minute, last hour</h2><canvas id="rate"></canvas></div>
  <div><h2>Sessions active (since this page opened)</h2><canvas id="sessions"></canvas></div>
  <div><h2>Top events</h2><canvas id="top"></canvas></div>
  <div><h2>Daily active users</h2><canvas id="dau"></canvas></div>
</div>
<script src="/plugins/analytics/chart.js"></script>
<script>
"use strict";
const key = new URLSearchParams(location.search).get("http_key") || "";
const $ = (id) => document.getElementById(id);
const seconds = (ms) => (ms / 1000).toFixed(1) + " s";
const haveCharts = typeof Chart !== "undefined";
function chart(id, type, label) {
  if (!haveCharts) return null;
  return new Chart($(id), {
    type, data: { labels: [], datasets: [{ label, data: [], backgroundColor: "#4e79a7",
                                           borderColor: "#4e79a7" }] },
    options: { animation: false, scales: { y: { beginAtZero: true } } },
  });
}
const rate = chart("rate", "line", "events/minute");
const sessions = chart("sessions", "line", "sessions active");
// Not `top`: a global const of that name clashes with window.top and stops the whole script.
const topEvents = chart("top", "bar", "events");
const dau = chart("dau", "bar", "users");
function show(c, labels, values) {
  if (!c) return;
  c.data.labels = labels;
  c.data.datasets[0].data = values;
  c.update();
}
async function refresh() {
  try {
    const res = await fetch("/plugins/analytics/stats?http_key=" + encodeURIComponent(key));
    if (!res.ok) throw new Error(res.status === 401 ? "wrong or missing ?http_key= in this page's address" : "HTTP " + res.status);
    const s = await res.json();
    const perMinute = s.events.per_minute;
    $("events-total").textContent = s.events.total;
    $("events-hour").textContent = perMinute.reduce((a, b) => a + b, 0);
    $("sessions-active").textContent = s.sessions.active;
    $("dau-today").textContent = s.daily_active_users.length ? s.daily_active_users[0].users : 0;
    const len = s.sessions.length_ms;
    $("session-length").textContent = len.count ? [len.p50, len.p95, len.max].map(seconds).join(" / ") : "–";
    show(rate, perMinute.map((_, i) => i - (perMinute.length - 1) + " min"), perMinute);
    if (sessions) {
      const at = new Date().toISOString().substring(11, 19);
      sessions.data.labels.push(at);
      sessions.data.datasets[0].data.push(s.sessions.active);
      if (sessions.data.labels.length > 720) { sessions.data.labels.shift(); sessions.data.datasets[0].data.shift(); }
      sessions.update();
    }
    show(topEvents, s.top_events.map((e) => e.name), s.top_events.map((e) => e.count));
    const days = s.daily_active_users.slice().reverse();
    show(dau, days.map((d) => d.day), days.map((d) => d.users));
    $("status").textContent = "Updated " + new Date().toLocaleTimeString() + " from node " + s.node +
      (haveCharts ? "" : " (charts unavailable: this build has no Chart.js)");
  } catch (e) {
    $("status").textContent = "Could not load the figures: " + e.message;
  }
}
refresh();
setInterval(refresh, 5000);
</script>
</body>
</html>
)html";

}  // namespace

nk::Error RegisterChartPage(nk::Initializer& initializer,
                            std::function<std::string(const nk::Context&)> stats_json) {
    if (auto err = initializer.RegisterHttp(
            "/analytics", "GET", NK_HTTP_AUTH_NONE,
            [](const nk::Context&, nk::Logger&, nk::Module&, const nk::HttpRequest&,
               nk::HttpResponse& res) {
                res.content_type = "text/html; charset=utf-8";
                res.headers.emplace_back("Cache-Control", "no-store");
                res.body = kPage;
                return nk::Error();
            }))
        return err;
    if (auto err = initializer.RegisterHttp(
            "/analytics/chart.js", "GET", NK_HTTP_AUTH_NONE,
            [](const nk::Context&, nk::Logger&, nk::Module&, const nk::HttpRequest&,
               nk::HttpResponse& res) {
                if (kChartJsPieces[0] == nullptr)
                    return nk::Error::NotFound("Chart.js was not embedded in this build");
                res.content_type = "text/javascript; charset=utf-8";
                res.headers.emplace_back("Cache-Control", "max-age=86400");
                for (const char* const* p = kChartJsPieces; *p != nullptr; ++p)
                    res.body += *p;
                return nk::Error();
            }))
        return err;
    return initializer.RegisterHttp(
        "/analytics/stats", "GET", NK_HTTP_AUTH_HTTP_KEY,
        [stats_json](const nk::Context& ctx, nk::Logger&, nk::Module&, const nk::HttpRequest&,
                     nk::HttpResponse& res) {
            res.headers.emplace_back("Cache-Control", "no-store");
            res.body = stats_json(ctx);
            return nk::Error();
        });
}

}  // namespace analytics

"""GET /report: the totals per checkpoint and period as a page, with a daily chart per checkpoint.

Server-rendered table (readable without JavaScript, printable) plus one Chart.js bar chart per
checkpoint (accepted and rejected per local day). Chart.js is vendored in ``static/`` (MIT,
its header kept) and served by the centre itself: a centre may have no internet, so no CDN.
A charting library rather than hand-drawn SVG: axes, stacking, tooltips and legends come
tested. The page needs an operator credential with role ``report``, like /api/v1/report: a
bearer token, or the session a browser gets by signing in at /login (central/web/login.py);
a browser without one is sent to the sign-in form. Every view is in the access log.
"""

import datetime as dt
import html
import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from central.reports import Report, build_report
from central.store import Store

STATIC = Path(__file__).parent / "static"
CHART_JS = "chart.umd.min.js"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>chot report {period}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #bbb; padding: .3em .6em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.site {{ display: inline-block; width: 560px; margin: 0 1em 1em 0; vertical-align: top; }}
.summary {{ font-size: 1.1em; }}
</style>
<script src="static/{chart_js}"></script>
</head><body>
<form method="post" action="logout" style="float: right"><button>Sign out</button></form>
<h1>Checkpoint report, {period}</h1>
<p>Days in {timezone}. Declarations: every person checked (scans and manual entries).</p>
<ul class="summary">{summary}</ul>
<table id="totals"><thead><tr><th>checkpoint</th><th>declarations</th><th>accepted</th>
<th>rejected</th><th>manual admitted</th><th>manual turned away</th><th>refusals by reason</th>
</tr></thead><tbody>{rows}</tbody></table>
<div id="charts">{charts}</div>
<script id="report-data" type="application/json">{data}</script>
<script>
const report = JSON.parse(document.getElementById("report-data").textContent);
for (const site of report.sites) {{
  const days = report.days.filter(d => d.site === site.site);
  new Chart(document.getElementById("chart-" + site.site), {{
    type: "bar",
    data: {{
      labels: days.map(d => d.period),
      datasets: [
        {{label: "accepted", data: days.map(d => d.accepted), backgroundColor: "#2e7d32"}},
        {{label: "rejected", data: days.map(d => d.rejected), backgroundColor: "#c62828"}},
      ],
    }},
    options: {{
      animation: false,
      plugins: {{title: {{display: true, text: site.site}}}},
      scales: {{x: {{stacked: true}}, y: {{stacked: true, beginAtZero: true}}}},
    }},
  }});
}}
document.body.dataset.charts = String(report.sites.length);
</script>
</body></html>
"""


def render(report: Report) -> str:
    esc = html.escape
    rows = "".join(
        f'<tr data-site="{esc(t.site)}"><td>{esc(t.site)}</td><td>{t.declarations:,}</td>'
        f"<td>{t.accepted:,}</td><td>{t.rejected:,}</td><td>{t.manual_admitted:,}</td>"
        f"<td>{t.manual_turned_away:,}</td>"
        f"<td>{esc(', '.join(f'{k} {v:,}' for k, v in sorted(t.reasons.items())))}</td></tr>"
        for t in [*report.sites, report.overall]
    )
    charts = "".join(
        f'<div class="site"><canvas id="chart-{esc(t.site)}" width="560" height="280">'
        f"</canvas></div>"
        for t in report.sites
    )
    summary = "".join(f"<li>{esc(line)}</li>" for line in report.lines())
    # JSON inside <script>: "</" must not close the element
    data = json.dumps(report.to_json()).replace("</", "<\\/")
    return PAGE.format(
        period=esc(report.period),
        timezone=esc(report.timezone),
        chart_js=CHART_JS,
        summary=summary,
        rows=rows,
        charts=charts,
        data=data,
    )


def add_routes(
    app: FastAPI,
    store: Store,
    timezone: str,
    operator: Callable[[Request, str], object],
    audit: Callable[[object, str, dict, int], None],
) -> None:
    """The page, its CSV/JSON twins, and the vendored script (public: it is Chart.js)."""

    def report_for(request: Request, day: dt.date, to: dt.date | None, site: str | None):
        who = operator(request, "report")
        try:
            report = build_report(store, day, to, site=site, tz=timezone)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        audit(who, "report_totals", {"from": day, "to": to, "site": site}, len(report.days))
        return report

    @app.get("/report", response_class=HTMLResponse)
    def report_page(
        request: Request,
        day: dt.date | None = Query(None, alias="from"),
        to: dt.date | None = None,
        site: str | None = None,
    ) -> Response:
        first = day or dt.datetime.now(ZoneInfo(timezone)).date()  # default: today, locally
        try:
            return HTMLResponse(render(report_for(request, first, to, site)))
        except HTTPException as exc:
            if exc.status_code != 401 or "text/html" not in request.headers.get("accept", ""):
                raise
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.get("/api/v1/report/totals")
    def report_totals(
        request: Request,
        day: dt.date = Query(alias="from"),
        to: dt.date | None = None,
        site: str | None = None,
        format: str = Query("json", pattern="^(json|csv)$"),
    ) -> Response:
        report = report_for(request, day, to, site)
        if format == "csv":
            return Response(report.to_csv(), media_type="text/csv; charset=utf-8")
        return Response(json.dumps(report.to_json()), media_type="application/json")

    @app.get(f"/static/{CHART_JS}")
    def chart_js() -> FileResponse:
        return FileResponse(STATIC / CHART_JS, media_type="text/javascript")

"""The board as one self-contained page (index.html): sortable tables, filters, inline SVG plots.

No network: the CSS, the small script (sorting and filtering) and the plots are inline.
The tables fit a 1280 px wide window (headers wrap, cells are compact); a wider table
scrolls inside its own box rather than the page. Without JavaScript the page is the
same, minus sorting and filtering.
"""
from __future__ import annotations

import html
import re

from bmrl_bench.board import cells as c
from bmrl_bench.board.plots import plots
from bmrl_bench.board.scoring import Row, Table

CSS = """
body { font-family: system-ui, sans-serif; margin: 1rem 1.25rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 0.5rem; font-size: 0.8rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.35rem; text-align: right; white-space: nowrap; }
th { white-space: normal; vertical-align: bottom; background: #f4f4f4; }
th:nth-child(-n+4), td:nth-child(-n+4) { text-align: left; }
th button { all: unset; cursor: pointer; }
th button:focus-visible { outline: 2px solid #36c; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; }
th[aria-sort="descending"] button::after { content: " \\25BC"; }
tr.self-reported td { color: #666; }
td.status-self-reported { font-style: italic; }
td.status-verified a { color: #176f2c; font-weight: 600; }
td .ci { display: block; font-size: 0.85em; color: #555; }
.local { background: #fff4e0; }
.scroll { overflow-x: auto; max-width: 100%; }
.note { max-width: 60rem; }
.filters { display: flex; flex-wrap: wrap; gap: 0.5rem 1.5rem; margin: 1rem 0; padding: 0.5rem 0.75rem; }
.filters { background: #f4f4f4; }
section.board { margin-bottom: 1.5rem; }
figure { margin: 0 0 2rem; }
figure svg { max-width: 100%; height: auto; }
""".strip()

SCRIPT = """
(function () {
  "use strict";
  var each = function (list, fn) { Array.prototype.forEach.call(list, fn); };
  function key(cell, numeric) {
    var v = cell.getAttribute("data-sort");
    if (v === null) { v = cell.textContent; }
    return numeric ? parseFloat(v) : v.toLowerCase();
  }
  each(document.querySelectorAll("table.sortable"), function (table) {
    var heads = table.tHead.rows[0].cells;
    each(heads, function (th, col) {
      th.querySelector("button").addEventListener("click", function () {
        var numeric = th.getAttribute("data-type") === "num";
        var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        each(heads, function (h) { h.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[col], numeric), y = key(b.cells[col], numeric);
          if (numeric && (isNaN(x) || isNaN(y))) { return isNaN(x) - isNaN(y); }  /* blanks last */
          return dir * (x < y ? -1 : x > y ? 1 : 0);
        });
        each(rows, function (r) { body.appendChild(r); });
      });
    });
  });
  var pick = { suite: "filter-suite", tier: "filter-tier", protocol: "filter-protocol" };
  var verifiedOnly = document.getElementById("filter-verified");
  if (!verifiedOnly) { return; }
  if (/[?&]verified=1\\b/.test(window.location.search)) { verifiedOnly.checked = true; }
  function apply() {
    each(document.querySelectorAll("section.board"), function (s) {
      var shown = Object.keys(pick).every(function (k) {
        var v = document.getElementById(pick[k]).value;
        return !v || s.getAttribute("data-" + k) === v;
      });
      var rows = 0;
      each(s.querySelectorAll("tbody tr"), function (tr) {
        tr.hidden = verifiedOnly.checked && tr.getAttribute("data-verified") !== "1";
        rows += tr.hidden ? 0 : 1;
      });
      s.querySelector(".no-rows").hidden = rows > 0;
      s.hidden = !shown;
    });
    var suite = document.getElementById(pick.suite).value;
    each(document.querySelectorAll("figure[data-suite]"), function (f) {
      f.hidden = !!suite && f.getAttribute("data-suite") !== suite;
    });
  }
  each(document.querySelectorAll(".filters select, .filters input"), function (el) {
    el.addEventListener("change", apply);
  });
  apply();
})();
""".strip()

NUMERIC = {"rank", "IQM [95% CI]", "mean [95% CI]", "#seeds", "P(better than next)"}
CI_COLUMNS = (4, 5)  # IQM and mean with their CIs


def _code(escaped: str) -> str:
    """Markdown `code` spans of already-escaped text as <code> elements."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", escaped)


def _sort_keys(row: Row, position: int) -> list[str | None]:
    """`data-sort` of each cell: numbers for the numeric columns (None: sort by the text)."""
    e = row.entry
    fmt = repr
    return [
        str(position), None, None, None, fmt(e.iqm[0]), fmt(e.aggregates["mean"][0]),
        *(fmt(x) for x in e.per_task),
        str(len(e.seeds)), "" if row.p_next is None else fmt(row.p_next), None, None, None,
    ]


def _filter(label: str, element_id: str, values: list[str]) -> str:
    esc = html.escape
    options = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in values)
    return f'<label>{esc(label)} <select id="{element_id}"><option value="">all</option>{options}</select></label>'


def _table(t: Table, card: str | None) -> list[str]:
    esc = html.escape
    parts = [
        f'<section class="board" id="{esc(t.table_id)}-section" data-suite="{esc(t.suite)}" data-tier="{esc(t.tier)}"'
        f' data-protocol="{esc(t.protocol)}">',
        f'<h2 id="{esc(t.table_id)}-title">{esc(t.title)}</h2>',
    ]
    if card:
        parts.append(f'<p class="card">Dataset card: <a href="{esc(card)}">{esc(t.suite)}</a></p>')
    if t.data != "reference":
        parts.append(f'<p class="note"><strong>{esc(c.LOCAL)}</strong></p>')
    cls = "sortable local" if t.data != "reference" else "sortable"
    parts.append(f'<div class="scroll"><table id="{esc(t.table_id)}" class="{cls}">')
    heads = "".join(
        f'<th scope="col" data-type="{"num" if h in NUMERIC or h.startswith("task ") else "text"}" aria-sort="none">'
        f'<button type="button">{esc(h)}</button></th>'
        for h in c.header(t)
    )
    parts += [f"<thead><tr>{heads}</tr></thead>", "<tbody>"]
    for position, row in enumerate(t.rows, start=1):
        e = row.entry
        status = c.status(e)
        tds = []
        texts = c.cells(row)
        for i, (text, key) in enumerate(zip(texts, _sort_keys(row, position))):
            attr = "" if key is None else f' data-sort="{esc(key)}"'
            body = esc(text)
            if i in CI_COLUMNS:  # the interval on a second line: the tables stay narrow
                point, _, interval = text.partition(" ")
                body = f'{esc(point)} <span class="ci">{esc(interval)}</span>'
            elif i == 3:
                attr += f' class="status-{status}"'
                if e.verified:
                    body = f'<a href="{esc(c.record_href(e))}" title="the board\'s re-run">\u2713 verified</a>'
            elif i == len(texts) - 1:
                body = f'<a href="{esc(c.results_href(e))}">json</a>'
            tds.append(f"<td{attr}>{body}</td>")
        parts.append(f'<tr class="{status}" data-verified="{int(e.verified)}">' + "".join(tds) + "</tr>")
    parts += ["</tbody>", "</table></div>", '<p class="note no-rows" hidden>No verified entries in this table.</p>',
              "</section>"]
    return parts


def page(tables: list[Table], cards: dict[tuple[str, int], str]) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>bmrl-bench leaderboard</title>",
        f"<style>\n{CSS}\n</style>",
        "</head>",
        "<body>",
        "<h1>bmrl-bench leaderboard</h1>",
    ]
    if not tables:
        parts.append(f'<p id="empty">{_code(esc(c.EMPTY))}</p>')
        parts += ["</body>", "</html>", ""]
        return "\n".join(parts)
    parts.append(f'<p class="note">{_code(esc(c.METHOD))}</p>')
    parts.append(f'<p class="note">{_code(esc(c.STATUS))}</p>')
    parts.append('<form class="filters" id="filters">'
                 + _filter("suite", "filter-suite", sorted({t.suite for t in tables}))
                 + _filter("data tier", "filter-tier", sorted({t.tier for t in tables}))
                 + _filter("protocol", "filter-protocol", sorted({t.protocol for t in tables}))
                 + '<label><input type="checkbox" id="filter-verified"> verified only</label></form>')
    for t in tables:
        parts += _table(t, cards.get((t.suite, t.suite_version)))
    parts.append("<h2>Interval estimates</h2>")
    for plot_id, suite, title, svg in plots(tables):
        parts.append(f'<figure id="{esc(plot_id)}" data-suite="{esc(suite)}">')
        parts.append(svg)
        parts.append(f"<figcaption>{esc(title)}: IQM with 95% stratified-bootstrap CI per entry</figcaption>")
        parts.append("</figure>")
    parts += [f"<script>\n{SCRIPT}\n</script>", "</body>", "</html>", ""]
    return "\n".join(parts)

"""The card as one static page (index.html) beside its PNGs: no script, no network, every text escaped.

Numbers are shown with `num` (two decimals); `card.json` beside the page holds them in full.
"""
from __future__ import annotations

import html
import json
from typing import Any

from bmrl_bench.dataset_card.plots import returns_name

CSS = """
body { font-family: system-ui, sans-serif; margin: 1rem 1.25rem; color: #222; max-width: 75rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.8rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.4rem; text-align: right; }
th { background: #f4f4f4; vertical-align: bottom; }
td.text, th.text { text-align: left; }
table.facts th { text-align: left; }
tr.train td:first-child { border-left: 4px solid #1f77b4; }
tr.test td:first-child { border-left: 4px solid #d62728; }
code { font-size: 0.85em; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; max-width: 100%; }
.note { max-width: 60rem; }
img { max-width: 100%; height: auto; display: block; margin: 0.5rem 0; }
.plots { display: flex; flex-wrap: wrap; column-gap: 1rem; }
""".strip()

esc = html.escape


def num(x: float | None) -> str:
    """How the page shows a number (card.json keeps it exact)."""
    return "-" if x is None else f"{x:.2f}"


def _row(cells: list[str], cls: str = "", text_cols: int = 0) -> str:
    tds = "".join(f'<td class="text">{c}</td>' if i < text_cols else f"<td>{c}</td>" for i, c in enumerate(cells))
    return f'<tr class="{cls}">{tds}</tr>' if cls else f"<tr>{tds}</tr>"


def _table(table_id: str, heads: list[str], rows: list[str], text_cols: int) -> str:
    ths = "".join(f'<th scope="col" class="text">{esc(h)}</th>' if i < text_cols else f'<th scope="col">{esc(h)}</th>'
                  for i, h in enumerate(heads))
    return (f'<div class="scroll"><table id="{table_id}"><thead><tr>{ths}</tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></div>")


def _facts(table_id: str, pairs: list[tuple[str, str]]) -> str:
    """A two-column table; the values are already escaped."""
    rows = "".join(f'<tr><th scope="row">{esc(k)}</th><td class="text">{v}</td></tr>' for k, v in pairs)
    return f'<table id="{table_id}" class="facts"><tbody>{rows}</tbody></table>'


def _img(name: str | None, alt: str) -> str:
    return f'<img src="{esc(name)}" alt="{esc(alt)}">' if name else ""


def _suite(card: dict[str, Any]) -> list[str]:
    s = card["suite"]
    lo, hi = s["param_range"]
    published = (f"<code>datasets/{esc(s['published_file'])}</code>" if s["published_file"]
                 else "none for this version: the board scores with this build's references")
    return [
        f'<p class="note" id="description">{esc(s["description"])}</p>',
        _facts("suite-facts", [
            ("suite", f"{esc(s['name'])} v{s['version']}"),
            ("family", f"{esc(s['family'])} (<code>{esc(s['env_id'])}</code>)"),
            ("task parameter", f"{esc(s['param_name'])} ({esc(s['param_unit'])}), family range "
                               f"[{lo:g}, {hi:g}]"),
            ("tasks", f"{s['num_train_tasks']} train (meta-train data), {s['num_test_tasks']} test (scored)"),
            ("episode length", f"{s['episode_length']} steps"),
            ("transitions per task", f"{s['transitions_per_task']:,}"),
            ("reference / eval episodes", f"{s['reference_episodes']} / {s['eval_episodes']} per task"),
            ("published file", published),
            ("built with", f"bmrl-bench {esc(str(s['bmrl_version']))}, Minari {esc(str(s['minari_version']))}"),
        ]),
    ]


def _tasks(card: dict[str, Any], figures: dict[str, str | None]) -> list[str]:
    s = card["suite"]
    rows = [_row([str(t["index"]), esc(t["split"]), f"{t['param']:g}"], t["split"], 2) for t in card["tasks"]]
    return ["<h2 id=\"tasks\">Tasks and splits</h2>",
            '<p class="note">Train tasks give the meta-train data an algorithm fits on; test tasks are only played '
            "(their datasets exist, for the offline-context protocol and for analysis, and are never given to "
            "<code>fit</code>).</p>",
            _img(figures["tasks"], "task parameters, train and test"),
            _table("tasks-table", ["task", "split", f"{s['param_name']} ({s['param_unit']})"], rows, 2)]


def _tier_item(t: dict[str, Any]) -> str:
    """One tier in the list of tiers: what its data is, and whether it is built, published or neither."""
    policy = f" Policy: {esc(t['policy'])}." if t["policy"] else ""
    published = f" Published: <code>datasets/{esc(t['published_file'])}</code>." if t["published_file"] else ""
    if t["status"] == "built":
        state = "built"
    elif t["status"] == "not built":
        state = f"<strong>not built</strong> (<code>{esc(t['build_command'])}</code>)"
    else:
        state = (f"<strong>published, not built here</strong> ({t['missing']} datasets missing; "
                 f"<code>{esc(t['build_command'])}</code> builds them)")
    name = esc(t["tier"])
    return f'<li id="tier-{name}"><code>{name}</code> ({state}): {esc(t["about"])}.{policy}{published}</li>'


def _datasets(card: dict[str, Any]) -> list[str]:
    tasks = {t["index"]: t for t in card["tasks"]}
    rows = []
    for d in card["datasets"]:
        t = tasks[d["task_index"]]
        pub = d["published_checksum"]
        if not d["built"]:
            state = "published, not built here"
        else:
            state = "no published file" if pub is None else ("= published" if pub == d["checksum"]
                                                             else "DIFFERS from published")
        checksum = d["checksum"] if d["built"] else pub
        rows.append(_row([str(d["task_index"]), esc(d["tier"]), f"<code>{esc(d['dataset_id'])}</code>",
                          f"<code>{esc(str(checksum))}</code>", esc(state),
                          f"{d['episodes']:,}" if d["built"] else "-", f"{d['transitions']:,}" if d["built"] else "-"],
                         t["split"], 5))
    tiers = "".join(_tier_item(t) for t in card["tiers"])
    absent = [t["tier"] for t in card["tiers"] if t["status"] == "not built"]
    return ['<h2 id="datasets">Datasets (Minari ids and checksums)</h2>',
            '<p class="note">Each id loads with <code>minari.load_dataset(id)</code> from the Minari root the suite '
            "was built in. The checksum is sha256 over the episode arrays (<code>bmrl_bench.data.content_checksum"
            "</code>), recomputed for this page (the published one where a tier is only published). Every tier has "
            "one dataset per task, with the same tasks and reference scores; a tier's id adds the tier to the task's "
            "name (<code>task-00-expert-v0</code>), the replay tier keeps the plain name. The data tiers:</p>",
            f'<ul class="note" id="tiers">{tiers}</ul>',
            f'<p class="note" id="tiers-not-built">Not built: {esc(", ".join(absent)) if absent else "none"}.</p>',
            _table("datasets-table", ["task", "tier", "dataset id", "checksum", "vs published", "episodes",
                                      "transitions"], rows, 5)]


def _references(card: dict[str, Any]) -> list[str]:
    rule, sources = card["reference_rule"], card["reference_sources"]
    pointgoal = card["suite"]["family"] == "pointgoal"
    heads = ["task", "split", "param", "ref_min", "ref_max", "ref_max source", "random mean", "behaviour mean",
             "expert mean"] + (["analytic optimum"] if pointgoal else []) + ["return bounds", "published"]
    rows = []
    for t in card["tasks"]:
        means = t["reference_means"]
        pub = t["published"]
        if pub is None:
            published = "-"
        elif (pub["ref_min"], pub["ref_max"]) == (t["ref_min"], t["ref_max"]):
            published = "same"
        else:
            published = f"{num(pub['ref_min'])} / {num(pub['ref_max'])}"
        lo, hi = t["return_bounds"]
        rows.append(_row([str(t["index"]), esc(t["split"]), f"{t['param']:g}", num(t["ref_min"]), num(t["ref_max"]),
                          esc(str(t["ref_max_source"])), num(means.get("random")), num(means.get("behaviour")),
                          num(means.get("expert"))] + ([num(t["optimal_return"])] if pointgoal else [])
                         + [f"[{num(lo)}, {num(hi)}]", published], t["split"], 2))
    items = "".join(f"<li><strong>{esc(k)}</strong>: {esc(v)}</li>" for k, v in sources.items())
    parts = ['<h2 id="references">Reference scores</h2>',
             '<p class="note">A normalized score is (return - ref_min) / (ref_max - ref_min), per test task '
             "(1: as good as ref_max). "
             f"<strong>ref_min</strong> is {esc(rule['ref_min'])}. <strong>ref_max</strong> is "
             f"{esc(rule['ref_max'])}. The policies:</p>",
             f'<ul class="note" id="reference-sources">{items}</ul>',
             '<p class="note">Return bounds: the lowest and highest return any policy can get on the task '
             "(<code>Family.return_bounds</code>; the board refuses returns outside them). \"published\": "
             "\"same\" when the published file holds this build's ref_min / ref_max, else its values.</p>"]
    if pointgoal:
        parts.append('<p class="note">Analytic optimum: the best return of any policy on the task '
                     "(<code>families.pointgoal_optimal_return</code>: both axes at full speed until a coordinate "
                     "reaches the goal's). ref_max below it is a learned policy's shortfall.</p>")
    parts.append(_table("references-table", heads, rows, 2))
    return parts


def _behaviour(card: dict[str, Any]) -> list[str]:
    b = card["behaviour"]
    note = "" if b["card_recipe_matches"] else (' <strong>The suite card\'s [behaviour] differs now: '
                                                "rebuild to get data from it.</strong>")
    return ['<h2 id="behaviour">Behaviour recipe (card [behaviour])</h2>',
            f'<p class="note">One online SAC per task; its whole replay buffer is the dataset. As recorded in every '
            f"dataset's metadata:{note}</p>",
            _facts("behaviour-recipe", [(k, f"<code>{esc(json.dumps(v))}</code>") for k, v in b["recipe"].items()])]


def _expert(card: dict[str, Any], figures: dict[str, str | None]) -> list[str]:
    e = card["expert"]
    head = '<h2 id="expert">Family-wide expert: training curve</h2>'
    if e is None:
        return [head, '<p class="note" id="no-expert-record">No expert training record in this build\'s metadata '
                "(built before expert records); rebuild with <code>bmrl-bench datasets build "
                f"{esc(card['suite']['name'])}</code> to record one.</p>"]
    state = "converged" if e["converged"] else "stopped at max_steps before converging"
    reason = f" {esc(e['stop_reason'])}." if e["stop_reason"] else ""
    notes = []
    if not e["card_recipe_matches"]:
        notes.append("The suite card's [expert] recipe differs now: these references are stale; "
                     "<code>datasets build</code> recomputes them.")
    if not e["same_for_every_dataset"]:
        notes.append("Not every dataset records the same expert (the task 0 record is shown).")
    checks = ", ".join(f"{p:g}" for p in e["check_params"])
    line = (f"the analytic optimum averaged over the check tasks ({num(e['check_optimum'])})"
            if e["check_optimum"] is not None else
            f"the upper return bound averaged over the check tasks ({num(e['check_upper_bound'])})")
    rows = [_row([f"{s:,}", num(r)]) for s, r in e["curve"]]
    return [head,
            f'<p class="note" id="expert-summary">{e["steps"]:,} env steps, {state}.{reason} Each check: the '
            f"mean deterministic return on the tasks {esc(checks)}. The dashed line: {line}. {' '.join(notes)}</p>",
            _img(figures["expert"], "family-wide expert: check returns over env steps"),
            _table("expert-curve", ["env step", "mean check return"], rows, 0),
            '<p class="note">Its recipe (card [expert]), as recorded with the references:</p>',
            _facts("expert-recipe", [(k, f"<code>{esc(json.dumps(v))}</code>") for k, v in e["recipe"].items()])]


def _returns(card: dict[str, Any], figures: dict[str, str | None]) -> list[str]:
    tasks = {t["index"]: t for t in card["tasks"]}
    rows = []
    for d in (d for d in card["datasets"] if d["built"]):
        t, r = tasks[d["task_index"]], d["returns"]
        rows.append(_row([str(d["task_index"]), esc(t["split"]), esc(d["tier"]), f"{t['param']:g}",
                          f"{d['episodes']:,}"] + [num(r[k]) for k in ("min", "q1", "median", "mean", "q3", "max")],
                         t["split"], 3))
    plots = [_img(figures.get(returns_name(t["tier"])), f"box plot of episode returns per task, tier {t['tier']}")
             for t in card["tiers"] if t["status"] == "built"]
    return ['<h2 id="returns">Episode returns in the data</h2>',
            '<p class="note">Per task and tier built here: the undiscounted return of every episode stored, one plot '
            "per tier on one scale. The learning curves below show the replay tier's returns in the order they were "
            "collected.</p>",
            f'<div class="plots" id="returns-plots">{"".join(plots)}</div>',
            _table("returns-table", ["task", "split", "tier", "param", "episodes", "min", "q1", "median", "mean", "q3",
                                     "max"], rows, 3),
            _img(figures["behaviour"], "behaviour learning curve per task")]


def page(card: dict[str, Any], figures: dict[str, str | None]) -> str:
    """index.html of a card; `figures`: {"tasks", "expert", "returns" (replay), "returns-<tier>" (each other tier
    built), "behaviour"} -> PNG file name (or None)."""
    s = card["suite"]
    title = f"{s['name']} v{s['version']}: dataset card"
    body = [*_suite(card), *_tasks(card, figures), *_datasets(card), *_references(card), *_behaviour(card),
            *_expert(card, figures), *_returns(card, figures)]
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>", f"<style>\n{CSS}\n</style>", "</head>", "<body>",
        f"<h1>{esc(title)}</h1>", *body,
        f'<p class="note">Written by <code>bmrl-bench datasets card {esc(s["name"])}</code>; every number on this '
        'page is in <a href="card.json">card.json</a>.</p>',
        "</body>", "</html>", ""])

"""Sections as one HTML page: self-contained (plotly.js inside, for a file mailed to a manager)
or pointing at a script URL (the dashboard serves plotly.js from the package)."""

from __future__ import annotations

import html
from importlib import resources
from pathlib import Path

import plotly.graph_objects as go

from userstrata.report.sections import Section

__all__ = ["plotly_js", "render_page", "write_report"]

_STYLE = """
body{font-family:"Noto Sans CJK SC","PingFang SC","Microsoft YaHei",system-ui,sans-serif;margin:0;color:#222;background:#f6f7f9}
header{background:#1f3b57;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}header p{margin:4px 0 0;opacity:.85}
nav{padding:8px 24px;background:#fff;border-bottom:1px solid #ddd}nav a{margin-right:14px;color:#1f3b57;text-decoration:none}
main{padding:16px 24px;display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:16px}
section{background:#fff;border:1px solid #e2e4e8;border-radius:6px;padding:12px 16px}
section h2{font-size:16px;margin:0 0 8px}table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border-bottom:1px solid #eee;padding:4px 6px;text-align:left}td.num{text-align:right}
.note{color:#666;font-size:12px;margin-top:6px}
"""


def plotly_js() -> str:
    """plotly.min.js as shipped inside the plotly package (no CDN)."""
    return resources.files("plotly").joinpath("package_data/plotly.min.js").read_text(encoding="utf-8")


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _table(frame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = "".join(
            f'<td class="num">{html.escape(_cell(v))}</td>' if isinstance(v, (int, float)) else f"<td>{html.escape(str(v))}</td>"
            for v in values
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _section(section: Section) -> str:
    parts = [f'<section id="{html.escape(section.key)}"><h2>{html.escape(section.title)}</h2>']
    if section.figure is not None:
        # a fixed height: inside a grid cell "100%" of an unsized box collapses to nothing
        figure = go.Figure(section.figure).update_layout(title=None, margin=dict(t=30))  # the card has the title
        parts.append(figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{section.key}",
                                            default_height="380px", default_width="100%",
                                            config={"displaylogo": False, "responsive": True}))
    if section.table is not None:
        parts.append(_table(section.table))
    if section.note:
        parts.append(f'<p class="note">{html.escape(section.note)}</p>')
    parts.append("</section>")
    return "".join(parts)


def render_page(sections: list[Section], *, title: str, subtitle: str = "", lang: str = "en",
                script_url: str | None = None, nav: str = "") -> str:
    """The page: plotly.js from ``script_url`` when given, else inside the page."""
    script = (f'<script src="{html.escape(script_url)}"></script>' if script_url
              else f"<script>{plotly_js()}</script>")
    links = "".join(f'<a href="#{html.escape(s.key)}">{html.escape(s.title)}</a>' for s in sections)
    return (
        f'<!doctype html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>{script}</head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>"
        f"<nav>{nav}{links}</nav><main>{''.join(_section(s) for s in sections)}</main></body></html>"
    )


def write_report(sections: list[Section], path: str | Path, *, title: str, subtitle: str = "", lang: str = "en") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_page(sections, title=title, subtitle=subtitle, lang=lang), encoding="utf-8")
    return path

"""Charts: every analysis builds one Plotly figure; ``save`` writes it as HTML or PNG.

HTML carries plotly.js inside the file (offline shops have no CDN). PNG is drawn with
matplotlib from the figure's traces (Heatmap, Bar, Scatter, Sankey), so no browser is needed;
figures for PNG use only those trace types.

```python
fig = go.Figure(go.Heatmap(z=..., x=..., y=...), layout=dict(title="留存"))
charts.save(fig, "retention.html")   # interactive, self-contained
charts.save(fig, "retention.png")    # static
```
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from userstrata.errors import InputError

__all__ = ["FORMATS", "check_path", "cjk_font", "save"]

FORMATS = (".html", ".png")
# Fonts with Chinese glyphs, as found on Linux, Windows and macOS; the first one installed is used
_CJK_FONTS = (
    "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
    "Microsoft YaHei", "SimHei", "PingFang SC", "Heiti SC", "Hiragino Sans GB", "Arial Unicode MS",
)
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def check_path(path: str | Path) -> Path:
    """``path`` if a chart can be written there (.html or .png), else an InputError saying so."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise InputError(
            f"cannot write a chart as {path.name!r}: the file must end in .html or .png",
            hint="e.g. --chart retention.html",
            zh=f"无法把图表写成 {path.name!r}：文件名须以 .html 或 .png 结尾",
            hint_zh="例如 --chart retention.html",
        )
    return path


def save(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` (a ``plotly.graph_objects.Figure``) to ``path`` by its suffix (.html or .png)."""
    path = check_path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".html":
        fig.write_html(path, include_plotlyjs=True, full_html=True)  # plotly.js inside: no CDN
    else:
        _png(fig, path)
    return path


def cjk_font() -> str | None:
    """The first installed font of ``_CJK_FONTS``; None when there is none."""
    from matplotlib import font_manager  # noqa: PLC0415 - only PNG needs it

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in _CJK_FONTS if name in installed), None)


def _text(value: Any) -> str:
    text = getattr(value, "text", value)
    return "" if text is None else str(text)


def _png(fig: Any, path: Path) -> None:
    from matplotlib.figure import Figure  # noqa: PLC0415 - only PNG needs it

    layout = fig.layout
    width = (layout.width or 900) / 100
    height = (layout.height or 520) / 100
    out = Figure(figsize=(width, height), layout="constrained")
    ax = out.add_subplot()
    font = cjk_font()
    for i, trace in enumerate(fig.data):
        color = _COLORS[i % len(_COLORS)]
        kind = trace.type
        if kind == "heatmap":
            _heatmap(out, ax, trace)
        elif kind == "bar":
            _bar(ax, trace, color, i, len(fig.data), layout.barmode)
        elif kind in ("scatter", "scattergl"):
            x, y = list(trace.x), np.asarray(trace.y, dtype=float)
            dash = {"dot": ":", "dash": "--", "dashdot": "-."}.get(trace.line.dash, "-")
            ax.plot(range(len(x)) if _categorical(x) else x, y, linestyle=dash, color=trace.line.color or color,
                    marker="o" if "markers" in (trace.mode or "lines+markers") else None, markersize=3,
                    linewidth=trace.line.width or 1.5, label=trace.name if trace.showlegend is not False else None)
            if _categorical(x):
                ax.set_xticks(range(len(x)), [str(v) for v in x], rotation=45 if len(x) > 8 else 0,
                              ha="right" if len(x) > 8 else "center")
        elif kind == "sankey":
            _sankey(ax, trace)
        else:
            raise InputError(f"a PNG chart cannot draw {kind!r} traces", hint="save it as .html instead")
    ax.set_title(_text(layout.title))
    ax.set_xlabel(_text(layout.xaxis.title))
    ax.set_ylabel(_text(layout.yaxis.title))
    if layout.yaxis.autorange == "reversed":
        ax.invert_yaxis()
    if sum(bool(t.name) and t.showlegend is not False for t in fig.data if t.type != "heatmap") > 1:
        ax.legend(frameon=False, fontsize=8)
    if font is not None:
        for item in out.findobj(lambda a: hasattr(a, "set_fontfamily")):
            item.set_fontfamily([font, "sans-serif"])
    with warnings.catch_warnings():  # without a Chinese font (fonts-noto-cjk) glyphs show as boxes
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        out.savefig(path, dpi=100)


def _categorical(values: list) -> bool:
    return any(isinstance(v, str) for v in values)


def _heatmap(out: Any, ax: Any, trace: Any) -> None:
    z = np.asarray(trace.z, dtype=float)
    image = ax.imshow(np.ma.masked_invalid(z), aspect="auto", cmap="Blues", interpolation="nearest")
    out.colorbar(image, ax=ax)
    if trace.x is not None:
        ax.set_xticks(range(len(trace.x)), [str(v) for v in trace.x], rotation=45, ha="right", fontsize=7)
    if trace.y is not None:
        ax.set_yticks(range(len(trace.y)), [str(v) for v in trace.y], fontsize=7)
    if trace.text is not None and z.size <= 400:
        text = np.asarray(trace.text, dtype=object)
        for (r, c), label in np.ndenumerate(text):
            if label not in (None, ""):
                ax.text(c, r, str(label), ha="center", va="center", fontsize=6)


def _bar(ax: Any, trace: Any, color: str, i: int, n: int, barmode: str | None) -> None:
    # categories on the value axis' other side: horizontal bars carry their labels in y
    if trace.orientation == "h":
        x, y = list(trace.y), np.asarray(trace.x, dtype=float)
    else:
        x, y = list(trace.x), np.asarray(trace.y, dtype=float)
    pos = np.arange(len(x), dtype=float)
    width = 0.8 if barmode in ("stack", "overlay") or n == 1 else 0.8 / n
    shift = 0 if width == 0.8 else (i - (n - 1) / 2) * width
    if trace.orientation == "h":
        ax.barh(pos + shift, y, height=width, color=color, label=trace.name)
        ax.set_yticks(pos, [str(v) for v in x], fontsize=7)
    else:
        ax.bar(pos + shift, y, width=width, color=color, label=trace.name)
        ax.set_xticks(pos, [str(v) for v in x], rotation=45 if len(x) > 8 else 0, ha="right", fontsize=7)


def _sankey(ax: Any, trace: Any) -> None:
    """Columns of stacked nodes (by how many links lead to them) joined by bands as wide as the flows."""
    from matplotlib.patches import PathPatch, Rectangle  # noqa: PLC0415
    from matplotlib.path import Path as MplPath  # noqa: PLC0415

    labels = list(trace.node.label)
    source, target = list(trace.link.source), list(trace.link.target)
    value = np.asarray(trace.link.value, dtype=float)
    n = len(labels)
    column = [0] * n
    for _ in range(n):  # longest path from a source node: enough passes for any DAG
        for s, t in zip(source, target):
            column[t] = max(column[t], column[s] + 1)
    size = np.array([max(value[[k for k, t in enumerate(target) if t == i]].sum(),
                         value[[k for k, s in enumerate(source) if s == i]].sum()) for i in range(n)])
    total = max(size[[i for i in range(n) if column[i] == c]].sum() for c in set(column)) or 1.0
    gap = 0.02 * total
    top = np.zeros(n)
    for c in sorted(set(column)):
        y = 0.0
        for i in (i for i in range(n) if column[i] == c):
            top[i] = y
            ax.add_patch(Rectangle((c - 0.03, y), 0.06, size[i], color=_COLORS[i % len(_COLORS)]))
            ax.text(c + (0.05 if c < max(column) else -0.05), y + size[i] / 2, f"{labels[i]} ({size[i]:,.0f})",
                    va="center", ha="left" if c < max(column) else "right", fontsize=7)
            y += size[i] + gap
    out_at, in_at = top.copy(), top.copy()
    for s, t, v in zip(source, target, value):
        x0, x1 = column[s] + 0.03, column[t] - 0.03
        y0, y1 = out_at[s], in_at[t]
        mid = (x0 + x1) / 2
        verts = [(x0, y0), (mid, y0), (mid, y1), (x1, y1), (x1, y1 + v), (mid, y1 + v), (mid, y0 + v),
                 (x0, y0 + v), (x0, y0)]
        codes = [MplPath.MOVETO, MplPath.CURVE4, MplPath.CURVE4, MplPath.CURVE4, MplPath.LINETO,
                 MplPath.CURVE4, MplPath.CURVE4, MplPath.CURVE4, MplPath.CLOSEPOLY]
        ax.add_patch(PathPatch(MplPath(verts, codes), alpha=0.35, lw=0, color=_COLORS[s % len(_COLORS)]))
        out_at[s] += v
        in_at[t] += v
    ax.set_xlim(-0.3, max(column) + 0.3)
    ax.set_ylim((top + size).max() + gap, -gap)
    ax.axis("off")

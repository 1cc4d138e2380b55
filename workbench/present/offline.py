"""Charts that draw with no network, in JupyterLab, in executed notebooks and in the HTML report.

altair's default renderer loads Vega from cdn.jsdelivr.net, and `alt.JupyterChart` imports vega-embed from
esm.sh; JupyterLab 4's bundled Vega renderer stops at Vega-Lite 5 while altair 6 writes Vega-Lite 6 specs.
So static charts use the renderer below: each chart is a `text/html` output that carries Vega, Vega-Lite
and Vega-Embed from vl-convert's JavaScript bundle (vl-convert is altair's own export engine, pinned to the
Vega-Lite version altair writes) and draws itself as SVG. The dashboard's live chart is `alt.JupyterChart`
in its offline mode (the same bundle, shipped as the widget's module). Why this choice: docs/notebooks.md.

    from workbench.present import offline
    offline.enable()            # the first code cell of every notebook
"""

from __future__ import annotations

import functools
import json
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from IPython.display import HTML

RENDERER = "workbench_offline"
REPORT_RENDERER = "workbench_offline_report"
# export buttons only: "open in the Vega editor" and "view source" would leave the machine or clutter
EMBED_OPTIONS = {"renderer": "svg", "actions": {"export": True, "source": False, "compiled": False, "editor": False}}


def _vl_version() -> str:
    from altair.utils._importers import vl_version_for_vl_convert

    return vl_version_for_vl_convert()


@functools.cache
def bundle() -> str:
    """Vega, Vega-Lite and Vega-Embed as one script defining `window.vegaEmbed`. Building it starts vl-convert's
    JavaScript engine (seconds), so it is kept under the cache folder, one file per vl-convert and Vega-Lite."""
    import vl_convert as vlc

    from workbench.paths import atomic_write_text, cache_dir

    version = vlc.__version__  # type: ignore[attr-defined]  # vl-convert sets it; its stub leaves it out
    path = cache_dir() / "vega" / f"bundle-vlc{version}-{_vl_version()}.js"
    try:
        return path.read_text()
    except OSError:
        pass
    text = vlc.javascript_bundle(vl_version=_vl_version())  # type: ignore[call-arg]  # snippet is optional (stub says not)
    try:
        atomic_write_text(path, text)
    except OSError:  # a read-only cache only costs the seconds again next time
        pass
    return text


def bundle_script() -> str:
    """The bundle as a `<script>` that defines the globals once per page (a second copy is skipped, and its
    top-level declarations stay inside a function so they cannot collide with the first)."""
    body = bundle().replace("</script", "<\\/script")
    return f'<script type="text/javascript">if (!window.vegaEmbed) {{ (function () {{\n{body}\n}})(); }}</script>'


def chart_html(spec: dict, *, inline_bundle: bool = True, embed_options: dict | None = None) -> str:
    """A chart as a div and the script that draws it; `<` is escaped in the spec so no name can close the
    script. Without `inline_bundle` the page must load `bundle_script()` first (the report does, once)."""
    div = f"vis-{uuid.uuid4().hex[:10]}"
    embedded = json.dumps(spec).replace("<", "\\u003c")
    options = json.dumps(embed_options or EMBED_OPTIONS)
    draw = (
        f'(function () {{ var el = document.getElementById("{div}");'
        ' if (!window.vegaEmbed) { el.textContent = "chart not drawn: the Vega bundle is missing"; return; }'
        f" vegaEmbed(el, {embedded}, {options}).catch(function (e) {{"
        ' el.textContent = "chart not drawn: " + e.message; console.error(e); }); })();'
    )
    prefix = bundle_script() if inline_bundle else ""
    return f'<div id="{div}" class="workbench-chart"></div>{prefix}<script type="text/javascript">{draw}</script>'


def render(spec: dict, **_) -> dict:
    """altair renderer: a self-contained chart (the bundle inlined), for notebooks."""
    return {"text/html": chart_html(spec)}


def render_for_report(spec: dict, **_) -> dict:
    """altair renderer for one page that loads `bundle_script()` once (the HTML report)."""
    return {"text/html": chart_html(spec, inline_bundle=False, embed_options={"renderer": "svg", "actions": False})}


def enable() -> None:
    """Make every altair chart displayed in this process draw offline (notebooks call it in their first cell)."""
    import altair as alt

    alt.renderers.register(RENDERER, render)
    alt.renderers.enable(RENDERER)


def enable_for_report() -> HTML:
    """The report's renderer, and the HTML that loads the bundle once for the whole page (display it first).
    Report charts hold one row per configuration or quantile, never request rows, so altair's row cap is lifted."""
    import altair as alt
    from IPython.display import HTML

    alt.renderers.register(REPORT_RENDERER, render_for_report)
    alt.renderers.enable(REPORT_RENDERER)
    alt.data_transformers.disable_max_rows()
    return HTML(bundle_script())


def enable_widgets() -> None:
    """`alt.JupyterChart` loads its JavaScript from vl-convert's bundle instead of esm.sh (the dashboard)."""
    import altair as alt

    alt.JupyterChart.enable_offline()

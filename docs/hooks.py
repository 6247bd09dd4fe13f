"""MkDocs hooks (mkdocs.yml: ``hooks:``). Not a page: mkdocs.yml excludes it from the site.

1. The benchmark results live outside docs/, in benchmarks/results/ (written by
   ``make bench``). When they exist, the chart is added to the site as
   ``benchmarks/results.png`` (and the hit-ratio chart as ``benchmarks/hit_ratios.png``),
   results.md is copied next to it, and the page benchmarks.md shows them in place of
   its ``<!-- benchmark-results -->`` marker.
   When they do not, the marker becomes a note saying how to produce them.
2. The docstrings use a few Sphinx roles (``:class:`Tier```) and reST's ``::`` before a
   code block; the API reference shows the roles as plain code and ``::`` as ``:``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from mkdocs.structure.files import File
from mkdocs.utils import get_relative_url

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
CHART, TABLES = RESULTS / "results.png", RESULTS / "results.md"
HIT_RATIOS = RESULTS / "hit_ratios.png"
MARKER = "<!-- benchmark-results -->"
MISSING = (
    '!!! note "No results yet"\n'
    "    Run `make bench` to produce the results; the next build of this site shows them.\n"
)
_HEADING = re.compile(r"^(#{1,5}) ", re.MULTILINE)
_ROLE = re.compile(r":(?:class|func|meth|attr|exc|mod|data):<code>~?(?:[\w.]*\.)?(\w+)</code>")


def on_files(files, config):
    if CHART.is_file():
        files.append(
            File.generated(config, "benchmarks/results.png", abs_src_path=str(CHART))
        )
    if HIT_RATIOS.is_file():
        files.append(
            File.generated(config, "benchmarks/hit_ratios.png", abs_src_path=str(HIT_RATIOS))
        )
    return files


def on_page_markdown(markdown, page, config, files):
    if MARKER not in markdown:
        return markdown
    if not (CHART.is_file() and TABLES.is_file()):
        return markdown.replace(MARKER, MISSING)
    tables = TABLES.read_text(encoding="utf-8")
    # The file's own title goes; its sections become subsections of this page's.
    tables = re.sub(r"\A# .*\n", "", tables)
    tables = _HEADING.sub(lambda match: "#" + match.group(1) + " ", tables)
    # results.md is copied, not built as a page (on_post_build): a raw link, unchecked.
    copied = get_relative_url("benchmarks/results.md", page.url or ".")
    shown = (
        "![PyStorage against its anchors: the ratio per operation, lower is better]"
        "(benchmarks/results.png)\n\n"
        "Each bar is PyStorage's time over its anchor's, for the rows that have a target "
        "(the black mark): green where the target holds, red where it is missed.\n\n"
        f'The tables below are <a href="{copied}">results.md</a> as the last run wrote '
        "it.\n\n"
    )
    if HIT_RATIOS.is_file():
        shown += (
            "![Hit ratios per trace and cache size, every policy, the optimal dashed]"
            "(benchmarks/hit_ratios.png)\n\n"
        )
    shown += tables
    return markdown.replace(MARKER, shown)


def on_page_content(html, page, config, files):
    return _ROLE.sub(r"<code>\1</code>", html).replace("::</p>", ":</p>")


def on_post_build(config):
    if CHART.is_file() and TABLES.is_file():
        target = Path(config["site_dir"]) / "benchmarks"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(TABLES, target / "results.md")

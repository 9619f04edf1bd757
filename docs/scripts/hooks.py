"""MkDocs hooks of the pac site (declared in mkdocs.yml).

* ``::: package.module`` blocks whose module is not in the source tree yet become a "not written
  yet" note instead of failing the strict build, so the API pages fill in as code lands.
* ``<!-- pac-bench-results -->`` in a page is replaced by the markdown tables committed in
  ``packages/pac-bench/results/`` (their images are copied into the site), or by a note saying that
  none are committed yet.
* A missing figure folder is reported with the command that makes it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.pac")

ROOT = Path(__file__).resolve().parents[2]
SRC_DIRS = sorted(ROOT.glob("packages/*/src"))
RESULTS = ROOT / "packages" / "pac-bench" / "results"
RESULTS_URI = "benchmarks-results"
FIGURES = ROOT / "docs" / "_generated" / "figures"
BENCH_MARKER = "<!-- pac-bench-results -->"

# A ``::: name`` line and its indented options block.
_DIRECTIVE = re.compile(r"^:::[ \t]+([\w.]+)[ \t]*$(?:\n[ \t]+\S.*$)*", re.MULTILINE)
_FENCE = re.compile(r"^(```|~~~)")
_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)")


def _source(dotted: str) -> str | None:
    """Source text of module ``dotted`` under packages/*/src, or None when there is none."""
    parts = dotted.split(".")
    for src in SRC_DIRS:
        base = src.joinpath(*parts)
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                return path.read_text(encoding="utf-8")
    return None


def _module_exists(dotted: str) -> bool:
    """Whether ``dotted`` is a module in the source tree, or a name its parent module mentions."""
    if _source(dotted) is not None:
        return True
    parent, _, name = dotted.rpartition(".")
    text = _source(parent) if parent else None
    return text is not None and re.search(rf"\b{re.escape(name)}\b", text) is not None


def _missing_module_note(match: re.Match[str]) -> str:
    name = match.group(1)
    if _module_exists(name):
        return match.group(0)
    log.info("pac docs: %s is not written yet; its API section shows a note", name)
    return (
        f'!!! note "`{name}` is not written yet"\n'
        f"    This section is generated from the docstrings of `{name}`; the module is not in\n"
        "    the source tree yet. It fills in as soon as the code lands.\n"
    )


def _bench_results() -> str:
    tables = sorted(RESULTS.glob("*.md")) if RESULTS.is_dir() else []
    if not tables:
        return (
            '!!! info "No benchmark results are committed yet"\n'
            "    `nox -s bench` writes them to `packages/pac-bench/results/`; once a result file\n"
            "    is committed there, this page shows it.\n"
        )
    parts = []
    for table in tables:
        text = table.read_text(encoding="utf-8")
        parts.append(_rebase(text))
        parts.append(f"\n<small>Source: `packages/pac-bench/results/{table.name}`</small>\n")
    return "\n".join(parts)


def _rebase(markdown: str) -> str:
    """Demote headings two levels and point relative links at the copied results folder."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            if line.startswith("#"):
                line = "##" + line  # under the page's "## Results"
            line = _LINK.sub(_rebase_link, line)
        out.append(line)
    return "\n".join(out)


def _rebase_link(match: re.Match[str]) -> str:
    target = match.group(2)
    if re.match(r"^([a-z]+:|/|#)", target):
        return match.group(0)
    return f"{match.group(1)}{RESULTS_URI}/{target}"


def on_config(config, **kwargs):
    if not any(FIGURES.glob("*.png")):
        log.warning(
            "pac docs: no figures in %s; run `python docs/scripts/make_figures.py` first "
            "(`nox -s docs` does)", FIGURES.relative_to(ROOT))
    return config


def on_files(files, config, **kwargs):
    if RESULTS.is_dir():
        for path in sorted(RESULTS.rglob("*")):
            if path.is_file() and path.suffix.lower() in {".png", ".svg", ".jpg", ".jpeg", ".csv"}:
                uri = f"{RESULTS_URI}/{path.relative_to(RESULTS).as_posix()}"
                files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files, **kwargs):
    markdown = _DIRECTIVE.sub(_missing_module_note, markdown)
    if BENCH_MARKER in markdown:
        markdown = markdown.replace(BENCH_MARKER, _bench_results())
    return markdown

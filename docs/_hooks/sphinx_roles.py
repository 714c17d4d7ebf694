"""MkDocs hook: turn Sphinx roles left in docstrings into links; drop "(Any)" type noise.

bayesdyn's docstrings are Google style but cross-reference with Sphinx roles
(``:class:`Catalog```, ``:meth:`~bayesdyn.Catalog.save```), which Markdown renders
as ``:class:<code>Catalog</code>``. This hook runs on the rendered pages before
mkdocs-autorefs resolves references (``on_env``, priority 0 > autorefs' −50): each
role becomes an optional autorefs reference when its target names a documented
object — looked up as written, then in the scopes of the object whose docstring
holds it, then by a unique trailing name — and plain code otherwise. Optional
references never warn, so the strict build is unaffected by a target that is not
documented (a private helper, say).

Parameters annotated ``Any`` (numbers, Quantities or priors; the docstrings give
their units) would show "(Any)" in every parameter list; ``on_post_page`` drops it.
"""

from __future__ import annotations

import html
import re

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj|const):<code>([^<]+)</code>")
_ANY = re.compile(r'\s*\(<code><span title="typing\.Any">Any</span></code>\)')
_ANCHOR = re.compile(r'id="(bayesdyn(?:\.[A-Za-z_][\w]*)+)"')


def _resolve(target: str, scope: str | None, known: set[str], by_tail: dict[str, list[str]]) -> str | None:
    if target in known:
        return target
    if scope:
        parts = scope.split(".")
        for i in range(len(parts), 0, -1):
            candidate = ".".join(parts[:i]) + "." + target
            if candidate in known:
                return candidate
    for tail in (target, target.removeprefix("bayesdyn.")):
        hits = by_tail.get(tail, [])
        if len(hits) == 1:
            return hits[0]
    return None


def on_env(env, config, files):  # noqa: ARG001 - the MkDocs hook signature
    pages = [f.page for f in files if f.page is not None and f.page.content]
    known: set[str] = set()
    for page in pages:
        known.update(_ANCHOR.findall(page.content))
    by_tail: dict[str, list[str]] = {}
    for ident in sorted(known):
        parts = ident.split(".")
        for i in range(1, len(parts)):
            by_tail.setdefault(".".join(parts[i:]), []).append(ident)

    for page in pages:
        content = page.content
        anchors = [(m.start(), m.group(1)) for m in _ANCHOR.finditer(content)]

        def replace(match: re.Match, anchors=anchors) -> str:
            raw = html.unescape(match.group(1)).strip()
            short = raw.startswith("~")
            target = raw.lstrip("~.").removesuffix("()")
            shown = target.rsplit(".", 1)[-1] if short else target
            scope = None
            for pos, ident in anchors:
                if pos > match.start():
                    break
                scope = ident
            ident = _resolve(target, scope, known, by_tail)
            code = f"<code>{html.escape(shown)}</code>"
            if ident is None:
                return code
            return f'<autoref identifier="{ident}" optional>{code}</autoref>'

        page.content = _ROLE.sub(replace, content)
    return env


def on_post_page(output, page, config):  # noqa: ARG001 - the MkDocs hook signature
    return _ANY.sub("", output)

"""``tunnelproof.browser`` is a leaf: static assets and the router serving them.

The token service imports ``browser.static``; if anything in ``browser/`` imported the token
service, the emulator or the testing tools back (even inside a function, as the demo page's
assembly once did), the package would sit above the service that serves it. The demo's
assembly lives in ``tunnelproof.demo.browser``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tunnelproof.browser

BROWSER = Path(tunnelproof.browser.__file__).resolve().parent


def _imported_modules(tree: ast.AST) -> list[str]:
    """Every module an import statement names, at any depth (functions included)."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_browser_modules_import_nothing_of_tunnelproof_but_the_browser_package() -> None:
    files = sorted(BROWSER.glob("*.py"))
    assert files, BROWSER
    outside = {
        f"{path.name}: {name}"
        for path in files
        for name in _imported_modules(ast.parse(path.read_text(encoding="utf-8")))
        if name.split(".")[0] == "tunnelproof"
        and name != "tunnelproof.browser"
        and not name.startswith("tunnelproof.browser.")
    }
    assert not outside, sorted(outside)

"""`mf init --template NAME` starting points: plain folders a user can read and copy.

A template is a folder with `template.toml` (a description), `twin.yaml` (changes applied as
the first command, the same format as `mf mutate apply`) and optionally `files/` (copied into
the repository, never over an existing file).
"""

from __future__ import annotations

from pathlib import Path

from metaforge.errors import BadInput


def template_dirs() -> list[Path]:
    from metaforge.thread.template_save import user_templates_dir

    here = Path(__file__).resolve().parent
    # yours (mf template save) first; then the built-in ones: metaforge/_templates in a wheel,
    # ../templates in a source checkout or editable install
    candidates = (user_templates_dir(), here / "_templates", here.parent / "templates")
    return [d for d in candidates if d.is_dir()]


def available() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for base in template_dirs():
        for d in sorted(base.iterdir()):
            if (d / "twin.yaml").is_file():
                found.setdefault(d.name, d)
    return found


def find(name: str) -> Path:
    path = Path(name)
    if (path / "twin.yaml").is_file():
        return path
    found = available()
    if name not in found:
        raise BadInput(f"unknown template '{name}'", "available: " + (", ".join(found) or "none"))
    return found[name]


def describe(path: Path) -> str:
    import tomllib

    try:
        return tomllib.loads((path / "template.toml").read_text()).get("description", "")
    except (OSError, ValueError):
        return ""

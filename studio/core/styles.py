"""Styles: named prompt and negative-prompt templates, as A1111 artists use them.

A style's prompt holds ``{prompt}`` where the artist's prompt goes
(``"analog film photo of {prompt}, grain"``); a template without it is appended after a
comma. Negative templates are appended to the negative prompt the same way. The starter set
ships in ``resources/styles.json``; the artist's own styles live in ``styles.json`` in the user
config folder (``STUDIO_CONFIG_DIR`` overrides it; tests use a temporary folder). A user style
with the name of a starter style replaces it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from studio.core.errors import StudioError
from studio.core.jobs.request import GenerationRequest
from studio.paths import APP_NAME, resources_dir

PLACEHOLDER = "{prompt}"
FILE_VERSION = 1


class StyleError(StudioError):
    kind = "style"


@dataclass(frozen=True)
class Style:
    """A named prompt/negative template."""

    name: str
    prompt: str = PLACEHOLDER
    negative_prompt: str = ""
    builtin: bool = False

    def apply(self, prompt: str, negative_prompt: str = "") -> tuple[str, str]:
        """The prompt and negative prompt with this style applied."""
        return (_merge(self.prompt, prompt), _merge(self.negative_prompt, negative_prompt))

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "prompt": self.prompt, "negative_prompt": self.negative_prompt}


def _merge(template: str, text: str) -> str:
    if PLACEHOLDER in template:
        return template.replace(PLACEHOLDER, text)
    if not template:
        return text
    if not text:
        return template
    return f"{text}, {template}"


def apply_styles(request: GenerationRequest, styles: Iterable[Style]) -> GenerationRequest:
    """``request`` with each style applied in turn to its prompts."""
    prompt, negative = request.prompt, request.negative_prompt
    for style in styles:
        prompt, negative = style.apply(prompt, negative)
    return request.replace(prompt=prompt, negative_prompt=negative)


def user_config_dir() -> Path:
    env = os.environ.get("STUDIO_CONFIG_DIR")
    if env:
        return Path(env)
    from platformdirs import user_config_dir as _config

    return Path(_config(APP_NAME, appauthor=False))


def default_user_styles_path() -> Path:
    return user_config_dir() / "styles.json"


def builtin_styles_path() -> Path:
    return resources_dir() / "styles.json"


def _read(path: Path, builtin: bool) -> list[Style]:
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        items = data["styles"] if isinstance(data, dict) else data
        return [Style(str(d["name"]), str(d.get("prompt", PLACEHOLDER)),
                      str(d.get("negative_prompt", "")), builtin) for d in items]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise StyleError(f"The styles file {path} cannot be read ({err}).",
                         hint="Fix or remove it; the starter styles still work.") from err


class StyleLibrary:
    """The starter styles plus the artist's own, saved as JSON.

    A damaged user file does not stop the library: ``problem`` holds the message to show,
    and saving is refused until the file is fixed, so it is never overwritten.
    """

    def __init__(self, user_path: Path | None = None, builtin_path: Path | None = None) -> None:
        self.user_path = Path(user_path) if user_path else default_user_styles_path()
        self.builtin_path = Path(builtin_path) if builtin_path else builtin_styles_path()
        self.problem = ""
        self._builtin: dict[str, Style] = {}
        self._user: dict[str, Style] = {}
        self.reload()

    def reload(self) -> None:
        self.problem = ""
        self._builtin = {s.name: s for s in _read(self.builtin_path, True)}
        try:
            self._user = {s.name: s for s in _read(self.user_path, False)}
        except StyleError as err:
            self._user = {}
            self.problem = str(err)

    def names(self) -> list[str]:
        return [s.name for s in self.styles()]

    def styles(self) -> list[Style]:
        """Starter styles first (unless replaced), then the artist's, each in file order."""
        out = [self._user.get(n, s) for n, s in self._builtin.items()]
        out += [s for n, s in self._user.items() if n not in self._builtin]
        return out

    def get(self, name: str) -> Style:
        style = self._user.get(name) or self._builtin.get(name)
        if style is None:
            raise StyleError(f"No style named {name!r}.")
        return style

    def save(self, style: Style) -> None:
        """Add or replace a user style (written at once)."""
        name = style.name.strip()
        if not name:
            raise StyleError("A style needs a name.")
        if not style.prompt.strip() and not style.negative_prompt.strip():
            raise StyleError(f"The style {name!r} is empty.")
        self._user[name] = Style(name, style.prompt, style.negative_prompt, False)
        self._write()

    def delete(self, name: str) -> None:
        if name not in self._user:
            raise StyleError(f"{name!r} is a starter style; it cannot be deleted."
                             if name in self._builtin else f"No style named {name!r}.")
        del self._user[name]
        self._write()

    def _write(self) -> None:
        if self.problem:
            raise StyleError(self.problem)
        data = {"version": FILE_VERSION, "styles": [s.to_dict() for s in self._user.values()]}
        self.user_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.user_path.with_suffix(".json.tmp")
        try:
            tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n",
                           encoding="utf-8")
            os.replace(tmp, self.user_path)
        except OSError as err:
            raise StyleError(f"Cannot save styles to {self.user_path}: {err.strerror}.") from err

"""Styles: templates applied to prompts, the starter set, user styles saved as JSON."""

from __future__ import annotations

import json

import pytest

from studio.core.jobs.request import GenerationRequest
from studio.core.styles import Style, StyleError, StyleLibrary, apply_styles


@pytest.fixture
def library(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_CONFIG_DIR", str(tmp_path))
    return StyleLibrary()


def test_template_with_placeholder_and_without():
    style = Style("Film", "analog photo of {prompt}, grain", "cartoon")
    assert style.apply("a lighthouse", "blurry") == ("analog photo of a lighthouse, grain",
                                                     "blurry, cartoon")
    assert Style("Q", "masterpiece").apply("a cat") == ("a cat, masterpiece", "")
    req = apply_styles(GenerationRequest("a cat"), [style, Style("Q", "{prompt}, 4k")])
    assert req.prompt == "analog photo of a cat, grain, 4k" and req.negative_prompt == "cartoon"


def test_starter_set_is_there_and_every_style_keeps_the_prompt(library):
    styles = library.styles()
    assert len(styles) >= 10 and all(s.builtin for s in styles)
    for s in styles:
        prompt, negative = s.apply("UNIQUE_SUBJECT", "")
        assert "UNIQUE_SUBJECT" in prompt and negative


def test_user_styles_are_saved_reloaded_and_can_replace_starters(library, tmp_path):
    library.save(Style("Mine", "{prompt} in my style", "ugly"))
    library.save(Style("Photograph", "my photo of {prompt}"))
    again = StyleLibrary()
    assert again.get("Mine").apply("a cat") == ("a cat in my style", "ugly")
    assert again.get("Photograph").prompt == "my photo of {prompt}"
    assert again.names().count("Photograph") == 1 and again.names()[-1] == "Mine"
    saved = json.loads((tmp_path / "styles.json").read_text())
    assert [s["name"] for s in saved["styles"]] == ["Mine", "Photograph"]
    again.delete("Photograph")  # the starter style comes back
    assert StyleLibrary().get("Photograph").builtin


def test_mistakes_give_clear_messages(library, tmp_path):
    with pytest.raises(StyleError, match="needs a name"):
        library.save(Style(" ", "x"))
    with pytest.raises(StyleError, match="starter style"):
        library.delete("Anime")
    (tmp_path / "styles.json").write_text("{ not json")
    broken = StyleLibrary()
    assert "cannot be read" in broken.problem and len(broken.styles()) >= 10
    with pytest.raises(StyleError, match="cannot be read"):
        broken.save(Style("New", "{prompt}"))
    assert (tmp_path / "styles.json").read_text() == "{ not json"  # never overwritten

"""At few steps the prompt panel offers the model card's fast sampler and guidance (the
embedded diffusion model: DPM++ 2M at guidance 3.5 for 4 steps, which its card measured to
follow prompts better there than its 25-step guidance of 5), and the CLI says the same."""

from __future__ import annotations

from pathlib import Path

from studio.core.models import ModelInfo
from studio.core.samplers import fast_setting, fast_setting_note
from studio.engine.models.discovery import embedded_info
from studio.ui.prompt_panel import PromptPanel

SHIPPED = Path(__file__).resolve().parents[2] / "resources" / "models"
BIG = ModelInfo("big", "big-xl", "diffusion", "sdxl", "single-file", "/m/big.safetensors", 1)


def _tiny() -> ModelInfo:
    info = embedded_info(SHIPPED / "studio-tiny-diffusion")
    assert info is not None
    return info


def test_the_embedded_cards_fast_setting_is_offered_only_where_it_applies():
    rec = dict(_tiny().recommended)
    assert fast_setting(rec, 4, "Euler", 5.0) == ("DPM++ 2M", 3.5)
    assert fast_setting(rec, 3, "DPM++ 2M", 5.0) == ("DPM++ 2M", 3.5)
    assert fast_setting(rec, 4, "DPM++ 2M", 3.5) is None  # in use already
    assert fast_setting(rec, 25, "Euler", 5.0) is None  # not few steps
    assert fast_setting(dict(BIG.recommended), 4, "Euler", 5.0) is None  # no such card
    note = fast_setting_note(rec, 4, "Euler", 5.0)
    assert note.startswith("At 4 steps this model follows the prompt best with DPM++ 2M at "
                           "guidance 3.5") and "\n" not in note


def test_the_panel_offers_it_at_4_steps_and_its_link_applies_it(qtbot):
    panel = PromptPanel()
    qtbot.addWidget(panel)
    panel.set_models([BIG, _tiny()], "studio-tiny-diffusion")  # chosen: its card applies
    panel.show()
    qtbot.waitExposed(panel)
    label = panel.fast_label
    assert panel.steps_slider.value() == 25 and not label.isVisibleTo(panel)
    panel.steps_slider.setValue(4)
    assert label.isVisibleTo(panel) and "DPM++ 2M at guidance 3.5" in label.text()
    label.linkActivated.emit("fast")  # what a click on "Use them" sends
    assert panel.scheduler_combo.currentText() == "DPM++ 2M"
    assert panel.guidance_slider.value() == 3.5
    assert not label.isVisibleTo(panel)  # in use now
    panel.steps_slider.setValue(25)
    panel.scheduler_combo.setCurrentText("Euler")
    assert not label.isVisibleTo(panel)  # 25 steps: the card's own settings
    # Steps set before the model list arrives (the window lists the models after it shows).
    late = PromptPanel()
    qtbot.addWidget(late)
    late.steps_slider.setValue(4)
    late.set_models([_tiny()], "studio-tiny-diffusion")
    late.show()
    assert late.fast_label.isVisibleTo(late)
    # A model with no fast setting never shows the line.
    panel.model_combo.setCurrentIndex(panel.model_combo.findData(BIG.id))
    panel.steps_slider.setValue(4)
    assert not label.isVisibleTo(panel)


def test_the_cli_notes_it_at_4_steps_and_not_once_it_is_used(tmp_path, capsys):
    from studio.cli import main

    common = ["a person with red hair", "--model", "studio-tiny-diffusion", "--steps", "4",
              "--seed", "3", "--quiet", "--device", "cpu", "--dtype", "float32",
              "--no-hf-cache"]
    assert main(["generate", *common, "-o", str(tmp_path / "a.png")]) == 0
    err = capsys.readouterr().err
    assert ("studio: note: At 4 steps this model follows the prompt best with DPM++ 2M at "
            "guidance 3.5") in err and "(--scheduler, --guidance)" in err
    assert main(["generate", *common, "--scheduler", "DPM++ 2M", "--guidance", "3.5",
                 "-o", str(tmp_path / "b.png")]) == 0
    assert "fast setting" not in capsys.readouterr().err

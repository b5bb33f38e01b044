import numpy as np
import pytest

from studio.core.document.pixels import Pixels
from studio.core.errors import InvalidRequestError
from studio.core.jobs.request import GenerationRequest, LoraWeight, SliderValue


def test_request_is_a_frozen_value():
    a = GenerationRequest("a cat", seed=5)
    b = GenerationRequest("a cat", seed=5)
    assert a == b and hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.seed = 6  # type: ignore[misc]


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(steps=0), "steps"),
        (dict(width=500), "multiples of 8"),
        (dict(width=100000), "size"),
        (dict(strength=1.5), "strength"),
        (dict(task="img2img"), "init image"),
        (dict(task="paint"), "unknown task"),
        (dict(seed=-1), "seed"),
    ],
)
def test_invalid_requests_say_what_is_wrong(changes, words):
    with pytest.raises(InvalidRequestError) as err:
        GenerationRequest("x", **changes)
    assert words in str(err.value)


def test_batch_seeds_and_single_image_request():
    req = GenerationRequest("x", seed=2**32 - 1, batch_size=3)
    assert req.seeds == [2**32 - 1, 0, 1]
    one = req.for_image(2)
    assert one.seed == 1 and one.batch_size == 1


def test_json_round_trip_keeps_every_setting_and_images_by_hash():
    init = Pixels.from_array(np.full((16, 16, 3), 7, np.uint8))
    mask = Pixels.from_array(np.full((16, 16), 255, np.uint8))
    req = GenerationRequest(
        "a castle", negative_prompt="blurry", scheduler="DPM++ 2M Karras", seed=42, steps=12,
        guidance=5.5, width=64, height=96, task="inpaint", strength=0.6, init_image=init,
        mask=mask, sliders=(SliderValue("age", 0.5, "text"),),
        loras=(LoraWeight("/m/x.safetensors", -1.5, "x"),), variation_seed=9,
        variation_strength=0.2)
    data = req.to_dict()
    assert data["init_image"]["sha256"] == init.sha256
    back = GenerationRequest.from_json(req.to_json(), {init.sha256: init, mask.sha256: mask})
    assert back == req


def test_from_dict_without_the_init_image_falls_back_to_txt2img():
    init = Pixels.from_array(np.zeros((8, 8, 3), np.uint8))
    req = GenerationRequest("x", task="img2img", init_image=init)
    back = GenerationRequest.from_dict(req.to_dict())
    assert back.task == "txt2img" and back.init_image is None


def test_pixels_round_trip_and_hash_depends_on_content():
    arr = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    p = Pixels.from_array(arr)
    assert np.array_equal(p.to_array(), arr)
    q = Pixels.from_array(arr[::-1].copy())
    assert p.sha256 != q.sha256
    with pytest.raises(ValueError):
        Pixels.from_array(arr.astype(np.float32))

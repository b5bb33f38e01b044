"""Document model: layers, compositing, events, serialisation."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.document.layers import ArrayBag, Document, Layer, array_key, intersect, union
from studio.core.document.pixels import Pixels


def solid(w: int, h: int, rgba: tuple[int, int, int, int]) -> np.ndarray:
    return np.tile(np.array(rgba, dtype=np.uint8), (h, w, 1))


def test_layer_rgb_gets_opaque_alpha_and_rejects_bad_shapes():
    layer = Layer(pixels=np.zeros((3, 5, 3), np.uint8))
    assert layer.pixels.shape == (3, 5, 4)
    assert (layer.pixels[..., 3] == 255).all()
    assert layer.rect == (0, 0, 5, 3)
    with pytest.raises(ValueError):
        Layer(pixels=np.zeros((3, 5), np.uint8))
    with pytest.raises(ValueError):
        Layer(pixels=np.zeros((3, 5, 4), np.uint8), mask=np.zeros((2, 2), np.uint8))


def test_lookup_and_active_layer():
    a, b = Layer(name="a"), Layer(name="b")
    doc = Document(4, 4, layers=[a, b])
    assert doc.layer(b.id) is b
    assert doc.index_of(a.id) == 0
    assert doc.active_layer is b  # top layer when none is chosen
    doc.set_active_layer(a.id)
    assert doc.active_layer is a
    with pytest.raises(KeyError):
        doc.layer("nope")


def test_composite_opaque_layers_and_offsets():
    doc = Document(4, 3)
    doc.layers.append(Layer(pixels=solid(4, 3, (10, 20, 30, 255))))
    doc.layers.append(Layer(pixels=solid(2, 2, (200, 100, 50, 255)), x=3, y=2))
    out = doc.composite()
    assert out.shape == (3, 4, 4) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == (10, 20, 30, 255)
    assert tuple(out[2, 3]) == (200, 100, 50, 255)  # only the top-left pixel is on the canvas
    assert tuple(out[1, 3]) == (10, 20, 30, 255)


def test_composite_alpha_opacity_and_visibility():
    doc = Document(2, 1)
    doc.layers.append(Layer(pixels=solid(2, 1, (0, 0, 0, 255))))
    top = Layer(pixels=solid(2, 1, (255, 255, 255, 255)), opacity=0.5)
    doc.layers.append(top)
    assert tuple(doc.composite()[0, 0]) == (128, 128, 128, 255)
    top.opacity, top.pixels[..., 3] = 1.0, 64
    np.testing.assert_allclose(doc.composite()[0, 0], (64, 64, 64, 255), atol=1)
    top.visible = False
    assert tuple(doc.composite()[0, 0]) == (0, 0, 0, 255)


def test_composite_over_transparent_keeps_straight_colour():
    doc = Document(1, 1, layers=[Layer(pixels=solid(1, 1, (200, 40, 10, 100)))])
    assert tuple(doc.composite()[0, 0]) == (200, 40, 10, 100)
    doc.layers.append(Layer(pixels=solid(1, 1, (0, 0, 255, 100))))
    # a = 100/255 + 100/255 * (1 - 100/255)
    a = 100 / 255
    out_a = a + a * (1 - a)
    expected_r = 200 * a * (1 - a) / out_a
    px = doc.composite()[0, 0]
    assert abs(int(px[0]) - expected_r) <= 1
    assert abs(int(px[3]) - out_a * 255) <= 1


def test_composite_rect_matches_full_render():
    rng = np.random.default_rng(0)
    doc = Document(50, 40)
    for i in range(3):
        doc.layers.append(Layer(pixels=rng.integers(0, 256, (30, 35, 4), dtype=np.uint8),
                                x=i * 7 - 5, y=i * 5 - 3, opacity=0.3 + 0.3 * i))
    full = doc.composite()
    np.testing.assert_array_equal(doc.composite((10, 5, 20, 30)), full[5:35, 10:30])
    empty = Document(3, 3).composite()
    assert empty.shape == (3, 3, 4) and not empty.any()


def test_rect_helpers():
    assert intersect((0, 0, 4, 4), (2, 2, 4, 4)) == (2, 2, 2, 2)
    assert intersect((0, 0, 2, 2), (2, 2, 4, 4)) is None
    assert union((0, 0, 1, 1), (3, 3, 1, 1)) == (0, 0, 4, 4)
    assert union(None, (1, 1, 1, 1)) == (1, 1, 1, 1)


def test_listeners_receive_events():
    doc = Document(4, 4, layers=[Layer()])
    seen = []

    def listener(event, payload):
        seen.append((event, payload))

    doc.add_listener(listener)
    doc.set_active_layer(doc.layers[0].id)
    assert seen == [("active_layer_changed", {"layer_id": doc.layers[0].id})]
    doc.remove_listener(listener)
    doc.emit("x")
    assert len(seen) == 1


def test_snapshot_is_independent_and_has_no_listeners():
    doc = Document(2, 2, layers=[Layer(pixels=solid(2, 2, (1, 2, 3, 4)))])
    heard: list[str] = []
    doc.add_listener(lambda e, p: heard.append(e))
    snap = doc.snapshot()
    doc.layers[0].pixels[:] = 0
    assert snap.layers[0].pixels[0, 0, 0] == 1
    snap.emit("x")  # the snapshot tells no one: the document's listener stays the document's
    assert heard == []
    doc.emit("y")
    assert heard == ["y"]


def test_document_round_trip_through_array_bag():
    mask = np.zeros((2, 3), np.uint8)
    mask[1, 1] = 255
    doc = Document(8, 6, layers=[Layer(name="bg", pixels=solid(3, 2, (9, 8, 7, 255)),
                                       x=1, y=2, opacity=0.4, visible=False, mask=mask)],
                   selection=(1, 1, 4, 4), prompt="cat", negative_prompt="dog",
                   sliders={"age": 0.5})
    bag = ArrayBag()
    back = Document.from_dict(doc.to_dict(bag.put), bag.get)
    assert (back.width, back.height, back.selection) == (8, 6, (1, 1, 4, 4))
    assert (back.prompt, back.negative_prompt, back.sliders) == ("cat", "dog", {"age": 0.5})
    layer = back.layers[0]
    assert (layer.name, layer.x, layer.y, layer.opacity, layer.visible) == ("bg", 1, 2, 0.4,
                                                                              False)
    np.testing.assert_array_equal(layer.pixels, doc.layers[0].pixels)
    np.testing.assert_array_equal(layer.mask, mask)


def test_array_key_matches_pixels_sha256():
    arr = solid(3, 2, (1, 2, 3, 4))
    assert array_key(arr) == Pixels.from_array(arr).sha256
    assert array_key(arr[..., 0].copy()) == Pixels.from_array(arr[..., 0]).sha256
    assert array_key(arr.astype(np.float32)) != array_key(arr)


def test_a_failing_listener_does_not_stop_the_others(caplog):
    doc = Document(4, 4, layers=[Layer()])
    seen = []

    def broken(event, payload):
        raise RuntimeError("view bug")

    doc.add_listener(broken)
    doc.add_listener(lambda e, p: seen.append(e))
    doc.set_active_layer(doc.layers[0].id)
    assert seen == ["active_layer_changed"] and "view bug" in caplog.text

"""Flux and SD3 workflows on the real server: a Flux or SD3 model alone in
``models/diffusion_models`` with its text encoders and VAE beside it.

A real Flux needs T5-XXL (9 GB), so the spare server holds files with their names only: the
server's own ``/prompt`` validation (every node, input, link type and model name) accepts
our graphs, and the loaders then fail in one line. What a server lacks is named from its
real ``/object_info``.
"""

from __future__ import annotations

import pytest

from studio.core.jobs.cancel import CancelToken
from studio.core.jobs.request import GenerationRequest
from studio.remote import workflow as wf
from studio.remote.engine import RemoteEngine, features_from_nodes
from studio.remote.errors import RemoteExecutionError, ServerRefusedError

pytestmark = [pytest.mark.slow, pytest.mark.server]


@pytest.mark.parametrize("model, loader", [("flux1-tiny", "DualCLIPLoader"),
                                           ("sd3-tiny", "TripleCLIPLoader")])
def test_flux_and_sd3_graphs_pass_the_servers_validation(spare, model: str,
                                                         loader: str) -> None:
    engine = RemoteEngine([spare.url])
    try:
        flux = [m for m in engine.list_models("diffusion") if m.id == f"{model}.safetensors"]
        assert flux and flux[0].family == model[:4].rstrip("-")
        assert "diffusion_models/" in flux[0].path
        req = GenerationRequest(prompt="a fox", model=model, steps=2, width=64, height=64,
                                guidance=3.5, scheduler="Flow Euler")
        with pytest.raises(RemoteExecutionError) as err:  # not ServerRefusedError: valid
            engine.generate(req, cancel=CancelToken())
    finally:
        engine.close()
    text = str(err.value)
    assert not isinstance(err.value, ServerRefusedError)
    assert "\n" not in text and spare.url in text
    assert any(name in text for name in ("UNETLoader", loader, "VAELoader"))


def test_models_of_every_kind_with_where_each_lives(spare) -> None:
    engine = RemoteEngine([spare.url])
    try:
        models = engine.list_models()
    finally:
        engine.close()
    where = {(m.kind, m.id): m.path for m in models}
    for kind, name, folder in (("diffusion", "tiny-sd1.safetensors", "checkpoints"),
                               ("diffusion", "flux1-tiny.safetensors", "diffusion_models"),
                               ("text_encoder", "t5xxl_tiny.safetensors", "text_encoders"),
                               ("vae", "ae.safetensors", "vae"),
                               ("controlnet", "control_sd15_canny_tiny.safetensors",
                                "controlnet")):
        assert where[(kind, name)] == f"{spare.url} · {folder}/{name}"


def test_features_say_which_node_a_family_lacks(remote_engine: RemoteEngine) -> None:
    info = remote_engine.loop.run(remote_engine.servers[0].client.object_info(), timeout=60)
    full = features_from_nodes(info)
    assert {"sd1", "sdxl", "flux", "sd3"} <= set(full.families)
    for node, family in (("FluxGuidance", "flux"), ("TripleCLIPLoader", "sd3")):
        lacking = features_from_nodes({k: v for k, v in info.items() if k != node})
        assert family not in lacking.families and "sd1" in lacking.families
        assert node in lacking.reason(family) and "\n" not in lacking.reason(family)
    older = features_from_nodes({k: v for k, v in info.items() if k != "AddNoise"})
    assert "AddNoise" in older.reason("variation")
    assert all(n in info for n in wf.REQUIRED_NODES["hires"])


def test_connect_check_on_the_real_servers(comfy_server, spare) -> None:
    from studio.remote.check import check_servers
    from studio.remote.client import ServerConfig

    text = check_servers([ServerConfig(comfy_server.url), ServerConfig(spare.url)])
    first, second = text.split("\n\n")

    def line(report: str, what: str) -> str:
        return next(x for x in report.splitlines() if x.split()[1:2] == what.split()[:1])

    assert line(first, "Flux").split()[0] == "missing"
    assert "ComfyUI/models/diffusion_models/" in line(first, "Flux")
    assert "studio-tiny-upscaler" in line(first, "upscaling")
    assert "ComfyUI_IPAdapter_plus" in line(first, "reference")
    assert line(second, "Flux").split()[0] == "ok" and "ae.safetensors" in line(second, "Flux")
    assert line(second, "SD3").split()[0] == "ok" and "clip_g" in line(second, "SD3")
    assert line(second, "variation").split()[0] == "ok"


def test_bench_remote_prints_overhead_and_scaling(comfy_server, spare, tmp_path,
                                                  capsys) -> None:
    import json

    from studio.cli.main import main

    out = tmp_path / "remote.json"
    assert main(["bench", "--remote", comfy_server.url, spare.url, "--remote-model", "tiny-sd1",
                 "--smoke", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Round trip over the server's own execution time" in text and "speed-up" in text
    figures = json.loads(out.read_text())["remote"]
    for row in figures["overhead"]:
        assert 0 < row["server_s"] < row["ours_s"] and row["overhead_ms"] > 0
        assert 0 < row["client_ms"] < 1000 * row["ours_s"] and row["wait_ms"] > -1000
    assert "Load average" in text and len(figures["load"]) == 3
    one, two = figures["throughput"]
    assert (one["servers"], two["servers"]) == (1, 2) and two["used"].count(",") == 1
    assert one["images_per_s"] > 0 and two["speedup"] > 0

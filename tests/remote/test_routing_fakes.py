"""``RoutingEngine`` over two fake backends (no server, no torch): the everyday run's check
of where each model's job goes, its place in the one queue, and what is off per model."""

from __future__ import annotations

from dataclasses import replace

from fakes import FAKE_FEATURES, LARGE, TINY, FakeEngine, fake_services

from studio.core.engines import EngineServices
from studio.core.jobs.request import GenerationRequest
from studio.core.jobs.runner import JobRunner
from studio.core.models import ModelInfo
from studio.remote.routing import RoutingEngine, location, routing_services
from studio.session.connection import Connection

SERVER = ModelInfo(id="tiny-sd1.safetensors", name="tiny-sd1", kind="diffusion", family="sd1",
                   source="comfyui", path="http://gpu:8188 · checkpoints/tiny-sd1.safetensors")
SERVER_FEATURES = replace(FAKE_FEATURES, backend="comfyui", prompt_sliders=False,
                          latent_sliders=False, model_management=False,
                          why_not=(("prompt_sliders", "Latent sliders run on the local "
                                                      "engine only."),))


class FakeServers(FakeEngine):
    """A fake pool of two servers: ``place`` as the remote engine's (one job each)."""

    places = 2

    def __init__(self) -> None:
        super().__init__(models=[SERVER], features=SERVER_FEATURES)
        self.held: set[int] = set()

    def place(self, request: GenerationRequest) -> bool:
        if len(self.held) >= self.places:
            return False
        self.held.add(id(request))
        return True

    def unplace(self, request: GenerationRequest) -> None:
        self.held.discard(id(request))

    def close(self) -> None:
        pass


def make() -> tuple[RoutingEngine, FakeEngine, FakeServers]:
    local, servers = FakeEngine(), FakeServers()
    return RoutingEngine(local, servers), local, servers


def test_both_lists_with_where_each_lives_and_each_job_where_its_model_is() -> None:
    engine, local, servers = make()
    models = engine.list_models("diffusion")
    assert [m.id for m in models] == [TINY.id, LARGE.id, SERVER.id]  # this computer's first
    assert [location(m) for m in models] == ["this computer"] * 2 + ["gpu:8188"]
    runner = JobRunner(engine)
    assert runner.places == 3  # this computer's one, one per server
    runner.submit(GenerationRequest(prompt="here", model=TINY.id, steps=1, width=8, height=8))
    runner.submit(GenerationRequest(prompt="there", model=SERVER.id, steps=1, width=8,
                                    height=8))
    assert runner.wait_idle(10)
    assert runner.shutdown(5)
    assert [r.prompt for r in local.requests] == ["here"]
    assert [r.prompt for r in servers.requests] == ["there"]
    # A request made on a server (its ``device``) goes back to the servers.
    pinned = GenerationRequest(prompt="again", model="x", device="comfyui:http://gpu:8188")
    assert engine.backend_for(pinned.model, pinned.device) == "remote"


def test_this_computer_runs_one_job_at_a_time_and_servers_one_each() -> None:
    engine, _local, servers = make()
    first, second = (GenerationRequest(prompt=p, model=TINY.id) for p in "ab")
    assert engine.place(first) and not engine.place(second)
    engine.unplace(first)
    assert engine.place(second)
    remote = [GenerationRequest(prompt=p, model=SERVER.id) for p in "xyz"]
    engine.list_models()
    assert [engine.place(r) for r in remote] == [True, True, False]
    assert len(servers.held) == 2


def test_what_is_off_follows_the_chosen_models_backend() -> None:
    engine, _local, _servers = make()
    engine.list_models()
    here, there = engine.features_for(TINY.id), engine.features_for(SERVER.id)
    assert here.prompt_sliders and not there.prompt_sliders
    assert there.reason("prompt_sliders") == "Latent sliders run on the local engine only."
    assert there.model_management  # this computer's model manager stays on
    # The state layer: choosing the server's model re-greys the window (state_changed).
    services = routing_services(fake_services(FakeEngine()),
                                EngineServices(engine=FakeServers()))
    connection = Connection()
    connection.connect(services, None)
    seen: list[str] = []
    connection.state_changed.connect(seen.append)
    services.engine.list_models()
    connection.select_model(SERVER.id)
    assert seen == ["ready"] and not connection.can("prompt_sliders")
    assert "local engine only" in connection.reason("prompt_sliders")
    assert connection.can("model_management")
    connection.select_model(TINY.id)
    assert connection.can("prompt_sliders")


def test_the_control_picker_offers_each_model_its_own_backends_controlnets() -> None:
    # A local SD 1.x ControlNet is no use to a server's SD 1.x model (the server has its
    # own files), and the other way round.
    from types import SimpleNamespace

    engine, local, servers = make()
    engine.list_models("diffusion")
    here = SimpleNamespace(id="here", family="sd1")
    there = SimpleNamespace(id="there", family="sd1")
    local.controls = SimpleNamespace(list=lambda: [here], fitting=lambda m: [here],
                                     references="ip-adapters", estimate_depth="dpt")
    servers.controls = SimpleNamespace(list=lambda: [there], fitting=lambda m: [there])
    assert engine.controls.fitting(TINY) == [here]
    assert engine.controls.fitting(SERVER) == [there]
    assert engine.controls.list() == [here, there]
    # Reference images and depth estimation run on this computer only.
    assert engine.controls.references == "ip-adapters"
    assert engine.controls.estimate_depth == "dpt"

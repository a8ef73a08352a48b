"""While the streams show the input, the worker is not asked for the dream's activations."""

from types import SimpleNamespace

from earengine.engine.engine import Engine
from earengine.params import default_registry


class Dream:
    """Records what the engine asks of the worker."""

    def __init__(self) -> None:
        self.asked: list[bool] = []

    def stream_activations(self, on: bool) -> None:
        self.asked.append(on)


def test_the_dream_s_activations_are_asked_for_only_while_watched_and_shown():
    registry = default_registry()
    engine = SimpleNamespace(registry=registry, dream=Dream(), _layout=lambda compute: None, _watched=False)
    demand = lambda on: Engine._stream_demand(engine, on)  # noqa: E731
    demand(True)  # a receiver came: the dream is shown
    registry.set("/stream/source", "input")
    demand(engine._watched)  # as the engine's binding of /stream/source calls it
    registry.set("/stream/source", "dream")
    demand(engine._watched)
    demand(False)  # the last receiver went
    registry.set("/stream/source", "input")
    demand(engine._watched)
    assert engine.dream.asked == [True, False, True, False, False]

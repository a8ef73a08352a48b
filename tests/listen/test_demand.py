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


def test_every_set_the_listener_writes_is_taken_whichever_slot_it_lands_in():
    import numpy as np

    from earengine.listen.service import Listening
    from earengine.streams.activations import ActivationBuffer

    taps = ("scaleogram",)
    with ActivationBuffer(1000) as buf:
        heard: list[int] = []
        service = SimpleNamespace(acts=buf, taps=taps, _seq=-1, latest=None, sets=0, registry=default_registry(),
                                  on_heard=lambda: None)
        for count in range(6):  # the buffer's two slots take turns
            buf.write(count, 100.0 + count, {"scaleogram": np.full((1, 4, 2), count, np.float32)}, {}, taps=taps)
            Listening._poll_acts(service)
            Listening._poll_acts(service)  # nothing new: nothing taken twice
            heard.append(int(service.latest[0].acts["scaleogram"][0, 0, 0]))
        assert heard == list(range(6)) and service.sets == 6
        assert service.latest[1] == 105.0  # when its last sample was heard

"""What tests share, apart from fixtures (those stay in the ``conftest.py`` files):

- :mod:`tests.helpers.osc`: a real UDP peer and a poll;
- :mod:`tests.helpers.streams`: a UDP receiver that reassembles stream frames;
- :mod:`tests.helpers.fuzz`: the fuzz suite's settings and Hypothesis strategies;
- :mod:`tests.helpers.offline`: pyo's offline server as a test rig;
- :mod:`tests.helpers.jack`: the JACK dummy server, its frame clock, probes, MIDI clock, recorder;
- :mod:`tests.helpers.engines`: ``earengine run --audio jack`` as a process, and its OSC peers;
- :mod:`tests.helpers.recordings`: measures on recordings (loop phase, level, bar lines);
- :mod:`tests.helpers.link`: an Ableton Link peer in a process of its own;
- :mod:`tests.helpers.relay`: a TCP relay with a venue's delay and rate, cut on demand;
- :mod:`tests.helpers.errors`: how errors read (one plain line).
"""

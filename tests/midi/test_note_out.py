"""The dream's notes on MIDI out: on the steps of the grid, swapped at bar lines, released on stop;
and as standard MIDI files that round-trip through mido."""

import mido
import pytest

from earengine.clock.grid import Timeline
from earengine.midi.file import MidiFileError, TICKS_PER_BEAT, read_pattern, write_pattern
from earengine.midi.notes import NoteOut
from earengine.pattern import Note, Pattern


class Rig:
    """A NoteOut on a fake clock: ``run_to(t)`` calls step() every millisecond up to ``t``."""

    def __init__(self, grid: Timeline, **kwargs) -> None:
        self.t = 0.0
        self.grid = grid
        self.sent: list = []
        self.out = NoteOut(lambda: self.grid, lambda m, due: self.sent.append((bytes(m), due)),
                           now=lambda: self.t, **kwargs)

    def run_to(self, t_s: float) -> None:
        while self.t < t_s:
            self.out.step()
            self.t = round(self.t + 0.001, 6)

    def ons(self):
        return [(m[1], round(due, 6)) for m, due in self.sent if m[0] & 0xF0 == 0x90]

    def offs(self):
        return [(m[1], round(due, 6)) for m, due in self.sent if m[0] & 0xF0 == 0x80]


def pattern(*notes, steps_per_bar=16, bars=1):
    return Pattern(tuple(Note(*n) for n in notes), steps_per_bar, bars)


def test_notes_go_out_on_their_steps_every_loop():
    rig = Rig(Timeline(0.0, 0.0, 120.0))  # a bar is 2 s, a sixteenth 0.125 s
    rig.out.queue(pattern((0, 60, 100, 1), (5, 64, 90, 1, 2.0)))
    rig.run_to(4.1)
    assert rig.ons() == [(60, 0.0), (64, 0.625), (60, 2.0), (64, 2.625), (60, 4.0)]
    assert rig.offs()[:2] == [(60, 0.125), (64, 0.875)]  # one step, two steps
    first = rig.sent[0][0]
    assert first == bytes([0x90, 60, 100])


def test_a_new_pattern_takes_over_at_the_next_bar_line():
    rig = Rig(Timeline(0.0, 0.0, 120.0))
    rig.out.queue(pattern((0, 60, 100, 1), (8, 62, 100, 1)))
    rig.run_to(0.5)
    rig.out.queue(pattern((4, 67, 100, 2)))  # mid-bar: not before the bar line at 2 s
    rig.run_to(4.0)
    assert rig.ons() == [(60, 0.0), (62, 1.0), (67, 2.5)]
    assert all(m[0] == 0x91 for m, due in rig.sent if due >= 2.0 and m[0] & 0xF0 == 0x90)  # channel 2


def test_loops_keep_their_place_in_the_cycle_from_the_origin_bar():
    rig = Rig(Timeline(0.0, 0.0, 120.0), origin_bar=lambda: 1)
    rig.out.queue(pattern((0, 60, 100, 1), (16, 72, 100, 1), bars=2))  # bar 1 of the loop plays 72
    rig.run_to(2.1)  # the pattern arrives at bar 0, which is the loop's second bar (origin 1)
    assert rig.ons() == [(72, 0.0), (60, 2.0)]


def test_tempo_changes_keep_notes_on_steps():
    rig = Rig(Timeline(0.0, 0.0, 120.0))
    rig.out.queue(pattern((0, 60, 100, 1), (4, 62, 100, 1)))
    rig.run_to(1.9)
    rig.grid = Timeline(1.9, 3.8, 60.0)  # half as fast from here: the bar line (beat 4) is at 2.1 s
    rig.run_to(3.2)
    assert rig.ons()[-2:] == [(60, 2.1), (62, 3.1)]  # and the fifth sixteenth a whole beat later


def test_stopping_releases_held_notes_and_nothing_more_goes_out():
    rig = Rig(Timeline(0.0, 0.0, 120.0))
    rig.out.queue(pattern((0, 60, 100, 1, 8.0)))
    rig.run_to(0.5)
    assert rig.ons() == [(60, 0.0)] and rig.offs() == []
    rig.grid = Timeline(0.5, 1.0, 120.0, playing=False)
    rig.run_to(3.0)
    assert rig.offs() == [(60, 0.5)] and rig.ons() == [(60, 0.0)]


def test_disabled_sends_nothing_and_an_empty_pattern_stops_the_notes():
    on = [False]
    rig = Rig(Timeline(0.0, 0.0, 120.0), enabled=lambda: on[0])
    rig.out.queue(pattern((0, 60, 100, 1)))
    rig.run_to(2.5)
    assert rig.sent == []
    on[0] = True
    rig.run_to(4.5)
    assert rig.ons() == [(60, 4.0)]
    rig.out.queue(None)
    rig.run_to(8.5)
    assert rig.ons() == [(60, 4.0)]


def test_written_file_round_trips_through_mido_with_notes_on_the_steps(tmp_path):
    p = pattern((0, 57, 100, 1), (3, 60, 64, 1, 0.5), (3, 64, 70, 1), (12, 36, 127, 10), steps_per_bar=16, bars=2)
    path = tmp_path / "loop.mid"
    write_pattern(path, p, bpm=96.0)
    f = mido.MidiFile(str(path))
    assert f.ticks_per_beat == TICKS_PER_BEAT
    assert mido.tempo2bpm(next(m for m in f.tracks[0] if m.type == "set_tempo").tempo) == pytest.approx(96.0)
    ons, now = [], 0
    for m in f.tracks[1]:
        now += m.time
        if m.type == "note_on":
            ons.append((now, m.note, m.velocity, m.channel))
    step = TICKS_PER_BEAT // 4
    assert ons == [(0, 57, 100, 0), (3 * step, 60, 64, 0), (3 * step, 64, 70, 0), (12 * step, 36, 127, 9)]
    assert f.length == pytest.approx(2 * 4 * 60 / 96.0)  # the file lasts the loop: it loops in a host
    assert read_pattern(path, steps_per_bar=16) == p


def test_writing_to_a_bad_path_says_which():
    p = pattern((0, 57, 100, 1))
    with pytest.raises(MidiFileError, match="nowhere"):
        write_pattern("/nowhere/at/all/loop.mid", p, bpm=120.0)
    with pytest.raises(OSError):
        write_pattern("/proc/loop.mid", p, bpm=120.0)

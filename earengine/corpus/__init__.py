"""Corpora of real music for training and probing the ear, built into a cache folder.

``soundtracks``: produced music from Debian's game-music packages (:mod:`.soundtracks`);
``composers``: scores of music21's corpus rendered on one piano through FluidSynth, labelled by
composer and split by work (:mod:`.composers`). Both are plain folders of FLAC files with a
``manifest.json`` (:mod:`.manifest`), kept under ``$EARENGINE_HOME/corpus`` and never in git;
``earengine train --data`` and ``earengine probe --data`` read them like any folder of music.

``synthetic``: a seeded corpus composed and rendered on the fly, so that training, the probe and the
tests work offline (:mod:`.synthetic`, with its plans in :mod:`.track_plan` and its sounds in
:mod:`.instruments`); :mod:`.clips` says what every clip source hands out.
"""

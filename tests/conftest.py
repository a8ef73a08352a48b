"""Suite-wide settings: one torch thread per process. The suite shares two cores with the audio
and OSC threads of the engines it starts; more threads only make every process wait."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

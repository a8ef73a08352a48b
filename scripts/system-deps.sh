#!/usr/bin/env bash
# Installs the Debian packages earengine's real-time parts (and the browser tests) use, when they
# are missing and we are root. Without root it says what to install and carries on: the unit tests
# need none of them.
set -u
need=()
command -v jackd >/dev/null 2>&1 || need+=(jackd2)
command -v jack_rec >/dev/null 2>&1 || need+=(jackd2)
command -v jack_midi_dump >/dev/null 2>&1 || need+=(jackd2)
command -v pd >/dev/null 2>&1 || need+=(puredata-core)
command -v jack_midi_clock >/dev/null 2>&1 || need+=(jack-midi-clock)
# The real-music corpus: Debian packages are fetched with apt-get download and unpacked with
# dpkg-deb (both part of any Debian); scores are rendered on piano through FluidSynth.
command -v fluidsynth >/dev/null 2>&1 || need+=(fluidsynth)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need+=(fluid-soundfont-gm)
ldconfig -p 2>/dev/null | grep -q libsndfile || need+=(libsndfile1)
ldconfig -p 2>/dev/null | grep -q libportaudio || need+=(libportaudio2)
# A real browser for the tests of what web pages may do (tests/helpers/browser.py, through Selenium)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
need=($(printf "%s\n" "${need[@]}" | sort -u))
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || echo "system-deps: apt-get update failed; trying the install anyway"
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null \
        || echo "system-deps: could not install ${need[*]}; tests that need them will say so and skip"
else
    echo "system-deps: missing ${need[*]}; install them as root (apt-get install ${need[*]}) for JACK audio, MIDI and the browser tests"
fi
exit 0

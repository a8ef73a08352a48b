"""The web page at the OSCQuery port, in a real headless Chromium: its controls are built from the
registry, set the engine (read back over real UDP OSC), follow changes made elsewhere, show the
engine's own reason when it refuses, round-trip a preset, and every control has a name in
Chromium's accessibility tree. JSON clients still get JSON from the same ``/``."""

import json
import os
import urllib.request

import pytest

from earengine.control.osc import OscRouter
from earengine.control.oscquery import OscQueryServer, host_info
from earengine.engine import Engine, EngineConfig
from earengine.params import Registry
from earengine.params.spec import ParamSpec
from tests.helpers.browser import browser, missing
from tests.helpers.waits import wait_until

pytestmark = pytest.mark.integration

needs_browser = pytest.mark.skipif(missing() is not None, reason=str(missing()))

#: What Chromium sends when it navigates to a page.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
#: Roles a user operates; each must have a name.
INTERACTIVE = {"slider", "textbox", "combobox", "checkbox", "switch", "button", "spinbutton", "radio",
               "link", "searchbox", "listbox", "menuitem", "tab"}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    config = EngineConfig(audio="offline", osc_port=0, oscquery_port=0, zeroconf=False,
                          preset_dir=tmp_path_factory.mktemp("presets"))
    with open(os.devnull, "w") as out, Engine(config, out=out) as eng:
        yield eng


@pytest.fixture(scope="module")
def url(engine):
    return "http://%s:%d/" % engine.oscquery.address


@pytest.fixture(scope="module")
def driver():
    with browser() as d:
        yield d


def get(peer, address):
    reply = peer.ask("/get", address, reply=address)
    assert reply is not None and reply[0] == address, reply
    return reply[1][0]


def fetch(url, accept=None):
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.headers["Content-Type"], answer.read()


def open_page(driver, url):
    driver.get(url)
    assert wait_until(lambda: driver.execute_script("return document.body.dataset.ready") == "1", 15), \
        driver.find_element("id", "connection").text
    driver.execute_script("document.getElementById('announce').textContent = ''")


def type_into(element, text):
    """Replace what an input holds by typing, as a user would, and press Enter."""
    from selenium.webdriver.common.keys import Keys

    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(text, Keys.ENTER)


# -- HTTP ----------------------------------------------------------------------------------------
def test_json_clients_still_get_json_and_host_info_offers_html(url):
    for accept in (None, "application/json", "*/*"):
        kind, body = fetch(url, accept)
        assert kind == "application/json" and json.loads(body)["CONTENTS"]["loop"]["CONTENTS"]["gain"]["UNIT"] == ["dB"]
    kind, body = fetch(url + "?HOST_INFO", BROWSER_ACCEPT)  # a query is JSON whoever asks
    assert json.loads(body)["EXTENSIONS"]["HTML"] is True
    assert host_info(name="x", osc_ip="127.0.0.1", osc_port=1)["EXTENSIONS"]["HTML"] is True


def test_a_browser_asking_for_html_gets_the_page_and_only_its_files(url):
    kind, body = fetch(url, BROWSER_ACCEPT)
    assert kind.startswith("text/html") and b'<section id="controls"' in body and b'aria-live="polite"' in body
    assert fetch(url + "ui/controls.js")[0].startswith("text/javascript")
    assert fetch(url + "ui/style.css")[0].startswith("text/css")
    for path in ("ui/missing.js", "ui/..%2foscquery.py", "ui/%2e%2e/oscquery.py", "ui/", "ui/web/index.html",
                 "ui/controls.py"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            fetch(url + path)
        assert refused.value.code == 404, path


def test_the_page_and_its_files_stay_small():
    from earengine.control.oscquery import WEB

    assert sum(p.stat().st_size for p in WEB.iterdir() if p.is_file()) <= 300_000


# -- the page in Chromium ------------------------------------------------------------------------
@needs_browser
def test_the_slider_moved_by_keyboard_sets_the_engine(driver, url, peer):
    from selenium.webdriver.common.keys import Keys

    from earengine.units import SILENCE_DB

    open_page(driver, url)
    slider = driver.find_element("id", "p-loop-gain")
    slider.send_keys(Keys.END)
    assert wait_until(lambda: get(peer, "/loop/gain") == 6.0)
    slider.send_keys(Keys.HOME)
    assert wait_until(lambda: get(peer, "/loop/gain") == SILENCE_DB)
    assert slider.get_attribute("aria-valuetext") == f"{SILENCE_DB:g} dB"
    assert driver.find_element("id", "announce").text == ""  # its own change is not announced


@needs_browser
def test_an_osc_change_moves_the_controls_and_is_announced(driver, url, peer):
    open_page(driver, url)
    peer.send("/loop/gain", -12.0)
    peer.send("/son/base", 440.0)  # a log-scale row: the slider sits where log(440/20)/log(4000/20) puts it
    peer.send("/loop/mute", 1)
    slider = driver.find_element("id", "p-loop-gain")
    assert wait_until(lambda: slider.get_attribute("aria-valuetext") == "-12 dB")
    base = driver.find_element("id", "p-son-base")
    assert wait_until(lambda: base.get_attribute("aria-valuetext") == "440 Hz")
    assert base.get_attribute("value") == "583"
    assert wait_until(lambda: driver.find_element("id", "p-loop-mute").is_selected())
    announced = driver.find_element("id", "announce")
    assert wait_until(lambda: "gain -12 dB" in announced.get_attribute("textContent"))
    # one sentence, not one per change
    assert announced.get_attribute("textContent") == "gain -12 dB; base 440 Hz; mute on"
    peer.send("/loop/mute", 0)
    assert wait_until(lambda: not driver.find_element("id", "p-loop-mute").is_selected())


@needs_browser
def test_a_bad_value_typed_shows_the_engines_reason_and_changes_nothing(driver, url, peer):
    peer.send("/loop/gain", -9.0)
    assert wait_until(lambda: get(peer, "/loop/gain") == -9.0)
    address, (what, reason) = peer.ask("/loop/gain", 99.0, reply="/fail")
    assert address == "/fail" and what == "/loop/gain"
    open_page(driver, url)
    typed = driver.find_element("id", "p-loop-gain-typed")
    type_into(typed, "99")
    fail = driver.find_element("id", "p-loop-gain-fail")
    assert wait_until(lambda: fail.text == reason), fail.text
    assert get(peer, "/loop/gain") == -9.0
    assert driver.find_element("id", "p-loop-gain").get_attribute("aria-valuetext") == "-9 dB"
    # the reason is part of the control's description, so a screen reader says it too
    assert "p-loop-gain-fail" in typed.get_attribute("aria-describedby")
    type_into(typed, "-4.5")
    assert wait_until(lambda: get(peer, "/loop/gain") == -4.5)
    assert wait_until(lambda: not fail.is_displayed())


@needs_browser
def test_a_preset_round_trips_from_the_page(driver, url, peer):
    open_page(driver, url)
    peer.send("/loop/gain", -20.0)
    assert wait_until(lambda: get(peer, "/loop/gain") == -20.0)
    driver.find_element("id", "preset-save-name").send_keys("from-the-page")
    driver.find_element("id", "preset-save").click()
    out = driver.find_element("id", "preset-out")
    assert wait_until(lambda: out.text == "saved", 10), out.text  # the /done of a job reaches the page
    names = driver.find_element("id", "preset-name-list")
    assert wait_until(lambda: "from-the-page" in [o.get_attribute("value") for o in
                                                  names.find_elements("tag name", "option")])
    peer.send("/loop/gain", -30.0)
    assert wait_until(lambda: get(peer, "/loop/gain") == -30.0)
    from selenium.webdriver.support.select import Select

    Select(names).select_by_value("from-the-page")
    driver.find_element("id", "preset-load").click()
    assert wait_until(lambda: get(peer, "/loop/gain") == -20.0, 10)
    slider = driver.find_element("id", "p-loop-gain")
    assert wait_until(lambda: slider.get_attribute("aria-valuetext") == "-20 dB")
    assert wait_until(lambda: out.text == "loaded")
    # a job's refusal comes back to the page too, with the engine's reason
    address, (what, reason) = peer.ask("/preset/load", "no-such-preset", reply="/done")
    assert address == "/fail"
    driver.execute_script("earengine.send('/preset/load', 's', ['no-such-preset'])")
    assert wait_until(lambda: out.text == reason, 10), out.text


@needs_browser
def test_commands_are_forms_whose_answers_show_beside_them(driver, url, peer):
    open_page(driver, url)
    driver.find_element("css selector", "#p-target-clear-out").find_element("xpath", "..").submit()
    assert wait_until(lambda: driver.find_element("id", "p-target-clear-out").text == "done")
    learn = driver.find_element("css selector", '[data-address="/loop/gain"] button.learn')
    assert learn.get_attribute("aria-label") == "MIDI learn loop gain"
    learn.click()  # the engine's answer shows beside the control: waiting for a MIDI control, or why not
    expected = peer.ask("/midi/learn", "/loop/gain", reply="/done")
    peer.send("/midi/cancel")
    note = driver.find_element("id", "p-loop-gain-fail")
    if expected[0] == "/fail":
        assert wait_until(lambda: note.text == expected[1][1]), note.text
    else:
        assert wait_until(lambda: note.text.startswith("learning")), note.text
        assert learn.get_attribute("aria-pressed") == "true"
        learn.click()  # pressed again: stop waiting
        assert not note.is_displayed() and learn.get_attribute("aria-pressed") == "false"


@needs_browser
def test_chromiums_accessibility_tree_names_every_control(driver, url):
    open_page(driver, url)
    tree = driver.execute_cdp_cmd("Accessibility.getFullAXTree", {})["nodes"]
    interactive = [n for n in tree if not n.get("ignored") and n.get("role", {}).get("value") in INTERACTIVE]
    assert len(interactive) > 150
    nameless = [(n["role"]["value"], n.get("properties")) for n in interactive if not n.get("name", {}).get("value")]
    assert not nameless, nameless[:5]
    names = [n["name"]["value"] for n in interactive]
    assert len(set(names)) == len(names), sorted(x for x in names if names.count(x) > 1)[:6]
    sliders = {n["name"]["value"] for n in interactive if n["role"]["value"] == "slider"}
    assert {"loop gain (dB)", "son gain (dB)", "son base (Hz)"} <= sliders
    assert "MIDI learn loop gain" in names and "loop gain, exact value in dB" in names
    # the value is said with its unit (this Chromium's CDP reports the position as valuetext, so the
    # attribute is read from the page)
    assert driver.find_element("id", "p-loop-gain").get_attribute("aria-valuetext").endswith(" dB")
    live = {n["nodeId"]: n for n in tree if any(p["name"] == "live" and p["value"]["value"] != "off"
                                                for p in n.get("properties", []))}
    roots = [n for n in live.values() if n.get("parentId") not in live]  # a region's text is live too
    assert len(roots) == 1 and roots[0]["backendDOMNodeId"] == driver.execute_cdp_cmd(
        "DOM.describeNode", {"objectId": driver.execute_cdp_cmd("Runtime.evaluate", {
            "expression": "document.getElementById('announce')"})["result"]["objectId"]})["node"]["backendNodeId"]


@needs_browser
def test_a_new_registry_row_appears_on_the_page_by_itself(driver):
    from earengine.params.catalog import COMMANDS, PARAMS

    registry = Registry(list(PARAMS) + [ParamSpec("/web/brightness", "float", 0.25, min=0.0, max=1.0, unit="lux",
                                                  doc="A row only this test declares.")], COMMANDS)
    router = OscRouter(registry)
    with OscQueryServer(registry, port=0, osc_port=9, handle=router.handle, zeroconf=False) as server:
        open_page(driver, "http://%s:%d/" % server.address)
        label = driver.find_element("css selector", 'label[for="p-web-brightness"]')
        assert label.get_attribute("textContent") == "web brightness (lux)"
        assert "A row only this test declares." in driver.find_element("id", "p-web-brightness-help").text
        typed = driver.find_element("id", "p-web-brightness-typed")
        type_into(typed, "0.75")
        assert wait_until(lambda: registry.get("/web/brightness") == 0.75)
    router.close()


@needs_browser
def test_midi_learn_ends_on_the_page_when_a_controller_moves(engine, driver, url, peer):
    """The page learns the outcome from /midi/map (which it LISTENs to): the control says which MIDI
    control now moves it, its learn button is released, and the controller moves the slider."""
    open_page(driver, url)
    learn = driver.find_element("css selector", '[data-address="/loop/gain"] button.learn')
    note = driver.find_element("id", "p-loop-gain-fail")
    bound = driver.find_element("id", "p-loop-gain-midi")
    learn.click()
    assert wait_until(lambda: note.text.startswith("learning"), 10), note.text
    if engine.midi_control._learning is None:  # the engine refused (its reason is on the page)
        pytest.skip(note.text)
    try:
        # a controller's knob turns, as the MIDI service hands it over from a port: CC 81 on channel 1
        engine.midi_control.handle((0xB0, 81, 20), 0.0)
        assert wait_until(lambda: note.text == "learned: cc 1/81 now moves loop gain", 10), note.text
        assert learn.get_attribute("aria-pressed") == "false"
        assert bound.text == "MIDI cc 1/81"
        assert "p-loop-gain-midi" in driver.find_element("id", "p-loop-gain").get_attribute("aria-describedby")
        assert wait_until(lambda: "learned: cc 1/81 now moves loop gain" in
                          driver.find_element("id", "announce").get_attribute("textContent"), 5)
        # the knob now moves the engine's value, and the slider with it
        slider = driver.find_element("id", "p-loop-gain")
        before = slider.get_attribute("value")
        engine.midi_control.handle((0xB0, 81, 127), 0.0)
        assert wait_until(lambda: slider.get_attribute("value") != before, 10)
        assert get(peer, "/loop/gain") == pytest.approx(engine.registry.spec("/loop/gain").max)
    finally:
        peer.send("/midi/forget", "/loop/gain")
        peer.send("/loop/gain", float(engine.registry.spec("/loop/gain").default))
    assert wait_until(lambda: bound.text == "", 10), bound.text

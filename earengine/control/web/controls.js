// earengine's control surface: one control per row of the engine's OSCQuery namespace.
//
// Nothing here names a parameter: the page reads the namespace (GET / as JSON) and builds a
// control from each node's TYPE, RANGE, UNIT, DESCRIPTION, ACCESS and SCALE; each command gets a
// small form from its TYPE, RANGE and ARGUMENTS. Values travel over the OSCQuery WebSocket of the
// same origin: binary OSC to set, {"COMMAND": "LISTEN"} so that changes from OSC, MIDI or a preset
// move the controls, and "/fail <address> <reason>" shown beside the control that caused it.
//
// Other scripts of the page (ear.js, training.js) share the connection through window.earengine:
//   earengine.send(address, types, args)   e.g. earengine.send("/target/set", "s", ["conv3:12"])
//   earengine.on(fn)                        fn(address, args) for every OSC message the engine sends
//   earengine.values                        the engine's value of every parameter, by address
//   earengine.ready                         a Promise of the namespace, once the controls are built
//   earengine.announce(key, text)           say text in the page's one polite live region (coalesced by key)
//   earengine.shown(part)                   "controls" or "layout" is drawn; once both are, earengine.readyAt
//                                           is the page's ready time (ms since navigation start)
"use strict";
(function () {
  // -- OSC 1.0: strings, int32, float32 (and what the engine may send: double, int64, blobs, bundles)
  const utf8 = new TextEncoder();
  const fromUtf8 = new TextDecoder();
  const pad4 = (n) => (n + 3) & ~3;

  function oscString(text) {
    const bytes = utf8.encode(text);
    const out = new Uint8Array(pad4(bytes.length + 1));
    out.set(bytes);
    return out;
  }

  function encodeOsc(address, types, args) {
    const parts = [oscString(address), oscString("," + types)];
    for (let i = 0; i < types.length; i++) {
      const t = types[i];
      if (t === "s") { parts.push(oscString(String(args[i]))); continue; }
      const word = new Uint8Array(4);
      const view = new DataView(word.buffer);
      if (t === "i") view.setInt32(0, Math.round(Number(args[i])));
      else if (t === "f") view.setFloat32(0, Number(args[i]));
      else throw new Error("OSC type " + t + " is not sent by this page");
      parts.push(word);
    }
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }

  function decodeOsc(buffer) {
    const bytes = new Uint8Array(buffer);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let at = 0;
    const str = () => {
      let end = at;
      while (end < bytes.length && bytes[end] !== 0) end++;
      const s = fromUtf8.decode(bytes.subarray(at, end));
      at = pad4(end + 1);
      return s;
    };
    const address = str();
    if (address === "#bundle") {
      const out = [];
      at = 16;
      while (at + 4 <= bytes.length) {
        const size = view.getInt32(at);
        out.push(...decodeOsc(bytes.subarray(at + 4, at + 4 + size)));
        at += 4 + size;
      }
      return out;
    }
    const args = [];
    const types = at < bytes.length ? str() : ",";
    for (const t of types.slice(1)) {
      if (t === "i") { args.push(view.getInt32(at)); at += 4; }
      else if (t === "f") { args.push(view.getFloat32(at)); at += 4; }
      else if (t === "d") { args.push(view.getFloat64(at)); at += 8; }
      else if (t === "h") { args.push(Number(view.getBigInt64(at))); at += 8; }
      else if (t === "s" || t === "S") args.push(str());
      else if (t === "b") { const n = view.getInt32(at); args.push(bytes.slice(at + 4, at + 4 + n)); at = pad4(at + 4 + n); }
      else if (t === "T") args.push(true);
      else if (t === "F") args.push(false);
      else if (t === "N") args.push(null);
    }
    return [[address, args]];
  }

  // -- the page's state ----------------------------------------------------------------------
  const values = {};      // the engine's value of each parameter
  const controls = {};    // address -> {node, show(value), fail(text)}
  const commands = {};    // address -> {show(text)}
  const localAt = {};     // address -> when this page last set it (its echo is not announced)
  const handlers = [];
  let ws = null;
  let namespace = null;
  let learning = null;    // the address whose MIDI learn this page started last
  const $ = (id) => document.getElementById(id);
  const idOf = (address) => "p" + address.replace(/\//g, "-");

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c) e.append(c);
    return e;
  }

  function format(value, unit) {
    let text;
    if (typeof value === "number" && !Number.isInteger(value)) {
      text = Math.abs(value) >= 1e5 || (value !== 0 && Math.abs(value) < 1e-3)
        ? value.toExponential(2) : String(Number(value.toPrecision(4)));
    } else text = String(value);
    return unit ? text + " " + unit : text;
  }

  function send(address, types, args) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(encodeOsc(address, types, args));
    return true;
  }

  // -- the live region: changes from outside, coalesced into one sentence at most every 0.8 s
  const pending = new Map();
  let announceTimer = null;
  function announce(key, text) {
    pending.delete(key);
    pending.set(key, text);
    if (announceTimer === null) announceTimer = setTimeout(flushAnnouncements, 800);
  }
  function flushAnnouncements() {
    announceTimer = null;
    const items = [...pending.values()];
    pending.clear();
    const shown = items.slice(0, 3).join("; ");
    $("announce").textContent = items.length > 3 ? shown + "; and " + (items.length - 3) + " more" : shown;
  }

  // -- controls --------------------------------------------------------------------------------
  function parameter(node) {
    const address = node.FULL_PATH;
    const id = idOf(address);
    const name = address.split("/").slice(2).join("/") || address;
    const unit = node.UNIT ? node.UNIT[0] : "";
    const range = (node.RANGE && node.RANGE[0]) || {};
    const type = node.TYPE;
    const log = node.SCALE && node.SCALE[0] === "log";
    const readOnly = node.ACCESS === 1;
    const row = el("div", { class: "param", "data-address": address });
    const help = el("p", { class: "help", id: id + "-help", text: node.DESCRIPTION || "" });
    const fail = el("p", { class: "fail", id: id + "-fail", hidden: true });
    const describedBy = id + "-help " + id + "-fail " + id + "-midi";
    const where = address.split("/")[1] + " ";  // said, not shown: the group's heading shows it
    const labelText = name + (unit ? " (" + unit + ")" : "");
    const label = () => el("label", { for: id }, el("span", { class: "visually-hidden", text: where }), labelText);
    let show;
    let say = (v) => format(v, unit);  // how a value is read out
    let dragging = false;

    if (readOnly) {
      // a reading: focusable and named like the others, but nothing to set
      const out = el("input", { type: "text", readonly: true, id, size: 10, "aria-describedby": describedBy });
      row.append(label(), out);
      show = (v) => { out.value = format(v, unit); };
    } else if (range.VALS) {
      const select = el("select", { id, "aria-describedby": describedBy });
      for (const v of range.VALS) select.append(el("option", { value: v, text: v }));
      select.addEventListener("change", () => set(address, type, select.value));
      row.append(label(), select);
      show = (v) => { select.value = v; };
    } else if (type === "i" && range.MIN === 0 && range.MAX === 1) {
      const box = el("input", { type: "checkbox", id, role: "switch", "aria-describedby": describedBy });
      box.addEventListener("change", () => set(address, type, box.checked ? 1 : 0));
      row.append(box, label());
      show = (v) => { box.checked = Boolean(v); };
      say = (v) => (v ? "on" : "off");
    } else if ((type === "f" || type === "i") && range.MIN !== undefined && range.MAX !== undefined) {
      const lo = range.MIN, hi = range.MAX;
      const steps = type === "i" && !log && hi - lo <= 1000 ? hi - lo : 1000;
      const toPos = (v) => Math.round(steps * (log ? Math.log(v / lo) / Math.log(hi / lo) : (v - lo) / (hi - lo)));
      const fromPos = (p) => {
        const x = log ? lo * Math.pow(hi / lo, p / steps) : lo + (hi - lo) * p / steps;
        return type === "i" ? Math.round(x) : Number(x.toPrecision(6));
      };
      const slider = el("input", { type: "range", id, min: 0, max: steps, step: 1, "aria-describedby": describedBy });
      const typed = el("input", { type: "text", inputmode: "decimal", id: id + "-typed", size: 8,
        "aria-label": where + name + ", exact value" + (unit ? " in " + unit : ""), "aria-describedby": describedBy });
      slider.addEventListener("input", () => {
        const v = fromPos(Number(slider.value));
        slider.setAttribute("aria-valuetext", format(v, unit));
        typed.value = format(v, "");
        set(address, type, v);
      });
      slider.addEventListener("pointerdown", () => { dragging = true; });
      const release = () => { dragging = false; if (address in values) show(values[address]); };
      slider.addEventListener("pointerup", release);
      slider.addEventListener("pointercancel", release);
      typed.addEventListener("change", () => {
        const text = typed.value.trim();
        if (text === "") return;
        // the engine judges what was typed, so its own reason comes back when it refuses
        set(address, type, Number.isNaN(Number(text)) ? text : Number(text));
      });
      row.append(label(), slider, typed,
        el("span", { class: "range", "aria-hidden": "true", text: format(lo, "") + " – " + format(hi, unit) + (log ? " (log)" : "") }));
      show = (v) => {
        if (!dragging) slider.value = toPos(v);
        slider.setAttribute("aria-valuetext", format(v, unit));
        if (document.activeElement !== typed) typed.value = format(v, "");
      };
    } else {
      const text = el("input", { type: type === "s" ? "text" : "text", id, "aria-describedby": describedBy });
      text.addEventListener("change", () => set(address, type, type === "s" ? text.value : Number(text.value)));
      row.append(label(), text);
      show = (v) => { if (document.activeElement !== text) text.value = String(v); };
    }
    // the MIDI controls that move it (from /midi/map, which every page LISTENs to)
    const midi = el("span", { class: "midi", id: id + "-midi" });
    let learnButton = null;
    if (!readOnly && type !== "s") {
      row.append(el("button", { type: "button", class: "learn", "aria-label": "MIDI learn " + where + name, text: "learn" }));
      const button = learnButton = row.lastChild;
      button.setAttribute("aria-pressed", "false");
      button.addEventListener("click", () => {
        if (button.getAttribute("aria-pressed") === "true") {  // a second press stops waiting
          send("/midi/cancel", "", []);
          button.setAttribute("aria-pressed", "false");
          if (learning === address) learning = null;
          fail.hidden = true;
          return;
        }
        if (learning && learning !== address && controls[learning]) controls[learning].learned(null);  // one learn at a time
        learning = address;
        send("/midi/learn", "s", [address]);
        button.setAttribute("aria-pressed", "true");
        fail.hidden = false;
        fail.className = "note";
        fail.textContent = "learning: move a control on the MIDI controller (press learn again to stop)";
      });
    }
    row.append(midi, help, fail);
    controls[address] = {
      node, unit, name, say,
      show: (v) => { values[address] = v; show(v); if (address === "/midi/map") mapped(String(v)); },
      fail: (reason) => {
        fail.hidden = false;
        fail.className = "fail";
        fail.textContent = reason;
        if (address in values) show(values[address]);  // the control keeps the engine's value
      },
      clear: () => { fail.hidden = true; fail.textContent = ""; },
      midi: (words) => { midi.textContent = words ? "MIDI " + words : ""; },
      // learning ended: with the control that now moves it (words), or stopped (null)
      learned: (words) => {
        if (learnButton) learnButton.setAttribute("aria-pressed", "false");
        if (words === null) { fail.hidden = true; return ""; }
        fail.hidden = false;
        fail.className = "note";
        return (fail.textContent = "learned: " + words + " now moves " + where + name);
      },
    };
    if (node.VALUE) controls[address].show(node.VALUE[0]);
    return row;
  }

  // -- MIDI bindings: /midi/map (JSON) to each control's words, and the end of a learn -----------
  let bound = new Map();  // address -> "cc 1/81, note 1/60" as the engine says them
  function controlWords(b) {
    const ch = b.channel || 1;
    if (b.cc !== undefined) return (b.bits === 14 ? "cc14 " : "cc ") + ch + "/" + b.cc;
    if (b.note_high !== undefined) return "notes " + ch + "/" + b.note + "-" + b.note_high;
    return "note " + ch + "/" + b.note;
  }
  function mapped(text) {
    let list;
    try { list = text ? JSON.parse(text) : []; } catch (e) { return; }
    if (!Array.isArray(list)) return;
    const now = new Map();
    for (const b of list) if (b && b.address) now.set(b.address, (now.has(b.address) ? now.get(b.address) + ", " : "") + controlWords(b));
    for (const [address, c] of Object.entries(controls)) c.midi(now.get(address) || "");
    const words = learning && now.get(learning);
    if (words && words !== bound.get(learning)) {  // the control this page was learning is bound now
      const c = controls[learning];
      learning = null;
      if (c) announce("learn", c.learned(words));
    }
    bound = now;
  }

  function set(address, type, value) {
    localAt[address] = performance.now();
    controls[address].clear();
    const t = typeof value === "string" && type !== "s" ? "s" : type;
    if (!send(address, t, [value])) controls[address].fail("not connected to the engine");
  }

  function command(node) {
    const address = node.FULL_PATH;
    const id = idOf(address);
    const types = node.TYPE || "";
    const names = node.ARGUMENTS || [];
    const form = el("form", { class: "command", "aria-describedby": id + "-help " + id + "-out" });
    const fields = [];
    for (let i = 0; i < types.length; i++) {
      const arg = names[i] || { NAME: "argument " + (i + 1) };
      const vals = node.RANGE && node.RANGE[i] && node.RANGE[i].VALS;
      const fid = id + "-" + i;
      const input = vals ? el("select", { id: fid }) : el("input", { id: fid, type: "text", size: 12,
        inputmode: types[i] === "s" ? null : "decimal", placeholder: arg.OPTIONAL ? "optional" : null });
      if (vals) for (const v of vals) input.append(el("option", { value: v, text: v }));
      fields.push([input, types[i], arg.OPTIONAL]);
      form.append(el("label", { for: fid }, el("span", { class: "visually-hidden", text: address + " " }), arg.NAME), input);
    }
    const out = el("span", { id: id + "-out", class: "reply" });
    form.append(el("button", { type: "submit", text: address }), out);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const sendTypes = [], args = [];
      for (const [input, t, optional] of fields) {
        const text = input.value.trim();
        if (text === "" && optional) break;
        const number = Number(text);
        const asText = t === "s" || text === "" || Number.isNaN(number);
        sendTypes.push(asText ? "s" : t);
        args.push(asText ? text : number);
      }
      localAt[address] = performance.now();
      out.className = "reply";
      out.textContent = send(address, sendTypes.join(""), args) ? "sent" : "not connected to the engine";
    });
    commands[address] = { show: (text, failed) => { out.className = failed ? "reply fail" : "reply"; out.textContent = text; } };
    return el("div", { class: "cmd" }, form, el("p", { class: "help", id: id + "-help", text: node.DESCRIPTION || "" }));
  }

  // -- presets: save, load, list -------------------------------------------------------------
  function presets() {
    const box = $("presets");
    box.replaceChildren();
    if (!commands["/preset/list"]) return;
    const names = el("select", { id: "preset-name-list" });
    const load = el("button", { type: "button", id: "preset-load", text: "load" });
    const name = el("input", { type: "text", id: "preset-save-name", size: 14 });
    const save = el("button", { type: "button", id: "preset-save", text: "save" });
    const out = el("span", { id: "preset-out", class: "reply" });
    box.append(el("h3", { text: "Presets" }), el("label", { for: "preset-name-list", text: "preset" }), names, load,
      el("label", { for: "preset-save-name", text: "save as" }), name, save, out);
    load.addEventListener("click", () => { if (names.value) send("/preset/load", "s", [names.value]); });
    save.addEventListener("click", () => {
      if (name.value.trim()) send("/preset/save", "s", [name.value.trim()]);
      else out.textContent = "give the preset a name";
    });
    const done = (text, failed) => {
      out.className = failed ? "reply fail" : "reply";
      out.textContent = text;
      announce("preset", text);
    };
    commands["/preset/save"] = { show: (t, f) => { done(f ? t : "saved", f); if (!f) send("/preset/list", "", []); } };
    commands["/preset/load"] = { show: (t, f) => done(f ? t : "loaded", f) };
    commands["/preset/list"] = { show: () => {} };
    on((address, args) => {
      if (address !== "/preset/list.reply") return;
      const keep = names.value;
      names.replaceChildren(...args.map((n) => el("option", { value: n, text: n })));
      if (args.includes(keep)) names.value = keep;
    });
  }

  // -- the namespace, grouped --------------------------------------------------------------------
  function build(root) {
    const groups = new Map();
    const walk = (node) => {
      for (const child of Object.values(node.CONTENTS || {})) {
        if (child.CONTENTS) { walk(child); continue; }
        const parts = child.FULL_PATH.split("/");
        const group = parts.length > 2 ? parts[1] : "engine";
        if (!groups.has(group)) groups.set(group, []);
        groups.get(group).push(child);
      }
    };
    walk(root);
    for (const k of Object.keys(controls)) delete controls[k];
    for (const k of Object.keys(commands)) delete commands[k];
    const out = [];
    for (const [group, nodes] of groups) {
      const params = nodes.filter((n) => "VALUE" in n);
      const cmds = nodes.filter((n) => !("VALUE" in n));
      const details = el("details", { class: "group", id: "group-" + group, open: true },
        el("summary", {}, el("h3", { text: "/" + group })));
      details.append(...params.map(parameter));
      const forms = cmds.map(command);
      if (group !== "preset") details.append(...forms);
      out.push(details);
    }
    $("control-groups").replaceChildren(...out);
    shown("controls");
    if ("/midi/map" in values) mapped(String(values["/midi/map"]));  // every control built: say what moves it
    presets();
  }

  function on(fn) { handlers.push(fn); }

  function received(address, args) {
    if (address in controls && args.length) {
      const c = controls[address];
      c.show(args[0]);
      const own = performance.now() - (localAt[address] || -1e9) < 1500;
      if (!own) announce(address, c.name + " " + c.say(args[0]));
    } else if (address === "/fail") {
      const [what, reason] = [String(args[0]), String(args[1] || "")];
      if (what === "/midi/learn" && learning in controls) {
        controls[learning].fail(reason);
        const button = document.querySelector('[data-address="' + learning + '"] button.learn');
        if (button) button.setAttribute("aria-pressed", "false");
        learning = null;
      }
      else if (what in controls) controls[what].fail(reason);
      else if (what in commands) commands[what].show(reason, true);
      else $("connection").textContent = "the engine refused " + what + ": " + reason;
      announce("fail " + what, "refused: " + reason);
    } else if (address === "/done") {
      const what = String(args[0]);
      if (what in commands) commands[what].show("done", false);
    } else {
      const base = address.replace(/\.reply$/, "");
      if (base !== address && base in commands) commands[base].show(args.map((a) => format(a, "")).join(" "), false);
    }
    for (const fn of handlers) {
      try { fn(address, args); } catch (e) { console.error(e); }
    }
  }

  // -- the connection: fetch the namespace, LISTEN to every parameter, reconnect when lost ----
  let retry = 500;
  async function connect() {
    const status = $("connection");
    try {
      const answer = await fetch("/", { headers: { Accept: "application/json" }, cache: "no-store" });
      namespace = await answer.json();
    } catch (e) {
      status.textContent = "the engine does not answer; retrying";
      setTimeout(connect, retry = Math.min(retry * 2, 5000));
      return;
    }
    build(namespace);
    const socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/");
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      ws = socket;
      retry = 500;
      for (const address of Object.keys(controls)) socket.send(JSON.stringify({ COMMAND: "LISTEN", DATA: address }));
      if (commands["/preset/list"]) send("/preset/list", "", []);
      status.textContent = "connected to " + location.host;
      document.body.dataset.ready = "1";
      resolveReady(namespace);
    };
    socket.onmessage = (e) => {
      if (typeof e.data === "string") return;
      for (const [address, args] of decodeOsc(e.data)) received(address, args);
    };
    socket.onclose = () => {
      if (ws === socket) ws = null;
      document.body.dataset.ready = "";
      status.textContent = "connection lost; reconnecting";
      setTimeout(connect, retry = Math.min(retry * 2, 5000));
    };
  }

  const drawn = new Set();
  function shown(part) {
    drawn.add(part);
    if (drawn.has("controls") && drawn.has("layout") && window.earengine.readyAt === undefined) {
      window.earengine.readyAt = performance.now();
    }
  }

  let resolveReady;
  const ready = new Promise((resolve) => { resolveReady = resolve; });
  window.earengine = { send, on, values, ready, announce, shown, encodeOsc, decodeOsc };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", connect);
  else connect();
})();

// earengine's ear, live: every neuron of the force-directed layout lit by its activation at the
// moment its part of the loop sounds, the dream's target outlined, the playing loop's scaleogram
// with a playhead, and the status line.
//
// The frames come over the streams' WebSocket (its port is HOST_INFO's EARENGINE_STREAMS_PORT):
// one OSC bundle per frame, timetagged for when it sounds; a frame is drawn by the first
// animation frame at or after that moment (on the page's clock, less its offset from the engine's),
// one frame per animation frame: frames that came due together (a late animation frame, frames
// that arrived in a burst) are drawn one after the other, and a frame is skipped (counted) only
// when a newer one is already more than LATE_MS overdue, so the view never falls behind the sound. The neuron
// view is drawn only when a frame or the layout or the target changes: with nothing streaming it
// holds still. Clicking a neuron sets the target to its channel, a layer button to the whole layer
// (/target/set over the OSCQuery WebSocket, as any OSC client could). Counts for benchmarks are in
// window.earengine.ear.stats.
"use strict";
(function () {
  const W = 800, H = 560, MARGIN = 14, DOT = 2;
  const NTP_UNIX_S = 2208988800;
  const $ = (id) => document.getElementById(id);
  const LATE_MS = 25;
  const stats = { received: 0, drawn: 0, skipped: 0, ticks: 0, first: -1, last: -1, lags: [], offsetMs: 0 };
  const ear = { taps: new Map(), order: [], stats, connected: false };

  // -- OSC: bundles of messages with i, f, s, b arguments (the streams' whole vocabulary) ----------
  const text = new TextDecoder();
  function str(bytes, at) {
    let end = at;
    while (bytes[end] !== 0) end++;
    return [text.decode(bytes.subarray(at, end)), (end + 4) & ~3];
  }
  function message(view, bytes, at, end, out) {
    let address, tags;
    [address, at] = str(bytes, at);
    [tags, at] = str(bytes, at);
    // arrays (",iiif…f") are read as a whole: one Float32Array after their integer head
    const args = [];
    for (let k = 1; k < tags.length; k++) {
      const t = tags[k];
      if (t === "i") { args.push(view.getInt32(at)); at += 4; }
      else if (t === "f") {
        const n = tags.length - k;
        const values = new Float32Array(n);
        for (let j = 0; j < n; j++, at += 4) values[j] = view.getFloat32(at);
        args.push(values);
        break;
      } else if (t === "s") { let s; [s, at] = str(bytes, at); args.push(s); }
      else if (t === "b") {
        const size = view.getInt32(at);
        args.push(new DataView(view.buffer, view.byteOffset + at + 4, size));
        at += 4 + ((size + 3) & ~3);
      } else if (t === "d") { args.push(view.getFloat64(at)); at += 8; }
      else if (t === "h") { args.push(Number(view.getBigInt64(at))); at += 8; }
      else break;
    }
    out.push([address, args]);
  }
  function packet(buffer) {
    const bytes = new Uint8Array(buffer), view = new DataView(buffer);
    const out = [];
    let when = null;
    if (bytes[0] === 35) { // "#bundle"
      const sec = view.getUint32(8), frac = view.getUint32(12);
      if (!(sec === 0 && frac <= 1)) when = (sec - NTP_UNIX_S) * 1000 + frac / 4294967296 * 1000;
      for (let at = 16; at < bytes.length;) {
        const size = view.getInt32(at);
        message(view, bytes, at + 4, at + 4 + size, out);
        at += 4 + size;
      }
    } else message(view, bytes, 0, bytes.length, out);
    return [when, out];
  }

  // -- taps: shapes, layout, target mask -----------------------------------------------------------
  function tap(name) {
    let t = ear.taps.get(name);
    if (!t) {
      t = { name, channels: 0, freq: 0, pos: null, px: null, value: null, mask: null, scale: 1e-6 };
      ear.taps.set(name, t);
    }
    return t;
  }
  function neurons(t) { return t.pos ? t.px.length : 0; }
  function placed() {
    // every tap's neurons to pixels, keeping the layout's aspect
    let lo = [Infinity, Infinity], hi = [-Infinity, -Infinity];
    for (const t of ear.taps.values()) if (t.pos) for (let i = 0; i < t.pos.length; i += t.dims) {
      for (let d = 0; d < 2; d++) { lo[d] = Math.min(lo[d], t.pos[i + d]); hi[d] = Math.max(hi[d], t.pos[i + d]); }
    }
    const s = Math.min((W - 2 * MARGIN) / (hi[0] - lo[0] || 1), (H - 2 * MARGIN) / (hi[1] - lo[1] || 1));
    const ox = (W - s * (hi[0] - lo[0])) / 2, oy = (H - s * (hi[1] - lo[1])) / 2;
    for (const t of ear.taps.values()) if (t.pos) {
      const n = t.pos.length / t.dims;
      t.px = new Int32Array(n); t.x = new Float32Array(n); t.y = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        const x = ox + (t.pos[i * t.dims] - lo[0]) * s, y = H - (oy + (t.pos[i * t.dims + 1] - lo[1]) * s);
        t.x[i] = x; t.y[i] = y;
        t.px[i] = Math.min(H - DOT, Math.max(0, Math.round(y))) * W + Math.min(W - DOT, Math.max(0, Math.round(x)));
      }
      if (!t.value || t.value.length !== n) t.value = new Float32Array(n);
    }
    ear.order = [...ear.taps.values()].filter((t) => t.pos);
    colours();
    dirty = true;
    layers();
  }
  function colours() {
    // one hue per tap, from the scaleogram (red) through the encoder to the context (blue)
    const n = ear.order.length;
    ear.order.forEach((t, k) => {
      const h = (k / Math.max(1, n - 1)) * 240, c = (x) => Math.round(255 * x);
      const f = (m) => { const q = (m + h / 60) % 6; return 1 - Math.max(0, Math.min(q, 4 - q, 1)) * 0.85; };
      t.rgb = [c(f(5)), c(f(3)), c(f(1))];
    });
  }

  // -- frames: queued by when they sound, drawn then ------------------------------------------------
  const queue = [];
  let scaleogram = null, phase = -1, dirty = false, overlayDirty = true;
  function received(buffer) {
    const [when, messages] = packet(buffer);
    let frame = null;
    for (const [address, args] of messages) {
      if (address.startsWith("/stream/act/")) {
        if (!frame) continue;
        frame.acts.push([address.slice(12), args[1], args[3]]);
      } else if (address === "/stream/phase") {
        frame = { n: args[0], when: when === null ? Date.now() - stats.offsetMs : when, phase: args[1], acts: [] };
      } else if (address === "/stream/step" && frame) { frame.step = args[1]; frame.loss = args[2]; }
      else if (address === "/stream/shape") {
        const t = tap(args[0]);
        t.size = args[1]; t.channels = args[2]; t.freq = args[3];
      } else if (address.startsWith("/stream/mask/")) {
        const t = tap(address.slice(13));
        const n = args[3] ? args[3].length : 0;
        if (!t.maskValues || t.maskValues.length < args[1] + n) {
          const grown = new Float32Array(args[1] + n);
          if (t.maskValues) grown.set(t.maskValues.subarray(0, Math.min(grown.length, t.maskValues.length)));
          t.maskValues = grown;
        }
        if (n) t.maskValues.set(args[3], args[1]);
        overlayDirty = true;
      } else if (address.startsWith("/stream/layout/")) {
        const t = tap(address.slice(15));
        const values = args[3] || new Float32Array(0);
        if (args[1] === 0) t.posParts = [];
        t.posParts.push(values);
        const total = t.posParts.reduce((a, v) => a + v.length, 0);
        const pos = new Float32Array(total);
        let k = 0;
        for (const v of t.posParts) { pos.set(v, k); k += v.length; }
        t.dims = t.channels && t.freq && total === 3 * t.channels * t.freq ? 3 : 2;
        t.pos = pos;
        clearTimeout(ear.layoutTimer);
        ear.layoutTimer = setTimeout(placed, 30); // the layout comes tap by tap: place once
      } else if (address === "/stream/loop/scaleogram") showScaleogram(args[1], args[2], args[3]);
      else if (window.earengine && earengine.training) earengine.training(address, args);
    }
    if (frame) {
      stats.received++;
      if (stats.first < 0) stats.first = frame.n;
      stats.last = frame.n;
      const local = performance.timeOrigin + performance.now();
      if (!ear.local) { // another machine: its clock less ours, from the earliest a frame came (it leaves lookahead early)
        ear.minDelta = Math.min(ear.minDelta === undefined ? Infinity : ear.minDelta, local - frame.when);
        const ahead = (window.earengine && earengine.values && earengine.values["/stream/lookahead_ms"]) || 30;
        stats.offsetMs = ear.minDelta + ahead;
      }
      queue.push(frame);
      if (queue.length > 240) { queue.shift(); stats.skipped++; }
    }
  }

  // -- drawing ----------------------------------------------------------------------------------------
  let canvas, ctx, image, pixels, overlay, sCanvas, sCtx, sImage;
  function draw(frame) {
    for (const [name, start, values] of frame.acts) {
      const t = ear.taps.get(name);
      if (!t || !t.value || !values) continue;
      const n = t.value.length;
      // a frame holds every neuron (raw, channel_freq) or one value per channel (channel)
      const perChannel = values.length + start < n && t.channels > 0 && n % t.channels === 0;
      let peak = t.scale * 0.995;
      if (perChannel) {
        const f = n / t.channels;
        for (let j = 0; j < values.length; j++) {
          const v = Math.abs(values[j]);
          if (v > peak) peak = v;
          t.value.fill(v, (start + j) * f, (start + j + 1) * f);
        }
      } else {
        for (let j = 0; j < values.length && start + j < n; j++) {
          const v = Math.abs(values[j]);
          if (v > peak) peak = v;
          t.value[start + j] = v;
        }
      }
      t.scale = Math.max(peak, 1e-6);
    }
    phase = frame.phase;
    dirty = true;
  }
  function paint() {
    pixels.fill(0xff0b0907);
    for (const t of ear.order) {
      const [r, g, b] = t.rgb, inv = 1 / t.scale, px = t.px, val = t.value;
      for (let i = 0; i < px.length; i++) {
        const a = 0.12 + 0.88 * Math.min(1, val[i] * inv);
        const c = 0xff000000 | (Math.round(b * a) << 16) | (Math.round(g * a) << 8) | Math.round(r * a);
        const p = px[i];
        pixels[p] = c; pixels[p + 1] = c; pixels[p + W] = c; pixels[p + W + 1] = c;
      }
    }
    ctx.putImageData(image, 0, 0);
    if (overlayDirty) drawOverlay();
    ctx.drawImage(overlay, 0, 0);
    dirty = false;
  }
  function drawOverlay() {
    // the target: a ring around every neuron the dream's objective reads
    const o = overlay.getContext("2d");
    o.clearRect(0, 0, W, H);
    o.strokeStyle = "rgba(255,255,255,0.85)";
    o.lineWidth = 1;
    let count = 0;
    for (const t of ear.order) {
      const m = t.maskValues;
      if (!m || !m.length) continue;
      const n = t.px.length, f = m.length === n ? 1 : n / m.length;
      o.beginPath();
      for (let i = 0; i < n; i++) if (m[Math.floor(i / f)] > 0) {
        o.moveTo(t.x[i] + 4, t.y[i]);
        o.arc(t.x[i], t.y[i], 4, 0, 2 * Math.PI);
        count++;
      }
      o.stroke();
    }
    ear.targetNeurons = count;
    overlayDirty = false;
  }
  function showScaleogram(freq, time, blob) {
    if (!blob || freq * time * 4 > blob.byteLength) return;
    const values = new Float32Array(freq * time);
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < values.length; i++) {
      const v = blob.getFloat32(i * 4);
      values[i] = v;
      if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }
    const off = document.createElement("canvas");
    off.width = time; off.height = freq;
    const octx = off.getContext("2d"), img = octx.createImageData(time, freq), px = new Uint32Array(img.data.buffer);
    const span = hi - lo || 1;
    for (let r = 0; r < freq; r++) for (let c = 0; c < time; c++) {
      const a = Math.max(0, Math.min(1, (values[r * time + c] - lo) / span));
      // dark blue through orange to white; frequency row 0 at the bottom
      const R = Math.round(255 * Math.min(1, a * 1.6)), G = Math.round(255 * Math.max(0, a * 1.4 - 0.4)), B = Math.round(255 * (0.25 + 0.5 * a * (1 - a)));
      px[(freq - 1 - r) * time + c] = 0xff000000 | (B << 16) | (G << 8) | R;
    }
    octx.putImageData(img, 0, 0);
    scaleogram = off;
    ear.scaleograms = (ear.scaleograms || 0) + 1;
  }
  let playheadAt = -2;
  function paintScaleogram() {
    if (phase === playheadAt && !sDirty) return;
    const w = sCanvas.width, h = sCanvas.height;
    sCtx.fillStyle = "#000"; sCtx.fillRect(0, 0, w, h);
    if (scaleogram) { sCtx.imageSmoothingEnabled = false; sCtx.drawImage(scaleogram, 0, 0, w, h); }
    if (phase >= 0) {
      sCtx.fillStyle = "#fff";
      sCtx.fillRect(Math.round(phase * w) - 1, 0, 2, h);
    }
    playheadAt = phase; sDirty = false;
  }
  let sDirty = true;

  function tick(ms) {
    const local = performance.timeOrigin + ms;
    const due = local - stats.offsetMs + 8; // half a 60 Hz display frame early at most
    stats.ticks++;
    while (queue.length > 1 && queue[1].when <= due - LATE_MS) { queue.shift(); stats.skipped++; }
    const chosen = queue.length && queue[0].when <= due ? queue.shift() : null;
    if (chosen && ear.order.length) {
      draw(chosen);
      paint();
      stats.drawn++;
      if (!ear.drawnAt) { ear.drawnAt = performance.now(); if (window.earengine && earengine.shown) earengine.shown("layout"); }
      const lag = performance.timeOrigin + performance.now() - (chosen.when + stats.offsetMs);
      stats.lags.push(lag);
      if (stats.lags.length > 4000) stats.lags.splice(0, 2000);
    } else if (chosen) { phase = chosen.phase; stats.skipped++; }
    else if (dirty && ear.order.length) {
      paint();
      if (!ear.drawnAt) { ear.drawnAt = performance.now(); if (window.earengine && earengine.shown) earengine.shown("layout"); }
    }
    if (ear.scaleograms !== sSeen) { sSeen = ear.scaleograms; sDirty = true; }
    paintScaleogram();
    requestAnimationFrame(tick);
  }
  let sSeen = 0;

  // -- aiming a dream: a neuron sets its channel, a layer button the whole layer -------------------
  function target(spec) {
    if (window.earengine && earengine.send("/target/set", "s", [spec])) {
      $("ear-target").textContent = "target: " + spec;
    }
  }
  function nearest(x, y) {
    let best = null, dist = 12 * 12;
    for (const t of ear.order) for (let i = 0; i < t.x.length; i++) {
      const d = (t.x[i] - x) ** 2 + (t.y[i] - y) ** 2;
      if (d < dist) { dist = d; best = [t, i]; }
    }
    return best;
  }
  function clicked(e) {
    const box = canvas.getBoundingClientRect();
    const hit = nearest((e.clientX - box.left) * W / box.width, (e.clientY - box.top) * H / box.height);
    if (!hit) return;
    const [t, i] = hit;
    const f = t.channels ? t.px.length / t.channels : 1;
    target(t.name + ":" + Math.floor(i / f));
  }
  function layers() {
    const box = $("ear-layers");
    if (!box) return;
    box.replaceChildren(...ear.order.map((t) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = t.name;
      b.style.borderColor = "rgb(" + t.rgb.join(",") + ")";
      b.setAttribute("aria-label", "aim the dream at layer " + t.name);
      b.addEventListener("click", () => target(t.name));
      return b;
    }));
  }

  // -- the status line: /status over the OSCQuery WebSocket, twice a second --------------------------
  function status(address, args) {
    if (address !== "/status.reply" || args.length < 9) return;
    const [worker, step, rate, loss, , bpm, bar, beat] = args;
    const n = (v, d) => Number(v).toFixed(d);
    $("status").textContent = n(bpm, 1) + " BPM · bar " + bar + " beat " + n(beat, 1)
      + (worker === "dreaming" || step > 0 ? " · dream step " + step + " · " + n(rate, 1) + " steps/s · loss " + n(loss, 3) : " · " + worker);
  }

  // -- connecting ---------------------------------------------------------------------------------
  let retry = 500;
  async function connect() {
    let port;
    try {
      const info = await (await fetch("/?HOST_INFO", { headers: { Accept: "application/json" } })).json();
      port = info.EARENGINE_STREAMS_PORT;
    } catch (e) { /* retried below */ }
    if (!port) {
      $("ear-note").textContent = "this engine serves no activation streams (earengine run without --no-stream-ws shows them)";
      setTimeout(connect, retry = Math.min(retry * 2, 5000));
      return;
    }
    const socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.hostname + ":" + port + "/");
    socket.binaryType = "arraybuffer";
    socket.onopen = () => { ear.connected = true; retry = 500; $("ear-note").textContent = ""; };
    socket.onmessage = (e) => { if (typeof e.data !== "string") received(e.data); };
    socket.onclose = () => {
      ear.connected = false;
      $("ear-note").textContent = "streams lost; reconnecting";
      setTimeout(connect, retry = Math.min(retry * 2, 5000));
    };
  }

  function start() {
    const section = $("ear");
    canvas = $("ear-canvas");
    canvas.width = W; canvas.height = H;
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", "the ear's neurons, lit as the loop sounds; click one to aim the dream at its channel");
    ctx = canvas.getContext("2d");
    image = ctx.createImageData(W, H);
    pixels = new Uint32Array(image.data.buffer);
    pixels.fill(0xff0b0907);
    ctx.putImageData(image, 0, 0);
    overlay = document.createElement("canvas");
    overlay.width = W; overlay.height = H;
    canvas.addEventListener("click", clicked);
    const el = (tag, attrs) => Object.assign(document.createElement(tag), attrs);
    sCanvas = el("canvas", { id: "ear-scaleogram", width: 512, height: 96 });
    sCanvas.setAttribute("role", "img");
    sCanvas.setAttribute("aria-label", "the playing loop's scaleogram, low frequencies at the bottom, with a playhead");
    sCtx = sCanvas.getContext("2d");
    section.append(
      el("div", { id: "ear-layers", className: "ear-layers" }),
      el("p", { id: "ear-target", className: "ear-note" }),
      sCanvas,
      el("p", { id: "ear-note", className: "ear-note" }));
    ear.local = ["127.0.0.1", "localhost", "[::1]"].includes(location.hostname);
    if (window.earengine) {
      earengine.ear = ear;
      earengine.on(status);
      setInterval(() => earengine.send("/status", "", []), 500);
    }
    connect();
    requestAnimationFrame(tick);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

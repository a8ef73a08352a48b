// Training, seen: for each open sonification run (/son/runs), the per-layer gradient norms as a
// scrolling plot (log scale, one line per layer, the newest step at the right) beside the pitches
// they sound as, and the NaN cue marked (a red bar at the step, and the layer named).
//
// The engine sends each sonified step to the pages that receive its streams as
// /son/seen <run> <step> <norms> <hz> (blobs of float32 per layer) and the cue as /son/nan;
// ear.js hands them here through window.earengine.training. Open runs are asked for over the
// OSCQuery WebSocket every second. Each run is also a line of text under the plot (its name, step,
// each layer's norm and pitch, and the last NaN cue) for screen readers and tests; the cue is
// announced once through the page's one live region. earengine.training.runs holds what is shown.
"use strict";
(function () {
  const W = 800, ROW = 150, PLOT = 600, STEPS = 200;
  const NOTES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
  const runs = new Map();
  let canvas, ctx, note, list, dirty = false;

  function run(name) {
    let r = runs.get(name);
    if (!r) { r = { name, steps: [], nan: [] }; runs.set(name, r); }
    return r;
  }
  function seen(address, args) {
    if (address === "/son/seen" && args.length >= 4) {
      const r = run(args[0]);
      const n = args[2].byteLength / 4, norms = new Float32Array(n), hz = new Float32Array(n);
      for (let i = 0; i < n; i++) { norms[i] = args[2].getFloat32(i * 4); hz[i] = args[3].getFloat32(i * 4); }
      r.steps.push({ step: args[1], norms, hz, nan: norms.some((v) => !Number.isFinite(v)) });
      if (r.steps.length > STEPS) r.steps.shift();
      dirty = true;
    } else if (address === "/son/nan" && args.length >= 3) {
      const r = run(args[0]);
      r.nan.push({ step: args[1], layer: args[2] });
      if (r.nan.length > 32) r.nan.shift();
      const s = r.steps.find((x) => x.step === args[1]);
      if (s) s.nan = true;  // a cue sent on its own (/son/nan) marks its step too
      note.textContent = "NaN cue: run " + args[0] + ", step " + args[1] + ", layer " + args[2];
      if (window.earengine && earengine.announce) earengine.announce("nan", note.textContent);  // the page's one live region
      dirty = true;
    }
  }
  function open(address, args) {
    if (address !== "/son/runs.reply") return;
    const names = new Set(args.map(String));
    for (const name of [...runs.keys()]) if (!names.has(name)) { runs.delete(name); dirty = true; }
    for (const name of names) if (!runs.has(name)) { run(name); dirty = true; }
    if (!names.size) note.textContent = "no training run is sonified now (see earengine.sonify: GradientSonifier)";
    else if (note.textContent.startsWith("no training")) note.textContent = "";
  }
  function pitchName(hz) {
    const m = Math.round(69 + 12 * Math.log2(hz / 440));
    return NOTES[((m % 12) + 12) % 12] + (Math.floor(m / 12) - 1);
  }
  // blue (the first layer) to amber (the last): never the red that marks a NaN
  function hue(i, n) { return "hsl(" + Math.round(210 - 170 * i / Math.max(1, n - 1)) + ",80%,60%)"; }

  function fmt(v) { return Number.isFinite(v) ? (Math.abs(v) >= 1e3 || (v !== 0 && Math.abs(v) < 1e-2) ? v.toExponential(2) : v.toPrecision(3)) : String(v); }
  function describe(r) {
    // one run as text: what the plot and the pitches show, newest step
    const last = r.steps[r.steps.length - 1];
    let text = "run " + r.name;
    if (!last) return text + ": no step yet";
    text += ", step " + last.step + ": ";
    text += [...last.norms].map((v, i) => {
      const hz = last.hz[i];
      return "layer " + i + " norm " + fmt(v) + (Number.isFinite(hz) && hz > 0 ? " at " + Math.round(hz) + " Hz (" + pitchName(hz) + ")" : " silent");
    }).join(", ");
    const cue = r.nan[r.nan.length - 1];
    if (cue) text += "; NaN cue at step " + cue.step + ", layer " + cue.layer;
    return text;
  }
  function lines() {
    const items = [...runs.values()].map((r) => {
      const li = document.createElement("li");
      li.dataset.run = r.name;
      li.textContent = describe(r);
      return li;
    });
    const old = list.children;
    if (old.length === items.length && items.every((li, k) => old[k].textContent === li.textContent)) return;
    list.replaceChildren(...items);
  }
  let linesAt = -1e9, stale = false;
  function paint() {
    dirty = false;
    stale = true;
    const list = [...runs.values()];
    const height = Math.max(1, list.length) * ROW;
    if (canvas.height !== height) canvas.height = height;
    ctx.fillStyle = "#000"; ctx.fillRect(0, 0, W, height);
    ctx.font = "12px system-ui, sans-serif";
    list.forEach((r, k) => {
      const top = k * ROW, steps = r.steps;
      ctx.fillStyle = "#9aa3ab";
      ctx.fillText("run " + r.name + (steps.length ? " · step " + steps[steps.length - 1].step : ""), 6, top + 14);
      if (!steps.length) return;
      // the norms' range, in decades, over the steps shown
      let lo = Infinity, hi = -Infinity;
      for (const s of steps) for (const v of s.norms) if (Number.isFinite(v) && v > 0) {
        const l = Math.log10(v); lo = Math.min(lo, l); hi = Math.max(hi, l);
      }
      if (!Number.isFinite(lo)) { lo = -3; hi = 3; }
      if (hi - lo < 1) { lo -= 0.5; hi += 0.5; }
      const y = (v) => top + ROW - 8 - (Math.log10(v) - lo) / (hi - lo) * (ROW - 30);
      const x = (j) => PLOT - (steps.length - 1 - j) * PLOT / STEPS;
      for (const [j, s] of steps.entries()) if (s.nan) { // the NaN cue
        ctx.fillStyle = "rgba(255,70,60,0.8)"; ctx.fillRect(x(j) - 1, top + 20, 3, ROW - 24);
      }
      const n = steps[steps.length - 1].norms.length;
      for (let i = 0; i < n; i++) {
        ctx.strokeStyle = hue(i, n); ctx.beginPath();
        let pen = false;
        for (const [j, s] of steps.entries()) {
          const v = s.norms[i];
          if (!(Number.isFinite(v) && v > 0)) { pen = false; continue; }
          if (pen) ctx.lineTo(x(j), y(v)); else ctx.moveTo(x(j), y(v));
          pen = true;
        }
        ctx.stroke();
      }
      ctx.fillStyle = "#9aa3ab";
      ctx.fillText("1e" + hi.toFixed(1), 6, top + 30);
      ctx.fillText("1e" + lo.toFixed(1), 6, top + ROW - 10);
      // beside it: the pitch each layer sounds as now, on a log-frequency axis
      const last = steps[steps.length - 1];
      const fy = (hz) => top + ROW - 8 - (Math.log2(hz / 20) / Math.log2(16000 / 20)) * (ROW - 30);
      for (let i = 0; i < n; i++) {
        const hz = last.hz[i], yy = Number.isFinite(hz) && hz > 0 ? fy(hz) : null;
        ctx.fillStyle = yy === null ? "#ff463c" : hue(i, n);
        const xx = PLOT + 20 + (i * 120) / Math.max(1, n);
        ctx.fillRect(xx, yy === null ? top + 22 : yy - 1, Math.max(2, 110 / n), 3);
      }
      const shown = [...last.hz].filter((v) => Number.isFinite(v) && v > 0);
      if (shown.length) {
        ctx.fillStyle = "#e6e8ea";
        ctx.fillText(pitchName(Math.min(...shown)) + " … " + pitchName(Math.max(...shown)), PLOT + 20, top + 14);
      }
      if (last.nan) { ctx.fillStyle = "#ff463c"; ctx.fillText("NaN", PLOT + 150, top + 14); }
    });
    if (!list.length) { ctx.fillStyle = "#9aa3ab"; ctx.fillText("no sonified training run", 6, 20); }
  }
  function frame(ms) {
    if (dirty) paint();
    if (stale && ms - linesAt > 250) { linesAt = ms; stale = false; lines(); }  // the text: 4 times a second at most
    requestAnimationFrame(frame);
  }

  function start() {
    canvas = document.getElementById("training-canvas");
    canvas.width = W; canvas.height = ROW;
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", "gradient norms of each sonified training run over its last steps, beside the pitches they sound as");
    ctx = canvas.getContext("2d");
    note = Object.assign(document.createElement("p"), { id: "training-note", className: "ear-note" });
    list = Object.assign(document.createElement("ul"), { id: "training-runs", className: "ear-note" });
    list.setAttribute("aria-label", "sonified training runs");
    canvas.after(list, note);
    dirty = true;
    if (window.earengine) {
      seen.runs = runs;
      earengine.training = seen;
      earengine.on(open);
      setInterval(() => earengine.send("/son/runs", "", []), 1000);
    }
    requestAnimationFrame(frame);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

// The page of `digits serve`: draw (pointer events: mouse, touch, pen), ask /api/predict,
// show the answer; file a correction with /api/own; show /api/model in the results view.
"use strict";

const PEN_WIDTH = 20; // px of the 280 px canvas: a digit drawn across most of it gets MNIST's stroke
const DEBOUNCE_MS = 150; // while drawing, ask again once the pen has paused this long

const canvas = document.getElementById("canvas");
const context = canvas.getContext("2d");
const strokes = []; // each an array of [x, y] in canvas pixels
let picture = null; // the Blob last sent to /api/predict: what a correction files
let asked = 0; // requests sent; only the answer to the latest one is shown
let timer = null;

function point(event) {
  const box = canvas.getBoundingClientRect();
  return [
    ((event.clientX - box.left) * canvas.width) / box.width,
    ((event.clientY - box.top) * canvas.height) / box.height,
  ];
}

function paint() {
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.strokeStyle = "#000";
  context.fillStyle = "#000";
  context.lineWidth = PEN_WIDTH;
  context.lineCap = "round";
  context.lineJoin = "round";
  for (const stroke of strokes) {
    if (stroke.length === 1) {
      context.beginPath();
      context.arc(stroke[0][0], stroke[0][1], PEN_WIDTH / 2, 0, 2 * Math.PI);
      context.fill();
      continue;
    }
    context.beginPath();
    context.moveTo(...stroke[0]);
    for (const [x, y] of stroke.slice(1)) context.lineTo(x, y);
    context.stroke();
  }
}

let drawing = null;
canvas.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  canvas.setPointerCapture(event.pointerId);
  drawing = [point(event)];
  strokes.push(drawing);
  paint();
  event.preventDefault();
});
canvas.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const each of events.length ? events : [event]) drawing.push(point(each));
  paint();
  clearTimeout(timer);
  timer = setTimeout(predictDrawing, DEBOUNCE_MS);
});
function endStroke() {
  if (!drawing) return;
  drawing = null;
  clearTimeout(timer);
  predictDrawing();
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

function undo() {
  strokes.pop();
  paint();
  strokes.length ? predictDrawing() : reset();
}
function clear() {
  strokes.length = 0;
  paint();
  reset();
}
document.getElementById("undo").addEventListener("click", undo);
document.getElementById("clear").addEventListener("click", clear);

function reset() {
  asked++;
  picture = null;
  document.getElementById("digit").textContent = "?";
  document.getElementById("frame").removeAttribute("src");
  showBars(null);
  say("Draw a digit: the guess follows your pen.");
  document.getElementById("correct").disabled = true;
}

function say(text) {
  document.getElementById("status").textContent = text;
}

function predictDrawing() {
  if (!strokes.length) return;
  canvas.toBlob((blob) => predict(blob), "image/png");
}

async function predict(blob) {
  const ticket = ++asked;
  say("Thinking…");
  let answer;
  try {
    const response = await fetch("/api/predict", { method: "POST", body: blob });
    answer = await response.json();
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  } catch (error) {
    if (ticket !== asked) return;
    document.getElementById("digit").textContent = "?";
    showBars(null);
    say(`No answer: ${error.message}`);
    document.getElementById("correct").disabled = true;
    return;
  }
  if (ticket !== asked) return; // a newer drawing is on its way
  picture = blob;
  document.getElementById("digit").textContent = answer.digit;
  document.getElementById("frame").src = `data:image/png;base64,${answer.frame}`;
  showBars(answer.probabilities);
  const confidence = (100 * answer.probabilities[answer.digit]).toFixed(1);
  say(`The model says ${answer.digit}, ${confidence} % sure.`);
  document.getElementById("correct").disabled = false;
  document.getElementById("filed").textContent = "";
}

function showBars(probabilities) {
  const list = document.getElementById("bars");
  list.replaceChildren();
  const best = probabilities ? probabilities.indexOf(Math.max(...probabilities)) : -1;
  for (let digit = 0; digit < 10; digit++) {
    const p = probabilities ? probabilities[digit] : 0;
    const item = document.createElement("li");
    if (digit === best) item.className = "top";
    item.innerHTML =
      `<span>${digit}</span><span class="track"><span class="fill"></span></span>` +
      `<span class="value">${probabilities ? (100 * p).toFixed(1) + " %" : ""}</span>`;
    item.querySelector(".fill").style.width = `${100 * p}%`;
    list.append(item);
  }
}

// A picture file instead of a drawing: dropped on the canvas or chosen.
function usePicture(file) {
  if (!file) return;
  strokes.length = 0;
  const url = URL.createObjectURL(file);
  const image = new Image();
  image.onload = () => {
    paint();
    const scale = Math.min(canvas.width / image.width, canvas.height / image.height);
    const [w, h] = [image.width * scale, image.height * scale];
    context.drawImage(image, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
    URL.revokeObjectURL(url);
  };
  image.onerror = () => URL.revokeObjectURL(url); // the server says what is wrong with it
  image.src = url;
  predict(file);
}
const drop = document.getElementById("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  usePicture(event.dataTransfer.files[0]);
});
// A file dropped beside the canvas would otherwise replace the page with itself.
for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());
const chooser = document.getElementById("file");
chooser.addEventListener("change", () => {
  usePicture(chooser.files[0]);
  chooser.value = "";
});

// "Wrong? It is a ...": file the picture the model last answered for, with the right label.
const labels = document.getElementById("labels");
for (let digit = 0; digit < 10; digit++) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = digit;
  button.setAttribute("aria-label", `It is a ${digit}: file this picture as a ${digit}`);
  button.addEventListener("click", () => fileAs(digit));
  labels.append(button);
}
async function fileAs(digit) {
  if (!picture) return;
  const filed = document.getElementById("filed");
  try {
    const response = await fetch(`/api/own?label=${digit}`, { method: "POST", body: picture });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
    filed.textContent = `Thanks: filed as a ${digit} in ${answer.path}.`;
  } catch (error) {
    filed.textContent = `Not filed: ${error.message}`;
  }
}

document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement || location.hash === "#results") return;
  if (event.altKey || event.metaKey) return;
  const key = event.key.toLowerCase();
  if ((event.ctrlKey && key === "z") || (!event.ctrlKey && key === "u")) undo();
  else if (event.ctrlKey) return;
  else if (key === "escape" || key === "c") clear();
  else if (key === "o") chooser.click();
  else return;
  event.preventDefault();
});

// The results view: what /api/model says.
let described = false;
async function showResults() {
  if (described) return;
  const response = await fetch("/api/model");
  const info = await response.json();
  described = true;
  const model = info.model;
  const rows = [
    ["model file", model.path],
    ["md5", model.md5],
    [
      "dvc.lock",
      model.matches_dvc_lock
        ? "the same model (md5 matches)"
        : `a different model: dvc.lock has ${model.dvc_lock_md5 || "none"}; the metrics below are not this model's`,
    ],
    ["git commit", info.git.commit ? info.git.commit + (info.git.dirty ? " (with uncommitted changes)" : "") : "not a git checkout"],
  ];
  const list = document.getElementById("model");
  list.replaceChildren();
  for (const [term, value] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    if (term === "dvc.lock" && !model.matches_dvc_lock) dd.className = "warning";
    list.append(dt, dd);
  }
  const metrics = info.metrics;
  if (!metrics) {
    document.getElementById("accuracy").textContent = "no metrics (run dvc repro)";
  } else {
    document.getElementById("accuracy").textContent = `${(100 * metrics.accuracy).toFixed(2)} %`;
    document.getElementById("errors").textContent = metrics.errors;
    document.getElementById("loss").textContent = metrics.loss;
    const body = document.querySelector("#per-digit tbody");
    body.replaceChildren();
    for (const [digit, accuracy] of Object.entries(metrics.per_class_accuracy)) {
      const row = document.createElement("tr");
      row.innerHTML = `<th scope="row"></th><td></td><td><div class="track"><div class="fill"></div></div></td>`;
      row.querySelector("th").textContent = digit;
      row.querySelector("td").textContent = `${(100 * accuracy).toFixed(2)} %`;
      // the bar spans 90-100 %: every digit is above 90 %, and the differences are what matter
      row.querySelector(".fill").style.width = `${Math.max(0, (accuracy - 0.9) * 1000)}%`;
      body.append(row);
    }
  }
  const titles = {
    confusion_matrix: "Confusion matrix (test set)",
    learning_curves: "Learning curves",
    misclassified: "Misclassified test digits",
  };
  const figures = document.getElementById("figures");
  figures.replaceChildren();
  for (const [name, url] of Object.entries(info.plots)) {
    const figure = document.createElement("figure");
    const image = document.createElement("img");
    image.src = url;
    image.alt = titles[name] || name;
    const caption = document.createElement("figcaption");
    caption.textContent = titles[name] || name;
    figure.append(caption, image);
    figures.append(figure);
  }
}

function route() {
  const results = location.hash === "#results";
  document.getElementById("draw").hidden = results;
  document.getElementById("results").hidden = !results;
  for (const [id, on] of [["tab-draw", !results], ["tab-results", results]]) {
    const tab = document.getElementById(id);
    on ? tab.setAttribute("aria-current", "page") : tab.removeAttribute("aria-current");
  }
  if (results) showResults().catch((error) => (document.getElementById("accuracy").textContent = `unavailable: ${error.message}`));
}
window.addEventListener("hashchange", route);
paint();
showBars(null);
route();

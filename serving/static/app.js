// FaceOps web page: upload a photo (POST /v1/recognize) or stream the webcam (WebSocket /v1/stream) and draw
// the faces with their names. The API key stays in this browser (localStorage) and goes in the X-API-Key header
// (HTTP) or the WebSocket's first message.
"use strict";
const $ = (id) => document.getElementById(id);
const canvas = $("canvas"), ctx2d = canvas.getContext("2d");
const keyInput = $("api-key");
keyInput.value = localStorage.getItem("faceops-key") || "";
keyInput.addEventListener("change", () => { localStorage.setItem("faceops-key", keyInput.value); loadModel(); });

function setStatus(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

async function loadModel() {
  if (!keyInput.value) return;
  const r = await fetch("/ready", { headers: { "X-API-Key": keyInput.value } });
  if (r.ok) {
    const body = await r.json();
    $("model").textContent = body.model ? `model ${body.model.version} · ${body.gallery.identities} identities` : "";
  }
}

function label(face) {
  if (face.identity == null) return `p=${face.probability.toFixed(2)}`;
  const score = face.score == null ? "" : ` ${face.score.toFixed(2)}`;
  const track = face.track_id == null ? "" : `#${face.track_id} `;
  return `${track}${face.identity}${score}`;
}

function drawFaces(source, width, height, faces) {
  canvas.width = width; canvas.height = height;
  ctx2d.drawImage(source, 0, 0, width, height);
  const line = Math.max(2, Math.round(width / 300));
  ctx2d.font = `${Math.max(12, Math.round(width / 40))}px sans-serif`;
  const list = $("faces");
  list.replaceChildren();
  for (const face of faces) {
    const [x1, y1, x2, y2] = face.box;
    const unknown = face.identity === "unknown";
    const colour = unknown ? "#e53935" : "#2e7d32";
    ctx2d.lineWidth = line; ctx2d.strokeStyle = colour;
    ctx2d.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = label(face);
    const h = parseInt(ctx2d.font, 10) + 6;
    const top = y1 - h >= 0 ? y1 - h : y2;
    ctx2d.fillStyle = colour;
    ctx2d.fillRect(x1, top, ctx2d.measureText(text).width + 8, h);
    ctx2d.fillStyle = "#fff";
    ctx2d.fillText(text, x1 + 4, top + h - 5);
    const li = document.createElement("li");
    li.textContent = text;
    li.className = unknown ? "unknown" : "known";
    li.dataset.identity = face.identity ?? "";
    list.appendChild(li);
  }
}

async function errorText(response) {
  try { const body = await response.json(); return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); }
  catch (e) { return response.statusText; }
}

$("photo").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  stopWebcam();
  setStatus(`Recognising ${file.name}…`);
  const form = new FormData();
  form.append("image", file);
  const response = await fetch("/v1/recognize", { method: "POST", body: form, headers: { "X-API-Key": keyInput.value } });
  if (!response.ok) { setStatus(`Error ${response.status}: ${await errorText(response)}`, true); return; }
  const result = await response.json();
  const image = new Image();
  image.onload = () => {
    drawFaces(image, result.width, result.height, result.faces);
    setStatus(`${result.faces.length} face(s) · model ${result.model_version}`);
    document.body.dataset.done = "photo";
  };
  image.src = URL.createObjectURL(file);
});

let socket = null, stream = null;
const grab = document.createElement("canvas");

function stopWebcam() {
  if (socket) { socket.close(); socket = null; }
  if (stream) { stream.getTracks().forEach((t) => t.stop()); stream = null; }
  $("webcam").disabled = false; $("stop").disabled = true;
}

function sendFrame() {
  const video = $("video");
  if (!socket || socket.readyState !== WebSocket.OPEN || !video.videoWidth) return;
  grab.width = video.videoWidth; grab.height = video.videoHeight;
  grab.getContext("2d").drawImage(video, 0, 0);
  grab.toBlob((blob) => blob && socket && socket.send(blob), "image/jpeg", 0.85);
}

$("webcam").addEventListener("click", async () => {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
  } catch (e) { setStatus(`Webcam not available: ${e.message}`, true); return; }
  const video = $("video");
  video.srcObject = stream;
  await video.play();
  $("webcam").disabled = true; $("stop").disabled = false;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // The key goes in the first message, never in the URL (URLs end up in server and proxy logs).
  socket = new WebSocket(`${scheme}://${location.host}/v1/stream`);
  let frames = 0;
  socket.onopen = () => { socket.send(JSON.stringify({ api_key: keyInput.value })); setStatus("Webcam live"); sendFrame(); };
  socket.onclose = (e) => { if (e.code === 1008) setStatus(`Refused: ${e.reason}`, true); stopWebcam(); };
  socket.onmessage = (event) => {
    const reply = JSON.parse(event.data);
    if (reply.error) setStatus(`Frame ${reply.frame}: ${reply.detail}`, true);
    else {
      frames += 1;
      drawFaces(video, reply.width, reply.height, reply.faces);
      setStatus(`Webcam live · frame ${reply.frame} · ${reply.faces.length} face(s)`);
      document.body.dataset.frames = String(frames);
    }
    sendFrame();  // one frame in flight at a time: the server sets the pace
  };
});
$("stop").addEventListener("click", stopWebcam);
loadModel();

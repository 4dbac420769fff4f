// The parley.v1 chat client: one WebSocket per tab, resumed with the session
// id kept in localStorage. See the server package doc for the protocol.
"use strict";

const log = document.getElementById("log");
const stateEl = document.getElementById("state");
const sessionEl = document.getElementById("session");
const input = document.getElementById("text");
let ws = null;
// Ids must not repeat within a resumed session, so each page load gets its
// own prefix: the server answers a repeated id once.
const idPrefix = Date.now().toString(36) + "-";
let nextId = 1;
let ended = false;
let retryMs = 500;

function add(cls, text, meta) {
  const div = document.createElement("div");
  div.className = "msg " + cls;
  div.textContent = text;
  if (meta) {
    const m = document.createElement("span");
    m.className = "meta";
    m.textContent = meta;
    div.appendChild(m);
  }
  log.appendChild(div);
  log.scrollTop = log.scrollHeight;
  return div;
}

function setState(s) {
  stateEl.textContent = s;
  stateEl.className = "state " + s;
}

function connect() {
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const sid = localStorage.getItem("parley.session");
  if (sid) url.searchParams.set("session", sid);
  ws = new WebSocket(url, "parley.v1");
  ws.onopen = () => { retryMs = 500; };
  ws.onmessage = (ev) => handle(JSON.parse(ev.data));
  ws.onclose = (ev) => {
    if (ended) {
      add("system", "Session ended" + (ev.reason ? ": " + ev.reason : "") + ". Send a message to start a new one.");
      localStorage.removeItem("parley.session");
      setState("END");
      return;
    }
    setState("offline");
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 10000);
  };
}

function handle(f) {
  switch (f.type) {
  case "hello":
    localStorage.setItem("parley.session", f.session);
    sessionEl.textContent = f.session;
    setState(f.state);
    if (f.resumed) add("system", "Resumed session, " + f.turns + " turns of context.");
    break;
  case "reply": {
    setState(f.state);
    const meta = [f.fallback ? "fallback answer" : "", f.echo ? "echo flagged" : "", "model " + f.model_ms + " ms"]
      .filter(Boolean).join(" · ");
    add("reply" + (f.fallback ? " fallback" : ""), f.text, meta);
    break;
  }
  case "state":
    setState(f.state);
    if (f.state === "END") ended = true;
    add("system", "State: " + f.state);
    break;
  case "error":
    add("error", f.code + ": " + f.message + (f.retry_after_ms ? " (retry in " + f.retry_after_ms + " ms)" : ""));
    break;
  }
}

document.getElementById("send").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  if (ended) { ended = false; log.textContent = ""; connect(); }
  const id = idPrefix + (nextId++);
  const send = () => ws.send(JSON.stringify({ type: "text", id: id, text: text }));
  if (ws.readyState === WebSocket.OPEN) send(); else ws.addEventListener("open", send, { once: true });
  add("user", text);
  input.value = "";
});

document.getElementById("new").addEventListener("click", () => {
  localStorage.removeItem("parley.session");
  log.textContent = "";
  ended = false;
  if (ws) { ws.onclose = null; ws.close(1000, "new session"); }
  connect();
});

connect();

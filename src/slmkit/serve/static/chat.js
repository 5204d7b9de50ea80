// slmkit's chat page. Plain JS, no build step. A model's output is Markdown parsed by marked
// and cleaned by DOMPurify before it touches the page; everything else a model or a file
// name supplies is set as text (textContent), never as HTML. Conversations live in this
// browser's localStorage; the API key only in sessionStorage (gone when the tab closes).
"use strict";

const $ = (id) => document.getElementById(id);
const STORE = "slmkit.conversations", CURRENT = "slmkit.current", PREFS = "slmkit.settings";
const SETTINGS = ["system", "temp", "top_p", "max_tokens", "kb_k", "kb_widen"];
let convs = [], current = null, running = null, paintPending = false;

function load(key, fallback) {
  try { return JSON.parse(localStorage.getItem(key)) ?? fallback; } catch { return fallback; }
}
function save() {
  localStorage.setItem(STORE, JSON.stringify(convs));
  localStorage.setItem(CURRENT, current ? current.id : "");
}
function savePrefs() {
  const prefs = {};
  for (const id of SETTINGS.filter((s) => s !== "system")) prefs[id] = $(id).value;
  prefs.model = $("model").value; prefs.kb = $("kb").value; prefs.kb_rerank = $("kb_rerank").checked;
  localStorage.setItem(PREFS, JSON.stringify(prefs));
}
function headers() {
  const h = {"Content-Type": "application/json"};
  const key = sessionStorage.getItem("slmkit.key") || "";
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}
function status(text) { $("status").textContent = text; }

// ---- Markdown ----------------------------------------------------------------------------
function setupMarkdown() {
  marked.setOptions({gfm: true, breaks: true});
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A") { node.setAttribute("target", "_blank"); node.setAttribute("rel", "noopener noreferrer"); }
  });
}
function renderMarkdown(el, text) {
  el.innerHTML = DOMPurify.sanitize(marked.parse(text), {FORBID_TAGS: ["style", "form", "input"]});
}
function addCopyButtons(el) {
  for (const pre of el.querySelectorAll("pre")) {
    const b = document.createElement("button");
    b.type = "button"; b.className = "copy"; b.textContent = "copy";
    b.addEventListener("click", () => navigator.clipboard?.writeText(pre.querySelector("code")?.textContent ?? pre.textContent));
    pre.appendChild(b);
  }
}

// ---- Conversations -----------------------------------------------------------------------
function newConversation() {
  if (running) stop();
  current = {id: Date.now().toString(36) + Math.random().toString(36).slice(2, 6), title: "New chat",
             messages: [], system: $("system").value, created: Date.now()};
  convs.unshift(current); save(); showConversation();
  document.body.classList.remove("sidebar-open"); $("q").focus();
}
function pick(id) {
  if (running) stop();
  current = convs.find((c) => c.id === id) || null;
  save(); showConversation(); document.body.classList.remove("sidebar-open");
}
function rename(conv, li) {
  const input = document.createElement("input");
  input.value = conv.title; input.className = "rename-input"; input.setAttribute("aria-label", "Conversation name");
  const done = (keep) => {
    if (keep && input.value.trim()) conv.title = input.value.trim().slice(0, 120);
    save(); listConversations();
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); done(true); }
    if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); done(false); }
  });
  input.addEventListener("blur", () => done(true));
  li.replaceChildren(input); input.focus(); input.select();
}
function remove(conv) {
  if (!confirm(`Delete the conversation "${conv.title}"?`)) return;
  convs = convs.filter((c) => c !== conv);
  if (current === conv) current = convs[0] || null;
  save(); showConversation();
}
function listConversations() {
  const items = convs.map((conv) => {
    const li = document.createElement("li");
    li.className = conv === current ? "current" : ""; li.dataset.id = conv.id;
    const open = button(conv.title, "open", () => pick(conv.id));
    open.title = conv.title;
    li.append(open, button("✎", "rename", () => rename(conv, li), "Rename"),
              button("×", "delete", () => remove(conv), "Delete"));
    return li;
  });
  $("convs").replaceChildren(...items);
}
function button(text, cls, onclick, label) {
  const b = document.createElement("button");
  b.type = "button"; b.className = cls; b.textContent = text;
  if (label) { b.title = label; b.setAttribute("aria-label", label); }
  b.addEventListener("click", onclick); return b;
}
function showConversation() {
  listConversations();
  $("system").value = current ? current.system || "" : $("system").value;
  const box = $("messages");
  if (!current || !current.messages.length) {
    const p = document.createElement("p"); p.className = "empty";
    p.textContent = "Ask something. Pick a knowledge base under Documents to answer from your files.";
    box.replaceChildren(p); return;
  }
  box.replaceChildren(...current.messages.map(messageElement));
  box.scrollTop = box.scrollHeight;
}

// ---- Messages ----------------------------------------------------------------------------
function messageElement(m) {
  const el = document.createElement("div");
  el.className = "msg " + m.role;
  const who = document.createElement("div"); who.className = "who";
  who.textContent = m.role === "user" ? "You" : (m.model || "assistant");
  const content = document.createElement("div"); content.className = "content";
  el.append(who, content);
  if (m.role === "user") content.textContent = m.content;
  else paint(el, m, true);
  return el;
}
function paint(el, m, done) {
  const content = el.querySelector(".content");
  renderMarkdown(content, m.content);
  if (!done) return;
  addCopyButtons(content);
  el.dataset.done = "1";
  if (m.kb) showSources(el, m.kb);
  el.classList.toggle("refused", Boolean(m.kb && m.kb.refused));
  const meta = el.querySelector(".meta") || el.appendChild(document.createElement("div"));
  meta.className = "meta" + (m.error ? " error" : "");
  meta.textContent = metaLine(m);
}
function metaLine(m) {
  if (m.error) return "error: " + m.error;
  const parts = [];
  if (m.ttft_ms != null) parts.push(`first token ${m.ttft_ms} ms`);
  if (m.tps) parts.push(`${m.tps.toFixed(1)} tokens/s`);
  if (m.tokens != null) parts.push(`${m.tokens} tokens`);
  if (m.stopped) parts.push("stopped");
  if (m.cut) parts.push("cut at the token limit (Settings → Max tokens)");
  if (m.kb && m.kb.refused) parts.push("not in the documents");
  return parts.join(" · ");
}
function showSources(el, kb) {
  el.querySelector(".sources")?.remove();
  if (!kb.excerpts || !kb.excerpts.length) return;
  const cited = new Set((kb.citations || []).map((c) => c.n));
  const box = document.createElement("div"); box.className = "sources";
  const head = document.createElement("div");
  head.textContent = `Sources from ${kb.name} (${cited.size} cited, best similarity ${kb.confidence})`;
  box.appendChild(head);
  kb.excerpts.forEach((x, i) => {
    const d = document.createElement("details");
    d.className = "source" + (cited.has(i + 1) ? " cited" : "");
    const s = document.createElement("summary");
    s.textContent = `[${i + 1}] ${x.file.split(/[\\/]/).pop()} (characters ${x.start}–${x.end})`;
    s.title = x.file;
    const p = document.createElement("p"); p.className = "excerpt"; p.textContent = x.text;
    d.append(s, p); box.appendChild(d);
  });
  el.appendChild(box);
}

// ---- Talking to the server ---------------------------------------------------------------
function requestBody(conv) {
  const num = (id, lo, hi, dflt) => {
    const v = parseFloat($(id).value);
    return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : dflt;
  };
  const messages = [];
  if (conv.system.trim()) messages.push({role: "system", content: conv.system.trim()});
  for (const m of conv.messages) if (!m.error) messages.push({role: m.role, content: m.content});
  const body = {model: $("model").value, messages, stream: true, stream_options: {include_usage: true},
                temperature: num("temp", 0, 2, 0.7), top_p: num("top_p", 0.01, 1, 1),
                max_tokens: Math.round(num("max_tokens", 1, 8192, 512))};
  if ($("kb").value) {
    body.kb = $("kb").value; body.kb_k = Math.round(num("kb_k", 1, 20, 4));
    if ($("kb_rerank").checked) body.kb_rerank = true;
    const widen = Math.round(num("kb_widen", 0, 5, 0));
    if (widen) body.kb_widen = widen;
  }
  return body;
}
async function readEvents(response, onEvent) {
  const reader = response.body.getReader(), dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const {done, value} = await reader.read();
    if (done) return;
    buf += dec.decode(value, {stream: true});
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, i); buf = buf.slice(i + 2);
      if (ev.startsWith("data: ") && ev !== "data: [DONE]") onEvent(JSON.parse(ev.slice(6)));
    }
  }
}
function onEvent(run, msg) {
  const m = run.message;
  if (msg.error) { m.error = msg.error.message; return; }
  if (msg.object === "chat.completion.kb") { m.kb = msg.kb; return; }
  if (msg.usage) m.tokens = msg.usage.completion_tokens;
  if (msg.choices?.[0]?.finish_reason === "length") m.cut = true;
  const delta = msg.choices?.[0]?.delta?.content || "";
  if (!delta) return;
  if (!run.first) run.first = performance.now();
  run.deltas += 1; m.content += delta;
  if (!paintPending) {
    paintPending = true;
    requestAnimationFrame(() => { paintPending = false; if (running === run) { paint(run.el, m, false); follow(); } });
  }
}
function follow() {
  const box = $("messages");
  if (box.scrollHeight - box.scrollTop - box.clientHeight < 120) box.scrollTop = box.scrollHeight;
}
async function answer() {
  const conv = current, model = $("model").value;
  if (!model) { status("No model to answer with."); return; }
  const m = {role: "assistant", content: "", model};
  const run = {message: m, controller: new AbortController(), t0: performance.now(), first: 0, deltas: 0};
  const body = requestBody(conv);
  conv.messages.push(m);
  if (!$("messages").querySelector(".msg")) $("messages").replaceChildren();
  run.el = $("messages").appendChild(messageElement({...m, content: ""}));
  run.el.removeAttribute("data-done"); run.el.querySelector(".meta")?.remove();
  running = run; busy(true);
  try {
    const r = await fetch("/v1/chat/completions", {method: "POST", headers: headers(),
                                                   body: JSON.stringify(body), signal: run.controller.signal});
    if (!r.ok) m.error = await errorText(r);
    else await readEvents(r, (msg) => onEvent(run, msg));
  } catch (e) {
    if (e.name === "AbortError") m.stopped = true; else m.error = String(e.message || e);
  }
  finish(run, conv);
}
async function errorText(r) {
  try { return (await r.json()).error.message; } catch { return `HTTP ${r.status}`; }
}
function finish(run, conv) {
  const m = run.message, end = performance.now();
  if (run.first) {
    m.ttft_ms = Math.round(run.first - run.t0);
    const n = m.tokens ?? run.deltas, secs = (end - run.first) / 1000;
    m.tps = n > 1 && secs > 0 ? (n - 1) / secs : 0;
  }
  if (running === run) { running = null; busy(false); }
  if (conv.messages.includes(m)) { paint(run.el, m, true); follow(); }
  save();
}
function busy(on) {
  $("send").hidden = on; $("stop").hidden = !on; $("regen").disabled = on;
  $("messages").dataset.streaming = on ? "1" : "";
}
function stop() { if (running) running.controller.abort(); }
function send(ev) {
  ev?.preventDefault();
  const q = $("q").value.trim();
  if (!q || running) return;
  if (!current) newConversation();
  current.system = $("system").value;
  current.messages.push({role: "user", content: q});
  if (current.title === "New chat") current.title = q.replace(/\s+/g, " ").slice(0, 48);
  $("q").value = ""; save(); showConversation();
  answer();
}
function regenerate() {
  if (running || !current || !current.messages.length) return;
  if (current.messages.at(-1).role === "assistant") current.messages.pop();
  if (!current.messages.length || current.messages.at(-1).role !== "user") return;
  save(); showConversation(); answer();
}

// ---- Models, knowledge bases, settings ---------------------------------------------------
async function loadLists() {
  const prefs = load(PREFS, {});
  const r = await fetch("/v1/models", {headers: headers()});
  if (!r.ok) {
    $("model").replaceChildren();
    status(r.status === 401 ? "This server needs an API key: Settings → API key." : "Could not list models.");
    return;
  }
  const models = (await r.json()).data.map((m) => m.id);
  $("model").replaceChildren(...models.map((id) => new Option(id, id)));
  if (models.includes(prefs.model)) $("model").value = prefs.model;
  status(models.length ? "" : "No models installed: run `slm pull`.");
  const k = await fetch("/v1/kb", {headers: headers()});
  const kbs = k.ok ? (await k.json()).data : [];
  $("kb").replaceChildren(new Option("none", ""), ...kbs.map((x) => new Option(`${x.id} (${x.chunks} chunks)`, x.id)));
  if (kbs.some((x) => x.id === prefs.kb)) $("kb").value = prefs.kb;
}
function restorePrefs() {
  const prefs = load(PREFS, {});
  for (const id of SETTINGS) if (prefs[id] != null && id !== "system") $(id).value = prefs[id];
  $("kb_rerank").checked = Boolean(prefs.kb_rerank);
  $("key").value = sessionStorage.getItem("slmkit.key") || "";
}

// ---- Keys and wiring ---------------------------------------------------------------------
function typing(target) { return ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName); }
function onKey(e) {
  if (e.key === "Escape" && running) { e.preventDefault(); stop(); return; }
  if (e.altKey && e.code === "KeyR") { e.preventDefault(); regenerate(); return; }
  if ((e.ctrlKey || e.metaKey) && e.shiftKey && e.code === "KeyO") { e.preventDefault(); newConversation(); return; }
  if (typing(e.target)) return;
  if (e.key === "/") { e.preventDefault(); $("q").focus(); }
  if (e.key === "?") { e.preventDefault(); $("help").showModal(); }
}
function wire() {
  $("composer").addEventListener("submit", send);
  $("q").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) send(e);
  });
  $("stop").addEventListener("click", stop);
  $("regen").addEventListener("click", regenerate);
  $("new").addEventListener("click", newConversation);
  $("menu").addEventListener("click", () => document.body.classList.toggle("sidebar-open"));
  $("help-open").addEventListener("click", () => $("help").showModal());
  $("settings-open").addEventListener("click", () => {
    const s = $("settings"); s.hidden = !s.hidden;
    $("settings-open").setAttribute("aria-expanded", String(!s.hidden));
  });
  $("key").addEventListener("change", () => { sessionStorage.setItem("slmkit.key", $("key").value); loadLists(); });
  $("system").addEventListener("change", () => { if (current) { current.system = $("system").value; save(); } });
  for (const id of ["temp", "top_p", "max_tokens", "kb_k", "kb_widen", "kb_rerank", "model", "kb"]) {
    $(id).addEventListener("change", savePrefs);
  }
  document.addEventListener("keydown", onKey);
}

document.addEventListener("DOMContentLoaded", () => {
  setupMarkdown(); restorePrefs(); wire();
  convs = load(STORE, []);
  if (!Array.isArray(convs)) convs = [];
  current = convs.find((c) => c.id === localStorage.getItem(CURRENT)) || convs[0] || null;
  showConversation(); loadLists();
});

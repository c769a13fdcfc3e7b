// The web chat client: start with a phone number (verify with a code if it is known),
// then exchange messages. Each message carries a clientMessageId, so a retry after a
// network error is answered once, never processed twice.
"use strict";

const api = "/api/v1";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("chatbot.token");
let challengeId = null;
// The user's language, once known on this device: the API words its errors in it
// (signed-in requests use the account's language; the others send Accept-Language).
let language = localStorage.getItem("chatbot.language");

// What the page says itself: a lost connection, and the errors nginx answers on its
// own (in English) when every instance is busy or down.
const OWN_MESSAGES = {
  id: {
    network: "Tidak ada koneksi; coba lagi.",
    service_unavailable: "Layanan sedang sibuk; coba lagi sebentar lagi.",
    payload_too_large: "Pesan terlalu panjang.",
  },
  en: {
    network: "No connection; please try again.",
    service_unavailable: "The service is busy; please try again shortly.",
    payload_too_large: "The message is too long.",
  },
};

function pageLanguage() {
  if (language) return language;
  return (navigator.language || "").toLowerCase().startsWith("id") ? "id" : "en";
}

function remember(user) {
  if (!user || !user.language) return;
  language = user.language;
  localStorage.setItem("chatbot.language", language);
}

function ownMessage(key) {
  return (OWN_MESSAGES[pageLanguage()] || OWN_MESSAGES.en)[key];
}

async function call(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  if (language) headers["Accept-Language"] = language;
  let response;
  try {
    response = await fetch(api + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (_) {
    throw new Error(ownMessage("network"));  // no status: the sender retries
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const code = data.error && data.error.code;
    let message = (data.error && data.error.message) || response.statusText;
    // Not worded in the page's language by the API (nginx's own errors): ours, if we have one.
    if (response.headers.get("Content-Language") !== pageLanguage() && ownMessage(code)) {
      message = ownMessage(code);
    }
    const error = new Error(message);
    error.status = response.status;
    error.retryAfter = Number(response.headers.get("Retry-After") || 0);
    throw error;
  }
  return data;
}

function show(section) {
  for (const id of ["start", "verify", "chat"]) $(id).hidden = id !== section;
}

function add(text, who) {
  const item = document.createElement("li");
  item.className = who;
  item.textContent = text;
  $("log").appendChild(item);
  item.scrollIntoView({ block: "end" });
}

function quickReplies(replies) {
  const box = $("quick");
  box.replaceChildren();
  const last = replies[replies.length - 1];
  for (const q of (last && last.quickReplies) || []) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = q.label;
    button.addEventListener("click", () => send(q.value));
    box.appendChild(button);
  }
}

async function send(text) {
  const clientMessageId = crypto.randomUUID();
  add(text, "me");
  $("send-error").textContent = "";
  for (let attempt = 0; attempt < 4; attempt++) {
    try {
      const turn = await call("POST", "/chat/messages", { text, clientMessageId });
      for (const reply of turn.replies) add(reply.text, "bot");
      quickReplies(turn.replies);
      call("POST", "/chat/receipts", { messageIds: turn.replies.map((r) => r.id) }).catch(() => {});
      return;
    } catch (error) {
      if (error.status === 401) return restart();
      const retriable = !error.status || error.status === 409 || error.status === 429 || error.status >= 500;
      if (!retriable || attempt === 3) {
        $("send-error").textContent = error.message;
        return;
      }
      await new Promise((r) => setTimeout(r, Math.max(error.retryAfter * 1000, 500 * (attempt + 1))));
    }
  }
}

async function loadHistory() {
  const page = await call("GET", "/chat/messages?limit=50");
  const messages = page.messages.reverse();
  for (const m of messages) add(m.text, m.direction === "inbound" ? "me" : "bot");
  const lastOutbound = messages.filter((m) => m.direction === "outbound").slice(-1);
  quickReplies(lastOutbound);
  return messages.length;
}

async function enterChat(newToken) {
  token = newToken;
  sessionStorage.setItem("chatbot.token", token);
  show("chat");
  $("log").replaceChildren();
  if ((await loadHistory()) === 0) await send("halo");
  $("text").focus();
}

function restart() {
  token = null;
  sessionStorage.removeItem("chatbot.token");
  show("start");
}

$("start").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("start-error").textContent = "";
  try {
    const result = await call("POST", "/chat/start", { phoneNumber: $("phone").value });
    if (result.verificationRequired) {
      challengeId = result.challengeId;
      show("verify");
      $("code").focus();
    } else {
      remember(result.user);
      await enterChat(result.token);
    }
  } catch (error) {
    $("start-error").textContent = error.message;
  }
});

$("verify").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("verify-error").textContent = "";
  try {
    const result = await call("POST", "/chat/verify", { challengeId, code: $("code").value });
    remember(result.user);
    await enterChat(result.token);
  } catch (error) {
    $("verify-error").textContent = error.message;
  }
});

$("send").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("text").value = "";
  send(text);
});

if (token) enterChat(token).catch(restart);
else show("start");

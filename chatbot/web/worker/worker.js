// The health workers' page: this month's children of their posyandu (due, overdue, to
// re-screen, referred), a child's screening history, "contacted" / "referral visited"
// with a note, and the month's CSV; all from the worker API with the worker's bearer
// token (kept in sessionStorage). Indonesian first; the language chosen is kept in
// localStorage. No inline script or style: the page's CSP allows neither.
"use strict";

const api = "/api/v1";
const $ = (id) => document.getElementById(id);
const TOKEN = "chatbot.workerToken";
const ROLE = "chatbot.workerRole";
const LANGUAGE = "chatbot.workerLanguage";
const STATUSES = ["due", "overdue", "rescreen", "referred"];
const PAGE_SIZE = 50;
const SEARCH_DELAY_MS = 300;

// What the page says itself, in both languages. The API words its own errors.
const TEXTS = {
  id: {
    title: "Daftar anak posyandu",
    notSignedIn: "belum masuk",
    language: "Bahasa",
    signOut: "Keluar",
    signinHelp: "Masuk dengan nomor HP kader (peran kader diberikan oleh admin).",
    phone: "Nomor HP",
    sendCode: "Kirim kode",
    code: "Kode yang dikirim ke nomor itu",
    signIn: "Masuk",
    notWorker: "Nomor ini bukan nomor kader posyandu. Minta admin memberi peran kader, lalu masuk lagi.",
    statusFilter: "Saring menurut status",
    all: "Semua",
    status_due: "Jatuh tempo",
    status_overdue: "Terlambat",
    status_rescreen: "Perlu skrining ulang",
    status_referred: "Dirujuk",
    posyandu: "Posyandu",
    allPosyandu: "Semua posyandu saya",
    month: "Bulan",
    search: "Cari nama",
    download: "Unduh CSV",
    col_name: "Nama",
    col_age: "Usia (bln)",
    col_status: "Status",
    col_due: "Jatuh tempo",
    col_result: "Hasil terakhir",
    col_no: "Jawaban \u201ctidak\u201d",
    col_parent: "Orang tua",
    col_contact: "Kontak terakhir",
    col_date: "Tanggal",
    col_yes: "Ya",
    col_action: "Tindak lanjut",
    empty: "Tidak ada anak untuk pilihan ini.",
    more: "Muat lagi",
    close: "Tutup",
    history: "Riwayat skrining",
    noScreenings: "Belum pernah diskrining.",
    contacts: "Kontak",
    noContacts: "Belum ada kontak.",
    note: "Catatan",
    kind_contacted: "Sudah dihubungi",
    kind_referral_visited: "Rujukan dikunjungi",
    saved: "Tersimpan.",
    call: "Telepon",
    whatsapp: "WhatsApp",
    noPhone: "tidak ada nomor",
    never: "belum pernah",
    none: "tidak ada",
    loading: "memuat…",
    shown: "{shown} dari {total} anak",
    signedIn: "masuk sebagai kader",
    male: "laki-laki",
    female: "perempuan",
    born: "lahir",
    months: "bln",
    category_appropriate: "Sesuai",
    category_doubtful: "Meragukan",
    category_possible_deviation: "Kemungkinan penyimpangan",
    action_routine: "rutin",
    action_rescreen_2_weeks: "skrining ulang 2 minggu",
    action_refer: "rujuk",
    domain_gross_motor: "motorik kasar",
    domain_fine_motor: "motorik halus",
    domain_language: "bicara & bahasa",
    domain_social: "sosialisasi & kemandirian",
    network: "Tidak ada koneksi; coba lagi.",
    service_unavailable: "Layanan sedang sibuk; coba lagi sebentar lagi.",
    failed: "Gagal: {message}",
  },
  en: {
    title: "Posyandu children",
    notSignedIn: "not signed in",
    language: "Language",
    signOut: "Sign out",
    signinHelp: "Sign in with a health worker's phone number (an admin grants the role).",
    phone: "Phone number",
    sendCode: "Send code",
    code: "Code sent to that number",
    signIn: "Sign in",
    notWorker: "This number is not a health worker's. Ask an admin to grant the role, then sign in again.",
    statusFilter: "Filter by status",
    all: "All",
    status_due: "Due",
    status_overdue: "Overdue",
    status_rescreen: "Needs re-screen",
    status_referred: "Referred",
    posyandu: "Posyandu",
    allPosyandu: "All my posyandu",
    month: "Month",
    search: "Search by name",
    download: "Download CSV",
    col_name: "Name",
    col_age: "Age (mo)",
    col_status: "Status",
    col_due: "Due",
    col_result: "Last result",
    col_no: "\u201cNo\u201d answers",
    col_parent: "Parent",
    col_contact: "Last contact",
    col_date: "Date",
    col_yes: "Yes",
    col_action: "Next step",
    empty: "No children for this choice.",
    more: "Load more",
    close: "Close",
    history: "Screening history",
    noScreenings: "Never screened.",
    contacts: "Contacts",
    noContacts: "No contacts yet.",
    note: "Note",
    kind_contacted: "Contacted",
    kind_referral_visited: "Referral visited",
    saved: "Saved.",
    call: "Call",
    whatsapp: "WhatsApp",
    noPhone: "no number",
    never: "never",
    none: "none",
    loading: "loading…",
    shown: "{shown} of {total} children",
    signedIn: "signed in as a health worker",
    male: "boy",
    female: "girl",
    born: "born",
    months: "mo",
    category_appropriate: "Appropriate",
    category_doubtful: "Doubtful",
    category_possible_deviation: "Possible deviation",
    action_routine: "routine",
    action_rescreen_2_weeks: "re-screen in 2 weeks",
    action_refer: "refer",
    domain_gross_motor: "gross motor",
    domain_fine_motor: "fine motor",
    domain_language: "speech & language",
    domain_social: "social & independence",
    network: "No connection; please try again.",
    service_unavailable: "The service is busy; please try again shortly.",
    failed: "Failed: {message}",
  },
};

let language = TEXTS[localStorage.getItem(LANGUAGE)] ? localStorage.getItem(LANGUAGE) : "id";
let token = sessionStorage.getItem(TOKEN);
let role = sessionStorage.getItem(ROLE);
let challengeId = null;
let posyandu = [];        // [{code, name}] the worker serves
let status = "";          // "" = all four
let cursor = null;        // the next page's cursor
let counts = null;
let rows = new Map();     // id -> the list row shown (the API's child)
let generation = 0;       // the newest list request: older answers are dropped
let searchTimer = null;
let openChild = null;     // the child shown in the dialog
let opener = null;        // the button that opened it (focus returns there)

function t(key, values) {
  let text = (TEXTS[language] && TEXTS[language][key]) || TEXTS.en[key] || key;
  for (const [name, value] of Object.entries(values || {})) text = text.replace("{" + name + "}", value);
  return text;
}

// --- the API ----------------------------------------------------------------------------

async function request(method, path, body) {
  const headers = { "Accept-Language": language };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = "Bearer " + token;
  try {
    return await fetch(api + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store",
    });
  } catch (_) {
    throw Object.assign(new Error(t("network")), { status: 0 });
  }
}

async function failure(response) {
  const data = await response.json().catch(() => ({}));
  const code = data.error && data.error.code;
  let message = (data.error && data.error.message) || "";
  if (!message || (code === "service_unavailable" && response.headers.get("Content-Language") !== language)) {
    message = code === "service_unavailable" || response.status >= 502 ? t("service_unavailable") : message || `HTTP ${response.status}`;
  }
  return Object.assign(new Error(message), { status: response.status, code });
}

async function call(method, path, body) {
  const response = await request(method, path, body);
  if (!response.ok) throw await failure(response);
  return response.json();
}

// 401: the token expired or was replaced; 403: not a health worker. Both: sign in again.
function handled(error) {
  if (error.status === 401 || error.status === 403) {
    signOut(error.status === 403 ? t("notWorker") : error.message);
    return true;
  }
  return false;
}

// --- the page's words -------------------------------------------------------------------

function applyLanguage() {
  document.documentElement.lang = language;
  $("lang").value = language;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  $("search").placeholder = t("search");
  document.title = "KPSP: " + t("title");
  if (!token) $("status").textContent = t("notSignedIn");
  else $("status").textContent = t("signedIn");
  renderPosyandu();
  renderCounts();
  renderRows();
  if (openChild) renderChild(openChild);
}

$("lang").addEventListener("change", () => {
  language = $("lang").value;
  localStorage.setItem(LANGUAGE, language);
  applyLanguage();
});

function dateOnly(value) {
  if (!value) return "–";
  const [y, m, d] = value.slice(0, 10).split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d)).toLocaleDateString(language === "id" ? "id-ID" : "en-GB", {
    day: "numeric", month: "short", year: "numeric", timeZone: "UTC",
  });
}

function dateTime(value) {
  if (!value) return "–";
  return new Date(value).toLocaleString(language === "id" ? "id-ID" : "en-GB", {
    day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit", timeZone: "Asia/Jakarta",
  });
}

function domains(list) {
  return list && list.length ? list.map((d) => t("domain_" + d)).join(", ") : t("none");
}

function category(screening) {
  return screening && screening.category ? t("category_" + screening.category) : t("never");
}

function contactText(contact) {
  if (!contact) return t("never");
  const text = `${t("kind_" + contact.kind)} · ${dateTime(contact.at)}`;
  return contact.note ? `${text}: ${contact.note}` : text;
}

function thisMonth() {
  const parts = new Intl.DateTimeFormat("en", { timeZone: "Asia/Jakarta", year: "numeric", month: "2-digit" })
    .formatToParts(new Date());
  const part = (type) => parts.find((p) => p.type === type).value;
  return `${part("year")}-${part("month")}`;
}

// --- signing in: the chat's own phone + one-time code flow ------------------------------

function signOut(message) {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(ROLE);
  token = null;
  role = null;
  if ($("child").open) $("child").close();
  $("board").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  $("verify-form").hidden = true;
  $("start-form").hidden = false;
  $("signin-error").textContent = message || "";
  $("status").textContent = t("notSignedIn");
  $("phone").focus();
}

function useToken(value, user) {
  token = value;
  role = (user && user.role) || role;
  sessionStorage.setItem(TOKEN, value);
  if (role) sessionStorage.setItem(ROLE, role);
  $("signin-error").textContent = "";
  start();
}

$("start-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("signin-error").textContent = "";
  try {
    token = null;
    const started = await call("POST", "/chat/start", { phoneNumber: $("phone").value });
    // A number new to the service gets a token at once: a parent's, the API will say so.
    if (started.token) return useToken(started.token, started.user);
    challengeId = started.challengeId;
    $("start-form").hidden = true;
    $("verify-form").hidden = false;
    $("code").value = "";
    $("code").focus();
  } catch (error) {
    $("signin-error").textContent = error.message;
  }
});

$("verify-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("signin-error").textContent = "";
  try {
    const verified = await call("POST", "/chat/verify", { challengeId, code: $("code").value });
    useToken(verified.token, verified.user);
  } catch (error) {
    $("signin-error").textContent = error.message;
  }
});

$("signout").addEventListener("click", () => signOut());

// --- the month list ---------------------------------------------------------------------

async function start() {
  try {
    const mine = await call("GET", "/worker/posyandu");
    posyandu = mine.posyandu || [];
  } catch (error) {
    if (handled(error)) return;
    showBoard();
    $("board-error").textContent = t("failed", { message: error.message });
    return;
  }
  showBoard();
  renderPosyandu();
  load(false);
}

function showBoard() {
  $("signin").hidden = true;
  $("board").hidden = false;
  $("signout").hidden = false;
  $("status").textContent = t("signedIn");
  if (!$("month").value) $("month").value = thisMonth();
}

function renderPosyandu() {
  const select = $("posyandu");
  const chosen = select.value;
  select.replaceChildren();
  // An admin's list with no posyandu asked for is the first posyandu's: no "all" for them.
  if (role !== "admin" && posyandu.length > 1) select.appendChild(new Option(t("allPosyandu"), ""));
  for (const p of posyandu) select.appendChild(new Option(`${p.name} (${p.code})`, p.code));
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
  $("posyandu-field").hidden = posyandu.length <= 1;
}

function query(withCursor) {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if ($("month").value) params.set("month", $("month").value);
  if ($("posyandu").value) params.set("posyandu", $("posyandu").value);
  if (status) params.set("status", status);
  const q = $("search").value.trim();
  if (q) params.set("q", q);
  if (withCursor && cursor) params.set("cursor", cursor);
  return params;
}

async function load(more) {
  const mine = ++generation;
  $("board-error").textContent = "";
  $("more").disabled = true;
  if (!more) $("summary").textContent = t("loading");
  try {
    const data = await call("GET", "/worker/due?" + query(more));
    if (mine !== generation) return; // a newer choice was made meanwhile
    if (!more) rows = new Map();
    for (const child of data.children) rows.set(child.id, child);
    counts = data.counts;
    cursor = data.nextCursor;
    if (data.month && !$("month").value) $("month").value = data.month;
    renderCounts();
    renderRows();
    document.body.dataset.loaded = "1";
  } catch (error) {
    if (mine !== generation || handled(error)) return;
    $("summary").textContent = "";
    $("board-error").textContent = t("failed", { message: error.message });
  } finally {
    if (mine === generation) $("more").disabled = false;
  }
}

function renderCounts() {
  for (const el of document.querySelectorAll("[data-count]")) {
    const key = el.dataset.count;
    const n = !counts ? "" : key === "all" ? STATUSES.reduce((sum, s) => sum + (counts[s] || 0), 0) : counts[key] || 0;
    el.textContent = counts ? `(${n})` : "";
  }
  for (const button of $("tabs").querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(button.dataset.status === status));
  }
}

function cell(row, label, content) {
  const td = document.createElement("td");
  td.dataset.label = label;
  if (content instanceof Node) td.appendChild(content);
  else td.textContent = content;
  row.appendChild(td);
  return td;
}

function link(text, href, external) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  if (external) {
    a.target = "_blank";
    a.rel = "noopener noreferrer";
  }
  return a;
}

function parentLinks(child) {
  const box = document.createElement("span");
  box.className = "links";
  if (!child.parentPhone) {
    box.textContent = t("noPhone");
    box.classList.add("muted");
    return box;
  }
  const tel = link(child.parentPhone, "tel:" + child.parentPhone);
  tel.className = "tel";
  tel.setAttribute("aria-label", `${t("call")} ${child.parentPhone}`);
  const wa = link(t("whatsapp"), "https://wa.me/" + child.parentPhone.replace(/\D/g, ""), true);
  wa.className = "wa";
  box.append(tel, " ", wa);
  return box;
}

function renderRow(child) {
  const tr = document.createElement("tr");
  tr.dataset.id = child.id;
  const open = document.createElement("button");
  open.type = "button";
  open.className = "open";
  open.textContent = child.name;
  open.addEventListener("click", () => showChild(child.id, open));
  cell(tr, t("col_name"), open);
  cell(tr, t("col_age"), child.ageMonths === null || child.ageMonths === undefined ? "–" : String(child.ageMonths));
  const badge = document.createElement("span");
  badge.className = "badge " + (child.status || "");
  badge.textContent = child.status ? t("status_" + child.status) : "–";
  cell(tr, t("col_status"), badge);
  cell(tr, t("col_due"), dateOnly(child.dueAt));
  cell(tr, t("col_result"), category(child.lastScreening)).className = "result";
  cell(tr, t("col_no"), child.lastScreening ? domains(child.lastScreening.noDomains) : "–").className = "domains";
  cell(tr, t("col_parent"), parentLinks(child));
  cell(tr, t("col_contact"), contactText(child.lastContact)).className = "contact";
  return tr;
}

function renderRows() {
  const body = $("children").querySelector("tbody");
  body.replaceChildren(...[...rows.values()].map(renderRow));
  $("empty").hidden = rows.size > 0 || !counts;
  $("more").hidden = !cursor;
  if (counts) {
    const total = status ? counts[status] || 0 : STATUSES.reduce((sum, s) => sum + (counts[s] || 0), 0);
    $("summary").textContent = t("shown", { shown: rows.size, total });
  }
}

$("tabs").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-status]");
  if (!button) return;
  status = button.dataset.status;
  renderCounts();
  load(false);
});
$("posyandu").addEventListener("change", () => load(false));
$("month").addEventListener("change", () => {
  if ($("month").value) load(false);
});
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => load(false), SEARCH_DELAY_MS);
});
$("filters").addEventListener("submit", (event) => {
  event.preventDefault(); // Enter in the search box: at once, not after the pause
  clearTimeout(searchTimer);
  load(false);
});
$("more").addEventListener("click", () => load(true));

// --- one child: history and contacts ----------------------------------------------------

async function showChild(id, button) {
  opener = button;
  openChild = null;
  $("child-name").textContent = rows.has(id) ? rows.get(id).name : "";
  $("child-facts").textContent = t("loading");
  $("child-error").textContent = "";
  $("contact-done").textContent = "";
  $("note").value = "";
  $("screenings").querySelector("tbody").replaceChildren();
  $("contacts").replaceChildren();
  $("child").dataset.id = id;
  if (!$("child").open) $("child").showModal();
  try {
    const data = await call("GET", "/worker/children/" + encodeURIComponent(id));
    if ($("child").dataset.id !== id) return;
    openChild = data;
    renderChild(data);
  } catch (error) {
    if (handled(error)) return;
    $("child-facts").textContent = "";
    $("child-error").textContent = t("failed", { message: error.message });
  }
}

function renderChild(data) {
  const c = data.child;
  $("child-name").textContent = c.name;
  const facts = [
    t(c.sex),
    `${t("born")} ${dateOnly(c.birthDate)}`,
    c.ageMonths === null || c.ageMonths === undefined ? null : `${c.ageMonths} ${t("months")}`,
    c.posyandu,
    c.status ? t("status_" + c.status) : null,
  ];
  $("child-facts").replaceChildren(facts.filter(Boolean).join(" · "), " ", parentLinks(c));
  const body = $("screenings").querySelector("tbody");
  body.replaceChildren();
  for (const s of data.screenings) {
    const tr = document.createElement("tr");
    cell(tr, t("col_date"), dateTime(s.completedAt));
    cell(tr, t("col_age"), s.ageMonths === null || s.ageMonths === undefined ? "–" : String(s.ageMonths));
    cell(tr, t("col_result"), category(s));
    cell(tr, t("col_yes"), s.yesCount === null || s.yesCount === undefined ? "–" : `${s.yesCount}/${s.itemCount}`);
    cell(tr, t("col_action"), s.nextAction ? t("action_" + s.nextAction) : "–");
    cell(tr, t("col_no"), domains(s.noDomains));
    body.appendChild(tr);
  }
  $("screenings").hidden = data.screenings.length === 0;
  $("no-screenings").hidden = data.screenings.length > 0;
  const list = $("contacts");
  list.replaceChildren();
  for (const contact of data.contacts) {
    const li = document.createElement("li");
    li.textContent = contactText(contact);
    list.appendChild(li);
  }
  if (!data.contacts.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = t("noContacts");
    list.appendChild(li);
  }
}

$("contact-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = $("child").dataset.id;
  const kind = (event.submitter && event.submitter.value) || "contacted";
  const buttons = $("contact-form").querySelectorAll("button");
  $("child-error").textContent = "";
  $("contact-done").textContent = "";
  for (const b of buttons) b.disabled = true;
  try {
    const done = await call("POST", `/worker/children/${encodeURIComponent(id)}/contacts`, {
      kind, note: $("note").value.trim(),
    });
    $("note").value = "";
    $("contact-done").textContent = t("saved");
    if (openChild && openChild.child.id === id) {
      openChild.contacts.unshift(done.contact);
      openChild.child.lastContact = done.contact;
      renderChild(openChild);
    }
    if (rows.has(id)) {
      rows.get(id).lastContact = done.contact;
      const old = $("children").querySelector(`tr[data-id="${CSS.escape(id)}"]`);
      const fresh = renderRow(rows.get(id));
      if (old) old.replaceWith(fresh);
      if (opener && !opener.isConnected) opener = fresh.querySelector("button.open");
    }
  } catch (error) {
    if (handled(error)) return;
    $("child-error").textContent = t("failed", { message: error.message });
  } finally {
    for (const b of buttons) b.disabled = false;
    if ($("child").open && event.submitter) event.submitter.focus();
  }
});

$("close").addEventListener("click", () => $("child").close());
// Escape closes a modal <dialog> by itself; either way, focus goes back to the row.
$("child").addEventListener("close", () => {
  openChild = null;
  delete $("child").dataset.id;
  if (opener && opener.isConnected) opener.focus();
});

// --- the month's CSV --------------------------------------------------------------------

function fileName() {
  const chosen = $("posyandu").value;
  const code = chosen || (role === "admin" && posyandu.length ? posyandu[0].code : posyandu.map((p) => p.code).join("-")) || "none";
  return `kpsp-${code}-${$("month").value || thisMonth()}.csv`;
}

$("download").addEventListener("click", async () => {
  $("board-error").textContent = "";
  const params = new URLSearchParams();
  if ($("month").value) params.set("month", $("month").value);
  if ($("posyandu").value) params.set("posyandu", $("posyandu").value);
  params.set("language", language); // the result and action words, as the page reads
  const button = $("download");
  button.disabled = true;
  try {
    // fetch, not a link: the export needs the bearer token, which a link cannot send.
    const response = await request("GET", "/worker/export.csv?" + params);
    if (!response.ok) throw await failure(response);
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const a = link("", url);
    a.download = fileName();
    a.hidden = true;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (error) {
    if (!handled(error)) $("board-error").textContent = t("failed", { message: error.message });
  } finally {
    button.disabled = false;
  }
});

// --- start ------------------------------------------------------------------------------

applyLanguage();
if (token) {
  start();
} else {
  signOut();
}

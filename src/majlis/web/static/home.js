// The home page: create a space with the admin token, list spaces.
"use strict";
(() => {
  const T = JSON.parse(document.getElementById("strings").textContent);
  const $ = (id) => document.getElementById(id);
  const lang = document.documentElement.lang;
  const tokenInput = $("admin-token");
  tokenInput.value = sessionStorage.getItem("majlis-admin") || "";

  // The server's rule (pages.text_direction): titles with a fair share of right-to-left
  // letters are right-to-left even when they open with a Latin name.
  const RTL_LETTER = /(?=\p{L})[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufeff]/gu;
  function textDirection(text) {
    const letters = (text.match(/\p{L}/gu) || []).length;
    if (!letters) return "ltr";
    return (text.match(RTL_LETTER) || []).length / letters >= 0.3 ? "rtl" : "ltr";
  }

  function link(id, path) {
    const a = $(id);
    a.href = path;
    a.textContent = new URL(path, location.href).href;
  }

  async function refresh() {
    const token = tokenInput.value.trim();
    if (!token) return;
    const r = await fetch("/api/spaces", { headers: { Authorization: `Bearer ${token}` } });
    if (!r.ok) return;
    const { spaces } = await r.json();
    const list = $("spaces");
    list.replaceChildren();
    for (const s of spaces) {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = `${s.page_url}?lang=${lang}`;
      const title = document.createElement("bdi");
      title.textContent = s.title;
      title.dir = textDirection(s.title);
      a.append(title);
      const status = document.createElement("span");
      status.className = "status " + s.status;
      status.textContent = T["status_" + s.status] || s.status;
      li.append(a, " ", status);
      if (s.status === "scheduled" && s.starts_at) {
        const time = document.createElement("time");
        time.dateTime = new Date(s.starts_at * 1000).toISOString();
        time.textContent = when.format(new Date(s.starts_at * 1000));
        li.append(" ", time);
      }
      list.append(li);
    }
    if (!spaces.length) {
      const li = document.createElement("li");
      li.textContent = T.no_spaces;
      list.append(li);
    }
  }

  // The form's fields as the API takes them: the start time in the browser's zone, sent as
  // an ISO 8601 instant; empty optional fields left out.
  function spaceFields() {
    const fields = { title: $("title").value, language: $("language").value };
    const description = $("description").value.trim();
    if (description) fields.description = description;
    const starts = $("starts-at").value;
    if (starts) fields.starts_at = new Date(starts).toISOString();
    return fields;
  }
  $("language").value = lang;
  const when = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "short" });

  $("create").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = tokenInput.value.trim();
    sessionStorage.setItem("majlis-admin", token);
    const r = await fetch("/api/spaces", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify(spaceFields()),
    });
    const body = await r.json();
    if (r.status !== 201) {
      alert(`${T.error} ${body.detail}`);
      return;
    }
    link("host-link", body.host_link);
    link("speaker-link", body.speaker_link);
    link("listen-link", body.listen_link);
    $("created").hidden = false;
    refresh();
  });
  tokenInput.addEventListener("change", refresh);
  refresh();
})();

// Saved chats: the live page's chat with the session's model (the server saves each question and
// the answer as it arrives), the page's list of chats, and a saved chat's own page. Answers are
// Markdown made safe by DOMPurify; titles and the user's own words are only ever text.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const ENDINGS = {
    streaming: "This answer was still being written when the chat was saved.",
    stopped: "Stopped before the end.",
    failed: "The answer failed here.",
  };

  function render(markdown) {
    if (window.marked && window.DOMPurify) return window.DOMPurify.sanitize(window.marked.parse(markdown));
    const plain = document.createElement("div");  // without the libraries: plain, escaped text
    plain.textContent = markdown;
    return plain.innerHTML;
  }
  function bubble(log, role) {
    const el = document.createElement("div");
    el.className = `msg ${role}`;
    log.appendChild(el);
    log.scrollTop = log.scrollHeight;
    return el;
  }
  // Only an inline picture in one of four formats is shown: never an address to fetch, never
  // an SVG (it can carry script). Mirrors domain/images.py.
  const SAFE_IMAGE = /^data:image\/(png|jpeg|webp|gif);base64,[A-Za-z0-9+/]*={0,2}$/;
  function imagesOf(content) {
    if (!Array.isArray(content)) return [];
    return content.filter((part) => part && part.type === "image_url" && part.image_url)
      .map((part) => (typeof part.image_url === "string" ? part.image_url : part.image_url.url))
      .filter((url) => typeof url === "string" && SAFE_IMAGE.test(url));
  }
  function textOf(content) {
    if (!Array.isArray(content)) return typeof content === "string" ? content : "";
    return content.filter((part) => part && part.type === "text" && typeof part.text === "string")
      .map((part) => part.text).join("\n\n");
  }
  // The user's bubble: a note for each file that went with the question, the question as typed
  // (not the documents' text before it), then its pictures. All of it text, never HTML.
  function showQuestion(log, { text, attached, images }) {
    const el = bubble(log, "user");
    if (attached && Array.isArray(attached.files)) {
      for (const file of attached.files) {
        const note = document.createElement("div");
        note.className = "attached-note";
        note.textContent = `Attached ${file.note}`;
        el.appendChild(note);
      }
      text = attached.question;
    }
    const words = document.createElement("div");
    words.textContent = text;
    el.appendChild(words);
    if (images.length) {
      const row = document.createElement("div");
      row.className = "msg-images";
      images.forEach((url, index) => {
        const picture = document.createElement("img");
        picture.src = url;  // checked against SAFE_IMAGE above
        picture.alt = `Image ${index + 1} sent with this message`;
        row.appendChild(picture);
      });
      el.appendChild(row);
    }
    return el;
  }
  function showSaved(log, message) {
    if (message.role === "user") {
      showQuestion(log, { text: message.content, attached: message.attached, images: imagesOf(message.parts) });
      return;
    }
    const el = bubble(log, "assistant");
    const body = document.createElement("div"); body.innerHTML = render(message.content);
    const meta = document.createElement("div"); meta.className = "meta";
    const parts = [];
    if (ENDINGS[message.status]) parts.push(ENDINGS[message.status]);
    if (message.completion_tokens) parts.push(`${message.completion_tokens} tokens`);
    meta.textContent = parts.join(" · ");
    el.append(body, meta);
  }

  // --- a saved chat's own page: its messages, read only ------------------------------------
  const live = $("live");
  const saved = $("chat-data");
  if (!live) {
    if (saved) for (const message of JSON.parse(saved.textContent).messages) showSaved($("chat-log"), message);
    return;
  }

  // --- the live page ----------------------------------------------------------------------
  const form = $("chat-form");
  const list = $("chat-list");
  if (!form) return;  // the session cannot chat now: the list links to each chat's own page
  const log = $("chat-log"), input = $("chat-input"), send = $("chat-send"), stop = $("chat-stop");
  const note = $("chat-note");
  const sessionModel = live.dataset.modelName || "";
  let current = null;  // the saved chat on screen: {id, title, model, settings...}; null: a new one
  let conversation = [];  // its messages, as the model is sent them
  let controller = null;

  function say(text) { note.textContent = text; note.hidden = !text; }
  function markCurrent() {
    if (!list) return;
    for (const link of list.querySelectorAll("a[data-chat-id]")) {
      if (current && link.dataset.chatId === current.id) link.setAttribute("aria-current", "true");
      else link.removeAttribute("aria-current");
    }
  }
  function remember() {  // the address names the chat: a reload opens it again
    const url = new URL(window.location.href);
    if (current) url.searchParams.set("chat", current.id); else url.searchParams.delete("chat");
    window.history.replaceState(null, "", url);
    markCurrent();
  }
  function listed(chat) {  // the chat's link in the list, added at the top if it is new
    let link = list && list.querySelector(`a[data-chat-id="${CSS.escape(chat.id)}"]`);
    if (list && !link) {
      const item = document.createElement("li");
      link = document.createElement("a");
      link.dataset.chatId = chat.id;
      link.href = `?chat=${encodeURIComponent(chat.id)}`;
      item.appendChild(link);
      list.prepend(item);
      const empty = $("chat-list-empty"); if (empty) empty.hidden = true;
    }
    if (link) link.textContent = chat.title;
    return link;
  }

  async function open(id) {
    if (controller) return;
    const response = await fetch(`/chats/${encodeURIComponent(id)}/data.json`, { credentials: "same-origin" });
    const body = await response.json().catch(() => null);
    if (!response.ok || !body) { say(body && body.error ? body.error.message : "That chat could not be opened."); return; }
    current = body;
    log.replaceChildren();
    conversation = [];
    for (const message of body.messages) {
      showSaved(log, message);
      // a question sent with images is sent again with them (the server leaves them out for a
      // model that cannot see, and says so)
      if (message.content || message.parts) conversation.push({ role: message.role, content: message.parts || message.content });
    }
    const said = [];
    if (body.model_name && sessionModel && body.model_name !== sessionModel) said.push(`This chat was held with ${body.model_name}. Your next message goes to this session's model, ${sessionModel}, with the chat so far.`);
    // said on opening, not only after the next question: this model will not get the images
    const images = body.messages.reduce((sum, message) => sum + imagesOf(message.parts).length, 0);
    const attachments = $("attachments");
    if (images > 0 && attachments && attachments.dataset.seesImages === "no") {
      said.push(`${sessionModel || "This model"} cannot see images, so ${images === 1 ? "the image" : `the ${images} images`} in this chat will be left out of what it reads. The chat itself keeps ${images === 1 ? "it" : "them"}.`);
    }
    say(said.join(" "));
    remember();
    window.dispatchEvent(new CustomEvent("sizzle:chat", { detail: { chat: current, made: false } }));
  }
  function startNew() {
    if (controller) return;
    current = null; conversation = []; log.replaceChildren(); say(""); remember();
    window.dispatchEvent(new CustomEvent("sizzle:chat", { detail: { chat: null, made: false } }));
    input.focus();
  }

  async function post(url, payload) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(payload),
    });
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error(body && body.error ? body.error.message : `HTTP ${response.status}`);
    return body;
  }
  // The chat's settings (chat_settings.js keeps them); none by default.
  function settings() { return window.SizzleChatSettings ? window.SizzleChatSettings.current() : {}; }

  async function ask(text) {
    say("");
    if (!current) {
      try {
        current = await post("/chats", { session_id: live.dataset.sessionId, ...settings() });
      } catch (error) { say(error.message); return; }
      listed(current); remember();
      window.dispatchEvent(new CustomEvent("sizzle:chat", { detail: { chat: current, made: true } }));
    }
    // attachments.js adds the files chosen: documents' text, images as content parts
    const message = window.SizzleAttachments ? window.SizzleAttachments.take(text) : { content: text, attached: null };
    conversation.push({ role: "user", content: message.content });
    showQuestion(log, { text, attached: message.attached, images: imagesOf(message.content) });
    const answer = bubble(log, "assistant");
    const body = document.createElement("div"); body.className = "typing"; body.textContent = "Thinking";
    const meta = document.createElement("div"); meta.className = "meta";
    answer.append(body, meta);
    controller = new AbortController();
    send.disabled = true; stop.hidden = false;
    const started = performance.now();
    let firstAt = null, content = "", completion = null, failed = null, stopped = false;
    try {
      const response = await fetch(live.dataset.chatUrl, {
        method: "POST", credentials: "same-origin", signal: controller.signal,
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({
          messages: conversation, conversation_id: current.id, ...settings(),
          ...(message.attached ? { attached: message.attached } : {}),
        }),
      });
      if (!response.ok) {
        const err = await response.json().catch(() => null);
        throw new Error(err && err.error ? err.error.message : `HTTP ${response.status}`);
      }
      say(leftOut(response.headers));
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
          for (const line of event.split("\n")) {
            if (!line.startsWith("data: ")) continue;
            const data = line.slice(6);
            if (data === "[DONE]") continue;
            const chunk = JSON.parse(data);
            if (chunk.error) { failed = chunk.error.message || "the model stopped with an error"; continue; }
            if (chunk.usage) completion = chunk.usage.completion_tokens;
            for (const choice of chunk.choices || []) {
              const piece = (choice.delta && choice.delta.content) || "";
              if (!piece) continue;
              if (firstAt === null) { firstAt = performance.now(); body.className = ""; }
              content += piece;
              body.innerHTML = render(content);
              log.scrollTop = log.scrollHeight;
            }
          }
        }
      }
    } catch (error) {
      if (error.name === "AbortError") stopped = true; else failed = error.message;
    } finally {
      controller = null; send.disabled = false; stop.hidden = true;
    }
    if (firstAt === null) { body.className = ""; body.textContent = stopped ? "(stopped before the first word)" : ""; }
    if (content) conversation.push({ role: "assistant", content });
    else if (!stopped) conversation.pop();  // refused: the question is not part of the chat
    if (current.title === "New chat") { current.title = titleOf(text); listed(current); }
    const ended = performance.now();
    const parts = [];
    if (firstAt !== null) parts.push(`first token after ${Math.round(firstAt - started)} ms`);
    if (completion && firstAt !== null && ended > firstAt) parts.push(`${(completion / ((ended - firstAt) / 1000)).toFixed(1)} tokens/s`);
    if (stopped) parts.push("stopped: the GPU stopped generating");
    if (failed) parts.push(`error: ${failed}`);
    meta.textContent = parts.join(" · ");
    window.dispatchEvent(new CustomEvent("sizzle:sent"));
  }
  // What the server left out of this question, in words ("" when nothing was).
  function leftOut(headers) {
    const count = (name) => parseInt(headers.get(name) || "0", 10) || 0;
    const dropped = count("X-Sizzle-Dropped-Messages"), images = count("X-Sizzle-Dropped-Images");
    const model = sessionModel || "the model";
    const said = [];
    if (dropped > 0) said.push(`This chat is longer than ${model} can read at once, so its ${dropped === 1 ? "oldest message was" : `${dropped} oldest messages were`} left out of this question.`);
    if (images > 0) said.push(`${model} cannot see images, so ${images === 1 ? "the image" : `the ${images} images`} sent earlier in this chat ${images === 1 ? "was" : "were"} left out.`);
    return said.length ? `${said.join(" ")} The chat itself keeps ${dropped + images === 1 ? "it" : "them"}.` : "";
  }
  function titleOf(text) {  // as the server names a chat after its first question
    const line = text.split(/\s+/).filter(Boolean).join(" ");
    return line.length <= 80 ? line : line.slice(0, 79).trimEnd() + "…";
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || controller) return;
    const wrong = window.SizzleChatSettings && window.SizzleChatSettings.problem();
    if (wrong) { say(wrong); return; }  // the question stays in the box
    input.value = "";
    ask(text);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
  });
  stop.addEventListener("click", () => { if (controller) controller.abort(); });
  if (list) {
    list.addEventListener("click", (event) => {
      const link = event.target instanceof Element ? event.target.closest("a[data-chat-id]") : null;
      if (!link) return;
      event.preventDefault();
      open(link.dataset.chatId);
    });
  }
  const fresh = $("chat-new");
  if (fresh) fresh.addEventListener("click", startNew);
  const asked = new URL(window.location.href).searchParams.get("chat");
  if (asked) open(asked);
  window.SizzleChat = { current: () => current, messages: () => conversation.slice() };
})();

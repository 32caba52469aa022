// Attachments for the live page's chat (templates/sessions/_attach.html). Documents are sent to
// Sizzle, which reads their text (/attachments/extract); the text goes before the message. Images
// are shrunk here on a canvas to what vision models take, and go with the message as OpenAI
// image parts; a model that cannot see images has the image button off, with the reason shown.
// chat.js asks `window.SizzleAttachments.take(text)` for the next message's content.
(function () {
  "use strict";
  const root = document.getElementById("attachments");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const MAX_DOCUMENT_BYTES = 10 * 1024 * 1024;  // Sizzle's limit (services/attachments.py)
  const MAX_IMAGE_BYTES = 25 * 1024 * 1024;  // a photo straight from a phone, before shrinking
  const MAX_IMAGES = 4;
  const IMAGE_EDGE = 1024;  // pixels on the longest side: enough for the vision models we serve
  const list = $("attach-list"), problem = $("attach-problem");
  const pending = [];  // {kind: "document" | "image", name, note, prompt?, url?}
  let reading = 0;

  function say(text) { problem.textContent = text; problem.hidden = !text; }

  function show(item) {
    const row = document.createElement("li");
    const note = document.createElement("span");
    note.textContent = item.note;  // names come from the user's disk: always text, never HTML
    const remove = document.createElement("button");
    remove.type = "button"; remove.className = "link small"; remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${item.name}`);
    remove.addEventListener("click", () => {
      pending.splice(pending.indexOf(item), 1);
      row.remove();
    });
    row.append(note, " ", remove);
    list.appendChild(row);
    item.row = row;
  }

  async function readDocument(file) {
    if (file.size > MAX_DOCUMENT_BYTES) {
      say(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; Sizzle reads files of at most 10 MB.`);
      return;
    }
    const form = new FormData();
    form.append("file", file, file.name);
    const response = await fetch(root.dataset.extractUrl, {
      method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf }, body: form,
    });
    const answer = await response.json().catch(() => null);
    if (!response.ok) {
      say(answer && answer.error ? answer.error.message : `${file.name} could not be read (HTTP ${response.status}).`);
      return;
    }
    const item = { kind: "document", fileKind: answer.kind, name: answer.name, note: answer.note, prompt: answer.prompt };
    pending.push(item); show(item);
  }

  async function shrinkImage(file) {
    if (pending.filter((item) => item.kind === "image").length >= MAX_IMAGES) {
      say(`At most ${MAX_IMAGES} images go with one message.`);
      return;
    }
    if (file.size > MAX_IMAGE_BYTES) { say(`${file.name} is too large to send (over 25 MB).`); return; }
    let picture;
    try { picture = await createImageBitmap(file); } catch (_) {
      say(`${file.name} cannot be opened as an image here; try a PNG, JPEG or WebP file.`);
      return;
    }
    const scale = Math.min(1, IMAGE_EDGE / Math.max(picture.width, picture.height));
    const width = Math.max(1, Math.round(picture.width * scale));
    const height = Math.max(1, Math.round(picture.height * scale));
    const canvas = document.createElement("canvas");
    canvas.width = width; canvas.height = height;
    const paint = canvas.getContext("2d");
    paint.fillStyle = "#fff"; paint.fillRect(0, 0, width, height);  // JPEG has no transparency
    paint.drawImage(picture, 0, 0, width, height);
    const url = canvas.toDataURL("image/jpeg", 0.85);
    const name = Array.from(file.name).slice(0, 120).join("") || "image";  // as Sizzle keeps a name
    const item = { kind: "image", fileKind: "image", name, url, note: `${name}: image, sent as ${width} × ${height} pixels` };
    pending.push(item); show(item);
  }

  async function each(files, read) {
    say("");
    reading += 1; root.setAttribute("aria-busy", "true");
    try {
      for (const file of files) await read(file);
    } catch (error) {
      say(`The file could not be attached: ${error.message}`);
    } finally {
      reading -= 1;
      if (!reading) root.removeAttribute("aria-busy");
    }
  }

  function picker(buttonId, inputId, read) {
    const button = $(buttonId), input = $(inputId);
    if (!button || !input) return;
    button.addEventListener("click", () => input.click());
    input.addEventListener("change", () => {
      const files = Array.from(input.files || []);
      input.value = "";
      if (files.length) each(files, read);
    });
  }
  picker("attach-document-button", "attach-document", readDocument);
  if (root.dataset.seesImages !== "no") picker("attach-image-button", "attach-image", shrinkImage);

  // A message is not sent while a document is still being read.
  const form = $("chat-form");
  if (form) {
    form.addEventListener("submit", (event) => {
      if (!reading) return;
      event.preventDefault(); event.stopImmediatePropagation();
      say("Wait a moment: the attachment is still being read.");
    }, true);
  }

  window.SizzleAttachments = {
    // The next message's content (a string, or OpenAI content parts when images go with it),
    // and what went with it, kept with the saved chat so that a reload shows the question as
    // typed with a note for each file (`attached`, null without files); the files are used up.
    take(text) {
      if (!pending.length) return { content: text, attached: null };
      const documents = pending.filter((item) => item.kind === "document");
      const images = pending.filter((item) => item.kind === "image");
      const prompt = documents.map((item) => item.prompt).concat([text]).join("\n\n");
      const files = pending.map((item) => ({ name: item.name, kind: item.fileKind, note: item.note }));
      for (const item of pending) item.row.remove();
      pending.length = 0;
      say("");
      const content = images.length
        ? [{ type: "text", text: prompt }].concat(images.map((item) => ({ type: "image_url", image_url: { url: item.url } })))
        : prompt;
      return { content, attached: { question: text, files } };
    },
  };
})();

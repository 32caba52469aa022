// The live page's chat settings (system prompt, temperature, longest answer), kept with the chat
// on screen and sent with each message; and "View code": the same request as curl and as Python
// with the OpenAI client, pointed at Sizzle's /v1, the API key left to an environment variable.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const panel = $("chat-controls");
  if (!panel) return;
  const live = $("live");
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const system = $("chat-system"), temperature = $("chat-temperature"), maxTokens = $("chat-max-tokens");
  const note = $("chat-settings-note");
  let chat = null;  // the saved chat on screen (chat.js says which)

  function number(field) {
    const text = field.value.trim();
    return text === "" ? null : Number(text);
  }
  function problem() {  // in words, or null when every box holds something allowed
    const t = number(temperature), m = number(maxTokens);
    if (t !== null && !(t >= 0 && t <= 2)) return "The temperature must be between 0 and 2.";
    if (m !== null && !(Number.isInteger(m) && m >= 1 && m <= 32768)) return "The longest answer must be a whole number of tokens from 1 to 32,768.";
    return null;
  }
  // What each message is sent with (only what is set; the model's defaults otherwise).
  function current() {
    const chosen = {};
    if (problem()) return chosen;
    if (system.value.trim()) chosen.system_prompt = system.value;
    if (number(temperature) !== null) chosen.temperature = number(temperature);
    if (number(maxTokens) !== null) chosen.max_tokens = number(maxTokens);
    return chosen;
  }

  function shellQuoted(text) { return `'${text.replace(/'/g, `'\\''`)}'`; }
  function showCode() {
    const chosen = current();
    const history = window.SizzleChat ? window.SizzleChat.messages() : [];
    const messages = [];
    if (chosen.system_prompt) messages.push({ role: "system", content: chosen.system_prompt });
    messages.push(...history);
    if (!history.length || history[history.length - 1].role !== "user") messages.push({ role: "user", content: "Hello!" });
    const request = { model: panel.dataset.modelTag, messages, stream: true };
    if (chosen.temperature !== undefined) request.temperature = chosen.temperature;
    if (chosen.max_tokens !== undefined) request.max_tokens = chosen.max_tokens;
    const base = panel.dataset.apiBase;
    const headers = { "X-Sizzle-Session": live.dataset.sessionId };
    if (chat) headers["X-Sizzle-Conversation"] = chat.id;  // saved in this chat too
    const json = JSON.stringify(request, null, 2);
    $("chat-code-curl").value = [
      `curl ${base}/chat/completions \\`,
      `  -H "Authorization: Bearer $SIZZLE_API_KEY" \\`,
      `  -H "Content-Type: application/json" \\`,
      ...Object.entries(headers).map(([name, value]) => `  -H "${name}: ${value}" \\`),
      `  -d ${shellQuoted(json)}`,
    ].join("\n");
    const options = Object.entries(request)
      .filter(([name]) => name !== "stream")
      .map(([name, value]) => `    ${name}=${JSON.stringify(value, null, 2).replace(/\n/g, "\n    ")},`);
    $("chat-code-python").value = [
      "import os",
      "",
      "from openai import OpenAI",
      "",
      `client = OpenAI(base_url=${JSON.stringify(base)}, api_key=os.environ["SIZZLE_API_KEY"])`,
      "stream = client.chat.completions.create(",
      ...options,
      "    stream=True,",
      `    extra_headers=${JSON.stringify(headers)},`,
      ")",
      "for chunk in stream:",
      "    if chunk.choices:",
      '        print(chunk.choices[0].delta.content or "", end="", flush=True)',
    ].join("\n");  // the values are strings and numbers: their JSON is Python too
  }

  let saving = null;
  async function save() {
    const wrong = problem();
    note.textContent = wrong || "";
    showCode();
    if (wrong || !chat) return;  // a new chat gets them when its first message makes it
    const body = {
      system_prompt: system.value.trim() ? system.value : null,
      temperature: number(temperature), max_tokens: number(maxTokens),
    };
    clearTimeout(saving);
    saving = setTimeout(async () => {
      const response = await fetch(`/chats/${encodeURIComponent(chat.id)}/settings`, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(body),
      }).catch(() => null);
      const answer = response ? await response.json().catch(() => null) : null;
      note.textContent = response && response.ok ? "Saved with this chat." :
        (answer && answer.error ? answer.error.message : "The settings could not be saved; they are still used on this page.");
    }, 400);
  }

  window.addEventListener("sizzle:chat", (event) => {  // another chat on screen, or a new one
    const opened = event.detail.chat;
    chat = opened;
    if (opened && !event.detail.made) {  // a chat just made has what the boxes hold
      system.value = opened.system_prompt || "";
      temperature.value = opened.temperature === null || opened.temperature === undefined ? "" : opened.temperature;
      maxTokens.value = opened.max_tokens === null || opened.max_tokens === undefined ? "" : opened.max_tokens;
    }
    note.textContent = "";
    showCode();
  });
  window.addEventListener("sizzle:sent", showCode);
  for (const field of [system, temperature, maxTokens]) field.addEventListener("input", save);
  $("chat-code").addEventListener("toggle", showCode);
  window.SizzleChatSettings = { current, problem };
  showCode();
})();

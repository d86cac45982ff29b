// ds2proxy API playground: sends one message through the chosen API family
// (the server makes the call with a configured key) and renders the stream
// as it arrives, the model's thinking apart from its answer.
"use strict";

// Each family's stream, reduced to {thinking, text, error} pieces.
const families = {
  openai(event) {
    if (event.data === "[DONE]") return {};
    const chunk = JSON.parse(event.data);
    if (chunk.error) return { error: chunk.error.message };
    const delta = chunk.choices?.[0]?.delta || {};
    return { thinking: delta.reasoning_content, text: delta.content };
  },
  anthropic(event) {
    const data = JSON.parse(event.data);
    if (data.type === "error") return { error: data.error?.message };
    if (data.type !== "content_block_delta") return {};
    const delta = data.delta || {};
    if (delta.type === "thinking_delta") return { thinking: delta.thinking };
    if (delta.type === "text_delta") return { text: delta.text };
    return {};
  },
  gemini(event) {
    const data = JSON.parse(event.data);
    if (data.error) return { error: data.error.message };
    const out = { thinking: "", text: "" };
    for (const part of data.candidates?.[0]?.content?.parts || []) {
      if (typeof part.text !== "string") continue;
      if (part.thought) out.thinking += part.text;
      else out.text += part.text;
    }
    return out;
  },
};

// Server-Sent Events from a fetch body: yields {event, data} per blank-line-ended block.
async function* serverSentEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const parse = (block) => {
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    return data.length ? { event: name, data: data.join("\n") } : null;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = parse(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
      if (event) yield event;
    }
  }
  const last = parse(buffer);
  if (last) yield last;
}

function setup() {
  const form = document.getElementById("playground-form");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const family = $("pg-family");
  const model = $("pg-model");
  const send = $("pg-send");
  const stop = $("pg-stop");
  const thinking = $("pg-thinking-text");
  const answer = $("pg-answer");
  const raw = $("pg-raw");
  const state = $("pg-state");
  const timing = $("pg-timing");
  let controller = null;

  family.addEventListener("change", () => {
    const option = family.selectedOptions[0];
    model.value = option.dataset.model;
    $("pg-route").textContent = option.dataset.route;
  });
  stop.addEventListener("click", () => controller?.abort());

  const sizes = () => {
    $("pg-thinking-size").textContent = thinking.textContent ? `${thinking.textContent.length} chars` : "";
    $("pg-answer-size").textContent = answer.textContent ? `${answer.textContent.length} chars` : "";
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const reduce = families[family.value];
    thinking.textContent = "";
    answer.textContent = "";
    raw.textContent = "";
    answer.classList.add("cursor");
    answer.classList.remove("pg-error");
    delete answer.dataset.done;
    send.disabled = true;
    stop.disabled = false;
    state.textContent = "Sending…";
    timing.textContent = "";
    controller = new AbortController();
    const started = performance.now();
    let first = null;
    try {
      const response = await fetch("/admin/ui/playground/send", {
        method: "POST",
        credentials: "same-origin",
        signal: controller.signal,
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
        body: JSON.stringify(Object.fromEntries(new FormData(form))),
      });
      if (!response.ok || !(response.headers.get("Content-Type") || "").includes("event-stream")) {
        const body = await response.text();
        let detail = body;
        try {
          const parsed = JSON.parse(body);
          detail = parsed.detail || parsed.error?.message || body;
        } catch (err) { detail = body || String(err); }
        throw new Error(`HTTP ${response.status}: ${detail}`);
      }
      state.textContent = "Streaming…";
      for await (const sse of serverSentEvents(response)) {
        raw.textContent += (sse.event !== "message" ? `event: ${sse.event}\n` : "") + `data: ${sse.data}\n\n`;
        const piece = reduce(sse);
        if (piece.error) throw new Error(piece.error);
        if (first === null && (piece.thinking || piece.text)) {
          first = performance.now() - started;
        }
        if (piece.thinking) thinking.textContent += piece.thinking;
        if (piece.text) answer.textContent += piece.text;
        sizes();
        timing.textContent = first === null ? "" : `first token ${Math.round(first)} ms`;
      }
      state.textContent = "Done.";
      answer.dataset.done = "true";
    } catch (err) {
      if (err.name === "AbortError") {
        state.textContent = "Stopped.";
      } else {
        state.textContent = "Failed.";
        answer.classList.add("pg-error");
        answer.textContent += (answer.textContent ? "\n\n" : "") + err.message;
      }
    } finally {
      answer.classList.remove("cursor");
      const total = Math.round(performance.now() - started);
      timing.textContent = (first === null ? "" : `first token ${Math.round(first)} ms · `) + `total ${total} ms`;
      send.disabled = false;
      stop.disabled = true;
      controller = null;
    }
  });
}

document.addEventListener("DOMContentLoaded", setup);

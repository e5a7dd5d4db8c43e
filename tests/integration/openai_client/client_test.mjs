// Drives slm serve with the official openai npm client.
//
//   SLM_BASE_URL=https://127.0.0.1:PORT/v1 SLM_API_KEY_FILE=FILE \
//   NODE_EXTRA_CA_CERTS=cert.pem node client_test.mjs
//
// Prints "ok - NAME" or "not ok - NAME: reason" per check and exits 1 if any
// failed. Each request is bounded by the client's timeout.
import { readFileSync } from "node:fs";
import OpenAI from "openai";

const baseURL = process.env.SLM_BASE_URL;
const apiKey = readFileSync(process.env.SLM_API_KEY_FILE, "utf8").split("\n")[0].trim();
const client = new OpenAI({ baseURL, apiKey, timeout: 30000, maxRetries: 0 });
let failed = 0;

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}: ${e && e.stack ? e.stack : e}`);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

function checkUsage(u) {
  assert(u && Number.isInteger(u.prompt_tokens) && u.prompt_tokens > 0, "prompt_tokens");
  assert(Number.isInteger(u.completion_tokens), "completion_tokens");
  assert(u.total_tokens === u.prompt_tokens + u.completion_tokens, "total_tokens");
  assert(u.prompt_tokens_details && Number.isInteger(u.prompt_tokens_details.cached_tokens),
    "cached_tokens");
}

let model;
await check("models.list", async () => {
  const list = await client.models.list();
  model = list.data[0].id;
  assert(typeof model === "string" && model.length > 0, "no model");
});

await check("chat.completions.create", async () => {
  const r = await client.chat.completions.create({
    model,
    messages: [{ role: "system", content: "be brief" }, { role: "user", content: "Hello" }],
    max_tokens: 8,
    temperature: 0,
  });
  assert(r.object === "chat.completion", "object");
  assert(typeof r.choices[0].message.content === "string", "content");
  assert(["stop", "length"].includes(r.choices[0].finish_reason), "finish_reason");
  checkUsage(r.usage);
});

await check("chat.completions.create stream with usage", async () => {
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Count" }],
    max_tokens: 8,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "", finish = null, usage = null, n = 0;
  for await (const chunk of stream) {
    n++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta.content || "";
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert(n >= 3, `only ${n} chunks`);
  assert(["stop", "length"].includes(finish), "finish_reason");
  checkUsage(usage);
  assert(usage.completion_tokens <= 8, "completion_tokens > max_tokens");
});

await check("completions.create", async () => {
  const r = await client.completions.create({ model, prompt: "def add(a, b):", max_tokens: 6 });
  assert(r.object === "text_completion" && typeof r.choices[0].text === "string", "text");
  checkUsage(r.usage);
});

await check("completions.create stream", async () => {
  const stream = await client.completions.create({ model, prompt: "x = ", max_tokens: 4, stream: true });
  let finish = null;
  for await (const chunk of stream) if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  assert(["stop", "length"].includes(finish), "finish_reason");
});

await check("bad key -> AuthenticationError", async () => {
  const bad = new OpenAI({ baseURL, apiKey: "sk-slm-not-a-valid-key-0000000000", maxRetries: 0 });
  try {
    await bad.chat.completions.create({ model, messages: [{ role: "user", content: "x" }] });
  } catch (e) {
    assert(e instanceof OpenAI.AuthenticationError, `got ${e.constructor.name}`);
    assert(e.status === 401 && e.code === "invalid_api_key", `status ${e.status} code ${e.code}`);
    return;
  }
  throw new Error("no error");
});

await check("bad parameter -> BadRequestError naming the field", async () => {
  try {
    await client.chat.completions.create({ model, messages: [{ role: "user", content: "x" }], top_p: 3 });
  } catch (e) {
    assert(e instanceof OpenAI.BadRequestError, `got ${e.constructor.name}`);
    assert(e.param === "top_p" && /top_p/.test(e.message), e.message);
    return;
  }
  throw new Error("no error");
});

await check("prompt too long -> context_length_exceeded", async () => {
  try {
    await client.chat.completions.create({ model, messages: [{ role: "user", content: "hello ".repeat(3000) }] });
  } catch (e) {
    assert(e instanceof OpenAI.BadRequestError, `got ${e.constructor.name}`);
    assert(e.code === "context_length_exceeded" && /maximum context length/.test(e.message), e.message);
    return;
  }
  throw new Error("no error");
});

const tools = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather of a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
}];

await check("chat.completions.create with tools and tool_choice", async () => {
  const messages = [
    { role: "user", content: "Weather in Paris?" },
    { role: "assistant", content: null,
      tool_calls: [{ id: "call_1", type: "function",
                     function: { name: "get_weather", arguments: JSON.stringify({ city: "Paris" }) } }] },
    { role: "tool", tool_call_id: "call_1", content: "sunny" },
  ];
  for (const tool_choice of ["auto", "none", "required", { type: "function", function: { name: "get_weather" } }]) {
    const r = await client.chat.completions.create({ model, messages, tools, tool_choice, max_tokens: 8 });
    const c = r.choices[0];
    assert(["stop", "length", "tool_calls"].includes(c.finish_reason), `finish_reason ${c.finish_reason}`);
    assert(c.message.role === "assistant", "role");
    if (c.finish_reason === "tool_calls") {
      for (const t of c.message.tool_calls) {
        assert(t.type === "function" && t.id && typeof t.function.arguments === "string", JSON.stringify(t));
      }
    } else {
      assert(typeof c.message.content === "string", "content");
    }
  }
});

await check("chat.completions.create stream with tools", async () => {
  const stream = await client.chat.completions.create({
    model, messages: [{ role: "user", content: "Weather in Paris?" }], tools, max_tokens: 8, stream: true,
  });
  let finish = null;
  for await (const chunk of stream) {
    if (chunk.choices.length && chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert(["stop", "length", "tool_calls"].includes(finish), `finish_reason ${finish}`);
});

await check("malformed tools entry -> BadRequestError naming the field", async () => {
  try {
    await client.chat.completions.create({
      model, messages: [{ role: "user", content: "x" }],
      tools: [{ type: "function", function: { description: "no name" } }],
    });
  } catch (e) {
    assert(e instanceof OpenAI.BadRequestError, `got ${e.constructor.name}`);
    assert(e.param === "tools[0].function.name" && /tools\[0\]\.function\.name/.test(e.message), e.message);
    return;
  }
  throw new Error("no error");
});

await check("bad tool_choice -> BadRequestError naming the field", async () => {
  try {
    await client.chat.completions.create({
      model, messages: [{ role: "user", content: "x" }], tools, tool_choice: "sometimes",
    });
  } catch (e) {
    assert(e instanceof OpenAI.BadRequestError, `got ${e.constructor.name}`);
    assert(e.param === "tool_choice" && /tool_choice/.test(e.message), e.message);
    return;
  }
  throw new Error("no error");
});

process.exit(failed ? 1 : 0);

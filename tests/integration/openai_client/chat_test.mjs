// Forced tool calls through the official openai npm client (run by
// tests/integration/test_serve_chat.sh against a random-weight model that
// never calls a tool by itself).
//
//   SLM_BASE_URL=https://127.0.0.1:PORT/v1 SLM_API_KEY_FILE=FILE \
//   NODE_EXTRA_CA_CERTS=cert.pem node chat_test.mjs
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

const tools = [
  { type: "function", function: { name: "get_weather", parameters: { type: "object",
    properties: { city: { type: "string" } } } } },
  { type: "function", function: { name: "read_file", parameters: { type: "object" } } },
];
const messages = [{ role: "user", content: "Weather in Paris?" }];
const model = (await client.models.list()).data[0].id;

function checkArgs(a) {
  const v = JSON.parse(a);
  assert(v !== null && typeof v === "object" && !Array.isArray(v), `arguments ${a}`);
}

await check("tool_choice required", async () => {
  const r = await client.chat.completions.create({ model, messages, tools,
    tool_choice: "required", max_tokens: 60, temperature: 0.9, seed: 11 });
  const m = r.choices[0].message;
  assert(r.choices[0].finish_reason === "tool_calls", "finish_reason");
  assert(m.tool_calls.length === 1, "one call");
  assert(["get_weather", "read_file"].includes(m.tool_calls[0].function.name), "name");
  checkArgs(m.tool_calls[0].function.arguments);
});

await check("tool_choice named, streamed", async () => {
  const stream = await client.chat.completions.create({ model, messages, tools,
    tool_choice: { type: "function", function: { name: "read_file" } }, max_tokens: 60,
    stream: true });
  let name = null, id = null, args = "", finish = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      for (const tc of c.delta.tool_calls || []) {
        if (tc.id) { id = tc.id; name = tc.function.name; }
        args += tc.function.arguments || "";
      }
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert(id && id.startsWith("call_"), "id");
  assert(name === "read_file", `name ${name}`);
  checkArgs(args);
  assert(finish === "tool_calls", `finish ${finish}`);
});

await check("streaming helper collects the call", async () => {
  const runner = client.beta && client.beta.chat && client.beta.chat.completions &&
    client.beta.chat.completions.stream
    ? client.beta.chat.completions.stream({ model, messages, tools, tool_choice: "required",
      max_tokens: 60 })
    : client.chat.completions.stream({ model, messages, tools, tool_choice: "required",
      max_tokens: 60 });
  const final = await runner.finalChatCompletion();
  const m = final.choices[0].message;
  assert(m.tool_calls && m.tool_calls.length === 1, "one call");
  checkArgs(m.tool_calls[0].function.arguments);
});

process.exit(failed ? 1 : 0);

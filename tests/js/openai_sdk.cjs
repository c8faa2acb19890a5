// The official openai npm SDK against `anymal serve` (tests/test_serve_compat.py runs it):
// models.retrieve, a completion and a stream, both with LangChain's max_tokens 2048.
const OpenAI = require("openai");

async function main() {
  const [url, key, model] = process.argv.slice(2);
  const client = new OpenAI({baseURL: url + "/v1", apiKey: key, maxRetries: 0});
  const info = await client.models.retrieve(model);
  const messages = [{role: "user", content: "Say hi."}];
  const reply = await client.chat.completions.create({model, messages, max_tokens: 2048, temperature: 0});
  const stream = await client.chat.completions.create({model, messages, max_tokens: 2048, temperature: 0, stream: true});
  let streamed = "";
  for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? "";
  console.log(JSON.stringify({id: info.id, answer: reply.choices[0].message.content, streamed,
                              finish: reply.choices[0].finish_reason}));
}

main().catch(err => { console.error(String(err)); process.exit(1); });

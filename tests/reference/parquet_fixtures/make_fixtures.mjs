// Writes small Parquet files in two published schemas with hyparquet-writer, a writer independent of the Parquet.Net
// library FedLlm reads with, laid out as pyarrow (the Hugging Face hub's writer) lays them out: optional UTF-8
// columns, and lists as the three-level LIST group "<name>/list/element". Checks them with hyparquet, then
// FedLlm's tests read the committed files (tests/FedLlm.Tests/Fixtures/parquet/). Run: npm ci && node make_fixtures.mjs
//
// hyparquet-writer writes only DATA_PAGE_V2 pages. Parquet.Net 6.1 reads flat v2 columns (the FinGPT file) but not
// repeated ones (the UltraFeedback lists), so FedLlm's test pins that refusal and its message; the hub's files are
// written by pyarrow with v1 pages by default, the layout the Parquet.Net-written fixtures in the C# tests use
// (checked with hyparquet: same schema, list/element, OPTIONAL, and the same rows back).
import { parquetWriteFile } from "hyparquet-writer";
import { parquetReadObjects } from "hyparquet";
import { asyncBufferFromFile } from "hyparquet";
import { mkdirSync } from "node:fs";

const out = new URL("../../FedLlm.Tests/Fixtures/parquet/", import.meta.url);
mkdirSync(out, { recursive: true });

const string = (name) => ({ name, type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" });
const messages = (name) => [
  { name, repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 },
  { name: "list", repetition_type: "REPEATED", num_children: 1 },
  { name: "element", repetition_type: "OPTIONAL", num_children: 2 },
  string("content"),
  string("role"),
];

// FinGPT/fingpt-sentiment-train: input, output, instruction (in the card's order).
const instruction = "What is the sentiment of this news? Please choose an answer from {negative/neutral/positive}.";
const fingpt = [
  ["Apex shares jump after profit beat", "positive"],
  ["Orbit Bank cuts outlook", "moderately negative"],
  ["Delta Mining holds its annual meeting", "neutral"],
  ["Nova Foods sees modest sales growth", "mildly positive"],
];
await parquetWriteFile({
  filename: new URL("fingpt-sentiment-train.parquet", out).pathname,
  columnData: [
    { name: "input", data: fingpt.map((r) => r[0]) },
    { name: "output", data: fingpt.map((r) => r[1]) },
    { name: "instruction", data: fingpt.map(() => instruction) },
  ],
  schema: [{ name: "schema", num_children: 3 }, string("input"), string("output"), string("instruction")],
});

// HuggingFaceH4/ultrafeedback_binarized: prompt, prompt_id, chosen, rejected, messages, score_chosen, score_rejected.
const uf = [
  { prompt: "Name a prime number.", chosen: "7 is prime.", rejected: "Nine.", sc: 9.0, sr: 3.5 },
  { prompt: "Say hi in Spanish.", chosen: "Hola.", rejected: "Bonjour.", sc: 8.0, sr: 2.0 },
  { prompt: "Ünïcödé ✓?", chosen: "日本語 ok", rejected: "no", sc: 7.5, sr: 1.0 },
];
const turns = (p, r) => [{ content: p, role: "user" }, { content: r, role: "assistant" }];
await parquetWriteFile({
  filename: new URL("ultrafeedback_binarized-train_sft.parquet", out).pathname,
  columnData: [
    { name: "prompt", data: uf.map((r) => r.prompt) },
    { name: "prompt_id", data: uf.map((_, i) => `id${i}`) },
    { name: "chosen", data: uf.map((r) => turns(r.prompt, r.chosen)) },
    { name: "rejected", data: uf.map((r) => turns(r.prompt, r.rejected)) },
    { name: "messages", data: uf.map((r) => turns(r.prompt, r.chosen)) },
    { name: "score_chosen", data: uf.map((r) => r.sc) },
    { name: "score_rejected", data: uf.map((r) => r.sr) },
  ],
  schema: [
    { name: "schema", num_children: 7 },
    string("prompt"),
    string("prompt_id"),
    ...messages("chosen"),
    ...messages("rejected"),
    ...messages("messages"),
    { name: "score_chosen", type: "DOUBLE", repetition_type: "OPTIONAL" },
    { name: "score_rejected", type: "DOUBLE", repetition_type: "OPTIONAL" },
  ],
});

for (const name of ["fingpt-sentiment-train.parquet", "ultrafeedback_binarized-train_sft.parquet"]) {
  const rows = await parquetReadObjects({ file: await asyncBufferFromFile(new URL(name, out).pathname) });
  console.log(name, JSON.stringify(rows[rows.length - 1]));
}

// Encodes fixed strings with the reference JavaScript implementation of Hugging Face tokenizers
// (@huggingface/tokenizers, independent of the Rust crate that Tokenizers.DotNet wraps) and writes the ids as the
// golden fixture read by tests/FedLlm.Tests/Defaults/DefaultTokenizerTests.cs.
//
// Regenerate after the default tokenizer changes:
//   FEDLLM_UPDATE_GOLDEN=1 dotnet test tests/FedLlm.Tests --filter "FullyQualifiedName~DefaultTokenizerTests"
//   cd tests/reference/default_tokenizer && npm ci && node golden.mjs
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Tokenizer } from "@huggingface/tokenizers";

const here = dirname(fileURLToPath(import.meta.url));
const fixtures = join(here, "../../FedLlm.Tests/Defaults/Fixtures/default_tokenizer");
const tokenizerJson = JSON.parse(readFileSync(join(fixtures, "tokenizer.json"), "utf8"));
const tokenizerConfig = JSON.parse(readFileSync(join(fixtures, "tokenizer_config.json"), "utf8"));
const tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);

// A training-style prompt, an unseen company (held-out split), and edge cases of the byte-level pipeline:
// contractions, digits, runs of spaces and newlines, non-ASCII, an emoji (4 UTF-8 bytes), special tokens in text.
const texts = [
  "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nWhat is the sentiment of this news? Please choose an answer from {negative/neutral/positive}. Apex Biotech shares jump after quarterly profit beat analyst estimates \n\n### Response: positive",
  "Shares of Zephyr Wind Power hit a 52-week low as its credit rating was cut to junk",
  " positive",
  "neutral",
  "It's 2024: revenue rose 12.5% to $3,400,000 (Q3)!",
  "  two leading spaces,   three inside,\ttab and trailing  ",
  "line one\n\nline three\r\nwindows\n",
  "Café Zürich naïve coöperation — “quotes” ½",
  "rocket 🚀 launch 日本語",
  "a<|end_of_text|>b<|pad|><|begin_of_text|>c",
  "",
];

const cases = texts.map((text) => ({
  text,
  ids: tokenizer.encode(text).ids,
  ids_without_special: tokenizer.encode(text, { add_special_tokens: false }).ids,
  decoded: tokenizer.decode(tokenizer.encode(text).ids, { skip_special_tokens: true }),
}));

const out = {
  generator: "tests/reference/default_tokenizer/golden.mjs",
  reference: "@huggingface/tokenizers " + JSON.parse(readFileSync(join(here, "node_modules/@huggingface/tokenizers/package.json"), "utf8")).version,
  cases,
};
// One line per id array keeps the fixture reviewable in diffs.
const text = JSON.stringify(out, null, 2).replace(/\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]/g, (_, ids) => "[" + ids.split(/,\s*/).join(", ") + "]");
writeFileSync(join(fixtures, "golden_ids.json"), text + "\n");
console.log(`wrote ${cases.length} cases to ${join(fixtures, "golden_ids.json")}`);

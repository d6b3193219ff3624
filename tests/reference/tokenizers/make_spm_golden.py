#!/usr/bin/python3
"""Trains a tiny SentencePiece model with Llama 2's trainer settings and writes golden ids for it.

No real Llama 2 / Mistral tokenizer.model is shipped by the package registries this project can
reach, so the tokenizer.model fixture is trained here instead. Only the vocabulary is smaller:
the flags below are the trainer_spec stored inside Llama 2's tokenizer.model (BPE, byte fallback,
split digits, dummy prefix, identity normalization, no whitespace collapsing).

Golden semantics are those of Hugging Face's LlamaTokenizer with legacy=True, which is what
tokenizer_config.json of Llama 2 / TinyLlama / Mistral v0.1 asks for:
  * the text is cut at special tokens (<unk>, <s>, </s>) and each other piece is encoded by
    sentencepiece on its own, so each gets the dummy-prefix "▁";
  * add_special_tokens=True prepends <s> (add_bos_token=True, add_eos_token=False);
  * decode(skip_special_tokens=True) is sentencepiece's own decode of the remaining ids.
The ids come from the sentencepiece library itself (the C++ implementation through its Python
binding, Debian's python3-sentencepiece), not from the .NET code under test.

Run with Debian's python: /usr/bin/python3 make_spm_golden.py
It reads the hard test strings from the golden file make_golden.mjs wrote for llama3, so run that first.
"""

import io
import json
import os
import re

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "../../FedLlm.Tests/Fixtures/tokenizers/spm-llama"))
SPECIALS = ["<unk>", "<s>", "</s>"]


def corpus(hard_strings):
    # Debian ships these license texts in every image, so the training input is fixed and local.
    texts = []
    for name in ["GPL-3", "Apache-2.0", "GFDL-1.3", "Artistic"]:
        with open(os.path.join("/usr/share/common-licenses", name), encoding="utf-8") as f:
            texts.extend(line.rstrip("\n") for line in f if line.strip())
    # A few multilingual lines so that the model has some non-ASCII pieces; the rest goes to bytes.
    texts += [s for s in hard_strings if s.strip() and len(s) < 200] * 3
    return texts


def train(lines):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="bpe",
        vocab_size=1000,
        self_test_sample_size=0,
        input_format="text",
        character_coverage=0.99995,
        num_threads=1,
        split_by_unicode_script=True,
        split_by_number=True,
        split_by_whitespace=True,
        split_digits=True,
        byte_fallback=True,
        allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        max_sentencepiece_length=16,
        treat_whitespace_as_suffix=False,
        vocabulary_output_piece_score=True,
        hard_vocab_limit=True,
        user_defined_symbols=[],
    )
    return model.getvalue()


def hf_llama_legacy_ids(sp, text):
    """HF LlamaTokenizer(legacy=True).encode(text, add_special_tokens=False)."""
    ids = []
    pattern = "|".join(re.escape(s) for s in sorted(SPECIALS, key=len, reverse=True))
    pos = 0
    for m in re.finditer(pattern, text):
        if m.start() > pos:
            ids += sp.encode(text[pos:m.start()])
        ids.append(sp.piece_to_id(m.group(0)))
        pos = m.end()
    if pos < len(text):
        ids += sp.encode(text[pos:])
    return ids


# Llama-2-7b-chat-hf's tokenizer_config.json, except for the chat template: that one is written in the older list
# form [{name, template}] that some checkpoints use, so the loader's "take the default" rule is tested too.
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set system = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}"
    "{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}"
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + (system if loop.first else '') + message['content'] | trim + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'] | trim + ' ' + eos_token }}{% endif %}{% endfor %}"
)


def added_token(content):
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": True}


def tokenizer_config():
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {str(i): added_token(t) for i, t in enumerate(SPECIALS)},
        "bos_token": added_token("<s>"),
        "chat_template": [
            {"name": "tool_use", "template": "{{ raise_exception('not this one') }}"},
            {"name": "default", "template": LLAMA2_CHAT_TEMPLATE},
        ],
        "clean_up_tokenization_spaces": False,
        "eos_token": added_token("</s>"),
        "legacy": True,
        "model_max_length": 4096,
        "pad_token": None,
        "padding_side": "right",
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": added_token("<unk>"),
        "use_default_system_prompt": False,
    }


def main():
    with open(os.path.join(os.path.dirname(OUT), "llama3", "golden.json"), encoding="utf-8") as f:
        hard_strings = [c["text"] for c in json.load(f)["cases"]]
    os.makedirs(OUT, exist_ok=True)
    model = train(corpus(hard_strings))
    with open(os.path.join(OUT, "tokenizer.model"), "wb") as f:
        f.write(model)
    with open(os.path.join(OUT, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(), f, indent=2)
        f.write("\n")
    sp = spm.SentencePieceProcessor(model_proto=model)
    bos = sp.bos_id()
    special_ids = {sp.piece_to_id(s) for s in SPECIALS}
    cases = []
    for text in hard_strings:
        ids = hf_llama_legacy_ids(sp, text)
        cases.append(
            {
                "text": text,
                "ids": ids,
                "ids_special": [bos] + ids,
                "decoded": sp.decode([i for i in ids if i not in special_ids]),
            }
        )
    with open(os.path.join(OUT, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "reference": f"sentencepiece {spm.__version__} (python3-sentencepiece), HF LlamaTokenizer legacy=True",
                "note": "Written by tests/reference/tokenizers/make_spm_golden.py; do not edit by hand.",
                "vocab_size": sp.get_piece_size(),
                "cases": cases,
            },
            f,
            ensure_ascii=False,
            indent=1,
        )
        f.write("\n")
    print(f"spm-llama: vocab {sp.get_piece_size()}, {len(cases)} cases, model {len(model)} bytes")


if __name__ == "__main__":
    main()

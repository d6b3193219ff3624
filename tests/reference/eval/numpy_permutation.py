"""Golden output of numpy's default_rng(seed).permutation(n), the shuffle Hugging Face datasets' train_test_split
uses, for FedLlm's C# port (src/FedLlm/Evaluation/Data/NumpyRandom.cs). Also the test indices of
train_test_split(seed=42) as datasets computes them (ceil(test_size * n) first entries of the permutation).
Run with a numpy >= 1.17: /usr/bin/python3 tests/reference/eval/numpy_permutation.py"""
import json, math, pathlib
import numpy as np

out = {"numpy": np.__version__, "cases": []}
for seed, n in [(42, 10), (42, 4846), (0, 7), (12345, 1000), (2**40 + 3, 50)]:
    out["cases"].append({"seed": seed, "n": n, "permutation": np.random.default_rng(seed).permutation(n).tolist()})
ss = np.random.SeedSequence(42).generate_state(8, np.uint32).tolist()
out["seed_sequence_42"] = ss
out["pcg64_42_first_uint64"] = [int(x) for x in np.random.default_rng(42).bit_generator.random_raw(3)]
# FPB (4846 rows, test_size 0.25) and FiQA-SA (1173 rows after concatenation, test_size 0.226), seed 42.
out["fpb_test_first20"] = np.random.default_rng(42).permutation(4846)[: math.ceil(0.25 * 4846)][:20].tolist()
out["fpb_test_count"] = math.ceil(0.25 * 4846)
path = pathlib.Path(__file__).resolve().parents[3] / "tests/FedLlm.Tests/Fixtures/eval/numpy_permutation.json"
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(json.dumps(out))
print("wrote", path)

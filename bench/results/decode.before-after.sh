#!/bin/bash
# Before (e963ff2, the bench only) and after (this branch) children, alternated, same checkpoint and settings.
OLD=/tmp/decode-before/bench/FedLlm.Bench/bin/Release/net10.0/FedLlm.Bench
NEW=/work/wt-decode/bench/FedLlm.Bench/bin/Release/net10.0/FedLlm.Bench
CK=/tmp/fedllm-bench-decode-smollm135m-seed2023
for cfg in "fp32 1" "bf16 1" "bf16 8" "fp32 8"; do
  for round in 1 2; do
    for side in before after; do
      BIN=$OLD; [ $side = after ] && BIN=$NEW
      line=$($BIN decode-fedllm $cfg --repetitions 3 --new-tokens 64 --checkpoint $CK 2>/dev/null | grep '^{')
      echo "$side $cfg round $round $line"
    done
  done
done

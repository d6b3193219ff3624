"""Minimal reader/writer for the safetensors format, written from the format description
(https://github.com/huggingface/safetensors#format), so the golden files need no `safetensors` package.

File layout:
    [8 bytes]  N, little-endian u64: length of the JSON header in bytes
    [N bytes]  JSON: {"__metadata__": {str: str},
                      name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
               padded with spaces (0x20) so that 8 + N is a multiple of 8
    [rest]     raw little-endian tensor bytes; data_offsets are relative to the start of this byte buffer

Writer choices (mirroring safetensors' own `serialize`, so files look like the ones HF writes):
  * tensors are laid out sorted by (element size descending, name), with no gaps between them;
  * the header is compact JSON (no spaces), "__metadata__" first, then tensors in layout order;
  * output bytes depend only on the inputs, so regenerating gives identical files.
"""
import json
import struct

import numpy as np
import torch

# safetensors dtype string -> (torch dtype, little-endian numpy dtype holding the same bits)
_DTYPES = {
    "F64": (torch.float64, "<f8"),
    "F32": (torch.float32, "<f4"),
    "F16": (torch.float16, "<f2"),
    "BF16": (torch.bfloat16, "<i2"),  # numpy has no bfloat16: move the raw 16-bit pattern as int16
    "I64": (torch.int64, "<i8"),
    "I32": (torch.int32, "<i4"),
    "I8": (torch.int8, "<i1"),
    "U8": (torch.uint8, "<u1"),
}
_BY_TORCH = {torch_dtype: name for name, (torch_dtype, _) in _DTYPES.items()}


def _to_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    np_dtype = _DTYPES[_BY_TORCH[t.dtype]][1]
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)  # same 16 bits, numpy-compatible
    return t.numpy().astype(np_dtype, copy=False).tobytes()


def serialize(tensors: dict, metadata: dict = None) -> bytes:
    """Return the bytes of a safetensors file holding `tensors` (name -> torch.Tensor) and string `metadata`."""
    for name, t in tensors.items():
        if t.dtype not in _BY_TORCH:
            raise TypeError(f"{name}: unsupported dtype {t.dtype}")
    order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
    header = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("safetensors metadata must map str -> str")
        header["__metadata__"] = dict(sorted(metadata.items()))
    chunks, offset = [], 0
    for name in order:
        t = tensors[name]
        data = _to_bytes(t)
        header[name] = {
            "dtype": _BY_TORCH[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)  # pad so the data buffer starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def save_file(tensors: dict, path: str, metadata: dict = None) -> None:
    with open(path, "wb") as f:
        f.write(serialize(tensors, metadata))


def deserialize(blob: bytes):
    """Parse safetensors bytes; return (tensors: dict name -> torch.Tensor, metadata: dict)."""
    if len(blob) < 8:
        raise ValueError("file shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise ValueError(f"header length {n} exceeds file size {len(blob)}")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", None) or {}
    buffer = memoryview(blob)[8 + n:]
    tensors, spans = {}, []
    for name, info in header.items():
        torch_dtype, np_dtype = _DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        shape = info["shape"]
        count = int(np.prod(shape)) if shape else 1
        if not 0 <= begin <= end <= len(buffer) or end - begin != count * np.dtype(np_dtype).itemsize:
            raise ValueError(f"{name}: bad data_offsets {begin, end} for {info['dtype']} {shape}")
        spans.append((begin, end))
        array = np.frombuffer(buffer[begin:end], dtype=np_dtype).reshape(shape).copy()
        t = torch.from_numpy(array.astype(array.dtype.newbyteorder("=")))
        tensors[name] = t.view(torch.bfloat16) if torch_dtype == torch.bfloat16 else t
    # The format requires the tensors to cover the data buffer exactly, without holes or overlaps.
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise ValueError("tensor data has holes or overlaps")
        position = end
    if position != len(buffer):
        raise ValueError("trailing bytes after the last tensor")
    return tensors, metadata


def load_file(path: str):
    with open(path, "rb") as f:
        return deserialize(f.read())

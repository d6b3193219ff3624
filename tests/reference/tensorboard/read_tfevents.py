#!/usr/bin/env python3
"""Reads a TensorBoard event file by hand and prints its scalars as JSON lines: {"step", "tag", "value", "wall_time"}.

An independent reader for FedLlm's TensorBoardWriter, written from the format's definition rather than from FedLlm's
code: TensorFlow's record framing (tensorflow/core/lib/io/record_writer.cc: uint64 length, masked CRC-32C of the
length, data, masked CRC-32C of the data) and the Event / Summary / Value protocol buffers
(tensorflow/core/util/event.proto, tensorflow/core/framework/summary.proto), parsed with a minimal protobuf decoder.
Every CRC is checked; the first event must carry file_version "brain.Event:2". Exits non-zero on any mismatch.
Standard library only (Debian packages no TensorBoard), so the test can run it with /usr/bin/python3.

Usage: read_tfevents.py EVENT_FILE
"""
import json
import struct
import sys


def crc32c(data: bytes) -> int:
    # Bitwise, not table-driven: slow but obviously the Castagnoli polynomial (reflected 0x82F63B78).
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(buf: bytes, pos: int):
    result, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(buf: bytes):
    """Yields (field number, wire type, value) of a protobuf message; value is int, float bytes or bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == 2:
            length, pos = varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def records(path: str):
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if length_crc != masked(header):
            raise ValueError(f"bad length CRC at byte {pos}")
        body = data[pos + 12:pos + 12 + length]
        (body_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        if body_crc != masked(body):
            raise ValueError(f"bad data CRC at byte {pos}")
        yield body
        pos += 16 + length


def main(path: str) -> None:
    first = True
    for body in records(path):
        wall_time, step, version, summary = None, 0, None, None
        for number, wire, value in fields(body):
            if number == 1 and wire == 1:
                (wall_time,) = struct.unpack("<d", value)
            elif number == 2 and wire == 0:
                step = value
            elif number == 3 and wire == 2:
                version = value.decode("utf-8")
            elif number == 5 and wire == 2:
                summary = value
        if first:
            if version != "brain.Event:2":
                raise ValueError(f"first event has file_version {version!r}, expected 'brain.Event:2'")
            first = False
            continue
        if summary is None:
            continue
        for number, wire, value in fields(summary):
            if number != 1 or wire != 2:
                continue
            tag, scalar = None, None
            for n, w, v in fields(value):
                if n == 1 and w == 2:
                    tag = v.decode("utf-8")
                elif n == 2 and w == 5:
                    (scalar,) = struct.unpack("<f", v)
            print(json.dumps({"step": step, "tag": tag, "value": scalar, "wall_time": wall_time}))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])

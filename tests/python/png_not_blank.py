#!/usr/bin/env python3
"""Checks that a PNG screenshot is not blank: decodes it with the standard library only (zlib)
and prints one line `WIDTHxHEIGHT colors=N ink=F` where N counts distinct pixel values (capped)
and F is the fraction of pixels that differ from the most common one (the page background).
Exits 0 when the image has at least --min-colors colours and --min-ink ink, 1 when blank, 2 on a
file that is not a PNG this script can read (8-bit greyscale/RGB/RGBA, not interlaced).

    python3 tests/python/png_not_blank.py report.png [--min-colors 8] [--min-ink 0.01]
"""
import argparse
import struct
import sys
import zlib
from collections import Counter

CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in CHANNELS or interlace:
        raise ValueError(f"unsupported PNG (depth {depth}, colour type {colour}, interlace {interlace})")
    bpp = CHANNELS[colour]
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 255
            elif kind == 4:
                line[i] = (line[i] + paeth(a, b, c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("png")
    parser.add_argument("--min-colors", type=int, default=8)
    parser.add_argument("--min-ink", type=float, default=0.01)
    args = parser.parse_args()
    try:
        width, height, bpp, rows = decode(args.png)
    except (OSError, ValueError, zlib.error, struct.error, TypeError) as e:
        print(f"{args.png}: {e}")
        return 2
    counts = Counter()
    # Every 2nd row and column is plenty to tell a page from a blank one, and 4x faster.
    for row in rows[::2]:
        for x in range(0, width * bpp, 2 * bpp):
            counts[row[x:x + bpp]] += 1
    total = sum(counts.values())
    ink = 1.0 - counts.most_common(1)[0][1] / total if total else 0.0
    print(f"{width}x{height} colors={len(counts)} ink={ink:.4f}")
    return 0 if len(counts) >= args.min_colors and ink >= args.min_ink else 1


if __name__ == "__main__":
    sys.exit(main())

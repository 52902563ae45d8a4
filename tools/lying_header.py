#!/usr/bin/env python3
"""Write a .msw header whose payload length is the largest the format's bound allows, with a
shipped model's real digests (so that ``decode`` reads the whole payload before the CRC refuses
it): the memory figures of docs/SECURITY.md ("Measured after issue 23") feed it zeros.

    python tools/lying_header.py 16000 16000 3 > h.bin     # W H CODING [C1,C2,C3] [MODEL]
    L=...   # printed on stderr
    cat h.bin /dev/zero | head -c $((82 + L + 4)) | maxswitch info -
"""

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from maxswitch.bitstream import format as fmt  # noqa: E402
from maxswitch.networks.zoo import load_model  # noqa: E402


def header(width: int, height: int, coding: int, channels=None, model: str = "natural-6-12-24") -> tuple[bytes, int]:
    m = load_model(model)
    ch = tuple(channels or m.config.channels)
    digest = bytes.fromhex(m.encoder_digest)[: fmt.DIGEST_BYTES]
    ctx = b""
    if coding != fmt.CODING_ZSTD:
        ctx = bytes.fromhex(m.table_digest if coding == fmt.CODING_TABLE else m.context_digest)[: fmt.DIGEST_BYTES]
    h = fmt.Header(
        width=width,
        height=height,
        model=model,
        encoder_digest=digest,
        channels=ch,
        coding=coding,
        version=fmt.VERSION_OF_CODING[coding],
        context_digest=ctx,
        raw_size=fmt.raw_size(width, height, ch),
    )
    plen = min(fmt.max_payload(h), 0xFFFFFFFF)
    name = model.encode()
    head = fmt.MAGIC + struct.pack("<BBBBII", h.version, coding, 3, 8, width, height) + bytes([len(name)]) + name
    return head + digest + ctx + struct.pack("<HHHII", *ch, h.raw_size, plen), plen


if __name__ == "__main__":
    w, h, c = (int(a) for a in sys.argv[1:4])
    ch = tuple(int(x) for x in sys.argv[4].split(",")) if len(sys.argv) > 4 and sys.argv[4] != "-" else None
    data, plen = header(w, h, c, ch, *(sys.argv[5:6] or ["natural-6-12-24"]))
    sys.stderr.write(f"L={plen} header={len(data)}\n")
    sys.stdout.buffer.write(data)

"""Seeded mutations of ELF objects and BTF blobs, for the bad-input tests.

Every generator takes a :class:`random.Random` and yields ``(label, bytes)``
pairs; the label says what was done (``"flip .symtab @0x3a0"``) so a failing
mutant can be reproduced and understood from the test output alone.

The section table is read here with a few ``struct`` calls of our own rather
than through pybpf, so the mutator does not depend on the code under test.
Only little-endian ELF64 (what clang emits for ``-target bpf`` on x86/arm64)
is handled.
"""

from __future__ import annotations

import random
import struct
from typing import Iterator, List, NamedTuple, Optional, Tuple

__all__ = ["ElfSection", "sections", "section", "truncations", "boundary_truncations",
           "bit_flips", "byte_garbles", "chunk_shuffles", "header_swaps", "garbage_btf",
           "rename_section", "btf_parts", "btf_mutants", "flip_region", "Mutant"]

Mutant = Tuple[str, bytes]

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
SHDR_SIZE = 64


class ElfSection(NamedTuple):
    index: int
    name: str
    type: int
    offset: int        # file offset of the section body
    size: int
    hdr_offset: int    # file offset of the section header
    name_offset: int   # file offset of the name in .shstrtab


def _ehdr(data: bytes) -> Tuple[int, int, int]:
    """(e_shoff, e_shnum, e_shstrndx)."""
    f = _EHDR.unpack_from(data, 0)
    return f[6], f[12], f[13]


def sections(data: bytes) -> List[ElfSection]:
    """The section table of a well-formed little-endian ELF64 file."""
    shoff, shnum, shstrndx = _ehdr(data)
    raw = [_SHDR.unpack_from(data, shoff + i * SHDR_SIZE) for i in range(shnum)]
    str_off = raw[shstrndx][4]
    out = []
    for i, h in enumerate(raw):
        noff = str_off + h[0]
        name = data[noff:data.index(b"\0", noff)].decode()
        out.append(ElfSection(i, name, h[1], h[4], h[5], shoff + i * SHDR_SIZE, noff))
    return out


def section(data: bytes, name: str) -> Optional[ElfSection]:
    for s in sections(data):
        if s.name == name:
            return s
    return None


def sht_region(data: bytes) -> Tuple[int, int]:
    """[start, end) of the section header table."""
    shoff, shnum, _ = _ehdr(data)
    return shoff, shoff + shnum * SHDR_SIZE


# -- generic byte-level mutations -----------------------------------------------------------
def truncations(data: bytes, rng: random.Random, n: int) -> Iterator[Mutant]:
    """``n`` prefixes of random lengths."""
    for _ in range(n):
        cut = rng.randrange(len(data))
        yield f"truncate@{cut:#x}", data[:cut]


def boundary_truncations(data: bytes) -> Iterator[Mutant]:
    """Cut at the start, middle and end of every section and of the section header table
    (and one byte either side), where length checks are most likely to be off by one."""
    cuts = set()
    for s in sections(data):
        if s.type == 8:  # NOBITS has no file body
            continue
        for c in (s.offset, s.offset + s.size // 2, s.offset + s.size):
            cuts.update((c - 1, c, c + 1))
    lo, hi = sht_region(data)
    cuts.update(range(lo, hi + 1, SHDR_SIZE))
    cuts.update((0, 1, 4, 16, 63, 64))
    for c in sorted(x for x in cuts if 0 <= x < len(data)):
        yield f"truncate@{c:#x}", data[:c]


def flip_region(data: bytes, rng: random.Random, lo: int, hi: int, what: str) -> Mutant:
    """Flip 1-4 random bits at random places in ``data[lo:hi]``."""
    b = bytearray(data)
    spots = []
    for _ in range(rng.choice((1, 1, 2, 4))):
        pos = rng.randrange(lo, hi)
        bit = rng.randrange(8)
        b[pos] ^= 1 << bit
        spots.append(f"{pos:#x}.{bit}")
    return f"flip {what} @{','.join(spots)}", bytes(b)


def bit_flips(data: bytes, rng: random.Random, n: int, lo: int = 0, hi: Optional[int] = None,
              what: str = "anywhere") -> Iterator[Mutant]:
    """``n`` mutants, each with 1-4 bits flipped inside ``data[lo:hi]``."""
    hi = len(data) if hi is None else hi
    if hi <= lo:
        return
    for _ in range(n):
        yield flip_region(data, rng, lo, hi, what)


def byte_garbles(data: bytes, rng: random.Random, n: int, lo: int = 0, hi: Optional[int] = None,
                 what: str = "anywhere") -> Iterator[Mutant]:
    """``n`` mutants, each with a run of 1-8 bytes replaced by random values
    (or by 0x00/0xff, which make lengths and counts huge or zero)."""
    hi = len(data) if hi is None else hi
    if hi <= lo:
        return
    for _ in range(n):
        b = bytearray(data)
        pos = rng.randrange(lo, hi)
        ln = min(rng.randint(1, 8), hi - pos)
        fill = rng.choice(("rand", "rand", "00", "ff"))
        if fill == "rand":
            b[pos:pos + ln] = bytes(rng.randrange(256) for _ in range(ln))
        else:
            b[pos:pos + ln] = bytes.fromhex(fill) * ln
        yield f"garble {what} @{pos:#x}+{ln} ({fill})", bytes(b)


def chunk_shuffles(data: bytes, rng: random.Random, n: int) -> Iterator[Mutant]:
    """``n`` mutants, each with the 8-byte chunks of one random section permuted
    (wholly, or just two chunks swapped)."""
    cands = [s for s in sections(data) if s.type != 8 and s.size >= 16]
    for _ in range(n):
        s = rng.choice(cands)
        k = s.size // 8
        chunks = [data[s.offset + 8 * i:s.offset + 8 * i + 8] for i in range(k)]
        if rng.random() < 0.5:
            rng.shuffle(chunks)
            how = "all"
        else:
            i, j = rng.randrange(k), rng.randrange(k)
            chunks[i], chunks[j] = chunks[j], chunks[i]
            how = f"{i}<->{j}"
        b = bytearray(data)
        b[s.offset:s.offset + 8 * k] = b"".join(chunks)
        yield f"shuffle {s.name} ({how})", bytes(b)


def header_swaps(data: bytes, rng: random.Random, n: int) -> Iterator[Mutant]:
    """``n`` mutants with two section headers swapped in the section header table."""
    secs = sections(data)
    for _ in range(n):
        a, c = rng.sample(secs, 2)
        b = bytearray(data)
        ha = data[a.hdr_offset:a.hdr_offset + SHDR_SIZE]
        hc = data[c.hdr_offset:c.hdr_offset + SHDR_SIZE]
        b[a.hdr_offset:a.hdr_offset + SHDR_SIZE] = hc
        b[c.hdr_offset:c.hdr_offset + SHDR_SIZE] = ha
        yield f"swap headers {a.name}<->{c.name}", bytes(b)


# -- targeted mutations ---------------------------------------------------------------------
def rename_section(data: bytes, old: str, new: str) -> bytes:
    """Rename section ``old`` in .shstrtab in place (``new`` must have the same length)."""
    assert len(new) == len(old)
    s = section(data, old)
    assert s is not None, old
    b = bytearray(data)
    b[s.name_offset:s.name_offset + len(old)] = new.encode()
    return bytes(b)


def garbage_btf(data: bytes, rng: random.Random, n: int) -> Iterator[Mutant]:
    """``n`` objects whose .BTF is random bytes behind a valid magic (and, half the time,
    a plausible header whose lengths cover the section)."""
    s = section(data, ".BTF")
    assert s is not None
    for i in range(n):
        body = bytearray(rng.randbytes(s.size))
        body[0:4] = b"\x9f\xeb\x01\x00"
        if i % 2:
            tlen = rng.randrange(0, s.size - 24) & ~3
            struct.pack_into("<IIIII", body, 4, 24, 0, tlen, tlen, s.size - 24 - tlen)
            body[24 + tlen] = 0
            body[-1] = 0
        b = bytearray(data)
        b[s.offset:s.offset + s.size] = body
        yield f"garbage .BTF #{i}", bytes(b)


def btf_parts(btf: bytes) -> dict:
    """[start, end) of the header, type section and string section of a raw BTF blob."""
    hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<IIIII", btf, 4)
    return {"hdr": (0, hdr_len),
            "types": (hdr_len + type_off, hdr_len + type_off + type_len),
            "strings": (hdr_len + str_off, hdr_len + str_off + str_len)}


def btf_mutants(btf: bytes, rng: random.Random, n: int) -> Iterator[Mutant]:
    """Mutations of a raw BTF blob: flips and garbles in each part, truncations,
    shuffled 4-byte words of the type section."""
    parts = btf_parts(btf)
    kinds = ("flip", "garble", "truncate", "shuffle")
    for i in range(n):
        kind = kinds[i % len(kinds)]
        part = rng.choice(("hdr", "types", "types", "strings"))
        lo, hi = parts[part]
        if kind == "flip":
            yield flip_region(btf, rng, lo, hi, f"BTF {part}")
        elif kind == "garble":
            yield next(byte_garbles(btf, rng, 1, lo, hi, f"BTF {part}"))
        elif kind == "truncate":
            cut = rng.randrange(len(btf))
            yield f"truncate BTF@{cut:#x}", btf[:cut]
        else:
            tlo, thi = parts["types"]
            words = [btf[p:p + 4] for p in range(tlo, thi, 4)]
            a = rng.randrange(len(words))
            w = rng.randint(2, 16)
            seg = words[a:a + w]
            rng.shuffle(seg)
            words[a:a + w] = seg
            yield f"shuffle BTF types words {a}+{w}", btf[:tlo] + b"".join(words) + btf[thi:]

#!/usr/bin/env python3
"""gen_unicode.py -- writes src/model/unicode_tables.[ch]: the Unicode data the
tokenizer uses, of the exact Unicode versions the Hugging Face `tokenizers`
library (0.23.3, the goldens' oracle) was built with.

  python3 tools/gen_unicode.py --setup /tmp/ucd      # once: the two UCD versions
  python3 tools/gen_unicode.py --ucd /tmp/ucd        # writes the tables

Two versions, because `tokenizers` carries two Unicode databases:
- its pre-tokenizer regex runs on Oniguruma (crate onig 6.5.3), whose property
  tables are Unicode 16.0.0: \\p{L}, \\p{N} and \\s of every code point were
  checked against the library itself (letters of 16.0 scripts are \\p{L}, those
  of 17.0 are not);
- its NFC normalizer is the crate unicode-normalization-alignments 0.1.12, whose
  tables are Unicode 9.0.0 (its UNICODE_VERSION): Dives Akuru (13.0) and the 16.0
  compositions are left apart, and NFC of 1.1 million probe strings equals
  Unicode 9.0.0 NFC.
The data comes from the PyPI package unicodedata2, which compiles the UCD of its
version: 16.0.0 as published; 9.0.0.post4 needs two one-line fixes to build on
Python 3.11 (--setup applies them). Each version is read in its own Python
process (both are the module `unicodedata2`).

What the tables hold:
- zp_uc_prop: per code point, ZP_UC_L (\\p{L}: Lu Ll Lt Lm Lo), ZP_UC_N (\\p{N}:
  Nd Nl No), ZP_UC_WS (\\s as Oniguruma has it: White_Space, i.e. Zs Zl Zp and
  U+0009-000D, U+0085) from 16.0.0, and ZP_UC_NFC from 9.0.0: the code point is
  not NFC quick-check Yes with ccc 0 (it may change under NFC or change a
  neighbour), so text without one is its own NFC;
- zp_uc_ccc: the canonical combining class (9.0.0);
- zp_uc_decomp: the full canonical decomposition (9.0.0; Hangul is algorithmic);
- zp_uc_comp: the primary composites by their pair (9.0.0; Hangul algorithmic).
"""
import argparse, json, os, subprocess, sys, tarfile, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "src", "model")
BLOCK = 128  # code points per second-stage block
NCP = 0x110000

DUMP = r"""
import json, sys, unicodedata2 as u
cat, ccc, dec, nfc = [], {}, {}, {}
for c in range(0x110000):
    ch = chr(c)
    cat.append(u.category(ch))
    if u.combining(ch):
        ccc[c] = u.combining(ch)
    d = u.decomposition(ch)
    if d and not d.startswith("<"):
        dec[c] = [int(x, 16) for x in d.split()]
        nfc[c] = [ord(x) for x in u.normalize("NFC", ch)]
json.dump({"version": u.unidata_version, "cat": cat, "ccc": ccc, "dec": dec, "nfc": nfc}, sys.stdout)
"""


def setup(dest):
    """unicodedata2 16.0.0 and 9.0.0.post4 (patched to build) under dest/16, dest/9."""
    pip = [sys.executable, "-m", "pip"]
    subprocess.check_call(pip + ["install", "--target", os.path.join(dest, "16"), "unicodedata2==16.0.0"])
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.check_call(pip + ["download", "--no-deps", "--no-binary", ":all:", "-d", tmp,
                                     "unicodedata2==9.0.0.post4"])
        with tarfile.open(os.path.join(tmp, "unicodedata2-9.0.0.post4.tar.gz")) as t:
            t.extractall(tmp)
        src = os.path.join(tmp, "unicodedata2-9.0.0.post4")
        c = os.path.join(src, "unicodedata2", "py3", "unicodedata.c")
        text = open(c).read()
        # Python 3.11 has no public ucnhash.h (its API is unused here: commented
        # out in this file) and Py_TYPE is no longer an lvalue.
        text = text.replace('#include "ucnhash.h"', "")
        text = text.replace("Py_TYPE(&UCD_Type) = &PyType_Type;", "Py_SET_TYPE(&UCD_Type, &PyType_Type);")
        open(c, "w").write(text)
        subprocess.check_call(pip + ["install", "--no-deps", "--target", os.path.join(dest, "9"), src])


def dump(path, want):
    env = dict(os.environ, PYTHONPATH=path)
    d = json.loads(subprocess.check_output([sys.executable, "-c", DUMP], env=env))
    if d["version"] != want:
        sys.exit(f"{path}: unicodedata2 is Unicode {d['version']}, want {want}")
    for k in ("ccc", "dec", "nfc"):
        d[k] = {int(c): v for c, v in d[k].items()}
    return d


def hangul_jamo_second(c):
    return 0x1161 <= c <= 0x1175 or 0x11A8 <= c <= 0x11C2


def build(u16, u9):
    ZP_L, ZP_N, ZP_WS, ZP_NFC = 1, 2, 4, 8
    ws = {9, 10, 11, 12, 13, 0x85}
    comp = {}  # (first, second) -> primary composite
    for c, d in u9["dec"].items():
        if len(d) == 2 and u9["nfc"][c] == [c]:
            comp[(d[0], d[1])] = c
    seconds = {b for (_, b) in comp}
    prop = bytearray(NCP)
    for c in range(NCP):
        cat = u16["cat"][c]
        f = 0
        if cat[0] == "L":
            f |= ZP_L
        if cat[0] == "N":
            f |= ZP_N
        if cat in ("Zs", "Zl", "Zp") or c in ws:
            f |= ZP_WS
        quick_no = c in u9["dec"] and u9["nfc"][c] != [c]
        if c in u9["ccc"] or quick_no or c in seconds or hangul_jamo_second(c):
            f |= ZP_NFC
        prop[c] = f
    # the tokenizer skips NFC on ASCII text without looking it up
    assert not any(prop[c] & ZP_NFC for c in range(128))

    def full(c):
        if c not in u9["dec"]:
            return [c]
        return [x for y in u9["dec"][c] for x in full(y)]

    decomp = {c: full(c) for c in u9["dec"]}
    # the tokenizer sizes its buffer at 2 code points per byte of text
    for c, d in decomp.items():
        assert len(d) <= 2 * len(chr(c).encode()), hex(c)
    ccc = bytearray(NCP)
    for c, k in u9["ccc"].items():
        ccc[c] = k
    return prop, ccc, decomp, comp


def two_stage(values, width):
    """values[NCP] -> (index[NCP/BLOCK], blocks): identical blocks stored once."""
    seen, index, blocks = {}, [], []
    for b in range(0, NCP, BLOCK):
        key = tuple(values[b:b + BLOCK])
        if key not in seen:
            seen[key] = len(blocks)
            blocks.append(key)
        index.append(seen[key])
    assert len(blocks) < 1 << 16
    return index, blocks


def itype(blocks):
    return "uint8_t" if len(blocks) <= 256 else "uint16_t"


def c_array(ctype, name, values, per_line=16):
    lines = []
    for i in range(0, len(values), per_line):
        lines.append("\t" + ", ".join(str(v) for v in values[i:i + per_line]) + ",")
    return f"const {ctype} {name}[{len(values)}] = {{\n" + "\n".join(lines) + "\n};\n"


def write(prop, ccc, decomp, comp, v16, v9):
    pi, pb = two_stage(prop, 8)
    ci, cb = two_stage(ccc, 8)
    # decompositions: per code point an index k (0: none) into dec_off/dec_len
    order = sorted(decomp)
    dk = [0] * NCP
    dec_off, dec_len, dec_cp = [0], [0], []
    for k, c in enumerate(order, 1):
        dk[c] = k
        dec_off.append(len(dec_cp))
        dec_len.append(len(decomp[c]))
        dec_cp.extend(decomp[c])
    di, db = two_stage(dk, 16)
    pairs = sorted(comp.items(), key=lambda kv: (kv[0][0] << 21) | kv[0][1])
    assert len(order) < 1 << 16 and len(dec_cp) < 1 << 16
    head = f"""/* unicode_tables.h -- GENERATED by tools/gen_unicode.py: do not edit. The
   Unicode data of the tokenizer, of the versions Hugging Face `tokenizers`
   0.23.3 carries: regex classes from Unicode {v16} (its Oniguruma), NFC data
   from Unicode {v9} (its unicode-normalization-alignments 0.1.12).
   Read-only tables; any thread. */
#ifndef ZP_UNICODE_TABLES_H
#define ZP_UNICODE_TABLES_H

#include <stdint.h>

#define ZP_UC_L 1u	/* \\p{{L}} (Unicode {v16}) */
#define ZP_UC_N 2u	/* \\p{{N}} (Unicode {v16}) */
#define ZP_UC_WS 4u	/* \\s: White_Space (Unicode {v16}) */
#define ZP_UC_NFC 8u	/* not NFC quick-check Yes with ccc 0 (Unicode {v9}) */
#define ZP_UC_BLOCK {BLOCK}
#define ZP_UC_NCOMP {len(pairs)}

extern const {itype(pb)} zp_uc_prop_index[{len(pi)}];
extern const uint8_t zp_uc_prop_block[{len(pb) * BLOCK}];
extern const {itype(cb)} zp_uc_ccc_index[{len(ci)}];
extern const uint8_t zp_uc_ccc_block[{len(cb) * BLOCK}];
extern const {itype(db)} zp_uc_dec_index[{len(di)}];
extern const uint16_t zp_uc_dec_block[{len(db) * BLOCK}];
extern const uint16_t zp_uc_dec_off[{len(dec_off)}];
extern const uint8_t zp_uc_dec_len[{len(dec_len)}];
extern const uint32_t zp_uc_dec_cp[{len(dec_cp)}];
/* sorted by key = first << 21 | second */
extern const uint64_t zp_uc_comp_key[ZP_UC_NCOMP];
extern const uint32_t zp_uc_comp_cp[ZP_UC_NCOMP];

/* cp must be a Unicode scalar value (below 0x110000). */
static inline unsigned zp_uc_prop(uint32_t cp)
{{
	return zp_uc_prop_block[zp_uc_prop_index[cp / ZP_UC_BLOCK] * ZP_UC_BLOCK + cp % ZP_UC_BLOCK];
}}

static inline unsigned zp_uc_ccc(uint32_t cp)
{{
	return zp_uc_ccc_block[zp_uc_ccc_index[cp / ZP_UC_BLOCK] * ZP_UC_BLOCK + cp % ZP_UC_BLOCK];
}}

/* The full canonical decomposition of cp (not Hangul): its length, 0 when it
   has none; *seq points at it. */
static inline int zp_uc_decomp(uint32_t cp, const uint32_t **seq)
{{
	unsigned k = zp_uc_dec_block[zp_uc_dec_index[cp / ZP_UC_BLOCK] * ZP_UC_BLOCK + cp % ZP_UC_BLOCK];
	*seq = zp_uc_dec_cp + zp_uc_dec_off[k];
	return zp_uc_dec_len[k];
}}

#endif
"""
    body = (f"/* unicode_tables.c -- GENERATED by tools/gen_unicode.py from unicodedata2 "
            f"{v16} and {v9}:\n   do not edit. See unicode_tables.h. */\n"
            '#include "unicode_tables.h"\n\n')
    body += c_array(itype(pb), "zp_uc_prop_index", pi)
    body += c_array("uint8_t", "zp_uc_prop_block", [x for b in pb for x in b], 32)
    body += c_array(itype(cb), "zp_uc_ccc_index", ci)
    body += c_array("uint8_t", "zp_uc_ccc_block", [x for b in cb for x in b], 32)
    body += c_array(itype(db), "zp_uc_dec_index", di)
    body += c_array("uint16_t", "zp_uc_dec_block", [x for b in db for x in b], 32)
    body += c_array("uint16_t", "zp_uc_dec_off", dec_off)
    body += c_array("uint8_t", "zp_uc_dec_len", dec_len, 32)
    body += c_array("uint32_t", "zp_uc_dec_cp", dec_cp, 12)
    body += c_array("uint64_t", "zp_uc_comp_key", [(a << 21) | b for (a, b), _ in pairs], 8)
    body += c_array("uint32_t", "zp_uc_comp_cp", [c for _, c in pairs], 12)
    with open(os.path.join(OUT, "unicode_tables.h"), "w") as f:
        f.write(head)
    with open(os.path.join(OUT, "unicode_tables.c"), "w") as f:
        f.write(body)
    print(f"prop {len(pb)} blocks, ccc {len(cb)}, decomp {len(db)} ({len(order)} code points), "
          f"{len(pairs)} compositions")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--setup", metavar="DIR", help="install the two unicodedata2 versions under DIR")
    ap.add_argument("--ucd", metavar="DIR", help="where --setup installed them")
    a = ap.parse_args()
    if a.setup:
        setup(a.setup)
        return
    if not a.ucd:
        ap.error("--setup DIR or --ucd DIR")
    u16 = dump(os.path.join(a.ucd, "16"), "16.0.0")
    u9 = dump(os.path.join(a.ucd, "9"), "9.0.0")
    write(*build(u16, u9), u16["version"], u9["version"])


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Splits guest instructions per generated token into matrix products, attention and the rest
(scripts/bench-arm.sh --token). Arguments: the static binary's symbols (nm -n), the engine
library's symbols with their object files (nm -A), qemu hotblocks reports of a run decoding 0
tokens and of one decoding N, N, and the kernel path. Prints one JSON object."""
import bisect
import json
import re
import sys

MATRIX = re.compile(r'kernels')          # kernels/kernels*.c, arch/*/kernels_*.c: the matrix products
ATTENTION = re.compile(r'attention')      # attention/attention.c, arch/*/attention_*.c


def symbols(path):
    addrs, names = [], []
    for line in open(path):
        parts = line.split()
        if len(parts) == 3 and parts[1].lower() in 'tw':
            addrs.append(int(parts[0], 16))
            names.append(parts[2])
    return addrs, names


def object_of(path):
    owner = {}
    for line in open(path):
        m = re.match(r'[^:]+:([^:]+\.o):\s*[0-9a-f]+ [tTwW] (\S+)', line)
        if m:
            owner[m.group(2)] = m.group(1)
    return owner


def part(name, owner):
    obj = owner.get(name, '')
    if MATRIX.search(obj):
        return 'matrix_products'
    if ATTENTION.search(obj):
        return 'attention'
    return 'rest'


def counts(path, addrs, names, owner):
    total = {'matrix_products': 0, 'attention': 0, 'rest': 0}
    for line in open(path):
        m = re.match(r'0x([0-9a-f]+), (\d+), (\d+), (\d+)', line)
        if not m:
            continue
        pc, insns, execs = int(m.group(1), 16), int(m.group(3)), int(m.group(4))
        i = bisect.bisect_right(addrs, pc) - 1
        total[part(names[i], owner) if i >= 0 else 'rest'] += insns * execs
    return total


def main():
    sym_path, obj_path, base_path, run_path, n, path = sys.argv[1:7]
    addrs, names = symbols(sym_path)
    owner = object_of(obj_path)
    base = counts(base_path, addrs, names, owner)
    run = counts(run_path, addrs, names, owner)
    per = {k: (run[k] - base[k]) / int(n) for k in base}
    total = sum(per.values())
    print(json.dumps({
        'path': path,
        'insns_per_token': round(total),
        **{k: round(v) for k, v in per.items()},
        'rest_share': round(per['rest'] / total, 4),
        'attention_share': round(per['attention'] / total, 4),
    }))


main()

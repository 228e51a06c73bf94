#!/usr/bin/env bash
# Dumps the King James Bible (Debian package `bible-kjv`, public-domain text) as one verse a line,
# "<book>\t<chapter>\t<verse>\t<text>", to .cache/kjv/kjv.tsv (or the path given as $1).
# This is the training corpus of models/tiny-kjv; scripts/model/train_tiny.py reads it.
set -euo pipefail

out=${1:-.cache/kjv/kjv.tsv}
if ! command -v bible >/dev/null; then
  echo "dump_kjv: needs the 'bible' command (apt-get install -y bible-kjv)" >&2
  exit 1
fi
mkdir -p "$(dirname "$out")"

# `bible -f` prints "Ge1:1 In the beginning ..."; split the reference into book, chapter, verse and
# squeeze the few double spaces the data file has between sentences.
bible -f 'Gen1:1-Rev22:21' |
  sed -E 's/^([0-9]?[A-Za-z]+)([0-9]+):([0-9]+) (.*)$/\1\t\2\t\3\t\4/; s/  +/ /g' >"$out.tmp"

verses=$(wc -l <"$out.tmp")
malformed=$(awk -F'\t' 'NF != 4 || $4 == ""' "$out.tmp" | wc -l)
if [ "$verses" -ne 31102 ] || [ "$malformed" -ne 0 ]; then
  echo "dump_kjv: expected 31102 well-formed verses, got $verses ($malformed malformed)" >&2
  exit 1
fi
mv "$out.tmp" "$out"
echo "dump_kjv: $out: $verses verses, $(wc -c <"$out") bytes"

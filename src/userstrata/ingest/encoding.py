"""Text files: which encoding and which delimiter.

Chinese shops export CSV from Excel as GBK/GB18030 ("CSV (逗号分隔)") or UTF-8 with a BOM
("CSV UTF-8"); other tools write plain UTF-8. The rule is deterministic, so the same file is
always read the same way: a BOM decides; else UTF-8 if the first ~1 MB decodes as UTF-8;
else GB18030 (a superset of GBK and GB2312) if it decodes as that; else the user must say.
An HTML page (a back-end's ".xls") may declare its charset in a ``<meta>`` tag; when the
start is not UTF-8, that charset comes before the GB18030 guess, if the start decodes with it.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
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


def open_text(path: Path, encoding: str | None, *, name: str, declared: str | None = None) -> tuple[str, str]:
    """The encoding of a text file (detected, or ``encoding`` checked against its start) and
    its first ~1 MB as text without a BOM, for sniffing the header and format.

    ``declared`` is what the file says of itself (an HTML ``<meta charset>``): when the first
    ~1 MB is not UTF-8, it is used before the GB18030 guess, if that ~1 MB decodes with it.
    """
    sample, complete = read_sample(path)
    if encoding is None:
        encoding = _declared(sample, declared, complete=complete) or _detect(sample, complete=complete, name=name)
    else:
        encoding = check_encoding(encoding)
        if not _decodes(sample, encoding, complete=complete):
            raise InputError(
                f"{name}: cannot decode the file as {encoding} (bytes that are not {encoding} near the start)",
                hint="leave out --encoding to detect it, or pass the right one (utf-8, gb18030, utf-16)",
            )
    return encoding, decode_sample(sample, encoding).lstrip("\ufeff")


# GB2312 and GBK are subsets of GB18030; pages that declare them often hold characters beyond
_GB_FAMILY = {"gb2312", "gbk", "cp936", "euc_cn", "gb18030"}
_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def declared_charset(sample: bytes) -> str | None:
    """The charset an HTML page declares in a ``<meta>`` tag near its start, if any (not checked)."""
    match = _META_CHARSET.search(sample[:16_384])
    return match.group(1).decode("ascii") if match else None


def _declared(sample: bytes, declared: str | None, *, complete: bool) -> str | None:
    # a BOM outranks what the text says of itself; so does valid UTF-8 (pages declaring
    # latin-1 that hold UTF-8 are common, UTF-8 by accident is not)
    if declared is None or any(sample.startswith(bom) for bom, _ in _BOMS):
        return None
    if _decodes(sample, "utf-8", complete=complete):
        return None
    try:
        encoding = codecs.lookup(declared).name
    except LookupError:
        return None
    if encoding in _GB_FAMILY:
        encoding = "gb18030"
    return encoding if _decodes(sample, encoding, complete=complete) else None


def decode_sample(sample: bytes, encoding: str) -> str:
    """The sample as text, for sniffing only (a cut or bad character is replaced, not fatal)."""
    return codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample, final=False)


def sniff_delimiter(text: str, *, max_lines: int = 50, max_title_lines: int = 20) -> str:
    """The delimiter among , tab ; | that splits the first lines into the most, consistent fields.

    A candidate's field count is the most common count among the sampled records; it scores
    that count when, from one of the first ``max_title_lines + 1`` records on (title lines
    above the header may split differently), at least 90% of the records have it. Ties go to
    the order of ``DELIMITERS``.
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
        if not counts:
            continue
        width = max(set(counts), key=lambda c: (counts.count(c), c))
        if width <= 1 or width <= best_score:
            continue
        # title lines above the header may have other counts: consistent from some early record on
        for start in range(min(len(counts), max_title_lines + 1)):
            rest = counts[start:]
            if rest[0] == width and sum(c == width for c in rest) >= 0.9 * len(rest):
                best, best_score = delim, width
                break
    return best

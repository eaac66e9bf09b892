"""Import a book for narration: plain text, Markdown or EPUB -> Book (title, author, chapters, cover).

Standard library only (zipfile, xml.etree, html.parser), no torch: the GUI imports it at startup.
Chapter texts are plain text with blank lines between paragraphs, ready for engine.text.pipeline.parse_markup;
each chapter's text starts with its heading, so the narrator reads it.
"""
from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

from engine.errors import BookImportError, DrmProtectedError

BOOK_SUFFIXES = (".txt", ".md", ".markdown", ".epub")
_MAX_MEMBER_BYTES = 64 << 20  # an EPUB member larger than this is refused (zip bomb guard)


@dataclass(frozen=True)
class Chapter:
    """One chapter: a title for lists and markers, and the text to narrate."""

    title: str
    text: str  # plain text, paragraphs separated by blank lines; may hold [pause ...] markup


@dataclass(frozen=True)
class Book:
    """A book to narrate."""

    title: str
    author: str
    chapters: tuple[Chapter, ...]  # in reading order, never empty, each with text
    cover: bytes | None = None  # cover image file contents (EPUB only)
    cover_suffix: str = ""  # ".jpg", ".png", ... of `cover`


def import_book(path: str | Path) -> Book:
    """Read a .txt, .md/.markdown or .epub file into a Book.

    BookImportError (unsupported suffix, unreadable, corrupt or no text) or DrmProtectedError,
    each with a one-line message naming the file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in BOOK_SUFFIXES:
        raise BookImportError(f"{path.name}: unsupported book format; use one of {', '.join(BOOK_SUFFIXES)}.")
    if not path.is_file():
        raise BookImportError(f"Book file {path} does not exist or is not a file.")
    title = path.stem.replace("_", " ").strip() or "Untitled"
    if suffix == ".epub":
        book = _read_epub(path, title)
    else:
        text = _read_text(path)
        chapters = _markdown_chapters(text) if suffix in (".md", ".markdown") else _text_chapters(text)
        if suffix != ".txt" and chapters[1]:
            title = chapters[1]
        book = Book(title, "", chapters[0])
    if not book.chapters:
        raise BookImportError(f"{path.name} contains no text to narrate.")
    return book


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BookImportError(f"{path.name} is not UTF-8 text; save it as UTF-8 and try again.") from None
    except OSError as error:
        raise BookImportError(f"{path.name} cannot be read ({error.strerror or error}).") from None


def _chapters(parts: list[tuple[str, str]]) -> tuple[Chapter, ...]:
    """Chapters from (title, text) pairs; runs of blank lines collapsed. Parts without a word to speak
    (nothing but markup left, such as empty "#" / "##" headings or "***") are dropped."""
    chapters = []
    for title, text in parts:
        text = re.sub(r"\n[ \t]*(?:\n[ \t]*)+", "\n\n", text).strip()
        if re.search(r"\w", text):
            chapters.append(Chapter(title.strip() or f"Chapter {len(chapters) + 1}", text))
    return tuple(chapters)


# ---------------------------------------------------------------- plain text

_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
    "seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred"
)
_TEXT_HEADING = re.compile(
    rf"^[ \t]*(?:(?:chapter|part|book)[ \t]+(?:[0-9]+|[ivxlcdm]+\b|(?:{_NUMBER_WORDS})(?:[- ](?:{_NUMBER_WORDS}))*\b)"
    r"(?:[ \t]*[.:\u2014-][^\n]{0,80}|[ \t]*)"
    r"|(?:prologue|epilogue|introduction|preface|foreword|afterword|interlude|acknowledgements?)\b[^\n]{0,60})[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_CHAPTER_MARK = re.compile(r"\[[ \t]*chapter[ \t]*\]", re.IGNORECASE)


def _text_chapters(text: str) -> tuple[tuple[Chapter, ...], str]:
    """Chapters at `[chapter]` marks, then at heading lines ("Chapter 1", "CHAPTER TWO", "Prologue")."""
    parts: list[tuple[str, str]] = []
    for piece in _CHAPTER_MARK.split(text):
        starts = [m for m in _TEXT_HEADING.finditer(piece) if _standalone(piece, m.start(), m.end())]
        bounds = [0] + [m.start() for m in starts] + [len(piece)]
        for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
            title = starts[i - 1].group(0).strip() if i else ""
            if not title:  # text before the first heading (or a [chapter] piece): its first short line
                first = piece[a:b].strip().split("\n", 1)[0].strip()
                title = first if len(first) <= 80 else ""
            parts.append((title, piece[a:b]))
    return _chapters(parts), ""


def _standalone(text: str, start: int, end: int) -> bool:
    """A heading line stands alone: a blank line (or the start of the text) before it."""
    before = text[:start]
    return not before.strip() or re.search(r"\n[ \t]*\n[ \t]*$", before) is not None


# ---------------------------------------------------------------- Markdown

_MD_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_MD_RULES = [
    (re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL), ""),  # fenced code blocks
    (re.compile(r"<!--.*?-->", re.DOTALL), ""),
    (re.compile(r"<(script|style)\b.*?</\1>", re.DOTALL | re.IGNORECASE), ""),
    (re.compile(r"</?[A-Za-z][^>\n]*>"), ""),  # html tags (their text stays)
    (re.compile(r"!\[[^\]]*\]\([^)]*\)|!\[[^\]]*\]\[[^\]]*\]"), ""),  # images
    (re.compile(r"\[([^\]]+)\]\([^)]*\)|\[([^\]]+)\]\[[^\]]*\]"), lambda m: m[1] or m[2]),  # links keep text
    (re.compile(r"^[ \t]*\[[^\]]+\]:[ \t]*\S+.*$", re.MULTILINE), ""),  # link definitions
    (re.compile(r"^[ \t]*(?:[-*_][ \t]*){3,}$", re.MULTILINE), ""),  # horizontal rules
    (re.compile(r"^(?: {4}|\t).*$", re.MULTILINE), ""),  # indented code blocks
    (re.compile(r"^[ \t]*>[ \t]?", re.MULTILINE), ""),  # blockquotes
    (re.compile(r"^[ \t]*(?:[-*+]|[0-9]+[.)])[ \t]+", re.MULTILINE), ""),  # list markers
    (re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE), r"\1"),  # heading markers
    (re.compile(r"`([^`\n]+)`"), r"\1"),  # inline code keeps its text
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # bold
    (re.compile(r"(?<![\w*])([*_])(?=\S)(.+?)(?<=\S)\1(?![\w*])"), r"\2"),  # italics
    (re.compile(r"~~(.+?)~~"), r"\1"),
    (re.compile(r"^[ \t]*\|?[ \t:|-]+\|[ \t:|-]*$", re.MULTILINE), ""),  # table separator rows
    (re.compile(r"[ \t]*\|[ \t]*"), " "),  # table cell separators
]


def strip_markdown(text: str) -> str:
    """Markdown as plain text: emphasis and links keep their text; images, code blocks and html go."""
    # Backslash-escaped characters are hidden in a private-use range while the rules run.
    text = re.sub(r"\\([\\`*_{}\[\]()#+\-.!|>])", lambda m: chr(0xE000 + ord(m[1])), text)
    for pattern, replacement in _MD_RULES:
        text = pattern.sub(replacement, text)
    return re.sub("[\ue000-\ue07f]", lambda m: chr(ord(m[0]) - 0xE000), text)


def _markdown_chapters(text: str) -> tuple[tuple[Chapter, ...], str]:
    """Chapters at # headings; with a single # heading and ## headings, the # is the book title."""
    code = [m.span() for m in _MD_RULES[0][0].finditer(text)]
    headings = [m for m in _MD_HEADING.finditer(text)
                if len(m[1]) <= 2 and not any(a <= m.start() < b for a, b in code)]
    h1 = [m for m in headings if len(m[1]) == 1]
    h2 = [m for m in headings if len(m[1]) == 2]
    title = ""
    if len(h1) == 1 and h2:
        title, cuts = strip_markdown(h1[0][2]).strip(), h2
        text = text[:h1[0].start()] + text[h1[0].end():]
        shift = h1[0].end() - h1[0].start()
        cuts = [(m.start() - (shift if m.start() > h1[0].start() else 0), m[2]) for m in cuts]
    else:
        cuts = [(m.start(), m[2]) for m in (h1 or h2)]
    bounds = [0] + [start for start, _ in cuts] + [len(text)]
    parts = []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        heading = strip_markdown(cuts[i - 1][1]).strip() if i else ""
        parts.append((heading or title, strip_markdown(text[a:b])))
    return _chapters(parts), title


# ---------------------------------------------------------------- EPUB

_FONT_OBFUSCATION = ("http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC")
_BLOCKS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "section", "article",
           "tr", "pre", "figure", "figcaption", "dt", "dd", "hr", "table", "ul", "ol", "aside", "header", "footer"}
_SKIP = {"script", "style", "head", "title", "svg", "math", "rt", "rp"}


class _XhtmlText(HTMLParser):
    """Text of an XHTML document with blank lines between blocks; also its first h1/h2 text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.heading: str | None = None
        self._in_heading: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        tag = tag.lower().rsplit(":", 1)[-1]
        if tag in _SKIP:
            self.skip += 1
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
            if tag in ("h1", "h2") and self.heading is None and self._in_heading is None:
                self._in_heading = []
        elif tag == "br":
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        if tag.lower().rsplit(":", 1)[-1] in ("br", "hr", "p", "div"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        tag = tag.lower().rsplit(":", 1)[-1]
        if tag in _SKIP:
            self.skip = max(self.skip - 1, 0)
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
            if tag in ("h1", "h2") and self._in_heading is not None:
                self.heading = " ".join("".join(self._in_heading).split()) or None
                self._in_heading = None

    def handle_data(self, data: str) -> None:
        if not self.skip:
            data = re.sub(r"\s+", " ", data)
            self.parts.append(data)
            if self._in_heading is not None:
                self._in_heading.append(data)

    def text(self) -> str:
        lines = "".join(self.parts).split("\n")
        return "\n".join(line.strip() for line in lines)


def _xml(data: bytes, where: str) -> ET.Element:
    try:
        return ET.fromstring(data)
    except ET.ParseError as error:
        raise BookImportError(f"{where} is damaged ({error}); it is not a valid EPUB.") from None


def _href(base: str, href: str) -> str:
    """A zip member name from an href relative to the file at `base`, fragment dropped."""
    return posixpath.normpath(posixpath.join(posixpath.dirname(base), unquote(href.split("#", 1)[0])))


def _read_epub(path: Path, fallback_title: str) -> Book:
    name = path.name
    try:
        with zipfile.ZipFile(path) as archive:
            return _parse_epub(archive, name, fallback_title)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as error:
        raise BookImportError(f"{name} is not a valid EPUB (damaged zip: {error}).") from None
    except OSError as error:
        raise BookImportError(f"{name} cannot be read ({error.strerror or error}).") from None


def _parse_epub(archive: zipfile.ZipFile, name: str, fallback_title: str) -> Book:
    sizes = {info.filename: info.file_size for info in archive.infolist()}

    def read(member: str) -> bytes:
        if member not in sizes:
            raise BookImportError(f"{name} is not a valid EPUB: {member} is missing.")
        if sizes[member] > _MAX_MEMBER_BYTES:
            raise BookImportError(f"{name} is not a valid EPUB: {member} is too large.")
        return archive.read(member)

    if "META-INF/rights.xml" in sizes:
        raise DrmProtectedError(f"{name} is DRM-protected; only DRM-free EPUBs can be imported.")
    if "META-INF/encryption.xml" in sizes:
        encryption = _xml(read("META-INF/encryption.xml"), f"{name} (encryption.xml)")
        methods = [m.get("Algorithm", "") for m in encryption.iterfind(".//{*}EncryptionMethod")]
        if any(method not in _FONT_OBFUSCATION for method in methods):
            raise DrmProtectedError(f"{name} is DRM-protected; only DRM-free EPUBs can be imported.")
    container = _xml(read("META-INF/container.xml"), f"{name} (container.xml)")
    rootfile = container.find(".//{*}rootfile")
    if rootfile is None or not rootfile.get("full-path"):
        raise BookImportError(f"{name} is not a valid EPUB: container.xml names no package file.")
    opf_path = unquote(rootfile.get("full-path"))
    opf = _xml(read(opf_path), f"{name} ({opf_path})")
    metadata = opf.find("{*}metadata")
    title = author = ""
    if metadata is not None:
        title = " ".join("".join(metadata.findtext("{*}title", "")).split())
        author = ", ".join(" ".join((c.text or "").split()) for c in metadata.findall("{*}creator") if c.text)
    manifest = {item.get("id"): item for item in opf.iterfind("{*}manifest/{*}item") if item.get("href")}
    spine = opf.find("{*}spine")
    if spine is None:
        raise BookImportError(f"{name} is not a valid EPUB: its package has no spine (reading order).")
    toc = _toc_titles(opf_path, manifest, spine.get("toc"), read)
    parts: list[tuple[str, str]] = []
    for ref in spine.iterfind("{*}itemref"):
        item = manifest.get(ref.get("idref"))
        if item is None or ref.get("linear", "yes") == "no":
            continue
        member = _href(opf_path, item.get("href"))
        parser = _XhtmlText()
        try:
            parser.feed(read(member).decode("utf-8", errors="replace"))
            parser.close()
        except AssertionError as error:  # html.parser on hopeless markup
            raise BookImportError(f"{name}: {member} is damaged ({error}).") from None
        text = parser.text()
        heading = toc.get(member) or parser.heading
        if heading or not parts:
            parts.append((heading or "", text))
        else:  # a file without its own title continues the previous chapter
            parts[-1] = (parts[-1][0], parts[-1][1] + "\n\n" + text)
    cover, suffix = _cover(opf_path, metadata, manifest, read)
    return Book(title or fallback_title, author, _chapters(parts), cover, suffix)


def _toc_titles(opf_path: str, manifest: dict, ncx_id: str | None, read) -> dict[str, str]:
    """{content file: first toc title pointing into it} from the EPUB 3 nav or the EPUB 2 NCX."""
    titles: dict[str, str] = {}
    nav = next((i for i in manifest.values() if "nav" in (i.get("properties") or "").split()), None)
    if nav is not None:
        nav_path = _href(opf_path, nav.get("href"))
        parser = _NavLinks()
        parser.feed(read(nav_path).decode("utf-8", errors="replace"))
        for href, label in parser.links:
            titles.setdefault(_href(nav_path, href), label)
    elif ncx_id in manifest:
        ncx_path = _href(opf_path, manifest[ncx_id].get("href"))
        for point in _xml(read(ncx_path), ncx_path).iterfind(".//{*}navPoint"):
            label = " ".join("".join(point.find("{*}navLabel").itertext()).split()) if point.find("{*}navLabel") is not None else ""
            content = point.find("{*}content")
            if label and content is not None and content.get("src"):
                titles.setdefault(_href(ncx_path, content.get("src")), label)
    return titles


class _NavLinks(HTMLParser):
    """(href, text) of the links inside the EPUB 3 nav's toc <nav>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []
        self._nav_depth = 0
        self._in_toc = False
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "nav":
            self._nav_depth += 1
            kind = attributes.get("epub:type", "") or attributes.get("role", "")
            if "toc" in kind.split() or "doc-toc" in kind.split():
                self._in_toc = True
        elif tag == "a" and self._in_toc and attributes.get("href"):
            self._href, self._text = attributes["href"], []

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav":
            self._nav_depth -= 1
            self._in_toc = self._in_toc and self._nav_depth > 0
        elif tag == "a" and self._href is not None:
            label = " ".join("".join(self._text).split())
            if label:
                self.links.append((self._href, label))
            self._href = None

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)


def _cover(opf_path: str, metadata, manifest: dict, read) -> tuple[bytes | None, str]:
    """The cover image: EPUB 3 'cover-image' property, EPUB 2 <meta name="cover">, or an image named cover."""
    images = [i for i in manifest.values() if (i.get("media-type") or "").startswith("image/")]
    item = next((i for i in images if "cover-image" in (i.get("properties") or "").split()), None)
    if item is None and metadata is not None:
        meta = next((m for m in metadata.iterfind("{*}meta") if m.get("name") == "cover"), None)
        item = manifest.get(meta.get("content")) if meta is not None else None
    if item is None:
        item = next((i for i in images if "cover" in (i.get("id", "") + i.get("href", "")).lower()), None)
    if item is None:
        return None, ""
    member = _href(opf_path, item.get("href"))
    try:
        data = read(member)
    except BookImportError:
        return None, ""  # a missing cover is not worth refusing the book
    suffix = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp"}
    return data, suffix.get(item.get("media-type"), posixpath.splitext(member)[1].lower() or ".img")

"""Book import: chapters from plain text, Markdown and EPUB files the tests write themselves."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from engine.book.importer import import_book, strip_markdown
from engine.errors import BookImportError, DrmProtectedError

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32  # the cover's bytes only need to come back unchanged


def test_text_chapters_from_heading_lines_and_chapter_markup(tmp_path):
    path = tmp_path / "my_book.txt"
    path.write_text(
        "\ufeffThe Title Page\nby Someone\n\nCHAPTER ONE\n\nIt was dark.\nStill dark.\n\n"
        "Chapter 2: The End\n\nThe end came. A chapter 3 mention inside a sentence is no heading.\n\n"
        "Prologue\n\nBefore.\n[chapter]\nAfter the mark.\n", encoding="utf-8")
    book = import_book(path)
    assert book.title == "my book" and book.author == "" and book.cover is None
    assert [c.title for c in book.chapters] == ["The Title Page", "CHAPTER ONE", "Chapter 2: The End", "Prologue",
                                                "After the mark."]
    assert book.chapters[1].text == "CHAPTER ONE\n\nIt was dark.\nStill dark."
    assert "chapter 3 mention" in book.chapters[2].text


def test_text_without_headings_is_one_chapter(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("Just a paragraph.\n\n\n\nAnd another one.", encoding="utf-8")
    (chapter,) = import_book(path).chapters
    assert chapter.text == "Just a paragraph.\n\nAnd another one."


def test_markdown_chapters_and_stripping(tmp_path):
    path = tmp_path / "book.md"
    path.write_text(
        "# Great Book\n\nIntro *text* with [a link](http://x.org) and ![a picture](a.png).\n\n"
        "## First\n\nSome **bold**, _italic_ and `code`.\n\n```\n# not a heading\nprint('no')\n```\n\n"
        "- item one\n- item two\n\n<div>html <b>tags</b></div>\n\n## Second\n\n> quoted\n\n---\n\nsnake_case stays.\n",
        encoding="utf-8")
    book = import_book(path)
    assert book.title == "Great Book"
    assert [c.title for c in book.chapters] == ["Great Book", "First", "Second"]
    assert book.chapters[0].text == "Intro text with a link and ."
    assert book.chapters[1].text == "First\n\nSome bold, italic and code.\n\nitem one\nitem two\n\nhtml tags"
    assert book.chapters[2].text == "Second\n\nquoted\n\nsnake_case stays."


def test_markdown_escapes_and_reference_links():
    assert strip_markdown("[ref link][1] and \\*stars\\*\n[1]: http://x\n") == "ref link and *stars*\n\n"


def _epub(path: Path, *, nav: bool = True, encryption: str | None = None) -> Path:
    """A small valid EPUB (3 with nav, or 2 with an NCX): two chapters over three files, a cover."""
    opf_items = ['<item id="c1" href="text/ch1.xhtml" media-type="application/xhtml+xml"/>',
                 '<item id="c1b" href="text/ch1b.xhtml" media-type="application/xhtml+xml"/>',
                 '<item id="c2" href="text/ch%202.xhtml" media-type="application/xhtml+xml"/>',
                 '<item id="img" href="images/cover.png" media-type="image/png"'
                 + (' properties="cover-image"/>' if nav else "/>")]
    if nav:
        opf_items.append('<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>')
    else:
        opf_items.append('<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>')
    opf = f"""<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="{3 if nav else 2}.0" unique-identifier="id">
 <metadata xmlns:dc="http://purl.org/dc/elements/1.1/">
  <dc:title>The  Test Book</dc:title><dc:creator>Ada Writer</dc:creator><dc:creator>Bo Co</dc:creator>
  {'' if nav else '<meta name="cover" content="img"/>'}
 </metadata>
 <manifest>{''.join(opf_items)}</manifest>
 <spine{'' if nav else ' toc="ncx"'}><itemref idref="c1"/><itemref idref="c1b"/><itemref idref="c2"/></spine>
</package>"""

    def page(body: str) -> str:
        return ('<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml"><head>'
                f"<title>ignored</title><style>p {{color: red}}</style></head><body>{body}</body></html>")

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip")
        z.writestr("META-INF/container.xml", '<?xml version="1.0"?><container version="1.0" '
                   'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles><rootfile '
                   'full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles></container>')
        if encryption:
            z.writestr("META-INF/encryption.xml", '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
                       'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData><enc:EncryptionMethod '
                       f'Algorithm="{encryption}"/></enc:EncryptedData></encryption>')
        z.writestr("OEBPS/content.opf", opf)
        z.writestr("OEBPS/text/ch1.xhtml", page("<h1>Heading One</h1><p>First&nbsp;paragraph &amp; more.</p>"
                                                "<p>Second<br/>line.</p><script>var x;</script>"))
        z.writestr("OEBPS/text/ch1b.xhtml", page("<p>Continued in a second file.</p>"))
        z.writestr("OEBPS/text/ch 2.xhtml", page("<div><h2>Two</h2><p>The <i>end</i>.</p></div>"))
        z.writestr("OEBPS/images/cover.png", PNG)
        if nav:
            z.writestr("OEBPS/nav.xhtml", page('<nav epub:type="toc" xmlns:epub="http://www.idpf.org/2007/ops"><ol>'
                       '<li><a href="text/ch1.xhtml">Chapter One: Start</a></li>'
                       '<li><a href="text/ch%202.xhtml#top">Chapter Two</a></li></ol></nav>'))
        else:
            z.writestr("OEBPS/toc.ncx", '<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1"><navMap>'
                       '<navPoint id="a"><navLabel><text>Chapter One: Start</text></navLabel>'
                       '<content src="text/ch1.xhtml"/></navPoint></navMap></ncx>')
    return path


@pytest.mark.parametrize("nav", [True, False], ids=["epub3-nav", "epub2-ncx"])
def test_epub_spine_order_toc_titles_metadata_and_cover(tmp_path, nav):
    book = import_book(_epub(tmp_path / "book.epub", nav=nav))
    assert (book.title, book.author) == ("The Test Book", "Ada Writer, Bo Co")
    assert (book.cover, book.cover_suffix) == (PNG, ".png")
    # EPUB 2 here has no toc entry for chapter two: its <h2> names it.
    assert [c.title for c in book.chapters] == ["Chapter One: Start", "Chapter Two" if nav else "Two"]
    assert book.chapters[0].text == ("Heading One\n\nFirst paragraph & more.\n\nSecond\nline.\n\n"
                                     "Continued in a second file.")
    assert book.chapters[1].text == "Two\n\nThe end."


def test_epub_with_font_obfuscation_only_is_fine_but_drm_is_refused(tmp_path):
    fonts = _epub(tmp_path / "fonts.epub", encryption="http://www.idpf.org/2008/embedding")
    assert len(import_book(fonts).chapters) == 2
    drm = _epub(tmp_path / "drm.epub", encryption="http://www.w3.org/2001/04/xmlenc#aes128-cbc")
    with pytest.raises(DrmProtectedError, match="DRM"):
        import_book(drm)


@pytest.mark.parametrize("content, message", [
    (b"not a zip at all", "damaged zip"),
    (None, "container.xml is missing"),
])
def test_corrupt_epubs_raise_book_import_errors(tmp_path, content, message):
    path = tmp_path / "bad.epub"
    if content is None:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("mimetype", "application/epub+zip")
    else:
        path.write_bytes(content)
    with pytest.raises(BookImportError, match=message):
        import_book(path)


def test_unsupported_missing_empty_and_non_utf8_files(tmp_path):
    (tmp_path / "a.pdf").write_bytes(b"%PDF")
    (tmp_path / "empty.txt").write_text("  \n\n ")
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    for name, message in (("a.pdf", "unsupported book format"), ("nope.txt", "does not exist"),
                          ("empty.txt", "no text"), ("latin.txt", "not UTF-8")):
        with pytest.raises(BookImportError, match=message):
            import_book(tmp_path / name)

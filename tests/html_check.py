"""Checks of the HTML pages `reasonlab report` writes, shared by the report's tests: tag structure
and self-containment (`Structure`), tables and plotted values as a person reads them (`Page`), and
a render in headless Chromium (`render_in_chromium`)."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Structure:
    """Balanced tags (void elements excepted), external references and scripts, via html.parser."""

    VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}

    def __init__(self, text: str):
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: dict[str, int] = {}
        outer = self

        class Parser(HTMLParser):
            def handle_starttag(self, tag, attrs):
                outer.tags[tag] = outer.tags.get(tag, 0) + 1
                for name, value in attrs:
                    if name in ("src", "href") and value and not value.startswith(("#", "data:")):
                        outer.errors.append(f"external reference {name}={value}")
                if tag == "script":
                    outer.errors.append("script")
                if tag not in outer.VOID:
                    outer.stack.append(tag)

            def handle_endtag(self, tag):
                if not outer.stack or outer.stack[-1] != tag:
                    outer.errors.append(f"</{tag}> closes <{outer.stack[-1:]}> at {self.getpos()}")
                else:
                    outer.stack.pop()

        Parser().feed(text)
        if self.stack:
            self.errors.append(f"unclosed {self.stack}")


class Page:
    """A report as a person reads it: its headings (in order, with their ids), links, tables (each
    under the text of the heading before it) and the values under each plot."""

    def __init__(self, text: str):
        self.headings: list[tuple[int, str, str | None]] = []
        """(level, text, id) in page order."""
        self.links: list[str] = []
        self._tables: list[tuple[str, str, list[list[str]]]] = []
        """(heading above, summary of the details it is folded in or "", rows)."""
        outer = self

        class Parser(HTMLParser):
            heading: list | None = None
            summary: list[str] | None = None
            cell: list[str] | None = None
            table: list[list[str]] | None = None
            last_heading = ""
            last_summary = ""

            def handle_starttag(self, tag, attrs):
                attrs = dict(attrs)
                if len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
                    self.heading = [int(tag[1]), "", attrs.get("id")]
                elif tag == "details":
                    self.last_summary = ""
                elif tag == "summary":
                    self.summary = []
                elif tag == "table":
                    self.table = []
                elif tag == "tr" and self.table is not None:
                    self.table.append([])
                elif tag in ("td", "th"):
                    self.cell = []
                elif tag == "a" and attrs.get("href"):
                    outer.links.append(attrs["href"])

            def handle_endtag(self, tag):
                if self.heading is not None and tag == f"h{self.heading[0]}":
                    outer.headings.append(tuple(self.heading))
                    self.last_heading = self.heading[1]
                    self.heading = None
                elif tag == "summary" and self.summary is not None:
                    self.last_summary = "".join(self.summary)
                    self.summary = None
                elif tag == "details":
                    self.last_summary = ""
                elif tag in ("td", "th") and self.cell is not None and self.table:
                    self.table[-1].append("".join(self.cell).strip())
                    self.cell = None
                elif tag == "table" and self.table is not None:
                    outer._tables.append((self.last_heading, self.last_summary, self.table))
                    self.table = None

            def handle_data(self, data):
                for part in (self.heading, self.summary, self.cell):
                    if isinstance(part, list) and part and isinstance(part[0], int):
                        part[1] += data  # a heading: [level, text, id]
                    elif part is not None:
                        part.append(data)

        Parser().feed(text)

    def tables(self, heading: str) -> list[list[list[str]]]:
        """The tables under every heading that contains `heading` (not those under plots)."""
        return [rows for above, summary, rows in self._tables if heading in above and not summary]

    def plotted(self, title: str) -> list[dict[str, str]]:
        """The values of each plot titled `title`, in page order: line label -> "x: y, x: y, ..."
        as the data table folded under the plot shows them."""
        want = f"{title}: the plotted values"
        return [
            {r[0]: r[1] for r in rows[1:]} for _, summary, rows in self._tables if summary == want
        ]


def render_in_chromium(page: Path, shot: Path, height: int = 2400) -> tuple[list[str], object]:
    """Render `page` in headless Chromium to the PNG `shot`; returns the console lines Chromium
    logged (script errors, failed loads) and the screenshot as a grey-scale array."""
    import numpy as np
    from PIL import Image

    assert CHROMIUM is not None
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            f"--screenshot={shot}",
            f"--window-size=1400,{height}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return console, np.asarray(Image.open(shot).convert("L"), dtype=np.float64)

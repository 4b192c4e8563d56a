"""The SM map is seen, not just parsed: a real headless browser (Debian's chromium) renders
the SVG of examples/modes.toml to PNG, and at the centre of every SM's cell the pixel is
that partition's colour (or the dropped SMs' grey). Skipped where chromium is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from greenres.facts import SmFacts
from greenres.serialize import load_spec
from greenres.spec import Partition, PartitionSpec
from greenres.svg import CELL

from support.png import read_png

SVG = "{http://www.w3.org/2000/svg}"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
H100 = SmFacts.for_known_device("h100")
BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)), None)

pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no chromium to render with (apt-get install chromium)"
)


def _translate(element) -> tuple[float, float]:
    match = re.fullmatch(r"translate\(([-\d.]+),([-\d.]+)\)", element.get("transform") or "")
    return (float(match[1]), float(match[2])) if match else (0.0, 0.0)


def cell_centres(svg: str):
    """(x, y, fill, partition) of every SM cell's centre, in the document's pixels."""
    root = ET.fromstring(svg)
    out = []

    def walk(element, dx, dy):
        tx, ty = _translate(element)
        dx, dy = dx + tx, dy + ty
        for child in element:
            if child.tag == f"{SVG}rect" and "sm" in (child.get("class") or "").split():
                x = dx + float(child.get("x")) + CELL / 2
                y = dy + float(child.get("y")) + CELL / 2
                out.append((int(x), int(y), child.get("fill"), child.get("data-partition")))
            walk(child, dx, dy)

    walk(root, 0, 0)
    return root, out


def browser_env() -> dict[str, str]:
    """The browser is a tool here, not code under test: under scripts/sanitize it must not
    inherit the preloaded ASan runtime (chromium is not built for it and fails to start)."""
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def render(svg: str, tmp_path: Path):
    root, centres = cell_centres(svg)
    width, height = int(root.get("width")), int(root.get("height"))
    source, picture = tmp_path / "map.svg", tmp_path / "map.png"
    source.write_text(svg, encoding="utf-8")
    done = subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--window-size={width},{height}",
            f"--screenshot={picture}",
            source.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=browser_env(),
    )
    assert done.returncode == 0 and picture.exists(), done.stderr[-3000:]
    image = read_png(str(picture))
    assert (image.width, image.height) == (width, height)
    return image, centres


def rgb(fill: str) -> tuple[int, int, int]:
    return tuple(int(fill[i : i + 2], 16) for i in (1, 3, 5))


def test_every_cell_is_drawn_in_its_partitions_colour(tmp_path):
    modal = load_spec(EXAMPLES / "modes.toml").plan(H100)
    image, centres = render(modal.to_svg(), tmp_path)
    assert len(centres) == 2 * H100.sm_count
    for x, y, fill, name in centres:
        assert image.pixel(x, y) == rgb(fill), (x, y, name)


def test_dropped_cells_are_grey_not_white(tmp_path):
    plan = PartitionSpec((Partition("a", sms=64),), remainder="drop").plan(H100)
    image, centres = render(plan.to_svg(), tmp_path)
    dropped = [(x, y) for x, y, _, name in centres if name == ""]
    assert len(dropped) == H100.sm_count - 64
    for x, y in dropped:
        r, g, b = image.pixel(x, y)
        assert 120 <= r <= 240 and abs(r - g) < 8 and abs(g - b) < 8, (x, y, (r, g, b))

"""docs/app.png: the web page of ``make app`` with a video made, as a visitor's headless Chromium shows it.

    python docs/app_screenshot.py [--mdn runs/mdn/demo] [--renderer runs/renderer/demo]
        [--photo outputs/demo-photo.png] [--audio outputs/demo-voice.wav] [--out docs/app.png]

The defaults are what ``make demo`` leaves (its models, its held-out photo and voice). The page is served from
this process on a free port; the photo and the speech are uploaded through the page by Debian's Chromium
(tests/browser.py), and the window is saved once the video plays.
"""

import argparse
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.app import Studio, start, temporary_folder  # noqa: E402
from tests import browser  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mdn", default="runs/mdn/demo")
    parser.add_argument("--renderer", default="runs/renderer/demo")
    parser.add_argument("--photo", type=Path, default=Path("outputs/demo-photo.png"))
    parser.add_argument("--audio", type=Path, default=Path("outputs/demo-voice.wav"))
    parser.add_argument("--out", type=Path, default=Path("docs/app.png"))
    args = parser.parse_args()
    reason = browser.missing()
    if reason:
        parser.error(reason)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with temporary_folder() as folder:
        studio = Studio.load(args.mdn, args.renderer, folder)
        if studio.models is None:
            parser.error(studio.missing)
        page = start(studio, port=port, block=False)
        try:
            with browser.chromium(1280, 1040) as driver:
                video = browser.make_video_on_page(driver, page.local_url, args.photo, args.audio)
                driver.save_screenshot(str(args.out))
        finally:
            page.close()
    print(f"wrote {args.out} (the video: {video['videoWidth']}x{video['videoHeight']}, {video['duration']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

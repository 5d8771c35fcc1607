"""``python -m tests.faults.big_server``: the product as ``python -m quartapp`` serves it, with
:class:`tests.faults.support.BigProvider` injected (large output for frozen-reader tests).

Configured by the same environment variables, plus BIG_COUNT, BIG_SIZE and BIG_DELAY_S.
"""

from __future__ import annotations

import asyncio
import logging
import os

from quartapp.app import create_app
from quartapp.config import load_settings
from quartapp.serve import hypercorn_config, serve_until_signal
from tests.faults.support import BigProvider


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    provider = BigProvider(
        int(os.environ.get("BIG_COUNT", "3000")),
        int(os.environ.get("BIG_SIZE", "2048")),
        float(os.environ.get("BIG_DELAY_S", "0")),
    )
    app = create_app(settings, provider=provider)
    print(f"Serving on http://{settings.HOST}:{settings.PORT}/ (provider: big)", flush=True)
    asyncio.run(serve_until_signal(app, hypercorn_config(settings)))


if __name__ == "__main__":
    main()

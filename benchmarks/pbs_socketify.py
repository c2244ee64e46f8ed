"""The PBS answers on socketify (uWebSockets), for benchmarks/pbs.py's side-by-side table.

Not a supported front: the same prepared answers (:mod:`opencm.pbs.answers`) written through
socketify's API, to measure that server against opencm's own on this machine.
Run: ``python -m benchmarks.pbs_socketify STORE PORT`` (needs ``pip install socketify``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from socketify import App

from opencm.pbs.answers import revalidate, select
from opencm.pbs.catalog import Catalog


def main() -> None:
    store, port = Path(sys.argv[1]), int(sys.argv[2])
    catalog = Catalog(store)
    catalog.refresh()

    def handler(res: Any, req: Any) -> None:
        path, _, query = req.get_full_url().partition("?")
        answer = select(catalog.tables, req.get_method().upper(), path, query.encode("latin-1"))
        if_none_match = req.get_header("if-none-match")
        if if_none_match:
            answer = revalidate(answer, if_none_match.encode("latin-1"))
        res.write_status(answer.status)
        for name, value in answer.text_headers:
            if name != "content-length":
                res.write_header(name, value)
        res.end(bytes(answer.body))

    app = App()
    app.any("/*", handler)
    app.listen(port, lambda _config: None)
    app.run()


if __name__ == "__main__":
    main()

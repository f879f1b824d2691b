"""``python -m tryon_client`` runs the ``tryon`` CLI."""

from __future__ import annotations

from tryon_client.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

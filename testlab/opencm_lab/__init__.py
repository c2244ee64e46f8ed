"""opencm's test lab: namespaces, PKI, OpenVPN/WireGuard servers, modem emulator, demo.

Lives beside the product, not in it: tests, benchmarks and ``scripts/demo.sh`` import it, while
``pip install opencm`` installs no part of it. ``scripts/bootstrap.sh`` installs it (editable,
from ``testlab/pyproject.toml``) into the development venv.
"""

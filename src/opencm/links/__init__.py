"""Links: the dialers that bring a connection up (OpenVPN, WireGuard, modem, NetworkManager)."""

"""The desktop client, ``opencm-gui`` (PySide6; the optional extra ``opencm[gui]``).

A thin front over the daemon (docs/daemon-protocol.md): the Connections window, the logon
dialog with its status pane, Properties, the tray icon and the "Stay online?" dialog. The rest
of opencm never imports this package (a test guards it), so headless installs need no Qt.
"""

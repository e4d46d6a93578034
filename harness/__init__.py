"""Servers and drivers shared by the tests and the bench: the HTTP server
with faults (``httpd``), the fake HuggingFace Hub (``fakehub``), the cloud
emulators (``cloud_servers``), SeaweedFS (``seaweedfs``), a dlengine home
driven through its CLI (``home``) and the chaos loop (``chaos``).

``tests/`` and ``bench/`` both import from here and never from each other
(``tests/unit/test_layout.py``); this package imports neither, and it is not
in the wheel (``setup.cfg`` packages only ``dlengine*``)."""

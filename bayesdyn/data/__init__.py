"""Data shipped with bayesdyn: the default disk mock (``disk_mock.npz``) and the script that made it.

See ``README.md`` in this folder for provenance; read the mock with
:func:`bayesdyn.mocks.load_default`.
"""

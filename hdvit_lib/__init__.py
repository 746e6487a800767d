"""hdvit_lib: the thin library behind the executable book of Park & Kim,
"How Do Vision Transformers Work?" (ICLR 2022, arXiv:2202.06709).

Modules, in the order data flows through them:
``presets`` -> ``data`` -> ``models`` -> ``train`` (and ``zoo``) -> ``analysis`` -> ``plots``.
"""

__version__ = "0.1.0"
